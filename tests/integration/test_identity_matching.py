"""The matching engine on both stores: who links, who is kept apart, and what is listed.

Every case is a pair (or trio) of source records as real registrations differ; each test says
whether they must be one person, and what the review list must then hold.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa

from app.domain.common import Address, ContactPoint, HumanName, Identifier, SourceLink
from app.domain.patients import SSN_SYSTEM, SourcePatient
from app.identity.index import PatientIndex
from app.identity.review import IdentityError, IdentityReview
from app.identity.tables import patient_identifiers, patient_links, patient_records
from app.store import create_engine
from tests.integration.test_patient_index import index, store_url

__all__ = ["index", "store_url"]  # fixtures


def record(
    source: str,
    local: str,
    given: str = "Maria",
    family: str = "Lopez",
    born: str | None = "1985-04-12",
    sex: str | None = "female",
    ssn: str | None = "999-12-3456",
    line: str | None = "12 Oak St",
    phone: str | None = "555-201-3344",
    postal: str = "62701",
) -> SourcePatient:
    identifiers = [Identifier(f"urn:mrn:{source}", local)]
    if ssn is not None:
        identifiers.append(Identifier(SSN_SYSTEM, ssn))
    addresses = (Address("home", (line,), "Springfield", "IL", postal, "US"),) if line else ()
    telecom = (ContactPoint("phone", phone, "home"),) if phone else ()
    return SourcePatient(
        SourceLink(source, local, "Patient"),
        tuple(identifiers),
        HumanName(family, (given,), None),
        born,
        sex,
        addresses,
        telecom,
    )


ELSEWHERE: dict[str, Any] = {
    "ssn": None,
    "born": "1985-04-13",
    "line": "9 Elm Rd",
    "phone": None,
    "postal": "60601",
}


async def open_reviews(index: PatientIndex) -> list[tuple[str, str, str, str | None]]:
    found = await IdentityReview(index).reviews()
    return [(r.kind, r.reason, r.local_id, r.field) for r in found]


async def test_a_shared_ssn_with_agreeing_demographics_links(index: PatientIndex) -> None:
    a, b = await index.link([record("hospital", "h1"), record("clinic", "c1", ssn="999123456")])
    assert a == b
    (explained,) = (await IdentityReview(index).explain([a])).values()
    assert {(e.local_id, e.method) for e in explained} == {("h1", "new"), ("c1", "identifier")}
    assert next(e for e in explained if e.local_id == "c1").identifier_system == SSN_SYSTEM
    assert await open_reviews(index) == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"given": "Kevin", "sex": "male", "born": "2017-09-30"}, "sex"),  # a boy, another SSN
        ({"born": "2017-09-30"}, "birthDate"),
        ({"given": "Rosa"}, "given"),
    ],
)
async def test_a_shared_ssn_with_contradicting_demographics_is_a_conflict(
    index: PatientIndex, change: dict[str, str], field: str
) -> None:
    a, b = await index.link([record("hospital", "h1"), record("clinic", "c1", **change)])
    assert a != b
    assert await open_reviews(index) == [("conflict", "shared_identifier", "c1", field)]
    (review,) = await IdentityReview(index).reviews()
    assert (review.patient_id, review.record_patient_id) == (a, b)


async def test_a_lab_message_with_another_persons_ssn_stays_apart(index: PatientIndex) -> None:
    """The glucose of a man whose lab message carries a woman's SSN never reaches her chart."""
    (woman,) = await index.link([record("hospital", "h1")])
    (lab,) = await index.link([record("citylab", "LAB-9", given="Robert", sex="male", line=None)])
    assert lab != woman
    assert await open_reviews(index) == [("conflict", "shared_identifier", "LAB-9", "sex")]


async def test_a_shared_ssn_within_one_source_is_never_linked(index: PatientIndex) -> None:
    first, twin_record, other = await index.link(
        [
            record("hospital", "h1"),
            record("hospital", "h2"),  # the same demographics: a duplicate for review
            record("hospital", "h3", given="Kevin", sex="male", born="2017-09-30"),
        ]
    )
    assert len({first, twin_record, other}) == 3
    assert sorted(await open_reviews(index)) == [
        ("conflict", "shared_identifier", "h3", "sex"),
        ("possible_match", "same_source", "h2", None),
    ]


