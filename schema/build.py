"""Builds the Strawberry schema and prints its SDL (`patientgraph schema`)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import strawberry
from graphql import GraphQLError, GraphQLObjectType, GraphQLSchema, OperationDefinitionNode, parse
from strawberry.extensions import (
    DisableIntrospection,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType

from app.auth.policy import Policy, PolicyError, load_policy
from app.logging import describe_exception
from app.settings import GraphQLSettings
from resolvers.pagination import PageLimits
from schema.errors import error_code
from schema.fast_paths import install_fast_paths
from schema.field_rules import field_rule_problems, guard_fields
from schema.mutation import Mutation
from schema.patient import FIELD_OWNERS
from schema.query import Query
from schema.scalars import SCALAR_MAP

log = logging.getLogger("patientgraph.graphql")
DOCUMENT_CACHE_SIZE = 512
PAGE_SIZE_ARGUMENT = "first"
_DEFAULTS = GraphQLSettings()
DEFAULT_PAGE_LIMITS = PageLimits(_DEFAULTS.default_page_size, _DEFAULTS.max_page_size)


class PatientGraphSchema(strawberry.Schema):
    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        """Strawberry runs the first operation of a document that holds several when no
        `operationName` is given; the GraphQL spec says to refuse (Executing Requests,
        GetOperation)."""
        if operation_name is None and query is not None and operation_count(query) > 1:
            message = "Must provide operationName when the document holds several operations"
            return ExecutionResult(data=None, errors=[GraphQLError(message)])
        return await super().execute(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            allowed_operation_types,
            operation_extensions,
        )

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


def build_schema(
    *,
    introspection: bool = True,
    policy: Policy | None = None,
    page_limits: PageLimits = DEFAULT_PAGE_LIMITS,
) -> strawberry.Schema:
    """The schema, with the fields `policy` denies to some role guarded and every `first`
    described with the server's page sizes; raises PolicyError when the policy names a field
    that cannot be denied."""
    # Bounded: parsing and validating a document once per distinct text, not per request.
    extensions: list[type[SchemaExtension] | Callable[[], SchemaExtension]] = [
        lambda: ParserCache(maxsize=DOCUMENT_CACHE_SIZE),
        lambda: ValidationCache(maxsize=DOCUMENT_CACHE_SIZE),
    ]
    if not introspection:
        extensions.append(DisableIntrospection)
    schema = PatientGraphSchema(
        query=Query,
        mutation=Mutation,
        extensions=extensions,
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
    )
    describe_page_size(schema._schema, page_limits)
    install_fast_paths(schema)  # before or after the field guards: each keeps the other's
    if policy is not None:
        problems = field_rule_problems(schema, policy.denied_fields, FIELD_OWNERS)
        if problems:
            raise PolicyError(f"policy: deny_fields {'; '.join(problems)}")
        guard_fields(schema, policy.denied_fields)
    return schema


@functools.lru_cache(maxsize=DOCUMENT_CACHE_SIZE)
def operation_count(query: str) -> int:
    """Operations the document defines (0 when it does not parse: execution reports that)."""
    try:
        document = parse(query, no_location=True)
    except GraphQLError:
        return 0
    return sum(isinstance(d, OperationDefinitionNode) for d in document.definitions)


def describe_page_size(schema: GraphQLSchema, limits: PageLimits) -> None:
    """Every paged field's `first` says the page sizes this server enforces (`[graphql]
    default_page_size`, `max_page_size`), so GraphiQL shows the configured numbers."""
    text = f"How many to return (default {limits.default}, at most {limits.maximum})."
    for graphql_type in schema.type_map.values():
        if isinstance(graphql_type, GraphQLObjectType):
            for graphql_field in graphql_type.fields.values():
                argument = graphql_field.args.get(PAGE_SIZE_ARGUMENT)
                if argument is not None:
                    argument.description = text


def load_checked_policy(path: Path | None) -> Policy:
    """The policy at `path` (or the default), its field rules checked against the schema."""
    policy = load_policy(path, FIELD_OWNERS)
    build_schema(policy=policy)
    return policy


def sdl() -> str:
    return build_schema().as_str() + "\n"
