"""Builds the Strawberry schema and prints its SDL (`patientgraph schema`)."""

from __future__ import annotations

import strawberry
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import AddValidationRules, SchemaExtension

from schema.query import Query


def build_schema(*, introspection: bool = True) -> strawberry.Schema:
    extensions: list[type[SchemaExtension] | SchemaExtension] = []
    if not introspection:
        extensions.append(AddValidationRules([NoSchemaIntrospectionCustomRule]))
    return strawberry.Schema(query=Query, extensions=extensions)


def sdl() -> str:
    return build_schema().as_str() + "\n"
