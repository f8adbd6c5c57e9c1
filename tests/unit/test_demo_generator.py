"""The demo's synthetic population: deterministic, linked across upstreams, overlapping."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

from app.auth.tokens import IDENTIFIER_TOKEN
from app.demo import DEMO_CLINICIAN, NPI_SYSTEM, clinician_npi, practitioner_identifier
from app.demo import facts as demo_facts
from app.demo import generator as demo_generator
from app.demo.catalog import CLINICIANS
from app.demo.contacts import contact_of
from app.demo.generator import (
    MRN_SYSTEMS,
    UPSTREAMS,
    DemoPerson,
    DemoPopulation,
    generate_population,
)
from app.domain.common import Identifier
from app.domain.patients import SSN_SYSTEM
from app.sources.fhir import resources as mappers

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
                if reference.startswith("Practitioner?identifier="):
                    continue  # conditional, by NPI: the demo serves no Practitioners
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


# ---- contact details, clinicians' NPIs, notes -----------------------------------------------


def test_every_person_has_the_same_address_and_telecom_in_both_upstreams(
    population: DemoPopulation,
) -> None:
    contacts = set()
    for person in population.people:
        hospital, clinic = (_patient(population, u, person) for u in UPSTREAMS)
        assert hospital["address"] == clinic["address"]
        assert hospital["telecom"] == clinic["telecom"]
        (address,) = hospital["address"]
        assert re.fullmatch(r"\d+ [A-Z][a-z]+ [A-Z][a-z]+", address["line"][0])
        assert all(re.fullmatch(r"Apt \d+[A-D]", unit) for unit in address["line"][1:])
        assert len(address["line"]) <= 2
        assert address["city"]
        assert address["state"] == "OR"
        assert re.fullmatch(r"97\d{3}", address["postalCode"])
        assert (address["use"], address["country"]) == ("home", "US")
        phone, email = hospital["telecom"]
        assert (phone["system"], phone["use"]) == ("phone", "home")
        assert re.fullmatch(r"\(541\) 555-01\d{2}", phone["value"])  # reserved for fiction
        assert (email["system"], email["use"]) == ("email", "home")
        assert re.fullmatch(r"[a-z]+\.[a-z]+\d+@example\.org", email["value"])
        assert email["value"].startswith(f"{person.given[0]}.{person.family}".lower())
        mapped = mappers.patient("hospital", hospital)
        assert mapped.addresses[0].postal_code == address["postalCode"]
        assert [t.value for t in mapped.telecom] == [phone["value"], email["value"]]
        contacts.add(contact_of(person))
    assert len(contacts) == len(population.people)
    assert any(c.unit for c in contacts)
    assert any(not c.unit for c in contacts)
    assert len({c.city for c in contacts}) > 1


def test_contact_details_are_stable_and_follow_the_person() -> None:
    first, again = generate_population(7, 3), generate_population(7, 3)
    assert [contact_of(p) for p in first.people] == [contact_of(p) for p in again.people]
    other = generate_population(8, 3)
    assert [contact_of(p) for p in first.people] != [contact_of(p) for p in other.people]


def npi_is_valid(npi: str) -> bool:
    """The NPI check (CMS): Luhn over the card-issuer prefix 80840 and all ten digits."""
    digits = [int(c) for c in "80840" + npi]
    doubled = [d * 2 - 9 if d * 2 > 9 else d * 2 for d in digits[-2::-2]]
    return len(npi) == 10 and (sum(digits[-1::-2]) + sum(doubled)) % 10 == 0


def test_clinician_npis_are_stable_distinct_clearly_fake_and_check_digit_valid() -> None:
    npis = [clinician_npi(name) for name in CLINICIANS]
    assert len(set(npis)) == len(CLINICIANS)
    for npi in npis:
        assert re.fullmatch(r"999\d{7}", npi)  # real NPIs start with 1 or 2
        assert npi_is_valid(npi)
        assert not npi_is_valid(npi[:9] + str((int(npi[9]) + 1) % 10))
    assert npi_is_valid("1234567893")  # CMS's example NPI
    assert clinician_npi("Dr. Ada Quill") == "9998984485"  # tokens and tests may rely on it
    assert DEMO_CLINICIAN in CLINICIANS
    assert practitioner_identifier(DEMO_CLINICIAN) == f"{NPI_SYSTEM}|{npis[0]}"
    assert IDENTIFIER_TOKEN.fullmatch(practitioner_identifier(DEMO_CLINICIAN))
    assert NPI_SYSTEM == "http://hl7.org/fhir/sid/us-npi"


def test_encounter_participants_name_clinicians_by_npi(population: DemoPopulation) -> None:
    person_of = {
        f"Patient/{local}": person.key
        for person in population.people
        for local in person.local_ids.values()
    }
    with_demo_clinician = set()
    for upstream, resources in population.upstreams.items():
        for visit in (r for r in resources if r["resourceType"] == "Encounter"):
            (participant,) = visit["participant"]
            name = participant["individual"]["display"]
            assert name in CLINICIANS
            assert participant["individual"]["reference"] == (
                f"Practitioner?identifier={NPI_SYSTEM}|{clinician_npi(name)}"
            )
            record = mappers.encounter(upstream, visit)
            assert record.participants == (name,)
            assert record.participant_identifiers == (Identifier(NPI_SYSTEM, clinician_npi(name)),)
            if name == DEMO_CLINICIAN:
                with_demo_clinician.add(person_of[visit["subject"]["reference"]])
    # The signed-in clinician has met some people, not all (a care-team rule shows a difference).
    assert 0 < len(with_demo_clinician) < len(population.people)


def test_some_conditions_medication_requests_and_observations_have_a_note(
    population: DemoPopulation,
) -> None:
    for kind in ("Condition", "MedicationRequest", "Observation"):
        records = _all(population, kind)
        noted = [r for r in records if "note" in r]
        assert 0 < len(noted) < len(records), kind
        for record in noted:
            (note,) = record["note"]
            assert set(note) == {"text"}
            assert note["text"].endswith(".")
            assert mappers.MAPPERS[kind]("x", record).notes == (note["text"],)
    for kind in ("AllergyIntolerance", "Immunization", "Encounter", "MedicationStatement"):
        assert not any("note" in r for r in _all(population, kind)), kind


def _without_derived(population: DemoPopulation) -> str:
    """The population without what is derived by hashing (notes, contact details, NPIs, care
    teams)."""
    upstreams = json.loads(json.dumps({u: list(rs) for u, rs in population.upstreams.items()}))
    for name, resources in upstreams.items():
        upstreams[name] = resources = [r for r in resources if r["resourceType"] != "CareTeam"]
        for resource in resources:
            for key in ("note", "address", "telecom"):
                resource.pop(key, None)
            for participant in resource.get("participant", []):
                participant["individual"].pop("reference")
    return json.dumps(upstreams, sort_keys=True)


def test_notes_draw_nothing_from_the_seeded_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    with_notes = generate_population(11, 6)
    monkeypatch.setattr(demo_facts, "_note", lambda *_, **__: [])
    without = generate_population(11, 6)
    assert not any("note" in r for rs in without.upstreams.values() for r in rs)
    assert _without_derived(with_notes) == _without_derived(without)


def test_each_person_has_one_care_team_of_one_or_two_demo_clinicians(
    population: DemoPopulation,
) -> None:
    npis = {practitioner_identifier(name): name for name in CLINICIANS}
    upstreams_used = set()
    for person in population.people:
        teams = [
            (upstream, r)
            for upstream in UPSTREAMS
            for r in _clinical(population, upstream, person)
            if r["resourceType"] == "CareTeam"
        ]
        assert len(teams) == 1, person.key
        upstream, team = teams[0]
        upstreams_used.add(upstream)
        record = mappers.care_team(upstream, team)
        assert record.status == "active"
        assert 1 <= len(record.participants) <= 2
        members = [npis[f"{i.system}|{i.value}"] for i in record.participant_identifiers]
        assert members == list(record.participants)  # each member by NPI, named as display
    assert upstreams_used == set(UPSTREAMS)


def test_care_teams_draw_nothing_from_the_seeded_generator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with_teams = generate_population(11, 6)
    original = demo_facts.care_team_fact

    def elsewhere(key: str) -> tuple[str, demo_facts.Fact]:
        upstream, fact = original(key)
        return ("clinic" if upstream == "hospital" else "hospital"), fact

    monkeypatch.setattr(demo_generator, "care_team_fact", elsewhere)
    moved = generate_population(11, 6)
    assert _all(with_teams, "CareTeam") != _all(moved, "CareTeam")
    assert _without_derived(with_teams) == _without_derived(moved)