async def test_no_ssn_links_by_score_and_records_its_contributions(index: PatientIndex) -> None:
    a, b = await index.link(
        [record("hospital", "h1"), record("clinic", "c1", ssn=None, given="maría")]
    )
    assert a == b
    explained = (await IdentityReview(index).explain([a]))[a]
    scored = next(e for e in explained if e.local_id == "c1")
    assert scored.method == "score"
    assert scored.score is not None
    assert scored.score >= index.thresholds.link_at
    assert scored.contributions["birthDate"] > 0
    assert scored.contributions["given"] > 0
    assert sum(scored.contributions.values()) == pytest.approx(scored.score)


@pytest.mark.parametrize(
    "change",
    [
        {"given": "Marai"},  # a typo
        {"born": "1985-12-04"},  # day and month swapped
        {"born": "1985-04-13"},  # one digit
        {"family": "Lopez-Garcia"},  # a second surname
        {"family": "Smith"},  # married: surname changed, address and phone the same
        {"given": "MARIA", "family": "LÓPEZ"},  # case and accents
    ],
)
async def test_the_same_person_written_differently_links(
    index: PatientIndex, change: dict[str, str]
) -> None:
    a, b = await index.link([record("hospital", "h1"), record("clinic", "c1", ssn=None, **change)])
    assert a == b


async def test_a_nickname_links(index: PatientIndex) -> None:
    william = {"given": "William", "sex": "male"}
    a, b = await index.link(
        [
            record("hospital", "h1", **william),
            record("clinic", "c1", ssn=None, given="Bill", sex="male"),
        ]
    )
    assert a == b


async def test_twins_sharing_address_phone_and_birth_date_stay_apart(index: PatientIndex) -> None:
    a, b = await index.link(
        [
            record("hospital", "h1", given="Emma", ssn="999-12-0001"),
            record("clinic", "c1", given="Ella", ssn=None),
        ]
    )
    assert a != b


async def test_a_weaker_resemblance_is_held_as_a_possible_match(index: PatientIndex) -> None:
    """Same name, a birth date one digit apart, nothing else shared: likely, not certain."""
    a, b = await index.link([record("hospital", "h1"), record("clinic", "c1", **ELSEWHERE)])
    assert a != b
    assert await open_reviews(index) == [("possible_match", "score", "c1", None)]


async def test_a_record_matching_two_people_is_a_conflict(index: PatientIndex) -> None:
    """Two sources each know a Maria Lopez born that day, at different addresses; a third
    record with both addresses' traits cannot be told apart."""
    first, second = await index.link(
        [
            record("hospital", "h1", ssn="999-12-0001", line="1 Elm Rd", phone="555-100-0001"),
            record("hospital", "h2", ssn="999-12-0002", line="2 Ash Rd", phone="555-100-0002"),
        ]
    )
    (third,) = await index.link(
        [record("clinic", "c1", ssn=None, line="1 Elm Rd", phone="555-100-0002")]
    )
    assert len({first, second, third}) == 3
    reviews = await open_reviews(index)
    assert reviews.count(("conflict", "matches_several_people", "c1", None)) == 2


async def test_a_known_record_whose_demographics_now_contradict_is_split(
    index: PatientIndex,
) -> None:
    ehr, lab = await index.link([record("hospital", "h1"), record("citylab", "LAB-1")])
    assert ehr == lab
    (moved,) = await index.link([record("citylab", "LAB-1", given="Robert", sex="male")])
    assert moved != ehr
    assert await open_reviews(index) == [("conflict", "demographics_changed", "LAB-1", "sex")]
    assert {link.local_id for link in (await index.links_for([ehr]))[ehr]} == {"h1"}
    # A change that contradicts nothing (a new address) keeps the link.
    (kept,) = await index.link([record("hospital", "h1", line="77 New St")])
    assert kept == ehr


