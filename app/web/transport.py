"""GraphQL over HTTP (the GraphQL Foundation's draft spec): which response media type a
request accepts, reading a request's parameters from a POST body or a GET query string, and
the JSON responses every endpoint sends (never stored by a browser or proxy).

- `application/graphql-response+json` is offered when the client asks for it: a request that
  cannot run (syntax, validation, a refused document) is then 400 with no `data` entry.
  `application/json` (also the answer to no `Accept`, `*/*` or `application/*`) keeps the
  behaviour clients had before. Neither acceptable: 406.
- POST bodies must be `application/json` (the media type itself, compared exactly): any other
  type is 415, so the CSRF-able simple types (`text/plain`, form encodings) never run.
- GET carries `query`, `variables` (JSON) and `operationName` in the query string, for queries
  only (a mutation over GET is 405). GET needs the bearer token in `Authorization` like POST,
  which a cross-site form or link cannot send: no CSRF.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.responses import Response

from app.web.rate_limits import retry_after
from schema.errors import simple_error

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
OFFERED = (GRAPHQL_RESPONSE, JSON)
# Variables are input objects and lists: no argument of the schema nests deeper than a few
# levels, and the response cache's canonical JSON allows at most 254.
MAX_VARIABLE_DEPTH = 32
NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}


class UnsupportedMediaType(ValueError):
    """A POST body that is not application/json (415)."""


@dataclass(frozen=True, slots=True)
class Params:
    query: str | None  # None: `document_id` names a trusted document instead
    variables: dict[str, Any] | None
    operation: str | None
    document_id: str | None = None


def negotiate(accept: str | None) -> str | None:
    """The media type to answer with, or None when the client accepts neither (406).
    graphql-response+json only when named exactly (a client naming it understands it) with a
    quality at least application/json's; each type's quality is that of the most specific
    range matching it (RFC 9110 section 12.5.1)."""
    if accept is None or not accept.strip():
        return JSON
    ranges = _ranges(accept)
    graphql_q = max((q for r, q in ranges if r == GRAPHQL_RESPONSE), default=0.0)
    json_q = _quality(ranges, JSON)
    if graphql_q > 0 and graphql_q >= json_q:
        return GRAPHQL_RESPONSE
    return JSON if json_q > 0 else None


def _quality(ranges: list[tuple[str, float]], offered: str) -> float:
    matching = [(_matches(r, offered), q) for r, q in ranges]
    found = [(specificity, q) for specificity, q in matching if specificity is not None]
    if not found:
        return 0.0
    most = max(specificity for specificity, _ in found)
    return max(q for specificity, q in found if specificity == most)


def _ranges(accept: str) -> list[tuple[str, float]]:
    out = []
    for part in accept.split(","):
        media_range, *parameters = (p.strip() for p in part.split(";"))
        q = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if media_range:
            out.append((media_range.lower(), q))
    return out


def _matches(media_range: str, offered: str) -> int | None:
    """2 for an exact match, 1 for `type/*`, 0 for `*/*`, None for none."""
    if media_range == offered:
        return 2
    kind, _, subtype = media_range.partition("/")
    if subtype == "*" and offered.startswith(kind + "/"):
        return 1
    if media_range == "*/*":
        return 0
    return None


def media_type(content_type: str) -> str:
    """`application/json; charset=utf-8` -> `application/json`."""
    return content_type.partition(";")[0].strip().lower()


def post_params(body: bytes, content_type: str) -> Params:
    if media_type(content_type) != JSON:
        raise UnsupportedMediaType("Content-Type must be application/json")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValueError("Body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ValueError("Body must be a JSON object")
    return _checked(
        data.get("query"),
        data.get("variables"),
        data.get("operationName"),
        data.get("documentId"),
        data.get("extensions"),
    )


def get_params(query_string: Mapping[str, str]) -> Params:
    variables = _json_param(query_string, "variables")
    extensions = _json_param(query_string, "extensions")
    operation = query_string.get("operationName") or None
    document = query_string.get("documentId") or None
    return _checked(query_string.get("query"), variables, operation, document, extensions)


def _json_param(query_string: Mapping[str, str], name: str) -> Any:
    raw = query_string.get(name)
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValueError(f"'{name}' is not valid JSON") from None


def _checked(query: Any, variables: Any, operation: Any, document: Any, extensions: Any) -> Params:
    # `extensions` is read by nothing yet, but the spec makes it an object: anything else is a
    # malformed request, refused like a malformed `variables`.
    if extensions is not None and not isinstance(extensions, dict):
        raise ValueError("'extensions' must be an object")
    if document is not None and not isinstance(document, str):
        raise ValueError("'documentId' must be a string")
    if not (query is None and document is not None) and (
        not isinstance(query, str) or not query.strip()
    ):
        raise ValueError("'query' must be a non-empty string")
    if variables is not None and not isinstance(variables, dict):
        raise ValueError("'variables' must be an object")
    if variables and _depth(variables) > MAX_VARIABLE_DEPTH:
        raise ValueError(f"'variables' may nest at most {MAX_VARIABLE_DEPTH} levels")
    if operation is not None and not isinstance(operation, str):
        raise ValueError("'operationName' must be a string")
    return Params(query, variables, operation, document)


def _depth(value: Any) -> int:
    """How deeply `value` nests objects and lists, counted without recursion (so a hostile
    document cannot exhaust the stack); stops counting past the limit."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict | list) and level > deepest:
            deepest = level
            if deepest > MAX_VARIABLE_DEPTH:
                break
        if isinstance(item, dict):
            pending.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            pending.extend((v, level + 1) for v in item)
    return deepest


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None, media: str = JSON
) -> Response:
    return Response(orjson.dumps(payload), status, {**NO_STORE, **(headers or {})}, media)


def rate_limited(wait: float, media: str = JSON) -> Response:
    error = simple_error("Too many requests: retry later", "RATE_LIMITED")
    return json_response(error, 429, {"retry-after": retry_after(wait)}, media)
