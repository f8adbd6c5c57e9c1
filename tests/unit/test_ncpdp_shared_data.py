"""The NCPDP parser and mapper over the real SCRIPT samples in `../shared/data/ncpdp`.

None of the samples is an RxHistoryResponse, but their `MedicationPrescribed` elements share
`MedicationDispensed`'s building blocks, so the mapper runs over every one of them (pharmacy
and prescriber read from the transaction, where a NewRx puts them). Spot values below were
checked by hand against the file named in each test.
"""

from __future__ import annotations

import functools
from pathlib import Path
from xml.etree.ElementTree import Element

import pytest

from app.domain.common import Coding, Quantity
from app.domain.medications import MedicationDispense
from app.sources.ncpdp import xml
from app.sources.ncpdp.mapping import NCI_THESAURUS, NDC, RXNORM, SNOMED, map_dispensed
from app.sources.ncpdp.messages import MessageError, ScriptError, parse_rx_history_response
from tests.shared_data import require_shared_data

pytestmark = pytest.mark.shared_data
SRC = "shared-ncpdp"
MEDICATION_ELEMENTS = ("MedicationPrescribed", "MedicationDispensed")


def samples() -> list[Path]:
    files = sorted((require_shared_data() / "ncpdp" / "cosyte-script").glob("*.xml"))
    assert len(files) >= 31, "the NCPDP sample folder is missing files"
    return files


def medication_elements(root: Element) -> list[tuple[Element, Element]]:
    """(medication element, its transaction) for every medication element in a message."""
    body = xml.child(root, "Body")
    return [
        (element, transaction)
        for transaction in (body if body is not None else [])
        for name in MEDICATION_ELEMENTS
        for element in transaction.iter()
        if element is not transaction and xml.local_name(element) == name
    ]


@functools.cache
def mapped_sample(name: str) -> list[MedicationDispense]:
    path = require_shared_data() / "ncpdp" / "cosyte-script" / name
    records: list[MedicationDispense] = []
    for element, transaction in medication_elements(xml.parse_xml(path.read_bytes())):
        mapped = map_dispensed(SRC, [element], parties=transaction)
        assert mapped.skipped == 0, name
        records.extend(mapped.records)
    return records


def test_every_sample_parses_safely() -> None:
    for path in samples():
        assert xml.local_name(xml.parse_xml(path.read_bytes())) == "Message", path.name


def test_no_sample_passes_for_a_medication_history_response() -> None:
    """The response reader refuses every sample (none is an RxHistoryResponse); an Error
    transaction is recognised as one, with its code."""
    for path in samples():
        with pytest.raises(MessageError) as raised:
            parse_rx_history_response(path.read_bytes())
        if path.name == "error-response.xml":
            assert isinstance(raised.value, ScriptError)
            assert raised.value.code == "900"


def test_every_medication_element_of_every_sample_maps() -> None:
    total = sum(len(mapped_sample(path.name)) for path in samples())
    assert total == 19  # `grep -c '<MedicationPrescribed>'` over the folder, summed


def test_newrx_basic() -> None:
    [amoxicillin] = mapped_sample("newrx-basic.xml")
    assert amoxicillin.medication.text == "Amoxicillin 500 MG Oral Capsule"
    assert amoxicillin.medication.coding == (Coding(NDC, "00093310501"),)
    assert amoxicillin.quantity == Quantity(30.0, "capsule", NCI_THESAURUS, "C48480")
    assert amoxicillin.days_supply == 10
    assert amoxicillin.written_date == "2026-01-15"
    assert amoxicillin.last_fill_date is None
    assert amoxicillin.sig == "Take 1 capsule by mouth three times daily for 10 days."
    assert (amoxicillin.pharmacy_id, amoxicillin.pharmacy) == (
        "1999999999",
        "Synthetic Community Pharmacy",
    )
    assert (amoxicillin.prescriber, amoxicillin.prescriber_npi) == (
        "Testprescriber, Jordan",
        "1888888888",
    )


def test_newrx_coded_and_strength() -> None:
    [lisinopril] = mapped_sample("newrx-coded-and-strength.xml")
    assert lisinopril.medication.coding == (Coding(NDC, "00185010201"), Coding(RXNORM, "314076"))
    assert lisinopril.quantity == Quantity(90.0, "tablet", NCI_THESAURUS, "C48542")
    assert (lisinopril.days_supply, lisinopril.written_date) == (90, "2026-02-01")
    assert lisinopril.sig == "Take 1 tablet by mouth once daily."  # from <Directions>
    assert (lisinopril.prescriber, lisinopril.prescriber_npi) == ("Examplemd, Casey", "1777777777")
    assert lisinopril.pharmacy_id is None


def test_surescripts_routing_prefers_the_ncpdp_id() -> None:
    [lisinopril] = mapped_sample("surescripts-routing.xml")
    assert lisinopril.pharmacy_id == "1234567"  # NCPDPID, though an NPI is present too
    assert lisinopril.pharmacy == "Synthetic Surescripts Test Pharmacy"
    assert lisinopril.prescriber == "Testprescriber, Morgan"
    assert lisinopril.quantity == Quantity(30.0, None)  # no unit of measure in the file
    assert lisinopril.written_date == "2026-03-02"


def test_variant_shapes() -> None:
    [variant] = mapped_sample("newrx-variant-shapes.xml")
    assert variant.medication.coding == (Coding(SNOMED, "387467008"),)  # Qualifier attribute
    assert variant.quantity == Quantity(14.0, "each")  # a free-text unit, no code
    assert variant.written_date == "2026-03-01"  # date directly in WrittenDate
    assert (variant.prescriber, variant.prescriber_npi) == ("Variantmd", None)


def test_edge_empties() -> None:
    [empty] = mapped_sample("newrx-edge-empties.xml")
    assert empty.medication.coding == (Coding(RXNORM, "198440"),)  # the empty NDC is dropped
    assert empty.quantity == Quantity(20.0, None)
    assert (empty.written_date, empty.pharmacy, empty.pharmacy_id) == (None, None, None)


def test_nested_medication_in_approved_with_changes() -> None:
    [atorvastatin] = mapped_sample("rxrenewal-response-approved-with-changes-nested.xml")
    assert atorvastatin.medication.text == "Atorvastatin 80 MG Oral Tablet"
    assert atorvastatin.medication.coding == (Coding(NDC, "00000000003"),)
    assert atorvastatin.days_supply == 30


def test_samples_without_medications_map_to_nothing() -> None:
    for name in ("legacy-version.xml", "status-response.xml", "error-response.xml"):
        assert mapped_sample(name) == []