async def test_links_from_the_identifier_only_index_are_rechecked(
    index: PatientIndex, store_url: str
) -> None:
    """An index written before the matcher: links and identifier hashes, no demographics. The
    first sight of each record re-checks it; a contradicting one is split and reported."""
    agreeing, contradicting = "pg-" + "a" * 24, "pg-" + "b" * 24
    rows = [
        ("hospital", "h1", agreeing),
        ("clinic", "c1", agreeing),
        ("hospital", "h2", contradicting),
        ("clinic", "c2", contradicting),
    ]
    async with index.engine.begin() as conn:
        await conn.execute(
            patient_links.insert(),
            [{"source_id": s, "local_id": lid, "patient_id": p} for s, lid, p in rows],
        )
    first = await index.link(
        [
            record("hospital", "h1"),
            record("clinic", "c1"),
            record("hospital", "h2", given="Ann", ssn="999-12-9999"),
            record("clinic", "c2", given="Ann", ssn="999-12-9999", sex="male", born="1960-01-01"),
        ]
    )
    assert first[:3] == [agreeing, agreeing, contradicting]
    assert first[3] != contradicting
    assert await open_reviews(index) == [("conflict", "upgrade_recheck", "c2", "sex")]
    explained = await IdentityReview(index).explain([agreeing])
    assert {(e.method, e.rule_version) for e in explained[agreeing]} == {("legacy", 1)}
    # Re-checked once: the same records again change nothing and report nothing new.
    restarted = PatientIndex(create_engine(store_url), [SSN_SYSTEM], "test-key")
    try:
        again = await restarted.link(
            [record("clinic", "c2", given="Ann", ssn="999-12-9999", sex="male", born="1960-01-01")]
        )
    finally:
        await restarted.engine.dispose()
    assert again == first[3:]
    assert len(await open_reviews(index)) == 1


async def test_unlink_and_link_are_kept_with_who_when_and_why(index: PatientIndex) -> None:
    review = IdentityReview(index)
    a, b = await index.link([record("hospital", "h1"), record("clinic", "c1")])
    assert a == b
    moved = await review.unlink(("clinic", "c1"), "admin-7", "registration error, ticket 12")
    assert moved.from_patient_id == a
    assert moved.to_patient_id != a
    assert {link.local_id for link in (await index.links_for([a]))[a]} == {"h1"}
    # Unlinked stays unlinked: the same record found again is not re-matched.
    assert await index.link([record("clinic", "c1")]) == [moved.to_patient_id]
    back = await review.link(("clinic", "c1"), a, "admin-8", "confirmed with the patient")
    assert back.to_patient_id == a
    assert await index.link([record("clinic", "c1")]) == [a]
    explained = next(e for e in (await review.explain([a]))[a] if e.local_id == "c1")
    assert (explained.method, explained.linked_by) == ("manual", "admin-8")
    operations = await review.operations()
    assert [
        (o.operation, o.actor, o.reason, o.from_patient_id, o.to_patient_id) for o in operations
    ] == [
        ("unlink", "admin-7", "registration error, ticket 12", a, moved.to_patient_id),
        ("link", "admin-8", "confirmed with the patient", moved.to_patient_id, a),
    ]
    assert all(o.at.tzinfo is not None for o in operations)


async def test_linking_settles_reviews_and_dismissing_is_recorded(index: PatientIndex) -> None:
    review = IdentityReview(index)
    a, _b = await index.link([record("hospital", "h1"), record("clinic", "c1", **ELSEWHERE)])
    (held,) = await review.reviews()
    await review.link(("clinic", "c1"), a, "admin-1", "same person, checked ID")
    assert await review.reviews() == []
    assert [r.status for r in await review.reviews(status="linked")] == ["linked"]
    _, c = await index.link(
        [
            record(
                "hospital", "h2", given="Kevin", sex="male", born="2017-09-30", ssn="999-55-0001"
            ),
            record(
                "clinic", "c2", given="Kevin", sex="male", **{**ELSEWHERE, "born": "2017-09-20"}
            ),
        ]
    )
    (other,) = await review.reviews()
    await review.dismiss(other.id, "admin-1", "different people: father and son")
    with pytest.raises(IdentityError, match="already dismissed"):
        await review.dismiss(other.id, "admin-1", "again")
    assert [o.operation for o in await review.operations()] == ["link", "dismiss"]
    assert held.id != other.id
    assert c != a


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: r.unlink(("clinic", "nope"), "admin", "why"), "no such source record"),
        (lambda r: r.unlink(("hospital", "h1"), "admin", "why"), "only one"),
        (lambda r: r.unlink(("hospital", "h1"), "admin", " "), "reason is required"),
        (lambda r: r.link(("hospital", "h1"), "pg-" + "0" * 24, "admin", "why"), "no such patient"),
        (lambda r: r.link(("hospital", "h1"), "not-an-id", "admin", "why"), "not a PatientGraph"),
        (lambda r: r.dismiss(12345, "admin", "why"), "no such review"),
        (lambda r: r.reviews(status="closed"), "status must be"),
    ],
)
async def test_operations_that_cannot_be_done_say_why_and_change_nothing(
    index: PatientIndex, call: object, message: str
) -> None:
    await index.link([record("hospital", "h1")])
    review = IdentityReview(index)
    with pytest.raises(IdentityError, match=message):
        await call(review)  # type: ignore[operator]
    assert await review.operations() == []


