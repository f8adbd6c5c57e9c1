"""MedicationDispensed -> MedicationDispense over our RxHistoryResponse fixtures."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.domain.common import CodeableConcept, Coding, Quantity, RecordMeta, SourceLink
from app.domain.medications import MedicationDispense
from app.sources.ncpdp import xml
from app.sources.ncpdp.mapping import (
    NCI_THESAURUS,
    NDC,
    RXNORM,
    MappingError,
    map_dispensed,
    medication_dispense,
    ndc11,
)
from app.sources.ncpdp.messages import parse_rx_history_response

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ncpdp"
SRC = "pharmacy"


def dispensed(name: str) -> list[MedicationDispense]:
    history = parse_rx_history_response((FIXTURES / name).read_bytes())
    mapped = map_dispensed(SRC, history.dispensed)
    assert mapped.skipped == 0
    return mapped.records


def test_every_field_of_a_fill() -> None:
    first = dispensed("rxhistory-approved.xml")[0]
    assert first == MedicationDispense(
        sources=(SourceLink(SRC, first.sources[0].local_id, "MedicationDispense"),),
        meta=RecordMeta(),
        medication=CodeableConcept(
            "lisinopril 10 MG Oral Tablet",
            (Coding(NDC, "00000314101"), Coding(RXNORM, "314076")),
        ),
        quantity=Quantity(30.0, "tablet", NCI_THESAURUS, "C48542"),
        days_supply=30,
        written_date="2025-10-02",
        last_fill_date="2025-11-03",
        pharmacy="Riverbend Community Pharmacy",
        pharmacy_id="0512346",  # NCPDPID preferred over the NPI beside it
        prescriber="Quill, Ada",
        prescriber_npi="1528295693",
        sig="Take 1 tablet by mouth once daily",
    )


def test_attribute_shaped_codes_npi_only_pharmacy_and_date_times() -> None:
    amoxicillin = dispensed("rxhistory-approved.xml")[2]
    assert amoxicillin.medication.coding == (Coding(NDC, "00000308101"),)
    assert amoxicillin.quantity == Quantity(30.0, "capsule", NCI_THESAURUS, "C48480")
    assert amoxicillin.last_fill_date == "2025-12-18T17:42:00Z"
    assert (amoxicillin.pharmacy_id, amoxicillin.pharmacy) == (
        "1467234509",
        "Harborview Apothecary",
    )
    assert amoxicillin.prescriber == "Wren, Tobias"


def test_no_namespace_fixture_maps_the_same_way() -> None:
    [albuterol] = dispensed("rxhistory-no-namespace.xml")
    assert albuterol.medication.has_code(f"{RXNORM}|745679")
    assert albuterol.quantity == Quantity(18.0, "g", NCI_THESAURUS, "C48155")
    assert albuterol.days_supply == 25
    assert albuterol.pharmacy_id == "0534871"


def test_local_ids_are_stable_per_fill_distinct_across_fills_and_fhir_safe() -> None:
    first_read = dispensed("rxhistory-approved.xml")
    second_read = dispensed("rxhistory-approved.xml")
    ids = [r.sources[0].local_id for r in first_read]
    assert ids == [r.sources[0].local_id for r in second_read]
    assert len(set(ids)) == 3  # the two lisinopril fills differ by LastFillDate
    for local_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", local_id)
    assert len({r.id for r in first_read}) == 3


def test_an_element_naming_no_drug_is_counted_never_dropped_silently() -> None:
    history = parse_rx_history_response(
        (FIXTURES / "rxhistory-approved-with-unmappable.xml").read_bytes()
    )
    mapped = map_dispensed(SRC, history.dispensed)
    assert mapped.skipped == 1
    [atorvastatin] = mapped.records
    # An NCI code outside our table keeps its code (and system) without a readable unit.
    assert atorvastatin.quantity == Quantity(90.0, None, NCI_THESAURUS, "C99999")
    assert atorvastatin.written_date is None
    assert (atorvastatin.pharmacy, atorvastatin.prescriber, atorvastatin.sig) == (None,) * 3
    with pytest.raises(MappingError):
        medication_dispense(SRC, history.dispensed[1])


@pytest.mark.parametrize(
    ("snippet", "coding"),
    [
        ("<DrugDBCode><Code>1</Code><Qualifier>SBD</Qualifier></DrugDBCode>", (RXNORM, "1")),
        ("<DrugDBCode><Code>2</Code><Qualifier>GPK</Qualifier></DrugDBCode>", (RXNORM, "2")),
        ('<DrugDBCode Qualifier="RXNORM">3</DrugDBCode>', (RXNORM, "3")),
        ('<DrugDBCode Qualifier="SCT">4</DrugDBCode>', ("http://snomed.info/sct", "4")),
        ("<DrugDBCode><Code>5</Code><Qualifier>MG</Qualifier></DrugDBCode>", None),  # Medi-Span
        ("<ProductCode><Code>0093-3105-01</Code><Qualifier>ND</Qualifier></ProductCode>",
         (NDC, "00093310501")),
        ("<ProductCode><Code>123</Code><Qualifier>UP</Qualifier></ProductCode>", None),  # UPC
    ],
)  # fmt: skip
def test_drug_code_qualifiers(snippet: str, coding: tuple[str, str] | None) -> None:
    element = xml.parse_xml(
        f"<MedicationDispensed><DrugDescription>D</DrugDescription><DrugCoded>{snippet}"
        "</DrugCoded></MedicationDispensed>".encode()
    )
    codings = medication_dispense(SRC, element).medication.coding
    assert codings == (() if coding is None else (Coding(*coding),))


@pytest.mark.parametrize(
    ("value", "days", "quantity", "days_supply"),
    [("abc", "x", None, None), ("-3", "-1", None, None), ("nan", "1e3", None, None),
     ("2.5", "007", 2.5, 7)],
)  # fmt: skip
def test_unreadable_numbers_are_left_out(
    value: str, days: str, quantity: float | None, days_supply: int | None
) -> None:
    element = xml.parse_xml(
        f"<MedicationDispensed><DrugDescription>D</DrugDescription><Quantity><Value>{value}"
        f"</Value></Quantity><DaysSupply>{days}</DaysSupply></MedicationDispensed>".encode()
    )
    record = medication_dispense(SRC, element)
    assert (record.quantity.value if record.quantity else None) == quantity
    assert record.days_supply == days_supply


def test_dates_that_are_not_iso_8601_are_left_out() -> None:
    element = xml.parse_xml(
        b"<MedicationDispensed><DrugDescription>D</DrugDescription><WrittenDate><Date>01/02/2025"
        b"</Date></WrittenDate><LastFillDate>2025-03-04</LastFillDate></MedicationDispensed>"
    )
    record = medication_dispense(SRC, element)
    assert (record.written_date, record.last_fill_date) == (None, "2025-03-04")


def test_ndc11_pads_each_segment_of_a_dashed_ndc() -> None:
    assert ndc11("0093-3105-01") == "00093310501"  # 4-4-2
    assert ndc11("12345-678-90") == "12345067890"  # 5-3-2
    assert ndc11("12345-6789-0") == "12345678900"  # 5-4-1
    assert ndc11("00093310501") == "00093310501"
