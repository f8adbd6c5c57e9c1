"""Fault injection around a real upstream app: switch it to fail in the ways real ones do."""

from __future__ import annotations

import asyncio
from typing import Literal

from starlette.types import ASGIApp, Receive, Scope, Send

Mode = Literal["ok", "500", "503-retry-after", "garbage", "hang", "foreign-next"]
RETRY_AFTER_SECONDS = 2  # what "503-retry-after" asks for


class FaultInjector:
    """ASGI wrapper; set `.mode` at run time. `hang` sleeps far past any client timeout (and
    counts in `abandoned` the callers that hung up on it meanwhile),
    `garbage` answers 200 with malformed JSON, `foreign-next` answers a Bundle whose next
    link points at another origin."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.mode: Mode = "ok"
        self.state = getattr(app, "state", None)
        self.abandoned = 0  # hanging requests whose client closed the connection
        self.faulted = 0  # requests answered with a fault (the app never saw them)
        self.fail_next = 0  # whatever the mode, answer this many more requests with a 502

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
        if self.mode == "hang" and await _client_left(receive, 30):
            self.abandoned += 1
            return
        status, body = {
            "500": (500, b'{"resourceType": "OperationOutcome"}'),
            "503-retry-after": (503, b'{"resourceType": "OperationOutcome"}'),
            "garbage": (200, b'{"resourceType": "Bundle", "entry": [ {oops'),
            "hang": (200, b"{}"),
            "foreign-next": (
                200,
                b'{"resourceType": "Bundle", "type": "searchset", "entry": [],'
                b' "link": [{"relation": "next", "url": "http://evil.invalid/fhir/R4/Patient?p=2"}]}',
            ),
        }[self.mode]
        retry_after = [(b"retry-after", b"%d" % RETRY_AFTER_SECONDS)] if status == 503 else []
        await _answer(
            send, status, body, [(b"content-type", b"application/fhir+json"), *retry_after]
        )


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
