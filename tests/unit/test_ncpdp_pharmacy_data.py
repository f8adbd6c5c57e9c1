"""Demo pharmacy fills: deterministic, consistent with the EHR medications, realistic shapes."""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any

from app.demo.generator import ANCHOR, RXNORM, UPSTREAMS, DemoPopulation, generate_population
from app.demo.pharmacy_data import PHARMACY_ONLY, npi_check_digit, pharmacy_fills

FillKey = tuple[str, str, str]


@functools.cache
def population() -> DemoPopulation:
    return generate_population()


@functools.cache
def fills() -> dict[FillKey, list[dict[str, Any]]]:
    return pharmacy_fills(population())


def ehr_medications(person_key: str) -> dict[str, str]:
    """RxNorm code -> display of the person's EHR medications (both upstreams)."""
    person = next(p for p in population().people if p.key == person_key)
    subjects = {f"Patient/{person.local_ids[u]}" for u in UPSTREAMS}
    found: dict[str, str] = {}
    for upstream in UPSTREAMS:
        for r in population().upstreams[upstream]:
            if r["resourceType"] not in ("MedicationRequest", "MedicationStatement"):
                continue
            if r["subject"]["reference"] not in subjects:
                continue
            concept = r.get("medicationCodeableConcept") or r["contained"][0]["code"]
            coding = next(c for c in concept["coding"] if c["system"] == RXNORM)
            found[coding["code"]] = coding["display"]
    return found


def test_deterministic() -> None:
    assert pharmacy_fills(generate_population()) == fills()


def test_every_person_is_keyed_by_family_first_given_and_birth_date() -> None:
    keys = {(p.family, p.given[0], p.birth_date) for p in population().people}
    assert set(fills()) == keys


def test_fills_match_ehr_orders_by_code_and_description_and_some_stay_unfilled() -> None:
    unfilled_somewhere = False
    for person in population().people:
        ordered = ehr_medications(person.key)
        person_fills = fills()[(person.family, person.given[0], person.birth_date)]
        filled = {f["rxnorm"]: f["drug_description"] for f in person_fills}
        matched = {code: d for code, d in filled.items() if code in ordered}
        assert matched, person.key  # some EHR medication was filled
        assert all(ordered[code] == d for code, d in matched.items())
        pharmacy_only = set(filled) - set(ordered)
        assert pharmacy_only <= {code for code, *_ in PHARMACY_ONLY}
        assert pharmacy_only, person.key  # a drug only the pharmacy knows
        unfilled_somewhere |= len(matched) < len(ordered)
    assert unfilled_somewhere


def test_refills_and_sane_dates() -> None:
    for person_fills in fills().values():
        per_drug = Counter(f["rxnorm"] for f in person_fills)
        assert max(per_drug.values()) >= 2  # at least one drug refilled
        for fill in person_fills:
            assert fill["written_date"] <= fill["last_fill_date"] <= ANCHOR.date().isoformat()
        assert [f["last_fill_date"] for f in person_fills] == sorted(
            f["last_fill_date"] for f in person_fills
        )


def test_realistic_identifiers_that_cannot_be_real() -> None:
    for person_fills in fills().values():
        for fill in person_fills:
            assert len(fill["ndc"]) == 11
            assert fill["ndc"].startswith("00000")
            assert len(fill["pharmacy_ncpdpid"]) == 7
            assert fill["pharmacy_ncpdpid"].isdigit()
            npi = fill["prescriber_npi"]
            assert len(npi) == 10
            assert npi[0] == "1"
            assert npi_check_digit(npi[:9]) != int(npi[9])  # fails the NPI Luhn check
            assert fill["quantity_unit"] in {"C48542", "C48480", "C48155"}
            assert fill["days_supply"] > 0
            assert fill["quantity"] > 0


def test_npi_check_digit_matches_the_cms_example() -> None:
    assert npi_check_digit("123456789") == 3  # 1234567893 is CMS's valid example
