"""NCPDP SCRIPT 2017071 medication history: build `RxHistoryRequest`, read `RxHistoryResponse`.

Envelope (SCRIPT 2017071): `Message[@version]` / `Header` (`To`, `From`, `MessageID`,
`RelatesToMessageID`, `SentTime`, `SenderSoftware`) / `Body` holding exactly one transaction.
Medication history is a request/response pair: the `RxHistoryRequest` names the patient
(`Patient/HumanPatient`: `Name`, `Gender`, `DateOfBirth`, `Address`), the requester
(`Prescriber`) and optionally the dates asked for; the `RxHistoryResponse` carries a `Response`
(`Approved`, or `Denied` with `ReasonCode` and a reason text) and repeating
`MedicationDispensed`. A peer that cannot process a message answers with an `Error` transaction
(`Code`, `DescriptionCode`, `Description`) instead.

Requests are built as element trees and serialized by ElementTree (`xml.add` escapes every
value); never by string concatenation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Final, Literal
from xml.etree.ElementTree import Element

from app.domain.records import PersonQuery
from app.sources.ncpdp import xml
from app.sources.ncpdp.xml import DEFAULT_MAX_BYTES, add, child, local_name, text

# Header To/From qualifier "ZZZ": mutually defined (we are neither prescriber nor pharmacy).
PARTY_QUALIFIER: Final = "ZZZ"
# Gender code list (SCRIPT 2017071): M male, F female, U unknown.
GENDER_CODES: Final = {"male": "M", "m": "M", "female": "F", "f": "F"}
_FULL_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")


class MessageError(ValueError):
    """Well-formed XML, but not the SCRIPT message expected (wrong root, no or several
    transactions, missing required parts). Messages never quote the document."""


class ScriptError(MessageError):
    """The peer answered with an NCPDP `Error` transaction. Status codes (SCRIPT): 600
    communication problem, 601 receiver unable to process, 602 receiver system error, 900
    transaction rejected."""

    def __init__(
        self, code: str | None, description_code: str | None, description: str | None
    ) -> None:
        self.code = code
        self.description_code = description_code
        self.description = description  # peer's free text: keep out of logs
        super().__init__(f"NCPDP Error {code or '(no code)'}")


@dataclass(frozen=True, slots=True)
class Requester:
    """Who asks (`RxHistoryRequest/Prescriber`): a fixed PatientGraph service identity."""

    last_name: str = "PatientGraph"
    first_name: str = "Medication History"
    npi: str | None = None


SERVICE_REQUESTER: Final = Requester()


@dataclass(frozen=True, slots=True)
class SenderSoftware:
    developer: str = "PatientGraph"
    product: str = "patientgraph"
    version: str = "0.1.0"


SENDER_SOFTWARE: Final = SenderSoftware()


@dataclass(frozen=True, slots=True)
class RxHistory:
    """A read `RxHistoryResponse`. `dispensed` holds the raw `MedicationDispensed` elements
    (empty when denied); `mapping.medication_dispense` reads each one."""

    status: Literal["approved", "denied"]
    message_id: str | None
    relates_to: str | None
    reason_code: str | None
    reason_text: str | None
    dispensed: tuple[Element, ...]
    version: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    """A read `RxHistoryRequest` (what the demo pharmacy needs to answer one)."""

    message_id: str
    from_id: str | None
    to_id: str | None
    last_name: str
    first_name: str | None
    birth_date: str | None
    gender: str | None
    postal_code: str | None
    start_date: date | None
    end_date: date | None


# --- building the request -------------------------------------------------------------------------


def build_rx_history_request(
    person: PersonQuery,
    *,
    message_id: str,
    sent_time: datetime,
    from_id: str,
    to_id: str,
    since: date | None,
    requester: Requester = SERVICE_REQUESTER,
    software: SenderSoftware = SENDER_SOFTWARE,
) -> bytes:
    """One `RxHistoryRequest` for `person`; ValueError when the person cannot be described
    (no family or first given name, no full date of birth) or `sent_time` is naive.
    `person.patient_id` is never sent."""
    _require_describable(person)
    if sent_time.tzinfo is None:
        raise ValueError("sent_time must be timezone-aware")
    root = xml.new_message()
    _header(root, message_id, sent_time, from_id, to_id, software)
    request = add(add(root, "Body"), "RxHistoryRequest")
    _patient(request, person)
    _requester(request, requester)
    if since is not None:
        dates = add(request, "RequestedDates")
        add(add(dates, "StartDate"), "Date", since.isoformat())
        add(add(dates, "EndDate"), "Date", sent_time.astimezone(UTC).date().isoformat())
    return xml.serialize(root)


def _require_describable(person: PersonQuery) -> None:
    if not person.family.strip() or not person.given or not person.given[0].strip():
        raise ValueError("a medication history request needs a last and a first name")
    if not _FULL_DATE.fullmatch(person.birth_date):
        raise ValueError("a medication history request needs a full date of birth")
    date.fromisoformat(person.birth_date)  # ValueError for 2026-02-30


def utc_timestamp(moment: datetime) -> str:
    """SentTime in UTC (SCRIPT 2017071 UTC format): `2026-01-15T09:30:00Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _header(
    root: Element,
    message_id: str,
    sent_time: datetime,
    from_id: str,
    to_id: str,
    software: SenderSoftware,
) -> None:
    header = add(root, "Header")
    add(header, "To", to_id, Qualifier=PARTY_QUALIFIER)
    add(header, "From", from_id, Qualifier=PARTY_QUALIFIER)
    add(header, "MessageID", message_id)
    add(header, "SentTime", utc_timestamp(sent_time))
    sender = add(header, "SenderSoftware")
    add(sender, "SenderSoftwareDeveloper", software.developer)
    add(sender, "SenderSoftwareProduct", software.product)
    add(sender, "SenderSoftwareVersionRelease", software.version)


def _patient(request: Element, person: PersonQuery) -> None:
    human = add(add(request, "Patient"), "HumanPatient")
    name = add(human, "Name")
    add(name, "LastName", person.family.strip())
    add(name, "FirstName", person.given[0].strip())
    if middle := " ".join(g.strip() for g in person.given[1:] if g.strip()):
        add(name, "MiddleName", middle)
    add(human, "Gender", GENDER_CODES.get((person.gender or "").strip().lower(), "U"))
    add(add(human, "DateOfBirth"), "Date", person.birth_date)
    if person.postal_code and person.postal_code.strip():
        add(add(human, "Address"), "PostalCode", person.postal_code.strip())


def _requester(request: Element, requester: Requester) -> None:
    who = add(add(request, "Prescriber"), "NonVeterinarian")
    if requester.npi:
        add(add(who, "Identification"), "NPI", requester.npi)
    name = add(who, "Name")
    add(name, "LastName", requester.last_name)
    add(name, "FirstName", requester.first_name)


# --- reading --------------------------------------------------------------------------------------


def _transaction(raw: bytes, max_bytes: int) -> tuple[Element, Element, Element]:
    """(Message, Header, the Body's one transaction); an `Error` transaction raises ScriptError.
    XmlError (unsafe or malformed) and MessageError are both ValueErrors."""
    root = xml.parse_xml(raw, max_bytes=max_bytes)
    if local_name(root) != "Message":
        raise MessageError("root element is not Message")
    header, body = child(root, "Header"), child(root, "Body")
    if header is None or body is None:
        raise MessageError("Message needs a Header and a Body")
    transactions = list(body)
    if len(transactions) != 1:
        raise MessageError(f"Body holds {len(transactions)} transactions, expected one")
    transaction = transactions[0]
    if local_name(transaction) == "Error":
        raise ScriptError(
            text(transaction, "Code"),
            text(transaction, "DescriptionCode"),
            text(transaction, "Description"),
        )
    return root, header, transaction


def _expect(transaction: Element, name: str) -> None:
    if local_name(transaction) != name:
        raise MessageError(f"expected a {name} transaction")


def parse_rx_history_response(raw: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> RxHistory:
    root, header, transaction = _transaction(raw, max_bytes)
    _expect(transaction, "RxHistoryResponse")
    response = child(transaction, "Response")
    approved, denied = child(response, "Approved"), child(response, "Denied")
    if (approved is None) == (denied is None):
        raise MessageError("Response must be exactly one of Approved or Denied")
    outcome = approved if approved is not None else denied
    dispensed = (
        tuple(c for c in transaction if local_name(c) == "MedicationDispensed")
        if approved is not None
        else ()
    )
    return RxHistory(
        status="approved" if approved is not None else "denied",
        message_id=text(header, "MessageID"),
        relates_to=text(header, "RelatesToMessageID"),
        reason_code=text(outcome, "ReasonCode"),
        # 2017071 names the text DenialReason; some senders use ReasonText.
        reason_text=text(outcome, "DenialReason") or text(outcome, "ReasonText"),
        dispensed=dispensed,
        version=root.get("version"),
    )


def parse_rx_history_request(raw: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> HistoryRequest:
    _, header, transaction = _transaction(raw, max_bytes)
    _expect(transaction, "RxHistoryRequest")
    message_id = text(header, "MessageID")
    human = child(transaction, "Patient", "HumanPatient")
    last_name = text(human, "Name", "LastName")
    if message_id is None or last_name is None:
        raise MessageError("RxHistoryRequest needs a MessageID and a patient LastName")
    dates = child(transaction, "RequestedDates")
    return HistoryRequest(
        message_id=message_id,
        from_id=text(header, "From"),
        to_id=text(header, "To"),
        last_name=last_name,
        first_name=text(human, "Name", "FirstName"),
        birth_date=text(human, "DateOfBirth", "Date") or text(human, "DateOfBirth"),
        gender=text(human, "Gender"),
        postal_code=text(human, "Address", "PostalCode"),
        start_date=_date(text(dates, "StartDate", "Date")),
        end_date=_date(text(dates, "EndDate", "Date")),
    )


def _date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError as exc:
        raise MessageError("invalid date in RequestedDates") from exc
