"""Pure-ASGI middleware: request ids, request body limit, security headers and gzip.

Pure ASGI (not BaseHTTPMiddleware) so a limit is enforced while the body streams in, before
anything buffers it, and so the per-request overhead stays small.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

import orjson
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.logging import REQUEST_ID

access_log = logging.getLogger("patientgraph.access")
OTHER_PATH = "(other)"  # a path that is not a route: never printed, it may be anything

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    # Every answer, 404 and 413 included, unless a route says otherwise: nothing PatientGraph
    # serves belongs in a browser or proxy cache.
    "cache-control": "no-store",
}
DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'"


class BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Answer 413 for a body larger than `max_bytes`, whether declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > self.max_bytes):
                await _too_large(send)
                return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _too_large(send)


async def _too_large(send: Send) -> None:
    body = orjson.dumps(
        {
            "errors": [
                {"message": "Request body too large", "extensions": {"code": "QUERY_REJECTED"}}
            ]
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class SecurityHeadersMiddleware:
    """Headers every response carries; a route may set its own CSP (GraphiQL does)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                headers.setdefault("content-security-policy", DEFAULT_CSP)
            await send(message)

        await self.app(scope, receive, with_headers)


class RequestIdMiddleware:
    """Every request has an id: the client's `X-Request-Id` when it is a plain token (at most
    64 letters, digits, `.`, `_`, `:` or `-`: it lands in logs), else a new one. It is echoed
    in the response and put on every log line written while the request is served."""

    def __init__(self, app: ASGIApp, logged_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.logged_paths = logged_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-request-id", "")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 0

        async def with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["x-request-id"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, with_id)
        finally:
            # The access log: the path only, never the query string (a GET query's variables,
            # a search's name or identifier, would be PHI).
            path = scope["path"] if scope["path"] in self.logged_paths else OTHER_PATH
            fields = {
                "method": scope["method"],
                "path": path,
                "status": status,
                "ms": round((time.perf_counter() - started) * 1000, 1),
            }
            access_log.info("%s %s %s", scope["method"], path, status, extra={"fields": fields})
            REQUEST_ID.reset(token)


class GzipWhenAccepted:
    """Starlette's GZipMiddleware, entered only for requests that accept gzip.

    GZipMiddleware wraps every response, compressible or not, in a responder that parses its
    headers; for the many clients that send no `Accept-Encoding` (service-to-service callers,
    the cache-hit benchmark) that was a measurable share of a cached answer's time. An identity
    answer needs no `Vary: Accept-Encoding`: a shared cache handing it to a gzip client is
    harmless, and the gzip answers that would be wrong for others still carry it.
    """

    def __init__(self, app: ASGIApp, minimum_size: int, compresslevel: int) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=minimum_size, compresslevel=compresslevel)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _accepts_gzip(scope):
            await self.gzip(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _accepts_gzip(scope: Scope) -> bool:
    # The same test GZipMiddleware makes (a substring of the header), without building Headers.
    headers = scope["headers"]
    return any(name == b"accept-encoding" and b"gzip" in value for name, value in headers)