async def test_demographics_and_identifiers_are_stored_without_the_ssn(
    index: PatientIndex,
) -> None:
    await index.link([record("hospital", "h1", ssn="999-12-3456")])
    async with index.engine.connect() as conn:
        stored = " ".join(
            str(v) for row in (await conn.execute(sa.select(patient_records))).all() for v in row
        )
        hashes = (await conn.execute(sa.select(patient_identifiers.c.value_hash))).scalars().all()
    assert "3456" not in stored
    assert "lopez" in stored
    assert all("3456" not in h for h in hashes)


async def test_records_in_one_batch_match_each_other(index: PatientIndex) -> None:
    """Two new records found by one search, both without an SSN, are one person."""
    a, b = await index.link(
        [record("hospital", "h1", ssn=None), replace(record("clinic", "c1", ssn=None))]
    )
    assert a == b


async def test_two_records_of_one_source_never_link_by_score(index: PatientIndex) -> None:
    a, b = await index.link(
        [record("hospital", "h1", ssn=None), record("hospital", "h2", ssn=None)]
    )
    assert a != b
    assert await open_reviews(index) == [("possible_match", "same_source", "h2", None)]


async def test_a_block_too_common_to_tell_anyone_apart_is_not_read(
    index: PatientIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the phone finds Maria for the newcomer (another surname, a birth date one digit
    off): a possible match while few share that phone; once too many do, it finds nobody."""
    married: dict[str, Any] = {"family": "Smith", "born": "1985-04-13", "ssn": None}
    married |= {"line": "9 Elm Rd"}
    (maria,) = await index.link([record("hospital", "h1", ssn=None)])
    (kept_apart,) = await index.link([record("clinic", "c1", **married)])
    assert await open_reviews(index) == [("possible_match", "score", "c1", None)]
    monkeypatch.setattr("app.identity.index.MAX_BLOCK", 1)  # the phone's block holds 2
    # Found through the phone, this one would link to the clinic's record (score 20.5).
    again = {**married, "family": "Jones", "born": "1985-04-14"}
    (newcomer,) = await index.link([record("citylab", "l1", **again)])
    assert newcomer not in {maria, kept_apart}
    assert len(await open_reviews(index)) == 1


async def test_a_link_keeps_its_evidence_and_an_administrators_link_stands(
    index: PatientIndex,
) -> None:
    review = IdentityReview(index)
    a, b = await index.link([record("hospital", "h1"), record("clinic", "c1", ssn=None)])
    assert a == b
    # A new phone contradicts nothing: the link and how it was made stay.
    await index.link([record("clinic", "c1", ssn=None, phone="555-999-0000")])
    (scored,) = [e for e in (await review.explain([a]))[a] if e.local_id == "c1"]
    assert (scored.method, scored.score is not None) == ("score", True)
    # An administrator joins a record the matcher kept apart (a sex recorded wrongly).
    (lab,) = await index.link([record("citylab", "L1", sex="male")])
    assert lab != a
    await review.link(("citylab", "L1"), a, "admin-1", "sex entered wrongly at the lab")
    (kept,) = await index.link([record("citylab", "L1", sex="male", phone="555-999-0000")])
    assert kept == a
