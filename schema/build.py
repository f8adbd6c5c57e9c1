"""Builds the Strawberry schema and prints its SDL (`patientgraph schema`)."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import AddValidationRules
from strawberry.schema.config import StrawberryConfig

from schema.query import Query
from schema.scalars import SCALAR_MAP


def build_schema(*, introspection: bool = True) -> strawberry.Schema:
    extensions: list[Any] = []  # extension classes or instances, as Strawberry accepts
    if not introspection:
        extensions.append(AddValidationRules([NoSchemaIntrospectionCustomRule]))
    return strawberry.Schema(
        query=Query, extensions=extensions, config=StrawberryConfig(scalar_map=SCALAR_MAP)
    )


def sdl() -> str:
    return build_schema().as_str() + "\n"
