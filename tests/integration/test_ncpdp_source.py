"""NcpdpSource against the demo pharmacy (and misbehaving servers) over real loopback HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from app.demo.generator import DemoPerson, DemoPopulation
from app.demo.pharmacy_data import pharmacy_fills
from app.demo.pharmacy_server import create_pharmacy_app, rx_history_response
from app.demo.serving import serving
from app.domain.medications import MedicationDispense
from app.domain.records import DISPENSES, MEDICATIONS, PersonQuery
from app.settings import NcpdpSourceSettings
from app.sources.errors import (
    SourceDataError,
    SourceError,
    SourceRejected,
    SourceTimeout,
    SourceTooLarge,
    SourceUnavailable,
)
from app.sources.ncpdp.mapping import RXNORM
from app.sources.ncpdp.messages import HistoryRequest, parse_rx_history_request
from app.sources.ncpdp.source import NcpdpSource
from tests.conftest import closed_port_url
from tests.unit.test_ncpdp_xml import BILLION_LAUGHS

Handler = Callable[[Request], Awaitable[Response]]


def source_for(url: str, timeout_seconds: float = 5, **options: Any) -> NcpdpSource:
    settings = NcpdpSourceSettings(
        id="pharmacy", kind="ncpdp", base_url=url, timeout_seconds=timeout_seconds
    )
    return NcpdpSource(settings, **options)


def query(person: DemoPerson) -> PersonQuery:
    return PersonQuery(
        patient_id=f"pg-{person.key}",
        family=person.family,
        given=person.given,
        birth_date=person.birth_date,
        gender=person.gender,
    )


UNKNOWN = PersonQuery("pg-unknown", "Nobody", ("Known",), "1970-01-01", "other")


@pytest.fixture
async def pharmacy(population: DemoPopulation) -> AsyncIterator[tuple[str, Starlette]]:
    app = create_pharmacy_app(pharmacy_fills(population))
    async with serving(app) as base:
        yield f"{base}/script", app


async def fetch(url: str, people: list[PersonQuery], **options: Any) -> Any:
    source = source_for(url, **options)
    try:
        return await source.records_for_people(DISPENSES, people)
    finally:
        await source.aclose()


# --- the demo pharmacy ----------------------------------------------------------------------------


async def test_a_batch_of_people_gets_each_persons_fills(
    population: DemoPopulation, pharmacy: tuple[str, Starlette]
) -> None:
    url, app = pharmacy
    fills = pharmacy_fills(population)
    people = list(population.people[:6])
    result = await fetch(url, [query(p) for p in people])
    assert len(app.state.requests) == 6  # one RxHistoryRequest per person
    for person in people:
        expected = fills[(person.family, person.given[0], person.birth_date)]
        got: list[MedicationDispense] = list(result[query(person)])
        assert len(got) == len(expected)
        assert [g.medication.text for g in got] == [e["drug_description"] for e in expected]
        assert all(
            g.medication.has_code(f"{RXNORM}|{e['rxnorm']}")
            for g, e in zip(got, expected, strict=True)
        )
        assert [g.last_fill_date for g in got] == [e["last_fill_date"] for e in expected]
        assert {g.sources[0].source_id for g in got} == {"pharmacy"}
        assert len({g.sources[0].local_id for g in got}) == len(got)


async def test_ids_are_stable_across_requests(
    population: DemoPopulation, pharmacy: tuple[str, Starlette]
) -> None:
    person = query(population.people[0])
    first, second = await fetch(pharmacy[0], [person]), await fetch(pharmacy[0], [person])
    assert [d.id for d in first[person]] == [d.id for d in second[person]]


async def test_an_unknown_person_has_no_fills_and_is_no_error(
    population: DemoPopulation, pharmacy: tuple[str, Starlette]
) -> None:
    known = query(population.people[1])
    result = await fetch(pharmacy[0], [UNKNOWN, known, known])  # duplicates asked once
    assert UNKNOWN not in result
    assert len(result[known]) > 0
    assert len(pharmacy[1].state.requests) == 2


async def test_people_we_cannot_describe_are_not_asked_about(
    pharmacy: tuple[str, Starlette],
) -> None:
    partial = PersonQuery("pg-x", "Doe", ("Jo",), "1990")
    source = source_for(pharmacy[0])
    result = await source.records_for_people(DISPENSES, [partial])
    await source.aclose()
    assert result == {}
    assert source.unaskable == 1
    assert pharmacy[1].state.requests == []


async def test_other_record_kinds_are_not_served_here(pharmacy: tuple[str, Starlette]) -> None:
    source = source_for(pharmacy[0])
    assert await source.records_for_people(MEDICATIONS, [UNKNOWN]) == {}
    await source.aclose()


async def test_requests_are_really_concurrent(
    population: DemoPopulation, pharmacy: tuple[str, Starlette]
) -> None:
    url, app = pharmacy
    app.state.delay_seconds = 0.2
    people = [query(p) for p in population.people[:5]]
    started = time.perf_counter()
    result = await fetch(url, people)
    concurrent = time.perf_counter() - started
    assert len(result) == 5
    assert concurrent < 0.6  # well under 5 x 0.2 s

    started = time.perf_counter()
    await fetch(url, people, max_concurrency=1)
    assert time.perf_counter() - started >= 1.0  # the bound is real


async def test_history_days_asks_for_a_date_range(
    population: DemoPopulation, pharmacy: tuple[str, Starlette]
) -> None:
    person = query(population.people[0])
    everything = await fetch(pharmacy[0], [person])
    recent = await fetch(pharmacy[0], [person], history_days=1)  # the demo ends at 2026-01-01
    assert len(everything[person]) > 0
    assert recent.get(person, []) == []


async def test_health(pharmacy: tuple[str, Starlette]) -> None:
    source = source_for(pharmacy[0])
    health = await source.health()
    await source.aclose()
    assert (health.ok, health.detail, health.kind) == (True, "ok", "ncpdp")
    down = source_for(closed_port_url())
    health = await down.health()
    await down.aclose()
    assert (health.ok, health.detail) == (False, "unavailable")


# --- misbehaving servers --------------------------------------------------------------------------


def app_with(handler: Handler) -> Starlette:
    return Starlette(routes=[Route("/script", handler, methods=["POST"])])


@dataclasses.dataclass
class Failure:
    error: SourceError
    seconds: float  # how long the source took to fail (server start and stop excluded)


async def expect_error(handler: Handler, error: type[SourceError], **options: Any) -> Failure:
    async with serving(app_with(handler)) as base:
        started = time.perf_counter()
        with pytest.raises(error) as raised:
            await fetch(f"{base}/script", [UNKNOWN], **options)
        seconds = time.perf_counter() - started
    assert raised.value.source_id == "pharmacy"
    return Failure(raised.value, seconds)


def answering(status: int, body: bytes) -> Handler:
    async def handler(request: Request) -> Response:
        return Response(body, status, media_type="application/xml")

    return handler


async def asked(request: Request) -> HistoryRequest:
    return parse_rx_history_request(await request.body())


async def test_server_error_is_unavailable() -> None:
    failed = await expect_error(answering(500, b"<oops/>"), SourceUnavailable)
    assert failed.error.detail == "HTTP 500"


@pytest.mark.parametrize(("status", "error"), [(400, SourceRejected), (429, SourceUnavailable)])
async def test_client_errors(status: int, error: type[SourceError]) -> None:
    await expect_error(answering(status, b""), error)


async def test_a_hang_past_the_timeout_is_a_timeout() -> None:
    async def hang(request: Request) -> Response:
        await asyncio.sleep(10)
        return Response(b"")

    failed = await expect_error(hang, SourceTimeout, timeout_seconds=0.3)
    assert 0.3 <= failed.seconds < 1.5


async def test_a_body_that_trickles_forever_is_a_timeout() -> None:
    async def trickle(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            while True:
                yield b" "
                await asyncio.sleep(0.05)

        return StreamingResponse(chunks(), media_type="application/xml")

    failed = await expect_error(trickle, SourceTimeout, timeout_seconds=0.5)
    assert failed.seconds < 2  # the timeout covers reading the body, not only the headers


async def test_connection_refused_is_unavailable_and_keeps_its_cause() -> None:
    with pytest.raises(SourceUnavailable) as raised:
        await fetch(closed_port_url(), [UNKNOWN])
    assert isinstance(raised.value.__cause__, httpx.ConnectError)


@pytest.mark.parametrize(
    "body",
    [
        b"garbage <<<",
        b'{"resourceType": "Bundle"}',
        b"<html><body>Service</body></html>",
        b"<Message><Header/><Body><Status><Code>010</Code></Status></Body></Message>",
        BILLION_LAUGHS,
    ],
)
async def test_unreadable_answers_are_data_errors(body: bytes) -> None:
    failed = await expect_error(answering(200, body), SourceDataError)
    assert failed.seconds < 1  # a bomb is refused at its DOCTYPE, never expanded
    assert isinstance(failed.error.__cause__, ValueError)


async def test_an_oversized_answer_is_refused_while_streaming() -> None:
    sent = 0

    async def endless(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            nonlocal sent
            while True:
                sent += 64 * 1024
                yield b"<a>" + b"x" * (64 * 1024 - 3)
                await asyncio.sleep(0)  # same event loop as the client: let it read

        return StreamingResponse(chunks(), media_type="application/xml")

    failed = await expect_error(endless, SourceTooLarge, max_response_bytes=256 * 1024)
    assert failed.error.detail == "response exceeds the size limit"
    assert sent < 4 * 1024 * 1024  # stopped near the limit, not at the end of an endless body

    big = b"<Message>" + b" " * 2000 + b"</Message>"
    await expect_error(answering(200, big), SourceTooLarge, max_response_bytes=1000)


async def test_an_answer_to_another_request_is_never_used() -> None:
    async def someone_else(request: Request) -> Response:
        other = dataclasses.replace(await asked(request), message_id="SOMEONE-ELSE")
        return Response(rx_history_response(other, []), media_type="application/xml")

    failed = await expect_error(someone_else, SourceDataError)
    assert failed.error.detail == "response does not relate to the request"


@pytest.mark.parametrize(("code", "error"), [("900", SourceRejected), ("602", SourceUnavailable)])
async def test_ncpdp_error_transactions(code: str, error: type[SourceError]) -> None:
    body = (
        f"<Message><Header><MessageID>E</MessageID></Header><Body><Error><Code>{code}</Code>"
        "<Description>No.</Description></Error></Body></Message>"
    ).encode()
    failed = await expect_error(answering(200, body), error)
    assert failed.error.detail == f"NCPDP Error {code}"


async def test_a_denial_other_than_not_found_is_rejected() -> None:
    async def deny(request: Request) -> Response:
        body = rx_history_response(await asked(request), None).replace(b">AA<", b">AE<")
        body = body.replace(b"Patient not found", b"Consent required")
        return Response(body, media_type="application/xml")

    failed = await expect_error(deny, SourceRejected)
    assert failed.error.detail == "denied (AE)"


async def test_requests_are_posted_as_xml_and_the_first_failure_fails_the_batch(
    population: DemoPopulation,
) -> None:
    seen: list[str] = []

    async def picky(request: Request) -> Response:
        seen.append(request.headers["content-type"])
        request_read = await asked(request)
        if request_read.last_name == population.people[2].family:
            return Response(b"", 503)
        return Response(rx_history_response(request_read, []), media_type="application/xml")

    people = [query(p) for p in population.people[:4]]
    async with serving(app_with(picky)) as base:
        with pytest.raises(SourceUnavailable):
            await fetch(f"{base}/script", people)
    assert set(seen) == {"application/xml"}


async def test_logs_hold_no_patient_data(
    population: DemoPopulation, pharmacy: tuple[str, Starlette], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    people = [query(p) for p in population.people[:3]]
    await fetch(pharmacy[0], [*people, UNKNOWN])
    assert caplog.records  # the batch is logged, with counts only
    logged = caplog.text
    for person in [*population.people[:3]]:
        assert person.family not in logged
        assert person.birth_date not in logged
    assert "Nobody" not in logged


UNMAPPABLE = (
    Path(__file__).resolve().parent.parent
    / "fixtures"
    / "ncpdp"
    / "rxhistory-approved-with-unmappable.xml"
).read_bytes()


async def test_unmappable_fills_are_counted_and_the_rest_returned() -> None:
    raw = UNMAPPABLE

    async def with_one_unmappable(request: Request) -> Response:
        message_id = (await asked(request)).message_id.encode()
        return Response(raw.replace(b"PG-REQ-0004", message_id), media_type="application/xml")

    async with serving(app_with(with_one_unmappable)) as base:
        source = source_for(f"{base}/script")
        result = await source.records_for_people(DISPENSES, [UNKNOWN])
        await source.aclose()
    assert [d.medication.text for d in result[UNKNOWN]] == ["atorvastatin 80 MG Oral Tablet"]
    assert source.unmapped == 1


async def test_a_peers_free_text_never_reaches_the_error_detail() -> None:
    async def chatty(request: Request) -> Response:
        body = rx_history_response(await asked(request), None)
        body = body.replace(b">AA<", b">Jo Doe, born 1990-01-02<").replace(b"not found", b"")
        return Response(body, media_type="application/xml")

    failed = await expect_error(chatty, SourceRejected)
    assert failed.error.detail == "denied (no readable code)"
