"""Cancel a request's work when its client hangs up: nobody will read the answer, and its
upstream calls would otherwise run on to their own timeouts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response

T = TypeVar("T")
log = logging.getLogger(__name__)


class ClientGone(Exception):
    """The client closed the connection before the answer was ready."""


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """`work`'s result; raises ClientGone, with `work` cancelled, when the client disconnects
    first. Call it once the body has been read: the next ASGI message is then the disconnect."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    raise ClientGone


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def client_gone(request: Request, exc: Exception) -> Response:
    """For the log and the access log only (nginx's 499): the client is not there to read it."""
    log.info("client closed the connection on %s: its work was cancelled", request.url.path)
    return Response(status_code=499)
