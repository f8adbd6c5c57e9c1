"""POST /graphql executes a query for an authenticated caller; GET /graphql serves GraphiQL.

Our own endpoint rather than Strawberry's view: authentication must answer 401 with
`WWW-Authenticate` before anything parses the query, and source failures must be merged into
the response as coded errors.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any

import orjson
from graphql import OperationType as OperationKind
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from app.audit import events as served
from app.audit.events import Caller, parts_from_json, parts_json, parts_of
from app.audit.trail import AuditUnavailable, Part
from app.auth.break_glass import HEADER as BREAK_GLASS_HEADER
from app.auth.break_glass import BreakGlassRefused, break_glass_from
from app.auth.policy import Access, PurposeRefused
from app.auth.principal import Principal
from app.cache.response import Document, Entry, Stored
from app.domain.audit import Decision, Rule, Summary
from app.graphiql.page import GRAPHIQL_CSP, render_graphiql_page
from app.logging import describe_exception
from app.sources import failures, freshness
from app.web import audit
from app.web.auth import caller_of
from app.web.disconnect import unless_disconnected
from app.web.examples import DASHBOARD_QUERY
from app.web.state import Runtime, runtime_of
from app.web.transport import (
    GRAPHQL_RESPONSE,
    JSON,
    NO_STORE,
    UnsupportedMediaType,
    get_params,
    json_response,
    negotiate,
    post_params,
    rate_limited,
)
from resolvers.context import Context
from resolvers.loaders import RequestLoaders
from schema.cost import OverBudget
from schema.errors import INTERNAL_MESSAGE, format_errors, is_request_error, simple_error
from schema.limits import QueryRejected, check_document

log = logging.getLogger(__name__)
STATIC_PREFIX = "/graphiql/static"
OPERATION_TYPES = frozenset({OperationType.QUERY, OperationType.MUTATION})
QUERIES_ONLY = frozenset({OperationType.QUERY})  # over GET
# `x-cache` tells operators how the response cache answered: hit, miss (computed and, when
# cacheable, stored), shared (an identical concurrent miss computed it), bypass (not cacheable:
# a mutation, break-the-glass, a document that does not parse, or caching off).
HIT_HEADERS = {**NO_STORE, "x-cache": "hit"}
MISS = {**NO_STORE, "x-cache": "miss"}
SHARED = {**NO_STORE, "x-cache": "shared"}
BYPASS = {**NO_STORE, "x-cache": "bypass"}
NOTHING: list[Part] = []  # an operation that did not run
# An operation's type and name in a document's text (a shorthand `{ ... }` is a query).
OPERATION = re.compile(r"\b(query|mutation|subscription)\s*([_A-Za-z][_0-9A-Za-z]*)?")


async def internal_error(request: Request, exc: Exception) -> Response:
    """Last resort: a coded JSON 500, the details only in the operator log (no PHI there)."""
    log.error("unhandled error on %s: %s", request.url.path, describe_exception(exc))
    return json_response(simple_error(INTERNAL_MESSAGE, "INTERNAL"), 500)


async def graphql_get(request: Request) -> Response:
    """A query in the query string (GraphQL over HTTP), else the GraphiQL page for a browser."""
    runtime = runtime_of(request)
    accepts_html = "text/html" in request.headers.get("accept", "")
    if "query" in request.query_params or not (runtime.settings.server.graphiql and accepts_html):
        return await _graphql(request, get=True)
    page = render_graphiql_page(
        endpoint=str(request.url.path),
        static_prefix=STATIC_PREFIX,
        default_query=DASHBOARD_QUERY,
        default_headers=runtime.settings.server.graphiql_headers or None,
    )
    return HTMLResponse(page, headers={**NO_STORE, "content-security-policy": GRAPHIQL_CSP})


async def graphql_post(request: Request) -> Response:
    return await _graphql(request, get=False)


async def _graphql(request: Request, *, get: bool) -> Response:
    runtime = runtime_of(request)
    media = negotiate(request.headers.get("accept"))
    if media is None:
        message = f"Accept must allow {GRAPHQL_RESPONSE} or {JSON}"
        return json_response(simple_error(message, "BAD_USER_INPUT"), 406)
    principal = await caller_of(request, runtime, media)
    if isinstance(principal, Response):
        return principal
    limits = runtime.rate_limits
    try:
        if get:
            params = get_params(request.query_params)
        else:
            params = post_params(await request.body(), request.headers.get("content-type", ""))
        query = runtime.trusted_documents.resolve(params.query, params.document_id)
        variables, operation = params.variables, params.operation
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
    except UnsupportedMediaType as exc:
        return json_response(simple_error(str(exc), "BAD_USER_INPUT"), 415, None, media)
    except ValueError as exc:
        return json_response(simple_error(str(exc), "BAD_USER_INPUT"), 400, None, media)
    except OverBudget as exc:
        error = simple_error(str(exc), exc.code)
        error["errors"][0]["extensions"].update(exc.extensions)
        return json_response(error, 400, None, media)
    except QueryRejected as exc:
        return json_response(simple_error(str(exc), exc.code), 400, None, media)
    except BreakGlassRefused as exc:
        refusal = Decision(Rule.BREAK_GLASS, "request", False)
        audited = await _refused(runtime, request, principal, query, operation, refusal, media)
        return audited or json_response(simple_error(str(exc), exc.code), exc.status, None, media)
    except PurposeRefused as exc:
        refusal = Decision(Rule.PURPOSE, "request", False)
        audited = await _refused(runtime, request, principal, query, operation, refusal, media)
        return audited or json_response(simple_error(str(exc), "FORBIDDEN"), 403, None, media)
    if limits.enabled:  # a query that fans out widely spends more of the caller's limit
        wait = await limits.charge(principal, cost.searches)
        if wait is not None:
            return rate_limited(wait, media)
    if emergency is not None:
        runtime.break_glass_log.record(emergency)
        # Who and when for operators; the reason stays out of the log (it may hold PHI).
        log.warning("break-the-glass by %s (token %s)", emergency.subject, emergency.token_id)
    allowed = QUERIES_ONLY if get else OPERATION_TYPES
    call = GraphQLRequest(query, variables, operation, principal, access, allowed)
    caller = audit.caller_of(request, principal, emergency)
    try:
        return await _serve(runtime, request, call, caller, emergency is not None, media)
    except AuditUnavailable:
        return _unaudited(media)


async def _serve(
    runtime: Runtime,
    request: Request,
    call: GraphQLRequest,
    caller: Caller,
    emergency: bool,
    media: str,
) -> Response:
    """Answer from the response cache, a concurrent identical request or by running the
    operation, and audit how it was answered before the response leaves."""
    trail = runtime.audit
    cache = runtime.response_cache
    document = cache.document(call.query) if cache is not None else None
    kind, name = _named(call.query, call.operation, document)
    fields = runtime.selected_fields.of(call.query) if trail is not None else ()
    op = audit.operation_of(trail, kind, name, call.query, call.variables, fields)
    if (
        cache is None
        or document is None
        or emergency  # elevated access: never stored, never served from a cache
        or kind != "query"
    ):
        outcome = await unless_disconnected(request, _execute(runtime, call))
        await audit.record(trail, caller, op, outcome.parts, served.EXECUTED)
        return _answer(outcome.stored, BYPASS, media)
    fingerprint = runtime.fingerprints.digest(call.principal, call.access)
    key = cache.key(document, call.operation, call.variables, fingerprint)
    entry = await cache.get(key)
    if entry is not None:
        await audit.record(trail, caller, op, parts_from_json(entry.note), served.CACHED)
        return Response(entry.body, 200, HIT_HEADERS, media)

    async def compute() -> Outcome:
        outcome = await _execute(runtime, call)
        ttl = cache.ttl_for(document)  # 0 for a type configured never to be cached
        if outcome.stored.cacheable and ttl > 0:
            entry = Entry(outcome.stored.body, parts_json(outcome.parts))
            await cache.put(key, entry, ttl, outcome.disclosed, document)
        return outcome

    # Shared by identical concurrent misses: cancelled only when every one of them has left.
    outcome, computed = await unless_disconnected(request, cache.flight.run(key, compute))
    await audit.record(
        trail, caller, op, outcome.parts, served.EXECUTED if computed else served.SHARED
    )
    return _answer(outcome.stored, MISS if computed else SHARED, media)


def _named(query: str, operation: str | None, document: Document | None) -> tuple[str, str | None]:
    """The operation's type (query or mutation) and name, as the audit trail names it: the
    document's only operation when the request names none."""
    if document is not None:
        found = document.operations.get(operation)
        if operation is None:  # the only operation (keyed by None too): its name, if any
            operation = next((n for n, k in document.operations.items() if n is not None), None)
        return ("mutation" if found is OperationKind.MUTATION else "query"), operation
    for match in OPERATION.finditer(query):  # a document the cache did not analyse
        if operation is None or match.group(2) == operation:
            return match.group(1), match.group(2)
    return "query", operation


