"""The demo pharmacy endpoint, in process (httpx's ASGI transport)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from app.demo.pharmacy_server import create_pharmacy_app
from app.domain.records import PersonQuery
from app.sources.ncpdp import xml
from app.sources.ncpdp.messages import (
    ScriptError,
    build_rx_history_request,
    parse_rx_history_response,
)

FILL: dict[str, Any] = {
    "drug_description": "lisinopril 10 MG Oral Tablet",
    "rxnorm": "314076",
    "rxnorm_qualifier": "SCD",
    "ndc": "00000314101",
    "quantity": 30,
    "quantity_unit": "C48542",
    "days_supply": 30,
    "written_date": "2025-01-02",
    "last_fill_date": "2025-01-03",
    "pharmacy_ncpdpid": "0512346",
    "pharmacy_name": "Riverbend & Sons <Pharmacy>",
    "prescriber_first": "Ada",
    "prescriber_last": "Quill",
    "prescriber_npi": "1528295693",
    "sig": "Take 1 tablet by mouth once daily",
}
FILLS = {
    ("Doe", "Jo", "1990-01-02"): [FILL, {**FILL, "last_fill_date": "2025-12-01"}],
}


@pytest.fixture
def app() -> Starlette:
    return create_pharmacy_app(FILLS)


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pharmacy") as client:
        yield client


def request(family: str, given: str, since: date | None = None) -> bytes:
    person = PersonQuery("p", family, (given,), "1990-01-02")
    return build_rx_history_request(
        person,
        message_id="Q-1",
        sent_time=datetime(2026, 1, 1, tzinfo=UTC),
        from_id="PG",
        to_id="NET",
        since=since,
    )


async def test_a_match_is_approved_with_every_fill(client: httpx.AsyncClient) -> None:
    answer = await client.post("/script", content=request("DOE", "jo"))  # case-insensitive
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/xml")
    history = parse_rx_history_response(answer.content)
    assert (history.status, history.relates_to) == ("approved", "Q-1")
    assert len(history.dispensed) == 2
    first = history.dispensed[0]
    assert xml.text(first, "Pharmacy", "BusinessName") == "Riverbend & Sons <Pharmacy>"
    assert xml.text(first, "Quantity", "Value") == "30"


async def test_requested_dates_filter_the_fills(client: httpx.AsyncClient) -> None:
    answer = await client.post("/script", content=request("Doe", "Jo", since=date(2025, 6, 1)))
    assert len(parse_rx_history_response(answer.content).dispensed) == 1


async def test_an_unknown_person_is_denied_as_not_found(client: httpx.AsyncClient) -> None:
    answer = await client.post("/script", content=request("Doe", "Jane"))
    history = parse_rx_history_response(answer.content)
    assert (history.status, history.reason_code, history.reason_text) == (
        "denied",
        "AA",
        "Patient not found",
    )


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<not xml",
        b"<Message><Header/><Body><NewRx/></Body></Message>",
        b'<!DOCTYPE a [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]><a>&b;</a>',
    ],
)
async def test_unreadable_requests_get_400_with_an_ncpdp_error(
    client: httpx.AsyncClient, body: bytes
) -> None:
    started = time.perf_counter()
    answer = await client.post("/script", content=body)
    assert time.perf_counter() - started < 1
    assert answer.status_code == 400
    with pytest.raises(ScriptError) as raised:
        parse_rx_history_response(answer.content)
    assert raised.value.code == "900"


async def test_requests_are_logged_and_only_post_is_allowed(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    assert (await client.get("/script")).status_code == 405
    await client.post("/script", content=request("Doe", "Jo"))
    assert app.state.requests == ["/script", "/script"]


async def test_oversized_requests_are_refused_before_reading() -> None:
    app = create_pharmacy_app(FILLS, max_bytes=100)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pharmacy") as client:
        answer = await client.post("/script", content=request("Doe", "Jo"))
    assert answer.status_code == 413
