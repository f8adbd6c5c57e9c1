"""The demo lab feed (`app.demo.lab_feed`): valid ORU^R01 v2.5.1 messages for every demo person,
deterministic, with results identical to the hospital's FHIR lab Observations, lab-only results
and one correction per person, linkable to the FHIR patients by SSN."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from datetime import datetime

import pytest

from app.demo.generator import ANCHOR, DemoPerson, DemoPopulation, generate_population
from app.demo.lab_feed import lab_messages
from app.domain.common import Identifier
from app.domain.observations import Observation
from app.sources.fhir import resources as fhir
from app.sources.hl7v2.mapping import LabMessage, LabResult, parse_message

SRC = "citylab"
US_SSN = "http://hl7.org/fhir/sid/us-ssn"
LAB_OID = "urn:oid:2.16.840.1.113883.3.1"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


@pytest.fixture(scope="module")
def population() -> DemoPopulation:
    return generate_population()


@pytest.fixture(scope="module")
def raw(population: DemoPopulation) -> list[str]:
    return lab_messages(population, source_id=SRC)


@pytest.fixture(scope="module")
def parsed(raw: list[str]) -> list[LabMessage]:
    return [parse_message(m, SRC) for m in raw]


def by_person(population: DemoPopulation, parsed: list[LabMessage]) -> dict[str, list[LabMessage]]:
    people = {p.ssn: p.key for p in population.people}
    out: dict[str, list[LabMessage]] = defaultdict(list)
    for msg in parsed:
        ssn = next(i.value for i in msg.patient.identifiers if i.system == US_SSN)
        out[people[ssn]].append(msg)
    return out


def hospital_labs(population: DemoPopulation, person: DemoPerson) -> list[Observation]:
    ref = f"Patient/{person.local_ids['hospital']}"
    return [
        fhir.observation("hospital", r)
        for r in population.upstreams["hospital"]
        if r["resourceType"] == "Observation"
        and r["subject"]["reference"] == ref
        and "laboratory" in fhir.observation("hospital", r).category
    ]


def instant(value: str | None) -> datetime:
    assert value is not None
    return datetime.fromisoformat(value)


def same_fact(lab: Observation, hospital: Observation) -> bool:
    """Same LOINC code, effective instant (to the second), value and UCUM unit."""
    lab_q, fhir_q = lab.value_quantity, hospital.value_quantity
    return (
        lab_q is not None
        and fhir_q is not None
        and {(c.system, c.code) for c in lab.code.coding}
        & {(c.system, c.code) for c in hospital.code.coding}
        != set()
        and instant(lab.effective) == instant(hospital.effective)
        and (lab_q.value, lab_q.unit, lab_q.system, lab_q.code)
        == (fhir_q.value, fhir_q.unit, fhir_q.system, fhir_q.code)
    )


def results(messages: list[LabMessage]) -> list[LabResult]:
    return [r for m in messages for rep in m.reports for r in rep.results]


def test_messages_are_deterministic_v251_cr_separated_and_uniquely_numbered(
    population: DemoPopulation, raw: list[str]
) -> None:
    assert raw == lab_messages(generate_population(), source_id=SRC)
    assert len(raw) >= 3 * len(population.people)
    for message in raw:
        assert "\n" not in message
        assert message.endswith("\r")
        msh = message.split("\r", 1)[0].split("|")
        assert msh[8] == "ORU^R01^ORU_R01"
        assert msh[11] == "2.5.1"
    control_ids = [m.split("\r", 1)[0].split("|")[9] for m in raw]
    assert len(set(control_ids)) == len(raw)
    assert all(len(c) <= 20 for c in control_ids)
    sent = [m.split("\r", 1)[0].split("|")[6] for m in raw]
    assert sent == sorted(sent)  # in the order the lab sends them
    assert all(instant(f"{s[:8]}T{s[8:14]}+00:00") < ANCHOR for s in sent)


def test_every_message_is_accepted_and_nothing_is_skipped(parsed: list[LabMessage]) -> None:
    assert all(msg.skipped == 0 and msg.reports for msg in parsed)
    assert all(r.observation.value_quantity or r.observation.value_string for r in results(parsed))


def test_the_lab_patient_carries_the_mrn_and_the_ssn_and_matches_the_person(
    population: DemoPopulation, parsed: list[LabMessage]
) -> None:
    grouped = by_person(population, parsed)
    assert set(grouped) == {p.key for p in population.people}
    mrns = set()
    for person in population.people:
        messages = grouped[person.key]
        patient = messages[0].patient
        assert {m.patient for m in messages} == {patient}  # one stable patient record
        ssn = Identifier(US_SSN, person.ssn, "SS")
        (mrn,) = [i for i in patient.identifiers if i.system == LAB_OID]
        assert patient.identifiers == (mrn, ssn)
        assert mrn.type_text == "MR"
        mrns.add(mrn.value)
        assert patient.name is not None
        assert (patient.name.family, patient.name.given) == (person.family, person.given)
        assert (patient.birth_date, patient.gender) == (person.birth_date, person.gender)
    assert len(mrns) == len(population.people)


def test_the_lab_patient_has_the_ehrs_address_phone_and_email(
    population: DemoPopulation, parsed: list[LabMessage]
) -> None:
    grouped = by_person(population, parsed)
    for person in population.people:
        lab = grouped[person.key][0].patient
        local = person.local_ids["hospital"]
        (resource,) = [
            r
            for r in population.upstreams["hospital"]
            if r["resourceType"] == "Patient" and r["id"] == local
        ]
        ehr = fhir.patient("hospital", resource)
        (lab_address,) = lab.addresses
        assert lab_address.use == "home"
        assert lab_address.country == "USA"  # ISO 3166 alpha-3 (HL7 table 0399); FHIR has US
        assert dataclasses.replace(lab_address, country="US") == ehr.addresses[0]
        assert lab.telecom == ehr.telecom


def test_every_person_has_a_result_identical_to_a_hospital_fhir_lab_observation(
    population: DemoPopulation, parsed: list[LabMessage]
) -> None:
    grouped = by_person(population, parsed)
    for person in population.people:
        hospital = hospital_labs(population, person)
        assert hospital, person.key  # the default population gives everyone hospital labs
        lab = [r.observation for r in results(grouped[person.key])]
        identical = [o for o in lab if any(same_fact(o, h) for h in hospital)]
        assert identical, person.key
        for obs in identical:
            match = next(h for h in hospital if same_fact(obs, h))
            assert obs.issued is not None
            assert match.issued is not None
            assert instant(obs.issued) == instant(match.issued)
            assert obs.interpretation == match.interpretation
            assert obs.status == match.status == "final"
            assert obs.code.coding[0].system == LOINC
            assert obs.value_quantity is not None
            assert obs.value_quantity.system == UCUM


def test_lab_only_results_exist_with_every_value_kind(
    population: DemoPopulation, parsed: list[LabMessage]
) -> None:
    grouped = by_person(population, parsed)
    for person in population.people:
        hospital_codes = {c.code for h in hospital_labs(population, person) for c in h.code.coding}
        lab = [r.observation for r in results(grouped[person.key])]
        only_lab = [o for o in lab if o.code.coding[0].code not in hospital_codes]
        assert len(only_lab) >= 5
        assert any(o.value_concept is not None for o in only_lab)
        assert any(o.value_string == "Negative" for o in only_lab)
        assert any(o.code.coding[0].code == "98979-8" and o.value_quantity for o in only_lab)
        assert any(o.notes for o in only_lab)
    conclusions = {rep.report.conclusion for m in parsed for rep in m.reports}
    assert "Fasting specimen, drawn at 08:00 & centrifuged within 30 min." in conclusions


def test_every_person_has_one_correction_under_the_same_key(
    population: DemoPopulation, parsed: list[LabMessage]
) -> None:
    grouped = by_person(population, parsed)
    for person in population.people:
        versions: dict[str, list[LabResult]] = defaultdict(list)
        for result in results(grouped[person.key]):  # messages are in sending order
            versions[result.key].append(result)
        corrected = {k: v for k, v in versions.items() if any(r.status == "C" for r in v)}
        assert len(corrected) == 1, person.key
        ((key, (final, correction)),) = corrected.items()
        assert (final.status, correction.status) == ("F", "C")
        assert final.observation.id == correction.observation.id
        assert correction.observation.status == "corrected"
        assert final.observation.value_quantity != correction.observation.value_quantity
        assert correction.observation.notes
        assert key.endswith("/2823-3/")
    reports = [rep for m in parsed for rep in m.reports if rep.report.status == "corrected"]
    assert len(reports) == len(population.people)


def test_other_populations_and_source_ids_work(population: DemoPopulation) -> None:
    small = generate_population(seed=7, patients=3)
    messages = lab_messages(small, source_id="other-lab")
    assert all(m.split("\r", 1)[0].split("|")[9].startswith("OTHERLAB") for m in messages)
    assert len({parse_message(m, "other-lab").patient.link for m in messages}) == 3
    assert lab_messages(small, source_id="other-lab") == messages
    assert lab_messages(small) != lab_messages(population)
