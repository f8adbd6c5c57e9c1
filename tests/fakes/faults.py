"""Fault injection around a real upstream app: switch it to fail in the ways real ones do."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from typing import Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

Mode = Literal[
    "ok",
    "500",
    "503-retry-after",
    "429-retry-after",
    "garbage",
    "html-200",
    "hang",
    "drip",
    "huge",
    "redirect",
    "foreign-next",
    "loop-next",
    "slow-next",
    "elsewhere-refs",
    "wrong-types",
]
RETRY_AFTER_SECONDS = 2  # what "503-retry-after" and "429-retry-after" ask for
DRIP_INTERVAL = 0.1  # seconds between the bytes of a "drip" body
SLOW_NEXT_DELAY = 0.3  # seconds before each page of a "slow-next" chain
FHIR_JSON = [(b"content-type", b"application/fhir+json")]

# What the real app's answers become under the two data faults.
TRANSFORMS: dict[str, Callable[[bytes], bytes]] = {
    # every reference to a patient points at another server instead
    "elsewhere-refs": lambda body: body.replace(
        b'"reference":"Patient/', b'"reference":"http://evil.invalid/fhir/R4/Patient/'
    ),
    # dates and codes of the wrong JSON type or format
    "wrong-types": lambda body: re.sub(
        rb'"gender":"[a-z]+"',
        b'"gender":5',
        re.sub(rb'"birthDate":"[0-9-]+"', b'"birthDate":12', body),
    ),
}


class FaultInjector:
    """ASGI wrapper; set `.mode` at run time. `hang` sleeps far past any client timeout (and
    counts in `abandoned` the callers that hung up on it meanwhile), `garbage` answers 200
    with malformed JSON and `html-200` with an HTML page, `drip` sends a body one byte per
    DRIP_INTERVAL, `huge` an endless body in 1 MiB chunks up to `huge_bytes`, `redirect` a
    302 to another host; `foreign-next` answers a Bundle whose next link points at another
    origin, `loop-next` one whose next link is the page itself, `slow-next` an endless
    chain of empty pages each SLOW_NEXT_DELAY late. `elsewhere-refs` and `wrong-types` pass
    the request to the real app and rewrite its answer (TRANSFORMS)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.mode: Mode = "ok"
        self.state = getattr(app, "state", None)
        self.abandoned = 0  # hanging requests whose client closed the connection
        self.faulted = 0  # requests answered with a fault (the app never saw them)
        self.fail_next = 0  # whatever the mode, answer this many more requests with a 502
        self.huge_bytes = 50 * 1024 * 1024
        self.body_bytes_sent = 0  # of `huge` and `drip` bodies, before the client hung up

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.fail_next > 0:
            self.fail_next -= 1
            self.faulted += 1
            await _answer(send, 502, b"<html>Bad Gateway</html>", [])
            return
        if scope["type"] != "http" or self.mode == "ok":
            await self.app(scope, receive, send)
            return
        self.faulted += 1
        if self.mode in TRANSFORMS:
            await self._transformed(TRANSFORMS[self.mode], scope, receive, send)
        elif self.mode == "hang":
            if await _client_left(receive, 30):
                self.abandoned += 1
        elif self.mode in ("drip", "huge"):
            await self._stream(send)
        elif self.mode in ("loop-next", "slow-next"):
            await self._next_chain(scope, send)
        else:
            await self._canned(send)

    async def _canned(self, send: Send) -> None:
        outcome = b'{"resourceType": "OperationOutcome"}'
        status, body, headers = {
            "500": (500, outcome, FHIR_JSON),
            "503-retry-after": (503, outcome, FHIR_JSON),
            "429-retry-after": (429, outcome, FHIR_JSON),
            "garbage": (200, b'{"resourceType": "Bundle", "entry": [ {oops', FHIR_JSON),
            "html-200": (200, b"<html><body>Maintenance</body></html>", []),
            "redirect": (302, b"", [(b"location", b"http://evil.invalid/fhir/R4/Patient")]),
            "foreign-next": (
                200,
                b'{"resourceType": "Bundle", "type": "searchset", "entry": [],'
                b' "link": [{"relation": "next", "url": "http://evil.invalid/fhir/R4/Patient?p=2"}]}',
                FHIR_JSON,
            ),
        }[self.mode]
        if status in (429, 503):
            headers = [*headers, (b"retry-after", b"%d" % RETRY_AFTER_SECONDS)]
        await _answer(send, status, body, headers)

    async def _stream(self, send: Send) -> None:
        """A 200 whose body never ends in time: one byte at a time, or far too many bytes."""
        await send({"type": "http.response.start", "status": 200, "headers": FHIR_JSON})
        chunk, pause = (b" ", DRIP_INTERVAL) if self.mode == "drip" else (b" " * 2**20, 0.0)
        limit = 10**6 if self.mode == "drip" else self.huge_bytes
        sent = 0
        try:
            while sent < limit:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                sent += len(chunk)
                self.body_bytes_sent += len(chunk)
                await asyncio.sleep(pause)
            await send({"type": "http.response.body", "body": b"{}"})
        except OSError:  # the client hung up: uvicorn reports it on send
            return

    async def _next_chain(self, scope: Scope, send: Send) -> None:
        host, port = scope["server"]
        here = f"http://{host}:{port}{scope['path']}"
        query = scope["query_string"].decode()
        if self.mode == "slow-next":
            await asyncio.sleep(SLOW_NEXT_DELAY)
            page = int(query.rpartition("slow=")[2] or 0) if "slow=" in query else 0
            next_url = f"{here}?slow={page + 1}"
        else:
            next_url = f"{here}?{query}" if query else here
        body = (
            b'{"resourceType": "Bundle", "type": "searchset", "entry": [],'
            b' "link": [{"relation": "next", "url": "%s"}]}' % next_url.encode()
        )
        await _answer(send, 200, body, FHIR_JSON)

    async def _transformed(
        self, transform: Callable[[bytes], bytes], scope: Scope, receive: Receive, send: Send
    ) -> None:
        """The real app's answer, uncompressed, rewritten whole."""
        headers = [(k, v) for k, v in scope["headers"] if k != b"accept-encoding"]
        start: Message = {}
        body = b""

        async def capture(message: Message) -> None:
            nonlocal start, body
            if message["type"] == "http.response.start":
                start = message
            else:
                body += message.get("body", b"")

        await self.app({**scope, "headers": headers}, receive, capture)
        body = transform(body)
        kept = [(k, v) for k, v in start["headers"] if k not in (b"content-length", b"etag")]
        await _answer(send, start["status"], body, kept)


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _client_left(receive: Receive, seconds: float) -> bool:
    """Whether the client closed the connection within `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            while (await receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        return False
    return True


@contextlib.asynccontextmanager
async def slow_headers_server(interval: float = 0.2) -> AsyncIterator[str]:
    """A raw HTTP/1.1 server on loopback that reads each request, then sends its status line
    and headers one byte every `interval` (below any read timeout, so only a bound on the
    whole exchange ends it); yields its FHIR base URL."""

    handlers: set[asyncio.Task[None]] = set()

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n" + b"X-Pad: a" * 500
        try:
            await reader.readuntil(b"\r\n\r\n")
            for byte in head:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(interval)
        except (OSError, asyncio.IncompleteReadError):
            pass  # the client hung up
        finally:
            writer.close()

    server = await asyncio.start_server(trickle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        try:
            yield f"http://127.0.0.1:{port}/fhir/R4"
        finally:
            for handler in handlers:
                handler.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
