"""Builds the Strawberry schema and prints its SDL (`patientgraph schema`)."""

from __future__ import annotations

import logging

import strawberry
from graphql import GraphQLError
from strawberry.extensions import DisableIntrospection, SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from app.logging import describe_exception
from schema.errors import error_code
from schema.query import Query
from schema.scalars import SCALAR_MAP

log = logging.getLogger("patientgraph.graphql")


class PatientGraphSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Log only unexpected errors, by exception class and field path: client mistakes and
        source outages are answered to the client, and messages or variables may hold PHI."""
        for error in errors:
            if error_code(error) == "INTERNAL" and error.original_error is not None:
                path = ".".join(map(str, error.path or []))
                log.error(
                    "internal error at %s: %s", path, describe_exception(error.original_error)
                )


def build_schema(*, introspection: bool = True) -> strawberry.Schema:
    extensions: list[type[SchemaExtension]] = []
    if not introspection:
        extensions.append(DisableIntrospection)
    return PatientGraphSchema(
        query=Query, extensions=extensions, config=StrawberryConfig(scalar_map=SCALAR_MAP)
    )


def sdl() -> str:
    return build_schema().as_str() + "\n"
