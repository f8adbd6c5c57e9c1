"""A demo pharmacy network endpoint answering NCPDP SCRIPT 2017071 medication history.

`POST {path}` with an `RxHistoryRequest` answers an `RxHistoryResponse`: `Approved` with one
`MedicationDispensed` per fill when last name, first name and date of birth match a person
(case-insensitive names, exact date; fills outside the request's `RequestedDates` are left
out), else `Denied` with ReasonCode AA and "Patient not found". A request that cannot be read
(not XML, unsafe XML, not an RxHistoryRequest) gets HTTP 400 with an NCPDP `Error` message
(Code 900, transaction rejected). Requests are parsed with the connector's hardened parser.

`app.state.requests` (every request's path, on arrival) and `app.state.delay_seconds` (awaited
before every answer) let tests and benchmarks count round trips and inject latency, as in the
demo FHIR server.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final
from xml.etree.ElementTree import Element

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from app.sources.ncpdp.messages import (
    PARTY_QUALIFIER,
    HistoryRequest,
    parse_rx_history_request,
    utc_timestamp,
)
from app.sources.ncpdp.xml import DEFAULT_MAX_BYTES, add, new_message, serialize

XML_MEDIA_TYPE: Final = "application/xml"
NOT_FOUND_CODE: Final = "AA"  # SCRIPT ReasonCode: patient unknown to the provider
NOT_FOUND_TEXT: Final = "Patient not found"
REJECTED: Final = "900"  # NCPDP Error code: transaction rejected
Fill = Mapping[str, Any]
Index = dict[tuple[str, str, str], list[Fill]]


class XmlResponse(Response):
    media_type = XML_MEDIA_TYPE


class _Instrumentation:
    """Logs each request on arrival and waits `delay_seconds` before letting it through."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.state.requests.append(scope["path"])
            await asyncio.sleep(self.state.delay_seconds)
        await self.app(scope, receive, send)


def _key(family: str, first: str, birth_date: str) -> tuple[str, str, str]:
    return family.strip().casefold(), first.strip().casefold(), birth_date.strip()


def _index(fills: Mapping[tuple[str, str, str], Sequence[Fill]]) -> Index:
    index: Index = {}
    for (family, first, birth_date), person_fills in fills.items():
        index.setdefault(_key(family, first, birth_date), []).extend(person_fills)
    return index


def _matching(index: Index, request: HistoryRequest) -> list[Fill] | None:
    """The person's fills within the requested dates; None when no person matches."""
    if request.first_name is None or request.birth_date is None:
        return None
    found = index.get(_key(request.last_name, request.first_name, request.birth_date))
    if found is None:
        return None
    start = request.start_date.isoformat() if request.start_date else ""
    end = request.end_date.isoformat() if request.end_date else "9999"
    return [f for f in found if start <= str(f["last_fill_date"]) <= end]


# --- building the answer --------------------------------------------------------------------------


def _header(root: Element, request: HistoryRequest | None) -> None:
    header = add(root, "Header")
    add(
        header, "To", (request.from_id if request else None) or "UNKNOWN", Qualifier=PARTY_QUALIFIER
    )
    add(
        header,
        "From",
        (request.to_id if request else None) or "PHARMACY",
        Qualifier=PARTY_QUALIFIER,
    )
    add(header, "MessageID", uuid.uuid4().hex)
    if request is not None:
        add(header, "RelatesToMessageID", request.message_id)
    add(header, "SentTime", utc_timestamp(datetime.now(UTC)))


def _patient(parent: Element, request: HistoryRequest) -> None:
    human = add(add(parent, "Patient"), "HumanPatient")
    name = add(human, "Name")
    add(name, "LastName", request.last_name)
    if request.first_name:
        add(name, "FirstName", request.first_name)
    if request.gender:
        add(human, "Gender", request.gender)
    if request.birth_date:
        add(add(human, "DateOfBirth"), "Date", request.birth_date)


