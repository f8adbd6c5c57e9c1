"""MLLP transport over real loopback sockets: framing, ordering, and every way a peer misbehaves."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from app.sources.hl7v2.mllp import (
    END_BLOCK,
    START_BLOCK,
    FrameTooLarge,
    MllpClient,
    MllpFramer,
    MllpServer,
    frame,
)

MSG = b"MSH|^~\\&|LAB|CITY|PG|HOSP|20240101||ORU^R01|1|P|2.5\rPID|1||12345\r"


@dataclass
class Recorder:
    """Handler for tests: echoes ``ACK:`` + payload, raises on ``boom``, sleeps on ``slow``."""

    seen: list[bytes] = field(default_factory=list)
    completed: list[bytes] = field(default_factory=list)
    slow_started: asyncio.Event = field(default_factory=asyncio.Event)
    slow_seconds: float = 0.15

    async def __call__(self, payload: bytes) -> bytes:
        self.seen.append(payload)
        if payload == b"boom":
            raise ValueError("PHI-bearing text that must not be logged")
        if payload.startswith(b"slow"):
            self.slow_started.set()
            await asyncio.sleep(self.slow_seconds)
        self.completed.append(payload)
        return b"ACK:" + payload


ServerFactory = Callable[..., Awaitable[MllpServer]]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def make_server(recorder: Recorder) -> AsyncIterator[ServerFactory]:
    servers: list[MllpServer] = []

    async def make(**kwargs: Any) -> MllpServer:
        server = MllpServer(recorder, **kwargs)
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.aclose()


@pytest.fixture
async def server(make_server: ServerFactory) -> MllpServer:
    return await make_server()


async def send_once(port: int, message: bytes, *, timeout: float) -> bytes:  # noqa: ASYNC109
    """One connection, one message, its reply."""
    async with MllpClient("127.0.0.1", port, timeout=timeout) as client:
        return await client.send(message)


@contextlib.asynccontextmanager
async def raw(
    server: MllpServer,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A raw connection, so a test controls exactly which bytes go out in which write."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def read_reply(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(2):
        data = await reader.readuntil(END_BLOCK)
    assert data.startswith(START_BLOCK)
    return data[1 : -len(END_BLOCK)]


async def assert_closed_by_server(reader: asyncio.StreamReader) -> None:
    """EOF (or a reset, when unread bytes were pending on the server side) and no reply."""
    async with asyncio.timeout(2):
        try:
            rest = await reader.read()
        except ConnectionResetError:
            rest = b""
    assert rest == b""


# --- framing ------------------------------------------------------------------------------


def test_frame_wraps_message() -> None:
    assert frame(b"abc") == b"\x0babc\x1c\x0d"


def test_feed_byte_by_byte() -> None:
    framer = MllpFramer()
    out: list[bytes] = []
    for byte in frame(MSG) + frame(b"second"):
        out += framer.feed(bytes([byte]))
    assert out == [MSG, b"second"]


def test_multiple_frames_in_one_chunk_and_trailing_partial() -> None:
    framer = MllpFramer()
    assert framer.feed(frame(b"a") + frame(b"b") + START_BLOCK + b"c") == [b"a", b"b"]
    assert framer.in_frame
    assert framer.feed(b"d" + END_BLOCK) == [b"cd"]
    assert not framer.in_frame


def test_junk_between_and_before_frames_is_discarded() -> None:
    framer = MllpFramer()
    data = b"\r\n\r\nnoise" + frame(b"a") + b"\n\x1c\x0dmore junk" + frame(b"b") + b"\r\n"
    assert framer.feed(data) == [b"a", b"b"]
    assert not framer.in_frame


def test_lone_fs_or_cr_inside_payload_is_data() -> None:
    framer = MllpFramer()
    assert framer.feed(frame(b"x\x1cy\rz")) == [b"x\x1cy\rz"]


def test_end_block_split_across_chunks() -> None:
    framer = MllpFramer()
    assert framer.feed(START_BLOCK + b"abc\x1c") == []
    assert framer.feed(b"\x0d") == [b"abc"]


def test_start_block_inside_frame_restarts_it() -> None:
    framer = MllpFramer()
    assert framer.feed(START_BLOCK + b"abandoned" + frame(b"fresh")) == [b"fresh"]


def test_empty_message() -> None:
    assert MllpFramer().feed(frame(b"")) == [b""]


def test_limit_is_inclusive() -> None:
    assert MllpFramer(max_message_bytes=5).feed(frame(b"12345")) == [b"12345"]
    # A trailing 0x1C can be half of END_BLOCK: it must not trip the limit early.
    framer = MllpFramer(max_message_bytes=5)
    assert framer.feed(START_BLOCK + b"12345\x1c") == []
    assert framer.feed(b"\x0d") == [b"12345"]


def test_limit_exceeded_while_streaming() -> None:
    framer = MllpFramer(max_message_bytes=10)
    assert framer.feed(START_BLOCK + b"x" * 10) == []
    with pytest.raises(FrameTooLarge):
        framer.feed(b"y")


def test_limit_exceeded_within_one_chunk() -> None:
    with pytest.raises(FrameTooLarge):
        MllpFramer(max_message_bytes=10).feed(frame(b"x" * 11))


def test_large_message_in_small_chunks_is_linear_enough() -> None:
    framer = MllpFramer()
    payload = b"OBX|" * 200_000  # 800 kB in 100-byte reads: quadratic re-scanning would crawl
    data = frame(payload)
    out: list[bytes] = []
    for i in range(0, len(data), 100):
        out += framer.feed(data[i : i + 100])
    assert out == [payload]


# --- server and client --------------------------------------------------------------------


async def test_round_trip_with_client(server: MllpServer, recorder: Recorder) -> None:
    assert server.running
    async with MllpClient("127.0.0.1", server.port, timeout=2) as client:
        assert await client.send(MSG) == b"ACK:" + MSG
        assert await client.send(b"second") == b"ACK:second"
    assert recorder.seen == [MSG, b"second"]


async def test_accepted_sockets_have_nodelay(server: MllpServer) -> None:
    async with raw(server) as (reader, writer):
        writer.write(frame(b"x"))
        await read_reply(reader)
        (conn,) = server._connections.values()
        sock = conn.writer.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


async def test_message_split_across_tcp_reads(server: MllpServer, recorder: Recorder) -> None:
    data = frame(MSG)
    async with raw(server) as (reader, writer):
        for piece in (data[:1], data[1:10], data[10:-1], data[-1:]):
            assert recorder.seen == []  # nothing is handled before the END_BLOCK's last byte
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.02)  # separate segments, so the server sees separate reads
        assert await read_reply(reader) == b"ACK:" + MSG
    assert recorder.seen == [MSG]


async def test_two_messages_in_one_write_answered_in_order(
    server: MllpServer, recorder: Recorder
) -> None:
    async with raw(server) as (reader, writer):
        writer.write(frame(b"slow-first") + frame(b"second"))
        assert await read_reply(reader) == b"ACK:slow-first"
        assert await read_reply(reader) == b"ACK:second"
    assert recorder.completed == [b"slow-first", b"second"]


async def test_garbage_then_good_message_on_same_connection(
    server: MllpServer, recorder: Recorder
) -> None:
    async with raw(server) as (reader, writer):
        writer.write(b"\r\nGET / HTTP/1.1\r\n\r\n")  # junk outside a frame: ignored
        writer.write(frame(b"not hl7 at all"))  # framed garbage: the handler decides
        assert await read_reply(reader) == b"ACK:not hl7 at all"
        writer.write(frame(MSG))
        assert await read_reply(reader) == b"ACK:" + MSG
    assert recorder.seen == [b"not hl7 at all", MSG]


async def test_handler_exception_closes_connection_not_listener(
    server: MllpServer, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    async with raw(server) as (reader, writer):
        writer.write(frame(b"boom"))
        await assert_closed_by_server(reader)
    assert "ValueError" in caplog.text
    assert "PHI-bearing" not in caplog.text
    assert "boom" not in caplog.text
    assert server.running
    assert await send_once(server.port, b"after", timeout=2) == b"ACK:after"


async def test_client_disconnect_mid_message(server: MllpServer, recorder: Recorder) -> None:
    async with raw(server) as (_, writer):
        writer.write(START_BLOCK + b"MSH|half a message")
        await writer.drain()
    await asyncio.sleep(0.05)
    assert recorder.seen == []
    assert await send_once(server.port, b"next", timeout=2) == b"ACK:next"
    assert recorder.seen == [b"next"]


async def test_oversized_frame_closes_connection(
    make_server: ServerFactory, recorder: Recorder
) -> None:
    server = await make_server(max_message_bytes=1000)
    async with raw(server) as (reader, writer):
        writer.write(frame(b"x" * 1001))
        await assert_closed_by_server(reader)
    assert recorder.seen == []
    assert await send_once(server.port, b"small", timeout=2) == b"ACK:small"


async def test_oversized_unterminated_stream_closes_connection(
    make_server: ServerFactory, recorder: Recorder
) -> None:
    server = await make_server(max_message_bytes=1000)
    async with raw(server) as (reader, writer):
        writer.write(START_BLOCK + b"x" * 5000)  # never ends: must not buffer without bound
        await assert_closed_by_server(reader)
    assert recorder.seen == []


async def test_concurrent_connections(server: MllpServer, recorder: Recorder) -> None:
    recorder.slow_seconds = 0.2

    async def one(i: int) -> bytes:
        return await send_once(server.port, b"slow-%d" % i, timeout=2)

    loop = asyncio.get_running_loop()
    started = loop.time()
    replies = await asyncio.gather(*(one(i) for i in range(10)))
    assert replies == [b"ACK:slow-%d" % i for i in range(10)]
    assert loop.time() - started < 1.0  # served in parallel, not 10 x 0.2 s


async def test_aclose_waits_for_in_flight_handler(server: MllpServer, recorder: Recorder) -> None:
    async with raw(server) as (reader, writer), raw(server) as (idle_reader, _):
        writer.write(frame(b"slow-inflight"))
        async with asyncio.timeout(2):
            await recorder.slow_started.wait()
        await server.aclose()
        assert not server.running
        assert recorder.completed == [b"slow-inflight"]
        assert await read_reply(reader) == b"ACK:slow-inflight"  # durable, so it is ACKed
        await assert_closed_by_server(reader)
        await assert_closed_by_server(idle_reader)
    with pytest.raises(ConnectionRefusedError):
        await send_once(server.port, b"late", timeout=1)


async def test_aclose_cancels_handler_past_shutdown_timeout(
    make_server: ServerFactory, recorder: Recorder
) -> None:
    recorder.slow_seconds = 30
    server = await make_server(shutdown_timeout=0.1)
    async with raw(server) as (reader, writer):
        writer.write(frame(b"slow-stuck"))
        async with asyncio.timeout(2):
            await recorder.slow_started.wait()
        await server.aclose()
        await assert_closed_by_server(reader)  # cancelled before completion: no ACK
    assert recorder.completed == []


async def test_idle_timeout_closes_connection(make_server: ServerFactory) -> None:
    server = await make_server(idle_timeout=0.1)
    async with raw(server) as (reader, writer):
        writer.write(frame(b"x"))
        assert await read_reply(reader) == b"ACK:x"
        await assert_closed_by_server(reader)
    assert server.running
    await asyncio.sleep(0.05)  # the server's side finishes closing a loop turn after the EOF
    assert server.connection_count == 0


async def test_client_reports_close_without_reply(server: MllpServer) -> None:
    client = MllpClient("127.0.0.1", server.port, timeout=2)
    try:
        with pytest.raises(ConnectionError):
            await client.send(b"boom")
        # The failed connection was dropped; the next send reconnects.
        assert await client.send(b"again") == b"ACK:again"
    finally:
        await client.aclose()


async def test_client_timeout_drops_connection(server: MllpServer, recorder: Recorder) -> None:
    recorder.slow_seconds = 0.5
    client = MllpClient("127.0.0.1", server.port, timeout=0.1)
    try:
        with pytest.raises(TimeoutError):
            await client.send(b"slow-timeout")
        # The late ACK for the timed-out message must not be taken as the next one's answer:
        # the client dropped that connection and this send goes out on a new one.
        assert await client.send(b"fresh") == b"ACK:fresh"
    finally:
        await client.aclose()
