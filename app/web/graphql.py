"""POST /graphql executes a query for an authenticated caller; GET /graphql serves GraphiQL.

Our own endpoint rather than Strawberry's view: authentication must answer 401 with
`WWW-Authenticate` before anything parses the query, and source failures must be merged into
the response as coded errors.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from app.auth.break_glass import HEADER as BREAK_GLASS_HEADER
from app.auth.break_glass import BreakGlassRefused, break_glass_from
from app.auth.policy import PurposeRefused
from app.auth.tokens import AuthenticationError
from app.graphiql.page import GRAPHIQL_CSP, render_graphiql_page
from app.logging import describe_exception
from app.runtime import Runtime
from app.web.auth import authenticate
from app.web.examples import DASHBOARD_QUERY
from resolvers.context import Context
from resolvers.loaders import RequestLoaders
from schema.errors import INTERNAL_MESSAGE, format_errors, is_request_error, simple_error

log = logging.getLogger(__name__)
NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}
STATIC_PREFIX = "/graphiql/static"
QUERIES_ONLY = frozenset({OperationType.QUERY})


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
    runtime: Runtime = request.app.state.runtime
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
    runtime: Runtime = request.app.state.runtime
    try:
        principal = await authenticate(request, runtime.settings.auth, runtime.keyset)
    except AuthenticationError as exc:
        return json_response(
            simple_error(str(exc), "UNAUTHENTICATED"),
            401,
            {"www-authenticate": 'Bearer error="invalid_token"'},
        )
    try:
        query, variables, operation = _parse_body(await request.body(), request)
        emergency = break_glass_from(
            request.headers.getlist(BREAK_GLASS_HEADER),
            principal,
            allowed=runtime.policy.may_break_glass(principal),
            minutes=runtime.policy.break_glass_minutes,
        )
        access = runtime.policy.decide(principal, break_glass=emergency is not None)
    except ValueError as exc:
        return json_response(simple_error(str(exc), "BAD_USER_INPUT"), 400)
    except BreakGlassRefused as exc:
        return json_response(simple_error(str(exc), exc.code), exc.status)
    except PurposeRefused as exc:
        return json_response(simple_error(str(exc), "FORBIDDEN"), 403)
    if emergency is not None:
        runtime.break_glass_log.record(emergency)
        # Who and when for operators; the reason stays out of the log (it may hold PHI).
        log.warning("break-the-glass by %s (token %s)", emergency.subject, emergency.token_id)
    context = Context(principal, runtime.services, RequestLoaders(runtime.services.index), access)
    try:
        result = await runtime.schema.execute(
            query,
            variable_values=variables,
            context_value=context,
            operation_name=operation,
            allowed_operation_types=QUERIES_ONLY,
        )
    except InvalidOperationTypeError:
        return json_response(simple_error("Only queries are served", "BAD_USER_INPUT"), 400)
    payload: dict[str, Any] = {"data": result.data}
    errors = format_errors(result.errors or [], context.problems, context.denials)
    if errors:
        payload["errors"] = errors
    rejected = result.data is None and any(is_request_error(e) for e in result.errors or [])
    return json_response(payload, 400 if rejected else 200)


def _parse_body(body: bytes, request: Request) -> tuple[str, dict[str, Any] | None, str | None]:
    if "application/json" not in request.headers.get("content-type", ""):
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
    if operation is not None and not isinstance(operation, str):
        raise ValueError("'operationName' must be a string")
    return query, variables, operation
