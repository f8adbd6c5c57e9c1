"""The merge and de-duplication rules of resolvers/merge.py, one rule per test."""

from __future__ import annotations

import dataclasses
from typing import Any

from app.domain.common import CodeableConcept, Coding, Quantity, RecordMeta, SourceLink
from app.domain.medications import Medication, MedicationDispense, MedicationKind
from app.domain.observations import Observation
from app.domain.records import OBSERVATIONS
from resolvers.merge import (
    LOINC,
    NDC,
    RXNORM,
    dedupe,
    drug_keys,
    merge_medications,
    newest_first,
    observation_key,
    union_notes,
    unmerged_medications,
)


def dedupe_observations(records: list[Observation]) -> list[Observation]:
    return dedupe(records, observation_key)


GLUCOSE = CodeableConcept("Glucose", (Coding(LOINC, "2339-0", "Glucose"),))


def obs(source: str, local: str, **changes: Any) -> Observation:
    base = Observation(
        sources=(SourceLink(source, local, "Observation"),),
        meta=RecordMeta(),
        status="final",
        category=("laboratory",),
        code=GLUCOSE,
        effective="2025-03-01T08:00:00Z",
        issued=None,
        value_quantity=Quantity(105.0, "mg/dL"),
        value_concept=None,
        value_string=None,
        interpretation=(),
        reference_range=(),
        components=(),
    )
    return dataclasses.replace(base, **changes)


def test_same_fact_from_three_sources_appears_once_with_every_source() -> None:
    merged = dedupe_observations(
        [
            obs("hospital", "h1"),
            obs("clinic", "c1", effective="2025-03-01T03:00:00-05:00"),  # same instant, other zone
            obs(
                "citylab",
                "l1",
                value_quantity=Quantity(105.0000001, "MG/DL"),
                code=CodeableConcept("GLU", (Coding("urn:local", "G"), Coding(LOINC, "2339-0"))),
            ),
        ]
    )
    assert len(merged) == 1
    assert [s.source_id for s in merged[0].sources] == ["hospital", "clinic", "citylab"]
    assert merged[0].sources[0].local_id == "h1"  # the highest-priority source's record


def test_different_value_time_or_code_stay_apart() -> None:
    merged = dedupe_observations(
        [
            obs("hospital", "h1"),
            obs("clinic", "c1", value_quantity=Quantity(106.0, "mg/dL")),
            obs("clinic", "c2", value_quantity=Quantity(105.0, "mmol/L")),
            obs("clinic", "c3", effective="2025-03-01T08:00:01Z"),
            obs("clinic", "c4", code=CodeableConcept("HbA1c", (Coding(LOINC, "4548-4"),))),
        ]
    )
    assert len(merged) == 5


def test_records_missing_code_time_or_value_are_never_merged() -> None:
    records = [
        obs("hospital", "h1", effective=None),
        obs("clinic", "c1", effective=None),
        obs("hospital", "h2", value_quantity=None),
        obs("clinic", "c2", value_quantity=None),
        obs("hospital", "h3", code=CodeableConcept("free text")),
        obs("clinic", "c3", code=CodeableConcept("free text")),
    ]
    assert len(dedupe_observations(records)) == 6


def test_text_and_coded_values_compare_normalized() -> None:
    text = [
        obs("a", "1", value_quantity=None, value_string="Negative  "),
        obs("b", "2", value_quantity=None, value_string="negative"),
    ]
    concept = CodeableConcept("Pos", (Coding("http://snomed.info/sct", "10828004"),))
    coded = [
        obs("a", "3", value_quantity=None, value_concept=concept),
        obs("b", "4", value_quantity=None, value_concept=dataclasses.replace(concept, text="+")),
    ]
    assert len(dedupe_observations(text)) == 1
    assert len(dedupe_observations(coded)) == 1


METFORMIN = CodeableConcept(
    "Metformin hydrochloride 500 MG Oral Tablet", (Coding(RXNORM, "860975"),)
)


