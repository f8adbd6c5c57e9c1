"""MLLP (Minimal Lower Layer Protocol) transport for HL7 v2 over TCP, on plain asyncio.

A frame is ``0x0B`` + message + ``0x1C 0x0D``. The server runs HL7 "original mode": on each
connection messages are handled strictly in order, one at a time, and each is answered with
the framed bytes the handler returns (the handler builds the ACK; this module never looks inside
a message). Connections are served concurrently.

Failure rules, chosen so that a message is either fully processed and ACKed, or not ACKed at all
(the sender then resends it, which is how HL7 senders recover):

* the handler raising: the exception class and stack frames (never its message) are logged and
  that connection is closed, without a reply; the listener keeps serving. Replying AE/AR is
  the handler's job, for messages it understood; an exception means we do not know the
  message's state, so we say nothing.
* a frame over ``max_message_bytes``: the connection is closed, nothing is handled.
* a peer that disconnects mid-frame: the partial frame is dropped, nothing is handled.
* a connection silent for ``idle_timeout`` seconds: closed.
* a frame not finished ``frame_timeout`` seconds after the server began waiting for its rest
  (a sender trickling bytes): the connection is closed, the partial frame dropped.
* a peer that `admits` refuses, or one connection more than ``max_connections``: closed at
  accept, before a byte is read.
* ``aclose()``: idle connections are closed at once; a message whose handler is running is
  allowed to finish and be ACKed (bounded by ``shutdown_timeout``), after which it is cancelled
  and gets no ACK. Frames received but not yet started are dropped unACKed.

Logs hold counts and peer addresses only, never payload bytes or exception messages (PHI).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType

from app.logging import describe_exception

log = logging.getLogger(__name__)

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
DEFAULT_MAX_MESSAGE_BYTES = 1_048_576
_READ_CHUNK = 65_536

Handler = Callable[[bytes], Awaitable[bytes]]
Admits = Callable[[str | None], bool]  # peer host -> may it connect


class FrameTooLarge(Exception):
    """A frame's payload exceeded the configured limit; the stream cannot be trusted further."""


def frame(message: bytes) -> bytes:
    return START_BLOCK + message + END_BLOCK


class MllpFramer:
    """Incremental de-framer: feed() any chunk of bytes, get back complete message payloads.

    Bytes outside a frame (keepalive newlines, junk) are discarded. A START_BLOCK inside an
    unfinished frame restarts the frame: the sender gave up on the old one, which was never
    ACKed, so dropping it is safe (a payload may not contain 0x0B in HL7 anyway).
    """

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self._max = max_message_bytes
        self._buffer = bytearray()
        self._in_frame = False
        self.frames_begun = 0  # tells a caller timing frames that a new one started
        # Where the END_BLOCK search resumes: re-scanning from the start on every chunk would be
        # quadratic for a sender that trickles a large message in small reads.
        self._scanned = 0

    @property
    def in_frame(self) -> bool:
        """True while a frame has started but not ended (a disconnect now loses it)."""
        return self._in_frame

    def feed(self, data: bytes) -> list[bytes]:
        messages: list[bytes] = []
        pos = 0
        while pos < len(data):
            pos = self._consume(data, pos, messages) if self._in_frame else self._seek(data, pos)
        return messages

    def _seek(self, data: bytes, pos: int) -> int:
        start = data.find(START_BLOCK, pos)
        if start < 0:
            return len(data)
        self._begin()
        return start + 1

    def _begin(self) -> None:
        self._buffer.clear()
        self._in_frame = True
        self.frames_begun += 1
        self._scanned = 0

    def _consume(self, data: bytes, pos: int, messages: list[bytes]) -> int:
        """Append frame bytes from data[pos:]; return where the caller resumes."""
        restart = data.find(START_BLOCK, pos)
        stop = len(data) if restart < 0 else restart
        self._buffer += memoryview(data)[pos:stop]
        end = self._buffer.find(END_BLOCK, max(0, self._scanned - 1))
        if end >= 0:
            self._check_size(end)
            messages.append(bytes(self._buffer[:end]))
            # Bytes appended after END_BLOCK belong to the stream again (next frame or junk).
            leftover = len(self._buffer) - (end + len(END_BLOCK))
            self._reset()
            return stop - leftover
        self._scanned = len(self._buffer)
        self._check_size(self._pending_payload_size())
        if restart < 0:
            return len(data)
        self._begin()
        return restart + 1

    def _pending_payload_size(self) -> int:
        # A trailing 0x1C may be the first half of END_BLOCK, so it does not count yet.
        trailing = 1 if self._buffer.endswith(END_BLOCK[:1]) else 0
        return len(self._buffer) - trailing

    def _reset(self) -> None:
        self._buffer.clear()
        self._in_frame = False
        self._scanned = 0

    def _check_size(self, size: int) -> None:
        if size > self._max:
            self._reset()
            raise FrameTooLarge(f"MLLP frame larger than {self._max} bytes")


