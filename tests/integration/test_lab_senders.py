"""Who may write into charts over MLLP, and how much one sender can make the listener hold:
sending-party and client allowlists, message limits, connection limit and frame deadline,
over real sockets against the running API."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from app.settings import Hl7v2SourceSettings
from app.sources.hl7v2 import source as source_module
from app.sources.hl7v2.mapping import parse_message
from app.sources.hl7v2.mllp import START_BLOCK, MllpClient, frame
from app.sources.hl7v2.store import lab_messages
from app.sources.hl7v2.store import lab_results as lab_results_table
from tests.conftest import Api, ApiFactory, lab_source
from tests.integration.test_lab_ingest import lab_results, msa, oru

LISTED = "CITYLAB^LABFAC"  # the MSH-3 / MSH-4 that oru() sends


def from_sender(message: bytes, application: str, facility: str) -> bytes:
    return message.replace(b"|CITYLAB|LABFAC|", f"|{application}|{facility}|".encode(), 1)


def with_results(control_id: str, count: int) -> bytes:
    head, _, obx = oru(control_id).rpartition(b"\r")
    extra = [
        obx.replace(b"OBX|1|", b"OBX|%d|" % i).replace(b"2339-0", b"X-%d" % i) for i in range(count)
    ]
    return b"\r".join([head, *extra])


async def stored_messages(api: Api) -> int:
    """Messages kept by the lab store; results are counted with them, so both must be 0 or
    neither: a message never stores results without its own row."""
    store = api.runtime.registry.lab_store
    assert store is not None
    async with store._engine.connect() as conn:
        messages, results = [
            (await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one()
            for table in (lab_messages, lab_results_table)
        ]
    assert (messages == 0) == (results == 0)
    return int(messages)


async def send(api: Api, message: bytes) -> list[str]:
    async with MllpClient("127.0.0.1", api.lab_port(), timeout=10) as client:
        return msa(await client.send(message))


@contextlib.asynccontextmanager
async def raw(api: Api) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", api.lab_port())
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def closed_without_reply(reader: asyncio.StreamReader, within: float = 2) -> bool:
    async with asyncio.timeout(within):
        try:
            return await reader.read() == b""
        except ConnectionResetError:
            return True


def lab(**options: Any) -> dict[str, Any]:
    return {**lab_source(), **options}


async def test_an_unlisted_sending_party_gets_ar_and_nothing_is_stored(
    api_factory: ApiFactory,
) -> None:
    async with api_factory([lab(allowed_senders=[LISTED])]) as api:
        spoofed = [
            from_sender(oru("SPOOF-1"), "EVILAPP", "LABFAC"),
            from_sender(oru("SPOOF-2"), "CITYLAB", "OTHERFAC"),
            from_sender(oru("SPOOF-3"), "", "LABFAC"),
        ]
        for message in spoofed:
            reply = await send(api, message)
            assert reply[1] == "AR"
            assert reply[3] == "sending application not accepted"
        assert await stored_messages(api) == 0
        assert (await send(api, oru("REAL-1")))[1:3] == ["AA", "REAL-1"]
        assert len(await lab_results(api)) == 1
        assert await stored_messages(api) == 1


async def test_an_application_listed_alone_admits_any_of_its_facilities(
    api_factory: ApiFactory,
) -> None:
    async with api_factory([lab(allowed_senders=["CITYLAB"])]) as api:
        assert (await send(api, from_sender(oru("M-1"), "CITYLAB", "ANNEX")))[1] == "AA"
        assert (await send(api, from_sender(oru("M-2"), "CITYLAB^2.16.840.1.1^ISO", "X")))[
            1
        ] == "AA"
        assert (await send(api, from_sender(oru("M-3"), "OTHERLAB", "LABFAC")))[1] == "AR"


async def test_a_peer_outside_the_allowed_clients_is_closed_before_it_can_send(
    api_factory: ApiFactory,
) -> None:
    source = lab(allowed_clients=["10.20.0.0/16"], allowed_senders=[LISTED])
    async with api_factory([source]) as api:
        async with raw(api) as (reader, writer):
            writer.write(frame(oru("FROM-LOOPBACK")))
            assert await closed_without_reply(reader)
        assert await stored_messages(api) == 0


def test_a_listener_open_beyond_this_host_must_list_its_senders() -> None:
    with pytest.raises(ValueError, match="allowed_senders"):
        Hl7v2SourceSettings(id="lab", kind="hl7v2", allowed_clients=["0.0.0.0/0"])
    with pytest.raises(ValueError, match="not an address or CIDR"):
        Hl7v2SourceSettings(id="lab", kind="hl7v2", allowed_clients=["lab.example.org"])
    with pytest.raises(ValueError, match="APP or APP\\^FACILITY"):
        Hl7v2SourceSettings(id="lab", kind="hl7v2", allowed_senders=["A^B^C"])


async def test_too_many_segments_or_results_is_ar_and_stores_nothing(
    api_factory: ApiFactory,
) -> None:
    async with api_factory([lab(max_segments=50, max_results=20)]) as api:
        reply = await send(api, with_results("MANY-RESULTS", 21))
        assert reply[1] == "AR"
        assert reply[3] == "more than 20 results in one message"
        many_segments = oru("MANY-SEGMENTS") + b"\rNTE|1||note" * 50
        reply = await send(api, many_segments)
        assert reply[1] == "AR"
        assert reply[3] == "more than 50 segments in one message"
        assert await stored_messages(api) == 0
        assert (await send(api, with_results("JUST-ENOUGH", 20)))[1] == "AA"
        assert len(await lab_results(api)) == 20


async def test_a_25000_segment_message_is_rejected_while_http_keeps_answering(
    api_factory: ApiFactory,
) -> None:
    async with api_factory([lab(max_message_bytes=8_000_000)]) as api:
        flood = with_results("FLOOD", 25_000)
        answered: list[int] = []
        done = asyncio.Event()

        async def poll(client: httpx.AsyncClient) -> None:
            while not done.is_set():
                answered.append((await client.get(f"{api.url}/healthz")).status_code)

        async with httpx.AsyncClient() as client:
            poller = asyncio.create_task(poll(client))
            reply = await send(api, flood)
            done.set()
            await poller
        assert reply[1] == "AR"
        assert reply[3] == "more than 5000 segments in one message"
        assert answered
        assert set(answered) == {200}
        assert await stored_messages(api) == 0


async def test_messages_are_read_off_the_event_loop(
    api_factory: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[threading.Thread] = []

    def recording(*args: Any) -> Any:
        threads.append(threading.current_thread())
        return parse_message(*args)

    monkeypatch.setattr(source_module, "parse_message", recording)
    async with api_factory([lab()]) as api:
        assert (await send(api, oru("OFF-LOOP")))[1] == "AA"
    assert len(threads) == 1
    assert threads[0] is not threading.main_thread()  # the loop's thread: a parse there stalls HTTP


async def test_connections_past_the_limit_are_closed_at_once(api_factory: ApiFactory) -> None:
    async with api_factory([lab(max_connections=2)]) as api:
        async with raw(api) as (_, first), raw(api) as (_, _second):
            await asyncio.sleep(0.05)
            async with raw(api) as (third_reader, _):
                assert await closed_without_reply(third_reader)
            first.write(START_BLOCK)  # the admitted ones are still served
            await first.drain()
        await asyncio.sleep(0.05)  # the server notices both closes a loop turn later
        assert (await send(api, oru("AFTER")))[1] == "AA"


async def test_a_frame_trickled_past_its_deadline_is_dropped(api_factory: ApiFactory) -> None:
    async with api_factory([lab(frame_timeout_seconds=0.4)]) as api:
        message = frame(oru("TRICKLE"))
        loop = asyncio.get_running_loop()
        async with raw(api) as (reader, writer):
            started = loop.time()
            closed = False
            for byte in message:  # one byte every 50 ms: never idle, never finished in time
                try:
                    writer.write(bytes([byte]))
                    await writer.drain()
                except ConnectionError:
                    closed = True
                    break
                if reader.at_eof():
                    closed = True
                    break
                await asyncio.sleep(0.05)
            assert closed or await closed_without_reply(reader)
            assert loop.time() - started < 5  # cut at the deadline, not after the whole frame
        assert await stored_messages(api) == 0
