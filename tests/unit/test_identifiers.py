"""How the patient index spells identifier values before it compares (hashes) them."""

from __future__ import annotations

import pytest

from app.domain.patients import SSN_SYSTEM
from app.identity.identifiers import normalised, normalisers


@pytest.mark.parametrize(
    ("written", "compared"),
    [
        ("999-44-0001", "999-44-0001"),
        ("999440001", "999-44-0001"),
        (" 999 44 0001 ", "999-44-0001"),
        ("999.44.0001", "999-44-0001"),
        ("999-00-1234", "999-00-1234"),  # never issued, but synthetic data uses it
        ("000-12-3456", None),
        ("666-12-3456", None),
        ("111-11-1111", None),
        ("123-45-6789", None),
        ("99944000", None),  # eight digits
        ("9994400011", None),  # ten
        ("999-44-OOO1", None),  # letters
        ("\uff19\uff19\uff19\uff14\uff14\uff10\uff10\uff10\uff11", None),  # full-width digits
    ],
)
def test_ssn_spellings(written: str, compared: str | None) -> None:
    assert normalised(SSN_SYSTEM, written) == compared


def test_other_systems_are_compared_trimmed() -> None:
    assert normalised("urn:mrn", "  A-1 ") == "A-1"
    assert normalised("urn:mrn", "   ") is None


def test_a_system_can_be_given_another_normaliser() -> None:
    configured = normalisers({"urn:oid:2.16.840.1.113883.4.3.25": "digits", "urn:mrn": "casefold"})
    assert normalised("urn:oid:2.16.840.1.113883.4.3.25", "D12-345-678", configured) == "12345678"
    assert normalised("urn:mrn", " AB-1 ", configured) == "ab-1"
    assert normalised(SSN_SYSTEM, "999440001", configured) == "999-44-0001"  # default kept
    assert normalised("urn:mrn", " AB-1 ") == "AB-1"  # without configuration: trimmed