async def _refused(
    runtime: Runtime,
    request: Request,
    principal: Principal,
    query: str,
    operation: str | None,
    refusal: Decision,
    media: str,
) -> Response | None:
    """Audit a request the policy refused before running it; the INTERNAL answer when the
    trail could not be written, else None (the caller answers with the refusal)."""
    trail = runtime.audit
    caller = audit.caller_of(request, principal, None)
    kind, name = _named(query, operation, None)
    op = audit.operation_of(trail, kind, name, query, None)
    try:
        await audit.record_decision(trail, caller, op, refusal)
    except AuditUnavailable:
        return _unaudited(media)
    return None


def _unaudited(media: str) -> Response:
    """Fail closed: what cannot be audited is not disclosed (the operator log says why)."""
    log.error("the audit trail could not be written: request refused")
    return json_response(simple_error(INTERNAL_MESSAGE, "INTERNAL"), 500, None, media)


@dataclass(frozen=True, slots=True)
class GraphQLRequest:
    query: str
    variables: dict[str, Any] | None
    operation: str | None
    principal: Principal
    access: Access
    allowed: frozenset[OperationType]  # queries only over GET


@dataclass(frozen=True, slots=True)
class Outcome:
    stored: Stored
    parts: list[Part]  # what it disclosed and decided, per patient, for the audit trail
    disclosed: frozenset[str]  # PatientGraph ids the response depends on (cache tags)