def _coded(parent: Element, tag: str, code: str, qualifier: str) -> None:
    element = add(parent, tag)
    add(element, "Code", code)
    add(element, "Qualifier", qualifier)


def _decimal(value: float) -> str:
    """SCRIPT decimals: plain digits, never an exponent (`30`, `10.6`)."""
    return str(int(value)) if value.is_integer() else repr(value)


def _dispensed(parent: Element, fill: Fill) -> None:
    """One MedicationDispensed (SCRIPT 2017071 element order)."""
    med = add(parent, "MedicationDispensed")
    add(med, "DrugDescription", str(fill["drug_description"]))
    coded = add(med, "DrugCoded")
    _coded(coded, "ProductCode", str(fill["ndc"]), "ND")
    _coded(coded, "DrugDBCode", str(fill["rxnorm"]), str(fill["rxnorm_qualifier"]))
    quantity = add(med, "Quantity")
    add(quantity, "Value", _decimal(float(fill["quantity"])))
    add(quantity, "CodeListQualifier", "38")  # 38: original quantity
    add(add(quantity, "QuantityUnitOfMeasure"), "Code", str(fill["quantity_unit"]))
    add(med, "DaysSupply", str(fill["days_supply"]))
    add(add(med, "WrittenDate"), "Date", str(fill["written_date"]))
    add(add(med, "LastFillDate"), "Date", str(fill["last_fill_date"]))
    add(add(med, "Sig"), "SigText", str(fill["sig"]))
    pharmacy = add(med, "Pharmacy")
    add(add(pharmacy, "Identification"), "NCPDPID", str(fill["pharmacy_ncpdpid"]))
    add(pharmacy, "BusinessName", str(fill["pharmacy_name"]))
    who = add(add(med, "Prescriber"), "NonVeterinarian")
    add(add(who, "Identification"), "NPI", str(fill["prescriber_npi"]))
    name = add(who, "Name")
    add(name, "LastName", str(fill["prescriber_last"]))
    add(name, "FirstName", str(fill["prescriber_first"]))


def rx_history_response(request: HistoryRequest, fills: Sequence[Fill] | None) -> bytes:
    """Approved with `fills`, or Denied (patient not found) when `fills` is None."""
    root = new_message()
    _header(root, request)
    transaction = add(add(root, "Body"), "RxHistoryResponse")
    response = add(transaction, "Response")
    if fills is None:
        denied = add(response, "Denied")
        add(denied, "ReasonCode", NOT_FOUND_CODE)
        add(denied, "DenialReason", NOT_FOUND_TEXT)
    else:
        add(response, "Approved")
    _patient(transaction, request)
    for fill in fills or ():
        _dispensed(transaction, fill)
    return serialize(root)


def error_message(description: str, request: HistoryRequest | None = None) -> bytes:
    """An NCPDP `Error` transaction (Code 900, transaction rejected)."""
    root = new_message()
    _header(root, request)
    error = add(add(root, "Body"), "Error")
    add(error, "Code", REJECTED)
    add(error, "Description", description)
    return serialize(root)


# --- HTTP -----------------------------------------------------------------------------------------


def create_pharmacy_app(
    fills: Mapping[tuple[str, str, str], Sequence[Mapping[str, Any]]],
    *,
    path: str = "/script",
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Starlette:
    """A medication history endpoint over `fills` (keyed by family, first given, birth date)."""
    index = _index(fills)

    async def script(request: Request) -> Response:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            return XmlResponse(error_message("message too large"), 413)
        try:
            parsed = parse_rx_history_request(await request.body(), max_bytes=max_bytes)
        except ValueError as exc:  # XmlError or MessageError: say why, never echo the body
            return XmlResponse(error_message(str(exc)), 400)
        return XmlResponse(rx_history_response(parsed, _matching(index, parsed)))

    app = Starlette(routes=[Route(path, script, methods=["POST"])])
    app.state.requests = []
    app.state.delay_seconds = 0.0
    app.add_middleware(_Instrumentation, state=app.state)
    return app
