"""Field-level policy rules: a field some role of the policy denies (`deny_fields`) answers
null with a FORBIDDEN error at its path for callers denied it (`Access.denied_fields`).

Only the fields the policy names are wrapped, once when the server starts, so every other
field keeps its resolver and pays nothing per request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import strawberry
from graphql import GraphQLNonNull, GraphQLObjectType, default_field_resolver

from app.domain import records as kinds
from resolvers.errors import Forbidden

# GraphQL object type -> resource types its records come from: a denial concerns the roles
# that read one of them (see `app.auth.policy`).
FIELD_OWNERS: Mapping[str, frozenset[str]] = {
    "Patient": frozenset({"Patient"}),
    "Observation": frozenset(kinds.OBSERVATIONS.resource_types),
    "Condition": frozenset(kinds.CONDITIONS.resource_types),
    "Allergy": frozenset(kinds.ALLERGIES.resource_types),
    "Medication": frozenset(kinds.MEDICATIONS.resource_types + kinds.DISPENSES.resource_types),
    "MedicationDispense": frozenset(kinds.DISPENSES.resource_types),
    "Immunization": frozenset(kinds.IMMUNIZATIONS.resource_types),
    "Encounter": frozenset(kinds.ENCOUNTERS.resource_types),
    "Procedure": frozenset(kinds.PROCEDURES.resource_types),
    "DiagnosticReport": frozenset(kinds.DIAGNOSTIC_REPORTS.resource_types),
    "CareTeam": frozenset(kinds.CARE_TEAMS.resource_types),
}


def field_rule_problems(schema: strawberry.Schema, coordinates: Iterable[str]) -> list[str]:
    """Why these `Type.field` names cannot be denied: unknown, not on Patient or a record
    type, or non-null (a null there would wipe out the whole parent object)."""
    problems = []
    for coordinate in sorted(coordinates):
        type_name, _, field_name = coordinate.partition(".")
        graphql_type = schema._schema.type_map.get(type_name)
        if type_name not in FIELD_OWNERS or not isinstance(graphql_type, GraphQLObjectType):
            problems.append(f"{coordinate}: not a field of Patient or a record type")
        elif field_name not in graphql_type.fields:
            problems.append(f"{coordinate}: {type_name} has no field {field_name}")
        elif isinstance(graphql_type.fields[field_name].type, GraphQLNonNull):
            problems.append(f"{coordinate}: a non-null field cannot be denied")
    return problems


def guard_fields(schema: strawberry.Schema, coordinates: Iterable[str]) -> None:
    """Wrap each named field's resolver with the per-request denial check."""
    for coordinate in coordinates:
        type_name, _, field_name = coordinate.partition(".")
        graphql_type = schema._schema.type_map[type_name]
        assert isinstance(graphql_type, GraphQLObjectType)
        graphql_field = graphql_type.fields[field_name]
        graphql_field.resolve = _guarded(
            graphql_field.resolve or default_field_resolver, coordinate
        )


def _guarded(resolve: Any, coordinate: str) -> Any:
    def resolver(source: Any, info: Any, **arguments: Any) -> Any:
        if coordinate in info.context.access.denied_fields:
            raise Forbidden(f"Not allowed to read {coordinate}")
        return resolve(source, info, **arguments)

    return resolver