class FrameTimedOut(Exception):
    """A frame was not finished within the frame deadline."""


class _HandlerFailed(Exception):
    """Internal: the handler raised; the connection must close without a reply."""


@dataclass
class _Connection:
    writer: asyncio.StreamWriter
    peer: str
    busy: bool = False
    handled: int = 0


def _peer(writer: asyncio.StreamWriter) -> tuple[str | None, str]:
    """(host, "host:port" for logs) of the connected peer."""
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return str(peer[0]), f"{peer[0]}:{peer[1]}"
    return None, "unknown"


def _set_nodelay(writer: asyncio.StreamWriter) -> None:
    # ACKs are tiny; with Nagle on they wait for the peer's delayed ACK (~40 ms each). asyncio
    # already sets this for TCP transports, but the latency contract should not rest on that.
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    # The peer may already be gone (reset); the transport is closed either way.
    with contextlib.suppress(Exception):
        await writer.wait_closed()


class MllpServer:
    """MLLP listener: frames each connection's stream and answers every message in order."""

    def __init__(
        self,
        handler: Handler,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        idle_timeout: float = 300.0,
        frame_timeout: float = 30.0,
        shutdown_timeout: float = 5.0,
        max_connections: int = 32,
        admits: Admits | None = None,
        reuse_port: bool = False,  # several worker processes share the port (SO_REUSEPORT)
        tls: ssl.SSLContext | None = None,  # `app.sources.tls.listener_context`; None: plain
    ) -> None:
        self._handler = handler
        self._reuse_port = reuse_port
        self._tls = tls
        self._frame_timeout = frame_timeout
        self._max_connections = max_connections
        self._admits = admits
        self._host = host
        self._requested_port = port
        self._max_message_bytes = max_message_bytes
        self._idle_timeout = idle_timeout
        self._shutdown_timeout = shutdown_timeout
        self._server: asyncio.Server | None = None
        self._bound_port: int | None = None
        self._closing = False
        self._connections: dict[asyncio.Task[None], _Connection] = {}

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("MllpServer already started")
        self._server = await asyncio.start_server(
            self._accept,
            self._host,
            self._requested_port,
            reuse_port=self._reuse_port or None,
            ssl=self._tls,
            # a handshake that never finishes is a frame that never ends
            ssl_handshake_timeout=self._frame_timeout if self._tls else None,
        )
        # Kept after aclose() too, so callers can still report which port was served.
        self._bound_port = int(self._server.sockets[0].getsockname()[1])
        log.info("mllp listening on %s:%d", self._host, self.port)

    @property
    def port(self) -> int:
        if self._bound_port is None:
            raise RuntimeError("MllpServer is not started")
        return self._bound_port

    @property
    def running(self) -> bool:
        return self._server is not None and not self._closing and self._server.is_serving()

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback (not a coroutine) so the task is registered at accept time: aclose()
        # then sees every connection, including one accepted an instant before it.
        if self._closing:
            writer.close()
            return
        host, peer = _peer(writer)
        if self._admits is not None and not self._admits(host):
            log.warning("mllp connection from %s refused: not an allowed client", peer)
            writer.close()
            return
        if len(self._connections) >= self._max_connections:
            log.warning(
                "mllp connection from %s refused: %d connections open", peer, len(self._connections)
            )
            writer.close()
            return
        _set_nodelay(writer)
        conn = _Connection(writer=writer, peer=peer)
        task = asyncio.get_running_loop().create_task(self._serve(reader, conn))
        self._connections[task] = conn
        task.add_done_callback(self._connections.pop)

    async def _serve(self, reader: asyncio.StreamReader, conn: _Connection) -> None:
        log.debug("mllp connection from %s", conn.peer)
        try:
            outcome = await self._pump(reader, conn)
        except FrameTooLarge:
            outcome = f"frame over {self._max_message_bytes} bytes"
        except FrameTimedOut:
            outcome = f"frame not finished within {self._frame_timeout:g} s"
        except TimeoutError:
            outcome = "idle timeout"
        except _HandlerFailed:
            outcome = "handler failed"
        except ConnectionError:
            outcome = "connection error"
        except Exception as exc:  # one bad connection must never take the listener down
            outcome = "unexpected error"
            log.error("mllp connection from %s failed: %s", conn.peer, describe_exception(exc))
        finally:
            await _close_writer(conn.writer)
        log.info(
            "mllp connection from %s ended (%s); %d messages handled",
            conn.peer,
            outcome,
            conn.handled,
        )

    async def _pump(self, reader: asyncio.StreamReader, conn: _Connection) -> str:
        """Serve one connection until it ends; return why it ended (for the log)."""
        framer = MllpFramer(self._max_message_bytes)
        loop = asyncio.get_running_loop()
        frame_deadline: float | None = None  # set while a begun frame waits for its rest
        counted = 0
        while not self._closing:
            data = await self._read(reader, frame_deadline)
            if not data:
                break
            for message in framer.feed(data):
                if self._closing:
                    break  # not started means not ACKed: the sender resends after restart
                await self._answer(message, conn)
            if not framer.in_frame:
                frame_deadline = None
            elif frame_deadline is None or framer.frames_begun != counted:
                # Counted from now, after this chunk's messages were answered: the time our
                # handler took is not the sender's.
                frame_deadline = loop.time() + self._frame_timeout
            counted = framer.frames_begun
        if self._closing:
            return "server shutdown"
        if framer.in_frame:
            return "closed by peer mid-frame, partial frame dropped"
        return "closed by peer"

    async def _read(self, reader: asyncio.StreamReader, frame_deadline: float | None) -> bytes:
        if frame_deadline is None:
            async with asyncio.timeout(self._idle_timeout):
                return await reader.read(_READ_CHUNK)
        idle_deadline = asyncio.get_running_loop().time() + self._idle_timeout
        try:
            async with asyncio.timeout_at(min(frame_deadline, idle_deadline)):
                return await reader.read(_READ_CHUNK)
        except TimeoutError:
            if frame_deadline <= idle_deadline:
                raise FrameTimedOut from None
            raise

    async def _answer(self, message: bytes, conn: _Connection) -> None:
        # busy spans handler, write and drain: aclose() must not cut a connection between a
        # durable store and its ACK leaving.
        conn.busy = True
        try:
            reply = await self._call_handler(message, conn)
            conn.writer.write(frame(reply))
            # A peer that stops reading must not pin this connection forever.
            async with asyncio.timeout(self._idle_timeout):
                await conn.writer.drain()
        finally:
            conn.busy = False
        conn.handled += 1

    async def _call_handler(self, message: bytes, conn: _Connection) -> bytes:
        try:
            return await self._handler(message)
        except Exception as exc:
            # Class and frames only: the exception text may quote the message (PHI).
            log.error(
                "mllp handler failed for a message from %s; closing the connection without "
                "a reply: %s",
                conn.peer,
                describe_exception(exc),
            )
            raise _HandlerFailed from None

    async def aclose(self) -> None:
        if self._server is None or self._closing:
            return
        self._closing = True
        self._server.close()
        for conn in list(self._connections.values()):
            if not conn.busy:
                # Closing the transport feeds EOF to the reader: the loop ends without a reply.
                conn.writer.close()
        await self._drain_connections()
        await self._server.wait_closed()
        log.info("mllp listener on %s stopped", self._host)

    async def _drain_connections(self) -> None:
        tasks = list(self._connections)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self._shutdown_timeout)
        for task in pending:
            # A handler still running now is cancelled before it replies: no ACK, so the
            # sender resends; the handler's own transaction must make that safe.
            task.cancel()
        if pending:
            log.warning("mllp shutdown cancelled %d in-flight handlers", len(pending))
            await asyncio.gather(*pending, return_exceptions=True)