def med(
    source: str,
    local: str,
    *,
    kind: MedicationKind = MedicationKind.ORDER,
    drug: CodeableConcept = METFORMIN,
    authored: str | None = "2024-01-10",
) -> Medication:
    return Medication(
        sources=(SourceLink(source, local, "MedicationRequest"),),
        meta=RecordMeta(),
        kind=kind,
        medication=drug,
        status="active",
        intent="order",
        authored_on=authored,
        effective=None,
        dosage=(),
        requester=None,
    )


def fill(local: str, *, drug: CodeableConcept, written: str, filled: str) -> MedicationDispense:
    return MedicationDispense(
        sources=(SourceLink("pharmacy", local, "MedicationDispense"),),
        meta=RecordMeta(),
        medication=drug,
        quantity=Quantity(60, "tablet"),
        days_supply=30,
        written_date=written,
        last_fill_date=filled,
        pharmacy="Main St Pharmacy",
        pharmacy_id="1234567",
        prescriber="Dr A",
        prescriber_npi=None,
        sig="1 tab twice daily",
    )


METFORMIN_FILL = CodeableConcept(
    "METFORMIN HCL 500 MG TABLET", (Coding(NDC, "00093-1048-01"), Coding(RXNORM, "860975"))
)


def test_the_same_order_from_two_ehrs_is_one_entry() -> None:
    merged = merge_medications([med("hospital", "h1"), med("clinic", "c1")], [])
    assert len(merged) == 1
    assert [s.source_id for s in merged[0].sources] == ["hospital", "clinic"]


def test_orders_on_different_days_or_of_other_kinds_stay_apart() -> None:
    merged = merge_medications(
        [
            med("hospital", "h1"),
            med("hospital", "h2", authored="2025-06-01"),
            med("clinic", "c1", kind=MedicationKind.STATEMENT),
        ],
        [],
    )
    assert len(merged) == 3


def test_fills_attach_to_the_latest_order_written_before_them() -> None:
    merged = merge_medications(
        [
            med("hospital", "old", authored="2023-01-05"),
            med("hospital", "new", authored="2024-01-10"),
        ],
        [
            fill("f1", drug=METFORMIN_FILL, written="2024-01-10", filled="2024-01-11"),
            fill("f2", drug=METFORMIN_FILL, written="2024-01-10", filled="2024-02-10"),
            fill("f0", drug=METFORMIN_FILL, written="2023-01-05", filled="2023-01-06"),
        ],
    )
    by_id = {m.sources[0].local_id: m for m in merged}
    assert [f.sources[0].local_id for f in by_id["new"].fills] == ["f2", "f1"]  # newest first
    assert [f.sources[0].local_id for f in by_id["old"].fills] == ["f0"]


def test_drugs_match_by_normalized_name_without_codes() -> None:
    plain = CodeableConcept("Lisinopril 10 MG Oral Tablet")
    shouting = CodeableConcept("LISINOPRIL 10 mg, oral tablet")
    assert drug_keys(plain) & drug_keys(shouting)
    merged = merge_medications(
        [med("hospital", "h1", drug=plain)],
        [fill("f1", drug=shouting, written="2024-02-01", filled="2024-02-02")],
    )
    assert len(merged) == 1
    assert len(merged[0].fills) == 1


def test_pharmacy_only_drugs_become_dispense_entries() -> None:
    atorvastatin = CodeableConcept("Atorvastatin 20 MG", (Coding(NDC, "0071-0155-23"),))
    merged = merge_medications(
        [med("hospital", "h1")],
        [
            fill("f1", drug=atorvastatin, written="2024-03-01", filled="2024-03-02"),
            fill("f2", drug=atorvastatin, written="2024-03-01", filled="2024-04-02"),
        ],
    )
    dispense = [m for m in merged if m.kind is MedicationKind.DISPENSE]
    assert len(dispense) == 1
    assert [f.sources[0].local_id for f in dispense[0].fills] == ["f2", "f1"]
    assert {s.local_id for s in dispense[0].sources} == {"f1", "f2"}
    assert dispense[0].effective == "2024-04-02"


def test_unmerged_view_keeps_everything_apart() -> None:
    meds = [med("hospital", "h1"), med("clinic", "c1")]
    fills = [fill("f1", drug=METFORMIN_FILL, written="2024-01-10", filled="2024-01-11")]
    view = unmerged_medications(meds, fills)
    assert len(view) == 3
    assert sum(m.kind is MedicationKind.DISPENSE for m in view) == 1
    assert all(not m.fills for m in view if m.kind is not MedicationKind.DISPENSE)