async def _execute(runtime: Runtime, request: GraphQLRequest) -> Outcome:
    deadline = asyncio.get_running_loop().time() + runtime.settings.graphql.deadline_seconds
    context = Context(
        request.principal,
        runtime.services,
        RequestLoaders(runtime.services.index, deadline),
        request.access,
    )
    try:
        with freshness.track() as fetched, failures.track():
            result = await runtime.schema.execute(
                request.query,
                variable_values=request.variables,
                context_value=context,
                operation_name=request.operation,
                allowed_operation_types=request.allowed,
            )
    except InvalidOperationTypeError as exc:
        if exc.operation_type is OperationType.MUTATION:  # over GET (GraphQL over HTTP: 405)
            body = orjson.dumps(simple_error("Send mutations with POST", "BAD_USER_INPUT"))
            return Outcome(Stored(405, body, cacheable=False), NOTHING, frozenset())
        body = orjson.dumps(simple_error("Subscriptions are not served", "BAD_USER_INPUT"))
        return Outcome(Stored(400, body, cacheable=False), NOTHING, frozenset())
    for error, _path in context.problems.failures.values():
        # Whatever failed the operation, also outside an upstream request (a next link off
        # the base, a search over its caps): readiness reports it (`app.sources.readiness`).
        runtime.registry.readiness.failed(error)
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
    summary = Summary(
        context.disclosures.patients,
        tuple(context.decisions),
        tuple(sorted(context.problems.failures)),
        bool(errors),
        tuple(sorted(context.disclosures.changed)),
    )
    return Outcome(stored, parts_of(summary), context.disclosures.ids)


def _answer(stored: Stored, cache_state: dict[str, str], media: str) -> Response:
    headers = cache_state
    if stored.status == 405:
        headers = {**cache_state, "allow": "POST"}
    body = stored.body
    if media == GRAPHQL_RESPONSE and stored.status == 400:
        # The request could not run: no `data` entry at all (GraphQL over HTTP, 6.4.2).
        payload = orjson.loads(body)
        if payload.get("data", ...) is None:
            payload.pop("data", None)
            body = orjson.dumps(payload)
    return Response(body, stored.status, headers, media)
