"""RxHistoryRequest building and RxHistoryResponse reading (NCPDP SCRIPT 2017071)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from app.domain.records import PersonQuery
from app.sources.ncpdp import xml
from app.sources.ncpdp.messages import (
    HistoryRequest,
    MessageError,
    ScriptError,
    build_rx_history_request,
    parse_rx_history_request,
    parse_rx_history_response,
)
from app.sources.ncpdp.xml import XmlError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ncpdp"
SENT = datetime(2026, 1, 10, 15, 4, 5, tzinfo=UTC)
PERSON = PersonQuery(
    patient_id="pg-secret-id-42",
    family="Fixturepatient",
    given=("Morgan", "Lee"),
    birth_date="1961-09-23",
    gender="female",
    postal_code="55401",
)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def build(person: PersonQuery = PERSON, since: date | None = None) -> bytes:
    return build_rx_history_request(
        person, message_id="PG-REQ-1", sent_time=SENT, from_id="PG", to_id="NET", since=since
    )


def response(outcome: str, body: str = "", header: str = "") -> bytes:
    return (
        '<Message xmlns="http://www.ncpdp.org/schema/SCRIPT" version="2017071"><Header>'
        f"<MessageID>R1</MessageID><RelatesToMessageID>Q1</RelatesToMessageID>{header}</Header>"
        f"<Body><RxHistoryResponse><Response>{outcome}</Response>{body}</RxHistoryResponse>"
        "</Body></Message>"
    ).encode()


# --- reading responses ----------------------------------------------------------------------------


def test_approved_response_with_dispensed_elements() -> None:
    history = parse_rx_history_response(fixture("rxhistory-approved.xml"))
    assert history.status == "approved"
    assert history.message_id == "PN-RSP-20260110-0001"
    assert history.relates_to == "PG-REQ-0001"
    assert history.version == "2017071"
    assert (history.reason_code, history.reason_text) == (None, None)
    assert [xml.text(d, "DrugDescription") for d in history.dispensed] == [
        "lisinopril 10 MG Oral Tablet",
        "lisinopril 10 MG Oral Tablet",
        "Amoxicillin 250 MG Oral Capsule",
    ]


def test_denied_response_carries_its_reason() -> None:
    history = parse_rx_history_response(fixture("rxhistory-denied-not-found.xml"))
    assert history.status == "denied"
    assert history.relates_to == "PG-REQ-0002"
    assert (history.reason_code, history.reason_text) == ("AA", "Patient not found")
    assert history.dispensed == ()


def test_reason_text_is_also_read_from_reason_text() -> None:
    raw = response(
        "<Denied><ReasonCode>AE</ReasonCode><ReasonText>No consent</ReasonText></Denied>"
    )
    history = parse_rx_history_response(raw)
    assert (history.reason_code, history.reason_text) == ("AE", "No consent")


def test_a_denial_never_yields_dispensed_elements() -> None:
    raw = response("<Denied/>", "<MedicationDispensed><DrugDescription>X</DrugDescription>"
                   "</MedicationDispensed>")  # fmt: skip
    assert parse_rx_history_response(raw).dispensed == ()


def test_documents_without_the_namespace_are_read_alike() -> None:
    history = parse_rx_history_response(fixture("rxhistory-no-namespace.xml"))
    assert history.status == "approved"
    assert history.relates_to == "PG-REQ-0003"
    assert len(history.dispensed) == 1


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"<Bundle/>", "root element is not Message"),
        (b"<Message><Body/></Message>", "needs a Header and a Body"),
        (b"<Message><Header/><Body/></Message>", "holds 0 transactions"),
        (b"<Message><Header/><Body><Status/><Error/></Body></Message>", "holds 2 transactions"),
        (b"<Message><Header/><Body><NewRx/></Body></Message>", "expected a RxHistoryResponse"),
        (response("<Approved/><Denied/>"), "exactly one of Approved or Denied"),
        (response("<Note>neither</Note>"), "exactly one of Approved or Denied"),
        (response("").replace(b"<Response></Response>", b""), "exactly one of"),
    ],
)
def test_unexpected_messages_raise_message_error(raw: bytes, message: str) -> None:
    with pytest.raises(MessageError, match=message):
        parse_rx_history_response(raw)


def test_an_error_transaction_raises_script_error_with_its_codes() -> None:
    raw = (
        b"<Message><Header><MessageID>E1</MessageID></Header><Body><Error><Code>602</Code>"
        b"<DescriptionCode>008</DescriptionCode><Description>Down</Description></Error>"
        b"</Body></Message>"
    )
    with pytest.raises(ScriptError) as raised:
        parse_rx_history_response(raw)
    assert (raised.value.code, raised.value.description_code) == ("602", "008")
    assert str(raised.value) == "NCPDP Error 602"  # the peer's free text stays out of it


def test_unsafe_xml_in_a_response_is_an_xml_error() -> None:
    raw = b'<!DOCTYPE Message [<!ENTITY x "y">]><Message/>'
    with pytest.raises(XmlError):
        parse_rx_history_response(raw)
    with pytest.raises(XmlError, match="larger than 10 bytes"):
        parse_rx_history_response(fixture("rxhistory-approved.xml"), max_bytes=10)


# --- building requests ----------------------------------------------------------------------------


def test_request_round_trips_through_the_parser() -> None:
    parsed = parse_rx_history_request(build(since=date(2025, 1, 10)))
    assert parsed == HistoryRequest(
        message_id="PG-REQ-1",
        from_id="PG",
        to_id="NET",
        last_name="Fixturepatient",
        first_name="Morgan",
        birth_date="1961-09-23",
        gender="F",
        postal_code="55401",
        start_date=date(2025, 1, 10),
        end_date=date(2026, 1, 10),
    )


def test_request_structure_follows_script_2017071() -> None:
    root = xml.parse_xml(build())
    assert root.tag == "{http://www.ncpdp.org/schema/SCRIPT}Message"
    assert root.get("version") == "2017071"
    assert xml.text(root, "Header", "SentTime") == "2026-01-10T15:04:05Z"
    human = xml.child(root, "Body", "RxHistoryRequest", "Patient", "HumanPatient")
    assert xml.text(human, "Name", "MiddleName") == "Lee"
    assert xml.text(human, "DateOfBirth", "Date") == "1961-09-23"
    requester = xml.child(root, "Body", "RxHistoryRequest", "Prescriber", "NonVeterinarian")
    assert xml.text(requester, "Name", "LastName") == "PatientGraph"
    assert xml.child(root, "Body", "RxHistoryRequest", "RequestedDates") is None  # no `since`


def test_the_patientgraph_id_is_never_sent() -> None:
    assert b"pg-secret-id-42" not in build()


def test_sent_time_is_written_in_utc() -> None:
    local = SENT.astimezone(timezone(timedelta(hours=-6)))
    raw = build_rx_history_request(
        PERSON, message_id="M", sent_time=local, from_id="A", to_id="B", since=None
    )
    assert xml.text(xml.parse_xml(raw), "Header", "SentTime") == "2026-01-10T15:04:05Z"


@pytest.mark.parametrize(
    ("gender", "code"),
    [("female", "F"), ("male", "M"), ("other", "U"), ("unknown", "U"), (None, "U"), ("M", "M")],
)
def test_gender_codes(gender: str | None, code: str) -> None:
    person = PersonQuery("p", "Doe", ("Jo",), "1990-01-02", gender=gender)
    assert parse_rx_history_request(build(person)).gender == code


def test_hostile_names_are_escaped_and_round_trip() -> None:
    person = PersonQuery(
        "p", "O'Brien & <Sons>", ('Jo "The" </Name><x>', "&amp;"), "1990-01-02", None, "<55>"
    )
    raw = build(person)
    assert b"<Sons>" not in raw
    assert b"<x>" not in raw
    assert b"O'Brien &amp; &lt;Sons&gt;" in raw
    parsed = parse_rx_history_request(raw)
    assert parsed.last_name == "O'Brien & <Sons>"
    assert parsed.first_name == 'Jo "The" </Name><x>'
    assert parsed.postal_code == "<55>"
    human = xml.child(xml.parse_xml(raw), "Body", "RxHistoryRequest", "Patient", "HumanPatient")
    assert xml.text(human, "Name", "MiddleName") == "&amp;"


def test_control_characters_are_dropped_not_sent() -> None:
    person = PersonQuery("p", "Do\x00e\x1b", ("J\x07o",), "1990-01-02")
    parsed = parse_rx_history_request(build(person))
    assert (parsed.last_name, parsed.first_name) == ("Doe", "Jo")


@pytest.mark.parametrize(
    "person",
    [
        PersonQuery("p", "Doe", (), "1990-01-02"),
        PersonQuery("p", "Doe", (" ",), "1990-01-02"),
        PersonQuery("p", " ", ("Jo",), "1990-01-02"),
        PersonQuery("p", "Doe", ("Jo",), "1990"),
        PersonQuery("p", "Doe", ("Jo",), "1990-02-30"),
    ],
)
def test_people_who_cannot_be_described_are_refused(person: PersonQuery) -> None:
    with pytest.raises(ValueError, match=r"needs|day is out of range"):
        build(person)


def test_naive_sent_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        build_rx_history_request(
            PERSON, message_id="M", sent_time=datetime(2026, 1, 1), from_id="A", to_id="B",
            since=None,
        )  # fmt: skip


def test_a_request_is_not_a_response() -> None:
    with pytest.raises(MessageError, match="expected a RxHistoryResponse"):
        parse_rx_history_response(build())
    with pytest.raises(MessageError, match="expected a RxHistoryRequest"):
        parse_rx_history_request(fixture("rxhistory-approved.xml"))