class MllpClient:
    """One persistent connection; send() frames a message and waits for the framed reply.

    Calls to send() are serialised (original mode: one outstanding message per connection).
    If a send fails or times out, the connection is closed, because a late reply would otherwise
    be read as the answer to the next message; the next send() reconnects.
    """

    def __init__(
        self, host: str, port: int, *, timeout: float = 10.0, tls: ssl.SSLContext | None = None
    ) -> None:
        self._host = host
        self._port = port
        self._timeout = timeout
        self._tls = tls  # MLLP over TLS (the host name is checked against the certificate)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._framer = MllpFramer()
        self._lock = asyncio.Lock()

    async def connect(self) -> None:
        if self._writer is not None:
            return
        async with asyncio.timeout(self._timeout):
            reader, writer = await asyncio.open_connection(self._host, self._port, ssl=self._tls)
        _set_nodelay(writer)
        self._reader, self._writer = reader, writer
        self._framer = MllpFramer()

    async def send(self, message: bytes) -> bytes:
        async with self._lock:
            await self.connect()
            try:
                async with asyncio.timeout(self._timeout):
                    return await self._exchange(message)
            except BaseException:
                await self._disconnect()
                raise

    async def _exchange(self, message: bytes) -> bytes:
        assert self._reader is not None
        assert self._writer is not None
        self._writer.write(frame(message))
        await self._writer.drain()
        while True:
            data = await self._reader.read(_READ_CHUNK)
            if not data:
                raise ConnectionResetError("MLLP peer closed the connection before replying")
            replies = self._framer.feed(data)
            if replies:
                # Original mode has one reply per message; anything more is not ours to use.
                return replies[0]

    async def _disconnect(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            await _close_writer(writer)

    async def aclose(self) -> None:
        await self._disconnect()

    async def __aenter__(self) -> MllpClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
