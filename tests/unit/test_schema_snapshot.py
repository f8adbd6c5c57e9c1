"""The committed SDL is the API changelog: it must match what the code builds."""

from __future__ import annotations

import re
from pathlib import Path

from graphql import GraphQLObjectType

from resolvers.pagination import PageLimits
from schema.build import build_schema, sdl

SNAPSHOT = Path(__file__).resolve().parents[2] / "schema" / "schema.graphql"


def test_committed_sdl_matches_the_schema() -> None:
    assert SNAPSHOT.read_text() == sdl(), (
        "schema changed: run `patientgraph schema > schema/schema.graphql` and note it in "
        "CHANGELOG.md"
    )


def test_contract_names_are_present() -> None:
    text = sdl()
    for fragment in (
        "patient(\n",
        "patients(\n",
        "me: Patient",
        "type PatientConnection",
        "type PageInfo",
        "type ObservationConnection",
        "type ConditionConnection",
        "type AllergyConnection",
        "type MedicationConnection",
        "type ImmunizationConnection",
        "type EncounterConnection",
        "hasNextPage: Boolean!",
        "endCursor: String",
        "totalCount: Int",
        "valueQuantity: Quantity",
        "valueString: String",
        "sources: [SourceLink!]!",
        "sourceId: String!",
        "localId: String!",
    ):
        assert fragment in text, fragment


def test_every_type_and_field_is_described() -> None:
    text = sdl()
    # Every `type`/`scalar`/`enum` and every field line is preceded by a docstring.
    lines = text.splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        declares = re.match(r"^(type|scalar|enum) \w+", stripped) or re.match(
            r"^\w+(\(|:)", stripped
        )
        if declares and not stripped.startswith(("query", "schema")):
            previous = lines[i - 1].strip()
            assert previous.endswith('"""'), f"undocumented: {stripped}"


def test_every_first_argument_states_the_configured_page_sizes() -> None:
    schema = build_schema(page_limits=PageLimits(5, 50))._schema
    described = {
        (type_name, field_name): field.args["first"].description
        for type_name, graphql_type in schema.type_map.items()
        if isinstance(graphql_type, GraphQLObjectType)
        for field_name, field in graphql_type.fields.items()
        if "first" in field.args
    }
    assert ("Query", "patients") in described
    assert ("Patient", "observations") in described
    assert ("Patient", "careTeams") in described
    assert set(described.values()) == {"How many to return (default 5, at most 50)."}
