"""The demo's synthetic population: deterministic, linked across upstreams, overlapping."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

from app.demo.generator import (
    MRN_SYSTEMS,
    SSN_SYSTEM,
    UPSTREAMS,
    DemoPerson,
    DemoPopulation,
    generate_population,
)

Resource = dict[str, Any]
ANCHOR = "2026-01-01"


@pytest.fixture(scope="module")
def population() -> DemoPopulation:
    return generate_population()


def _as_json(population: DemoPopulation) -> str:
    return json.dumps(
        {
            "people": [vars(p) | {"local_ids": dict(p.local_ids)} for p in population.people],
            "upstreams": {u: list(rs) for u, rs in population.upstreams.items()},
        },
        sort_keys=True,
    )


def _patient(population: DemoPopulation, upstream: str, person: DemoPerson) -> Resource:
    local = person.local_ids[upstream]
    return next(
        r
        for r in population.upstreams[upstream]
        if r["resourceType"] == "Patient" and r["id"] == local
    )


def _subject(resource: Resource) -> str:
    return str((resource.get("subject") or resource["patient"])["reference"])


def _clinical(population: DemoPopulation, upstream: str, person: DemoPerson) -> list[Resource]:
    ref = f"Patient/{person.local_ids[upstream]}"
    return [
        r
        for r in population.upstreams[upstream]
        if r["resourceType"] != "Patient" and _subject(r) == ref
    ]


def _observation_fact(resource: Resource) -> str:
    """What makes two observations the same fact: code, time and value (not id or meta)."""
    fact = {k: resource.get(k) for k in ("code", "effectiveDateTime", "valueQuantity", "component")}
    return json.dumps(fact, sort_keys=True)


def _references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            yield node["reference"]
        for value in node.values():
            yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def test_same_seed_gives_identical_output() -> None:
    assert _as_json(generate_population(7)) == _as_json(generate_population(7))
    assert _as_json(generate_population(7)) != _as_json(generate_population(8))


def test_population_size_and_person_fields(population: DemoPopulation) -> None:
    people = population.people
    assert len(people) == 24
    assert len(generate_population(patients=3).people) == 3
    assert [p.key for p in people] == [f"demo-{n:03d}" for n in range(1, 25)]
    assert len({p.ssn for p in people}) == len(people)
    for person in people:
        assert re.fullmatch(r"999-\d{2}-\d{4}", person.ssn)
        assert person.gender in ("female", "male")
        assert "1930-01-01" < person.birth_date < "2008-01-01"
        assert person.family
        assert person.given
        assert set(person.local_ids) == set(UPSTREAMS)


def test_zero_patients_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        generate_population(patients=0)


def test_every_person_is_in_both_upstreams_under_different_ids(
    population: DemoPopulation,
) -> None:
    for person in population.people:
        hospital, clinic = (_patient(population, u, person) for u in UPSTREAMS)
        assert hospital["id"] != clinic["id"]
        assert re.fullmatch(r"h-\d{4}", hospital["id"])
        assert re.fullmatch(r"c[0-9a-f]{11}", clinic["id"])
        for upstream, patient in zip(UPSTREAMS, (hospital, clinic), strict=True):
            by_system = {i["system"]: i["value"] for i in patient["identifier"]}
            assert by_system[SSN_SYSTEM] == person.ssn
            assert MRN_SYSTEMS[upstream] in by_system
            assert patient["name"][0]["family"] == person.family
            assert tuple(patient["name"][0]["given"]) == person.given
            assert (patient["gender"], patient["birthDate"]) == (person.gender, person.birth_date)
            assert patient["meta"]["lastUpdated"] < ANCHOR


def test_mrns_are_upstream_specific(population: DemoPopulation) -> None:
    for upstream in UPSTREAMS:
        mrns = [
            i["value"]
            for r in population.upstreams[upstream]
            if r["resourceType"] == "Patient"
            for i in r["identifier"]
            if i["system"] == MRN_SYSTEMS[upstream]
        ]
        assert len(mrns) == len(set(mrns)) == len(population.people)
    assert MRN_SYSTEMS["hospital"] != MRN_SYSTEMS["clinic"]


def test_observations_overlap_and_differ(population: DemoPopulation) -> None:
    shared_anywhere = distinct_anywhere = False
    for person in population.people:
        facts = [
            {
                _observation_fact(r)
                for r in _clinical(population, u, person)
                if r["resourceType"] == "Observation"
            }
            for u in UPSTREAMS
        ]
        shared_anywhere |= bool(facts[0] & facts[1])
        distinct_anywhere |= bool(facts[0] ^ facts[1])
    assert shared_anywhere
    assert distinct_anywhere


def test_per_person_counts_vary_within_ranges(population: DemoPopulation) -> None:
    ranges = {
        "Observation": (6, 15),
        "Condition": (1, 4),
        "AllergyIntolerance": (0, 2),
        "Immunization": (1, 3),
        "Encounter": (1, 4),
        "Procedure": (0, 2),
        "DiagnosticReport": (0, 2),
        "Medication": (1, 4),
    }
    seen: dict[str, set[int]] = defaultdict(set)
    for person in population.people:
        for upstream in UPSTREAMS:
            counts = Counter(
                r["resourceType"].replace("Request", "").replace("Statement", "")
                for r in _clinical(population, upstream, person)
            )
            for kind, (lo, hi) in ranges.items():
                assert lo <= counts[kind] <= hi, (person.key, upstream, kind)
                seen[kind].add(counts[kind])
    assert all(len(values) > 1 for values in seen.values())


def test_resource_ids_are_unique_per_upstream(population: DemoPopulation) -> None:
    for resources in population.upstreams.values():
        keys = [(r["resourceType"], r["id"]) for r in resources]
        assert len(keys) == len(set(keys))


def test_every_reference_resolves_in_the_same_upstream(population: DemoPopulation) -> None:
    for resources in population.upstreams.values():
        known = {f"{r['resourceType']}/{r['id']}" for r in resources}
        for resource in resources:
            contained = {f"#{c['id']}" for c in resource.get("contained", [])}
            for reference in _references(resource):
                assert reference in known or reference in contained, reference
            if resource["resourceType"] != "Patient":
                assert _subject(resource).startswith("Patient/")
                assert _subject(resource) in known


def test_report_results_belong_to_the_reports_patient(population: DemoPopulation) -> None:
    for resources in population.upstreams.values():
        by_ref = {f"{r['resourceType']}/{r['id']}": r for r in resources}
        for report in (r for r in resources if r["resourceType"] == "DiagnosticReport"):
            assert report["result"]
            for result in report["result"]:
                observation = by_ref[result["reference"]]
                assert _subject(observation) == _subject(report)
                assert observation["effectiveDateTime"] == report["effectiveDateTime"]


def _all(population: DemoPopulation, kind: str) -> list[Resource]:
    return [r for rs in population.upstreams.values() for r in rs if r["resourceType"] == kind]


def test_observations_have_r4_shape_and_real_codes(population: DemoPopulation) -> None:
    codes: set[str] = set()
    for obs in _all(population, "Observation"):
        assert obs["status"] == "final"
        category = obs["category"][0]["coding"][0]
        assert category["system"] == "http://terminology.hl7.org/CodeSystem/observation-category"
        assert category["code"] in ("vital-signs", "laboratory")
        coding = obs["code"]["coding"][0]
        assert coding["system"] == "http://loinc.org"
        codes.add(coding["code"])
        assert obs["effectiveDateTime"] < ANCHOR
        quantities = (
            [obs["valueQuantity"]]
            if "valueQuantity" in obs
            else [c["valueQuantity"] for c in obs["component"]]
        )
        assert all(q["system"] == "http://unitsofmeasure.org" for q in quantities)
        if category["code"] == "laboratory":
            assert obs["referenceRange"]
            assert obs["interpretation"]
    assert codes == {
        "8867-4",
        "85354-6",
        "29463-7",
        "8302-2",
        "2339-0",
        "4548-4",
        "2093-3",
        "718-7",
    }
    panel = next(
        o for o in _all(population, "Observation") if o["code"]["coding"][0]["code"] == "85354-6"
    )
    assert {c["code"]["coding"][0]["code"] for c in panel["component"]} == {"8480-6", "8462-4"}


def test_medications_use_every_form(population: DemoPopulation) -> None:
    requests = _all(population, "MedicationRequest")
    statements = _all(population, "MedicationStatement")
    assert statements
    contained = [r for r in requests if "medicationReference" in r]
    assert contained
    for request in contained:
        assert request["medicationReference"]["reference"] == "#med1"
        assert request["contained"][0]["resourceType"] == "Medication"
    for request in requests:
        assert request["intent"] == "order"
        assert request["dosageInstruction"][0]["text"]
    concepts = [
        r["medicationCodeableConcept"]
        for r in requests + statements
        if "medicationCodeableConcept" in r
    ]
    systems = {c["coding"][0]["system"] for c in concepts}
    assert systems == {"http://www.nlm.nih.gov/research/umls/rxnorm"}


def test_other_kinds_have_their_key_elements(population: DemoPopulation) -> None:
    for condition in _all(population, "Condition"):
        assert condition["code"]["coding"][0]["system"] == "http://snomed.info/sct"
        assert condition["clinicalStatus"]["coding"]
        assert condition["verificationStatus"]["coding"]
        assert condition["onsetDateTime"] < ANCHOR
    for allergy in _all(population, "AllergyIntolerance"):
        assert allergy["criticality"] in ("low", "high")
        assert allergy["reaction"][0]["manifestation"][0]["coding"]
    for shot in _all(population, "Immunization"):
        assert shot["status"] == "completed"
        assert shot["vaccineCode"]["coding"][0]["system"] == "http://hl7.org/fhir/sid/cvx"
    for visit in _all(population, "Encounter"):
        assert visit["class"]["code"] in ("AMB", "EMER", "IMP")
        assert visit["period"]["start"] < visit["period"]["end"]
        assert visit["serviceProvider"]["display"]
        assert visit["participant"][0]["individual"]["display"]
    procedures = _all(population, "Procedure")
    assert any("performedPeriod" in p for p in procedures)
    assert any("performedDateTime" in p for p in procedures)
    for report in _all(population, "DiagnosticReport"):
        assert report["category"][0]["coding"][0]["code"] == "LAB"
        assert report["code"]["coding"][0]["system"] == "http://loinc.org"


def test_some_non_observation_records_are_shared_too(population: DemoPopulation) -> None:
    def key(r: Resource) -> str:
        return json.dumps(
            {k: v for k, v in r.items() if k not in ("id", "meta", "subject", "patient")},
            sort_keys=True,
        )

    for kind in ("Condition", "Immunization", "Encounter", "MedicationRequest"):
        sides = [
            {key(r) for r in population.upstreams[u] if r["resourceType"] == kind}
            for u in UPSTREAMS
        ]
        assert sides[0] & sides[1], kind
        assert sides[0] ^ sides[1], kind