# ---- notes -----------------------------------------------------------------------------------


def test_merged_observation_notes_are_the_union_in_source_order() -> None:
    merged = dedupe_observations(
        [
            obs("hospital", "h1", notes=("Fasting specimen.", "Drawn at 08:00.")),
            obs("clinic", "c1", notes=("Drawn at 08:00.", "Repeat in 3 months.")),
            obs("citylab", "l1"),
            obs("metrolab", "l2", notes=("Fasting  specimen. ", "Hemolysed.")),  # spacing only
        ]
    )
    assert len(merged) == 1
    assert merged[0].notes == (
        "Fasting specimen.",
        "Drawn at 08:00.",
        "Repeat in 3 months.",
        "Hemolysed.",
    )
    assert [s.local_id for s in merged[0].sources] == ["h1", "c1", "l1", "l2"]


def test_notes_of_records_that_stay_apart_are_their_own() -> None:
    apart = dedupe_observations(
        [
            obs("hospital", "h1", notes=("A",)),
            obs("clinic", "c1", value_quantity=Quantity(106.0, "mg/dL"), notes=("B",)),
        ]
    )
    assert [o.notes for o in apart] == [("A",), ("B",)]


def test_merged_medication_notes_are_the_union_in_source_order() -> None:
    merged = merge_medications(
        [
            dataclasses.replace(med("hospital", "h1"), notes=("Take with food.",)),
            dataclasses.replace(med("clinic", "c1"), notes=("Review dose.", "Take with food.")),
            med("other", "o1", authored="2025-06-01"),  # another day: its own entry
        ],
        [fill("f1", drug=METFORMIN_FILL, written="2024-01-10", filled="2024-01-11")],
    )
    by_id = {m.sources[0].local_id: m for m in merged}
    assert by_id["h1"].notes == ("Take with food.", "Review dose.")
    assert [s.source_id for s in by_id["h1"].sources] == ["hospital", "clinic"]
    assert len(by_id["h1"].fills) == 1
    assert by_id["o1"].notes == ()


def test_union_notes_keeps_the_first_wording_and_order() -> None:
    assert union_notes(("a  b", "c"), (), ("a b", "d", "c")) == ("a  b", "c", "d")
    assert union_notes() == ()


def test_instants_compare_in_utc_to_the_second_before_and_after_1970() -> None:
    same = [
        ("1969-12-31T23:59:59Z", "1969-12-31T23:59:59.999999Z"),
        ("1969-12-31T18:59:59.5-05:00", "1969-12-31T23:59:59Z"),
        ("2025-03-01T08:00:00.250+00:00", "2025-03-01T09:00:00+01:00"),
        ("2025-03-01", "2025-03-01T00:00:00Z"),  # a date alone is its midnight UTC
    ]
    apart = [
        ("1969-12-31T23:59:59.999999Z", "1970-01-01T00:00:00Z"),
        ("2025-03-01T08:00:00Z", "2025-03-01T08:00:01Z"),
    ]
    for first, second in same:
        assert (
            len(
                dedupe_observations(
                    [obs("a", "1", effective=first), obs("b", "2", effective=second)]
                )
            )
            == 1
        ), (first, second)
    for first, second in apart:
        assert (
            len(
                dedupe_observations(
                    [obs("a", "1", effective=first), obs("b", "2", effective=second)]
                )
            )
            == 2
        ), (first, second)


def test_newest_first_puts_undated_records_last_and_keeps_ties_in_order() -> None:
    records = [
        obs("a", "undated-1", effective=None),
        obs("a", "old", effective="2020-01-01"),
        obs("a", "tie-1", effective="2024-05-01T08:00:00Z"),
        obs("a", "undated-2", effective=None),
        obs("b", "tie-2", effective="2024-05-01T08:00:00Z"),
        obs("b", "issued-only", effective=None, issued="2022-01-01T00:00:00Z"),
    ]
    ordered = [r.sources[0].local_id for r in newest_first(OBSERVATIONS, records)]
    assert ordered == ["tie-1", "tie-2", "issued-only", "old", "undated-1", "undated-2"]
