"""Demographic normalisation, blocking keys and the score's field rules."""

from __future__ import annotations

from dataclasses import replace

import pytest

from app.domain.common import Address, ContactPoint, HumanName, SourceLink
from app.domain.patients import SourcePatient
from app.identity.demographics import Demographics, name_key, swapped_date
from app.identity.nicknames import equivalent, formal_names
from app.identity.scoring import compare


def demographics(**change: object) -> Demographics:
    base = Demographics(
        given="maria",
        family="lopez",
        birth_date="1985-04-12",
        sex="female",
        postal_code="62701",
        address_line="12 oak st",
        phone="5552013344",
        email=None,
        ssn_hash=None,
    )
    return replace(base, **change)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("written", "key"),
    [
        ("Zoë O'Brien-Núñez", "zoe obrien nunez"),
        ("  Dr. MARÍA  ", "maria"),
        ("Smith Jr", "smith"),
        ("---", None),
        ("", None),
    ],
)
def test_names_compare_without_case_accents_punctuation_or_titles(
    written: str, key: str | None
) -> None:
    assert name_key(written) == key


def test_demographics_of_a_source_patient() -> None:
    patient = SourcePatient(
        SourceLink("hospital", "h1", "Patient"),
        (),
        HumanName("Núñez", ("Ana", "B."), None),
        "1985-04",  # partial: compares as unknown
        "unknown",
        (Address("home", ("12  Oak St",), "X", "IL", "62701-1234", "US"),),
        (ContactPoint("phone", "+1 (555) 201-3344"), ContactPoint("email", " Ana@Example.org ")),
    )
    found = Demographics.of(patient, None)
    assert (found.given, found.family, found.birth_date, found.sex) == ("ana", "nunez", None, None)
    assert (found.postal_code, found.address_line, found.phone, found.email) == (
        "62701",
        "12 oak st",
        "5552013344",
        "ana@example.org",
    )
    assert Demographics.from_json(found.to_json()) == found


def test_a_nickname_and_its_formal_name_share_a_block() -> None:
    bill = demographics(given="bill", family="smith", sex="male")
    william = demographics(given="william", family="smith", sex="male")
    shared = bill.blocking_keys() & william.blocking_keys()
    assert any(key.startswith("n|") for key in shared)
    assert formal_names("al") == {"albert", "alan", "alexander", "alfred"}
    assert formal_names("zed") == {"zed"}


def test_blocking_keys_and_the_swapped_birth_date_lookup() -> None:
    keys = demographics().blocking_keys()
    assert "d|1985-04-12" in keys
    assert "p|5552013344" in keys
    assert "d|1985-12-04" in demographics().search_keys() - keys
    assert swapped_date("1985-04-04") is None
    assert swapped_date("1985-04-13") is None


@pytest.mark.parametrize(("a", "b"), [("bill", "william"), ("peggy", "margaret"), ("al", "alan")])
def test_nicknames(a: str, b: str) -> None:
    assert equivalent(a, b)
    assert equivalent(b, a)


def test_unrelated_names_are_not_nicknames() -> None:
    assert not equivalent("bill", "robert")
    assert not equivalent("zed", "zed-unknown")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"sex": "male"}, "sex"),
        ({"birth_date": "1990-07-30"}, "birthDate"),
        ({"given": "rosa"}, "given"),
        ({"given": "k"}, "given"),  # an initial of another name
    ],
)
def test_contradictions(change: dict[str, str], field: str) -> None:
    assert compare(demographics(), demographics(**change)).contradiction == field


@pytest.mark.parametrize(
    "change",
    [
        {"family": "smith"},  # a changed surname never contradicts
        {"given": "marai"},
        {"given": "m"},
        {"birth_date": "1985-12-04"},
        {"birth_date": "1985-04-13"},
        {"sex": None, "birth_date": None},
    ],
)
def test_no_contradiction(change: dict[str, str]) -> None:
    assert compare(demographics(), demographics(**change)).contradiction is None


def test_the_score_is_the_sum_of_its_fields_and_partial_agreement_earns_less() -> None:
    exact = compare(demographics(), demographics())
    assert exact.score == sum(exact.contributions.values())
    swapped = compare(demographics(), demographics(birth_date="1985-12-04"))
    assert 0 < swapped.contributions["birthDate"] < exact.contributions["birthDate"]
    moved = compare(demographics(), demographics(address_line="9 elm rd", phone="5550000000"))
    assert moved.contributions["address"] < 0
    assert moved.score < exact.score
    assert "email" not in exact.contributions  # a field either lacks adds nothing
    other_ssn = compare(demographics(ssn_hash="a"), demographics(ssn_hash="b"))
    assert other_ssn.contributions["ssn"] < 0
