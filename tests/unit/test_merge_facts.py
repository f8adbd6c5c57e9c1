"""The same-fact rules of every record kind besides observations and medications
(resolvers/merge.py): what is one fact, what must stay apart, and what a merged record keeps."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from app.domain.allergies import Allergy
from app.domain.care_teams import CareTeam
from app.domain.common import CodeableConcept, Coding, Quantity, RecordMeta, SourceLink
from app.domain.conditions import Condition
from app.domain.diagnostic_reports import DiagnosticReport
from app.domain.encounters import Encounter
from app.domain.immunizations import Immunization
from app.domain.medications import Medication, MedicationKind
from app.domain.observations import ObservationComponent
from app.domain.procedures import Procedure
from app.domain.records import ALL_KINDS, Combine, RecordQuery
from resolvers.merge import FACT_KEYS, LOINC, RXNORM, combine, dedupe, merge_medications
from tests.unit.test_merge import obs

SNOMED = "http://snomed.info/sct"
SINUSITIS = CodeableConcept("Sinusitis", (Coding(SNOMED, "444814009"),))
PENICILLIN = CodeableConcept("Penicillin", (Coding(SNOMED, "91936005"),))
FLU = CodeableConcept("Influenza", (Coding("http://hl7.org/fhir/sid/cvx", "140"),))
RESTRICTED = Coding("http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "R")


def link(source: str, local: str, resource_type: str) -> tuple[SourceLink, ...]:
    return (SourceLink(source, local, resource_type),)


def condition(source: str, local: str, **changes: Any) -> Condition:
    base = Condition(
        link(source, local, "Condition"),
        RecordMeta(),
        SINUSITIS,
        "active",
        None,
        ("encounter-diagnosis",),
        "1985-06-01T10:00:00Z",
        None,
        None,
    )
    return dataclasses.replace(base, **changes)


def allergy(source: str, local: str, **changes: Any) -> Allergy:
    base = Allergy(
        link(source, local, "AllergyIntolerance"),
        RecordMeta(),
        PENICILLIN,
        "active",
        None,
        "allergy",
        ("medication",),
        "high",
        None,
        "2010-01-01",
        (CodeableConcept("Hives"),),
    )
    return dataclasses.replace(base, **changes)


def immunization(source: str, local: str, **changes: Any) -> Immunization:
    base = Immunization(
        link(source, local, "Immunization"),
        RecordMeta(),
        FLU,
        "completed",
        "2024-10-01T09:00:00Z",
        True,
        None,
    )
    return dataclasses.replace(base, **changes)


def encounter(source: str, local: str, **changes: Any) -> Encounter:
    base = Encounter(
        link(source, local, "Encounter"),
        RecordMeta(),
        "finished",
        "AMB",
        (),
        "2024-10-01T09:00:00Z",
        "2024-10-01T09:30:00Z",
        (),
        None,
        (),
    )
    return dataclasses.replace(base, **changes)


def procedure(source: str, local: str, **changes: Any) -> Procedure:
    base = Procedure(
        link(source, local, "Procedure"),
        RecordMeta(),
        CodeableConcept("Appendectomy", (Coding(SNOMED, "80146002"),)),
        "completed",
        "2020-02-02T12:00:00Z",
    )
    return dataclasses.replace(base, **changes)


def report(source: str, local: str, **changes: Any) -> DiagnosticReport:
    base = DiagnosticReport(
        link(source, local, "DiagnosticReport"),
        RecordMeta(),
        CodeableConcept("CMP", (Coding(LOINC, "24323-8"),)),
        "final",
        ("LAB",),
        "2025-03-01T08:00:00Z",
        None,
        None,
        (),
    )
    return dataclasses.replace(base, **changes)


def care_team(source: str, local: str, **changes: Any) -> CareTeam:
    base = CareTeam(
        link(source, local, "CareTeam"),
        RecordMeta(),
        "active",
        "Diabetes team",
        (),
        "2023-01-01",
        None,
        (),
    )
    return dataclasses.replace(base, **changes)


BUILDERS: dict[str, Callable[..., Any]] = {
    "conditions": condition,
    "allergies": allergy,
    "immunizations": immunization,
    "encounters": encounter,
    "procedures": procedure,
    "diagnostic_reports": report,
    "care_teams": care_team,
}
# One change per kind that makes it another fact (what must never merge).
OTHER_FACT: dict[str, dict[str, Any]] = {
    "conditions": {"onset": "1986-06-01T10:00:00Z"},
    "allergies": {"code": CodeableConcept("Peanut", (Coding(SNOMED, "91935009"),))},
    "immunizations": {"occurrence": "2025-10-01T09:00:00Z"},
    "encounters": {"class_code": "EMER"},
    "procedures": {"performed": "2020-02-02T12:00:01Z"},
    "diagnostic_reports": {"effective": "2025-03-02T08:00:00Z"},
    "care_teams": {"name": "Cardiology team"},
}
# One missing element per kind that leaves nothing to compare (never merged).
UNKEYED: dict[str, dict[str, Any]] = {
    "conditions": {"onset": None, "recorded_date": None},
    "allergies": {"code": CodeableConcept("penicillin, free text")},
    "immunizations": {"occurrence": None},
    "encounters": {"start": None},
    "procedures": {"performed": "2020-02"},
    "diagnostic_reports": {"effective": None, "issued": None},
    "care_teams": {"name": None},
}


def test_every_kind_has_a_rule() -> None:
    for kind in ALL_KINDS:
        if kind.combine is Combine.SAME_FACT:
            assert kind.name in FACT_KEYS
    assert set(BUILDERS) | {"observations"} == set(FACT_KEYS)


@pytest.mark.parametrize("kind", BUILDERS)
def test_the_same_fact_from_two_sources_is_one_record_with_both(kind: str) -> None:
    build = BUILDERS[kind]
    merged = dedupe([build("hospital", "h1"), build("clinic", "c1")], FACT_KEYS[kind])
    assert len(merged) == 1
    assert [s.source_id for s in merged[0].sources] == ["hospital", "clinic"]


@pytest.mark.parametrize("kind", BUILDERS)
def test_another_fact_stays_apart(kind: str) -> None:
    build = BUILDERS[kind]
    records = [build("hospital", "h1"), build("clinic", "c1", **OTHER_FACT[kind])]
    assert len(dedupe(records, FACT_KEYS[kind])) == 2


@pytest.mark.parametrize("kind", BUILDERS)
def test_a_record_without_what_the_rule_compares_is_never_merged(kind: str) -> None:
    build = BUILDERS[kind]
    records = [build("hospital", "h1", **UNKEYED[kind]), build("clinic", "c1", **UNKEYED[kind])]
    assert len(dedupe(records, FACT_KEYS[kind])) == 2


@pytest.mark.parametrize("kind", BUILDERS)
def test_two_records_of_one_source_are_never_one_fact(kind: str) -> None:
    build = BUILDERS[kind]
    records = [build("hospital", "h1"), build("hospital", "h2"), build("clinic", "c1")]
    merged = dedupe(records, FACT_KEYS[kind])
    assert [[s.local_id for s in r.sources] for r in merged] == [["h1", "c1"], ["h2"]]


def test_a_condition_onset_compares_by_day_and_falls_back_to_the_recorded_date() -> None:
    key = FACT_KEYS["conditions"]
    same_day = condition("clinic", "c1", onset="1985-06-01")
    recorded = condition("clinic", "c2", onset=None, recorded_date="1985-06-01T23:00:00Z")
    assert key(condition("hospital", "h1")) == key(same_day) == key(recorded)


def test_a_merged_allergy_keeps_every_reaction_once() -> None:
    (merged,) = dedupe(
        [
            allergy("hospital", "h1"),
            allergy("clinic", "c1", reactions=(CodeableConcept("Hives"), CodeableConcept("Rash"))),
        ],
        FACT_KEYS["allergies"],
    )
    assert [r.text for r in merged.reactions] == ["Hives", "Rash"]


def test_a_label_on_either_sources_record_stays_on_the_merged_one() -> None:
    labelled = condition("clinic", "c1", meta=RecordMeta(security=(RESTRICTED,)))
    (merged,) = dedupe([condition("hospital", "h1"), labelled], FACT_KEYS["conditions"])
    assert merged.meta.security == (RESTRICTED,)
    assert merged.onset == "1985-06-01T10:00:00Z"  # the priority source's record otherwise


def test_blood_pressure_panels_compare_by_their_components() -> None:
    def panel(source: str, systolic: float) -> Any:
        return obs(
            source,
            f"{source}-bp",
            code=CodeableConcept("BP", (Coding(LOINC, "85354-9"),)),
            value_quantity=None,
            components=(
                ObservationComponent(
                    CodeableConcept("Sys", (Coding(LOINC, "8480-6"),)),
                    Quantity(systolic, "mm[Hg]"),
                    None,
                ),
                ObservationComponent(
                    CodeableConcept("Dia", (Coding(LOINC, "8462-4"),)),
                    Quantity(80.0, "mm[Hg]"),
                    None,
                ),
            ),
        )

    key = FACT_KEYS["observations"]
    assert len(dedupe([panel("hospital", 120.0), panel("clinic", 120.0)], key)) == 1
    assert len(dedupe([panel("hospital", 120.0), panel("clinic", 121.0)], key)) == 2


def test_two_orders_of_one_drug_on_one_day_from_one_source_stay_two() -> None:
    def order(source: str, local: str) -> Medication:
        return Medication(
            sources=link(source, local, "MedicationRequest"),
            meta=RecordMeta(),
            kind=MedicationKind.ORDER,
            medication=CodeableConcept("Metformin", (Coding(RXNORM, "860975"),)),
            status="active",
            intent="order",
            authored_on="2025-01-02",
            effective=None,
            dosage=(),
            requester=None,
        )

    merged = merge_medications(
        [order("hospital", "m1"), order("hospital", "m2"), order("clinic", "m3")], []
    )
    assert sorted(len(m.sources) for m in merged) == [1, 2]


def test_merged_false_shows_every_sources_record() -> None:
    from app.domain.records import CONDITIONS

    records = [[condition("hospital", "h1")], [condition("clinic", "c1")]]
    allowed, query = frozenset({"Condition"}), RecordQuery("p1")
    assert len(combine(CONDITIONS, records, [], allowed, query, merged=True)) == 1
    assert len(combine(CONDITIONS, records, [], allowed, query, merged=False)) == 2
