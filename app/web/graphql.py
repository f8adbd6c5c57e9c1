"""POST /graphql executes a query for an authenticated caller; GET /graphql serves GraphiQL.

Our own endpoint rather than Strawberry's view: authentication must answer 401 with
`WWW-Authenticate` before anything parses the query, and source failures must be merged into
the response as coded errors.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import orjson
from graphql import OperationType as OperationKind
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from app.auth.break_glass import HEADER as BREAK_GLASS_HEADER
from app.auth.break_glass import BreakGlassRefused, break_glass_from
from app.auth.policy import Access, PurposeRefused
from app.auth.principal import Principal
from app.auth.tokens import AuthenticationError
from app.cache.response import Stored
from app.graphiql.page import GRAPHIQL_CSP, render_graphiql_page
from app.logging import describe_exception
from app.sources import freshness
from app.web.auth import authenticate
from app.web.disconnect import unless_disconnected
from app.web.examples import DASHBOARD_QUERY
from app.web.rate_limits import retry_after
from app.web.state import Runtime, runtime_of
from resolvers.context import Context
from resolvers.loaders import RequestLoaders
from schema.cost import OverBudget
from schema.errors import INTERNAL_MESSAGE, format_errors, is_request_error, simple_error
from schema.limits import QueryRejected, check_document

log = logging.getLogger(__name__)
NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}
STATIC_PREFIX = "/graphiql/static"
# Variables are input objects and lists: no argument of the schema nests deeper than a few
# levels, and the response cache's canonical JSON allows at most 254.
MAX_VARIABLE_DEPTH = 32
OPERATION_TYPES = frozenset({OperationType.QUERY, OperationType.MUTATION})
# `x-cache` tells operators how the response cache answered: hit, miss (computed and, when
# cacheable, stored), shared (an identical concurrent miss computed it), bypass (not cacheable:
# a mutation, break-the-glass, a document that does not parse, or caching off).
HIT_HEADERS = {**NO_STORE, "x-cache": "hit"}
MISS = {**NO_STORE, "x-cache": "miss"}
SHARED = {**NO_STORE, "x-cache": "shared"}
BYPASS = {**NO_STORE, "x-cache": "bypass"}


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(payload), status, {**NO_STORE, **(headers or {})}, "application/json"
    )


async def internal_error(request: Request, exc: Exception) -> Response:
    """Last resort: a coded JSON 500, the details only in the operator log (no PHI there)."""
    log.error("unhandled error on %s: %s", request.url.path, describe_exception(exc))
    return json_response(simple_error(INTERNAL_MESSAGE, "INTERNAL"), 500)


async def graphql_get(request: Request) -> Response:
    runtime = runtime_of(request)
    accepts_html = "text/html" in request.headers.get("accept", "")
    if not (runtime.settings.server.graphiql and accepts_html):
        return json_response(
            simple_error("Send queries with POST", "BAD_USER_INPUT"), 405, {"allow": "POST"}
        )
    page = render_graphiql_page(
        endpoint=str(request.url.path),
        static_prefix=STATIC_PREFIX,
        default_query=DASHBOARD_QUERY,
        default_headers=runtime.settings.server.graphiql_headers or None,
    )
    return HTMLResponse(page, headers={**NO_STORE, "content-security-policy": GRAPHIQL_CSP})


async def graphql_post(request: Request) -> Response:
    runtime = runtime_of(request)
    limits = runtime.rate_limits
    if limits.enabled:  # before any work, even reading the token
        address = request.client.host if request.client is not None else ""
        wait = await limits.address_wait(address)
        if wait is not None:
            return _rate_limited(wait)
    try:
        principal = await authenticate(
            request, runtime.settings.auth, runtime.keyset, runtime.verified_tokens
        )
    except AuthenticationError as exc:
        return json_response(
            simple_error(str(exc), "UNAUTHENTICATED"),
            401,
            {"www-authenticate": 'Bearer error="invalid_token"'},
        )
    if limits.enabled:
        wait = await limits.principal_wait(principal)
        if wait is not None:
            return _rate_limited(wait)
    try:
        query, variables, operation = _parse_body(await request.body(), request)
        check_document(query, runtime.document_limits)  # before anything costly
        cost = runtime.cost.check(query, operation, variables, principal.roles)
        assertions = request.headers.getlist(BREAK_GLASS_HEADER)
        emergency = break_glass_from(
            assertions,
            principal,
            allowed=bool(assertions) and runtime.policy.may_break_glass(principal),
            minutes=runtime.policy.break_glass_minutes,
        )
        access = runtime.decisions.decide(principal, break_glass=emergency is not None)
    except ValueError as exc:
        return json_response(simple_error(str(exc), "BAD_USER_INPUT"), 400)
    except OverBudget as exc:
        error = simple_error(str(exc), exc.code)
        error["errors"][0]["extensions"].update(exc.extensions)
        return json_response(error, 400)
    except QueryRejected as exc:
        return json_response(simple_error(str(exc), exc.code), 400)
    except BreakGlassRefused as exc:
        return json_response(simple_error(str(exc), exc.code), exc.status)
    except PurposeRefused as exc:
        return json_response(simple_error(str(exc), "FORBIDDEN"), 403)
    if limits.enabled:  # a query that fans out widely spends more of the caller's limit
        wait = await limits.charge(principal, cost.searches)
        if wait is not None:
            return _rate_limited(wait)
    if emergency is not None:
        runtime.break_glass_log.record(emergency)
        # Who and when for operators; the reason stays out of the log (it may hold PHI).
        log.warning("break-the-glass by %s (token %s)", emergency.subject, emergency.token_id)
    call = GraphQLRequest(query, variables, operation, principal, access)
    cache = runtime.response_cache
    document = cache.document(query) if cache is not None else None
    if (
        cache is None
        or document is None
        or emergency is not None  # elevated access: never stored, never served from a cache
        or document.operations.get(operation) is not OperationKind.QUERY
    ):
        outcome = await unless_disconnected(request, _execute(runtime, call))
        return _answer(outcome.stored, BYPASS)
    caller = runtime.fingerprints.digest(principal, access)
    key = cache.key(document, operation, variables, caller)
    body = await cache.get(key)
    if body is not None:
        return Response(body, 200, HIT_HEADERS, "application/json")

    async def compute() -> Stored:
        outcome = await _execute(runtime, call)
        ttl = cache.ttl_for(document)  # 0 for a type configured never to be cached
        if outcome.stored.cacheable and ttl > 0:
            await cache.put(key, outcome.stored.body, ttl, outcome.disclosed)
        return outcome.stored

    # Shared by identical concurrent misses: cancelled only when every one of them has left.
    stored, computed = await unless_disconnected(request, cache.flight.run(key, compute))
    return _answer(stored, MISS if computed else SHARED)


@dataclass(frozen=True, slots=True)
class GraphQLRequest:
    query: str
    variables: dict[str, Any] | None
    operation: str | None
    principal: Principal
    access: Access


@dataclass(frozen=True, slots=True)
class Outcome:
    stored: Stored
    disclosed: frozenset[str]  # PatientGraph ids whose data the response holds


async def _execute(runtime: Runtime, request: GraphQLRequest) -> Outcome:
    deadline = asyncio.get_running_loop().time() + runtime.settings.graphql.deadline_seconds
    context = Context(
        request.principal,
        runtime.services,
        RequestLoaders(runtime.services.index, deadline),
        request.access,
    )
    try:
        with freshness.track() as fetched:
            result = await runtime.schema.execute(
                request.query,
                variable_values=request.variables,
                context_value=context,
                operation_name=request.operation,
                allowed_operation_types=OPERATION_TYPES,
            )
    except InvalidOperationTypeError:
        body = orjson.dumps(simple_error("Subscriptions are not served", "BAD_USER_INPUT"))
        return Outcome(Stored(400, body, cacheable=False), frozenset())
    payload: dict[str, Any] = {"data": result.data}
    hide_schema = not runtime.settings.server.introspection
    errors = format_errors(
        result.errors or [], context.problems, context.denials, hide_schema=hide_schema
    )
    if errors:
        payload["errors"] = errors
    if fetched:  # when each source's data was fetched: kept in a cached response as it was
        payload["extensions"] = {"sources": freshness.as_extension(fetched)}
    rejected = result.data is None and any(is_request_error(e) for e in result.errors or [])
    status = 400 if rejected else 200
    stored = Stored(status, orjson.dumps(payload), cacheable=status == 200 and not errors)
    return Outcome(stored, frozenset(context.disclosed))


def _rate_limited(wait: float) -> Response:
    error = simple_error("Too many requests: retry later", "RATE_LIMITED")
    return json_response(error, 429, {"retry-after": retry_after(wait)})


def _answer(stored: Stored, cache_state: dict[str, str]) -> Response:
    return Response(stored.body, stored.status, cache_state, "application/json")


def _parse_body(body: bytes, request: Request) -> tuple[str, dict[str, Any] | None, str | None]:
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":  # the media type itself, not a substring of the header
        raise ValueError("Content-Type must be application/json")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValueError("Body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ValueError("Body must be a JSON object")
    query, variables, operation = (
        data.get("query"),
        data.get("variables"),
        data.get("operationName"),
    )
    if not isinstance(query, str) or not query.strip():
        raise ValueError("'query' must be a non-empty string")
    if variables is not None and not isinstance(variables, dict):
        raise ValueError("'variables' must be an object")
    if variables and _depth(variables) > MAX_VARIABLE_DEPTH:
        raise ValueError(f"'variables' may nest at most {MAX_VARIABLE_DEPTH} levels")
    if operation is not None and not isinstance(operation, str):
        raise ValueError("'operationName' must be a string")
    return query, variables, operation


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
