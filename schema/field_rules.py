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

from resolvers import access
from resolvers.context import Context
from resolvers.errors import Forbidden


def field_rule_problems(
    schema: strawberry.Schema, coordinates: Iterable[str], owners: Mapping[str, frozenset[str]]
) -> list[str]:
    """Why these `Type.field` names cannot be denied: unknown, not on Patient or a record
    type (a key of `owners`), or non-null (a null there would wipe out the whole parent)."""
    problems = []
    for coordinate in sorted(coordinates):
        type_name, _, field_name = coordinate.partition(".")
        graphql_type = schema._schema.type_map.get(type_name)
        if type_name not in owners or not isinstance(graphql_type, GraphQLObjectType):
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


def denied(ctx: Context, coordinate: str) -> bool:
    """Whether reading `Type.field` would be refused (for work done ahead of the read, such
    as prefetching: the refusal itself is decided when the field is read)."""
    return access.field_denied(ctx, coordinate)


def _guarded(resolve: Any, coordinate: str) -> Any:
    def resolver(source: Any, info: Any, **arguments: Any) -> Any:
        if not access.field_allowed(info.context, coordinate):
            raise Forbidden(f"Not allowed to read {coordinate}")
        return resolve(source, info, **arguments)

    return resolver
