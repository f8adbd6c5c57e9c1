"""GraphQL errors as clients see them: a safe message and a stable `extensions.code`.

Anything unexpected is masked as INTERNAL (the details go to the operator log, without PHI).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from graphql import GraphQLError

from resolvers.context import Denials, SourceProblems
from resolvers.errors import ClientError, SourceError

INTERNAL_MESSAGE = "Internal server error"
# With introspection off, validation messages would still rebuild the schema for a patient
# prober ("Did you mean 'patient'?", "on type 'Query'"): they are replaced by this one.
SCHEMA_HIDDEN_MESSAGE = (
    "The document is not valid for this API (introspection is off: details are not shown)"
)
SYNTAX_ERROR = "Syntax Error"  # graphql-core's prefix for parse errors: they name no schema part


def error_code(error: GraphQLError) -> str:
    original = error.original_error
    if isinstance(original, ClientError):
        return original.code
    if isinstance(original, SourceError):
        return original.code
    if original is None or error.path is None:
        return "BAD_USER_INPUT"  # syntax, validation, variable coercion: the request itself
    return "INTERNAL"


def is_request_error(error: GraphQLError) -> bool:
    """Raised before execution (parse, validate, coerce variables): nothing was resolved."""
    return error.path is None and not isinstance(error.original_error, ClientError | SourceError)


def format_error(error: GraphQLError, *, hide_schema: bool = False) -> dict[str, Any]:
    """`hide_schema` (introspection is off): validation and variable errors say no more than
    that the document is not valid; syntax errors keep their message."""
    code = error_code(error)
    original = error.original_error
    message = INTERNAL_MESSAGE if code == "INTERNAL" else error.message
    if hide_schema and is_request_error(error) and not message.startswith(SYNTAX_ERROR):
        message = SCHEMA_HIDDEN_MESSAGE
    out: dict[str, Any] = {"message": message}
    if error.locations:
        out["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    if error.path is not None:
        out["path"] = list(error.path)
    out["extensions"] = {"code": code}
    if isinstance(original, SourceError):
        out["extensions"]["source"] = original.source_id
    return out


def format_source_problems(problems: SourceProblems) -> list[dict[str, Any]]:
    out = []
    for source_id, (error, path) in problems.failures.items():
        item: dict[str, Any] = {"message": str(error)}
        if path is not None:
            item["path"] = list(path)
        item["extensions"] = {"code": error.code, "source": source_id}
        if error.cause is not None:
            item["extensions"]["reason"] = error.cause
        out.append(item)
    return out


def format_denials(denials: Denials) -> list[dict[str, Any]]:
    return [
        {
            "message": message,
            **({"path": list(path)} if path else {}),
            "extensions": {"code": "FORBIDDEN"},
        }
        for path, message in denials.items
    ]


def format_errors(
    errors: Iterable[GraphQLError],
    problems: SourceProblems,
    denials: Denials,
    *,
    hide_schema: bool = False,
) -> list[dict[str, Any]]:
    formatted = [
        format_error(e, hide_schema=hide_schema)
        for e in errors
        if not isinstance(e.original_error, SourceError)
    ]
    return formatted + format_source_problems(problems) + format_denials(denials)


def simple_error(message: str, code: str) -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"code": code}}]}
