"""FHIR R4 -> domain mapping over the shared third-party FHIR data (`../shared/data/fhir`).

1. Every resource of a supported type in every file maps without raising, with provenance.
   Per-type minimum counts keep the test from passing on an empty or moved folder.
2. Spot values, each checked by hand against the JSON file named in the test.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from app.domain.common import (
    Address,
    CodeableConcept,
    Coding,
    ContactPoint,
    HumanName,
    Identifier,
    Quantity,
    RecordMeta,
    SourceLink,
    record_id,
)
from app.domain.medications import MedicationKind
from app.domain.observations import ObservationComponent, ReferenceRange
from app.domain.patients import SourcePatient
from app.sources.fhir import datatypes
from app.sources.fhir import resources as mappers
from tests.shared_data import Resource, iter_fhir_resources, require_shared_data

pytestmark = pytest.mark.shared_data

SRC = "shared-fhir"
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
US_SSN = "http://hl7.org/fhir/sid/us-ssn"
HTEST = Coding("http://terminology.hl7.org/CodeSystem/v3-ActReason", "HTEST", "test health data")

SYNTHEA_ABDUL = "synthea-smart/Abdul_Koepp_e925b0f3-8006-43f6-aa31-94bd215e55e7.json"
SYNTHEA_ANGELIC = "synthea-smart/Angelic_Mueller_29d755a6-32fa-482e-8fdd-081300209df8.json"
US_CORE = "us-core/examples"
MEDPLUM = "medplum-mock/medplum-mock.transaction.json"


@dataclass(frozen=True)
class Group:
    name: str
    pattern: str  # glob under fhir/
    files: int
    minimum: Mapping[str, int]  # mapped records per resource type, at least
    ids_from_full_url: bool = False  # POST entries without ids: take the id a server would give


GROUPS = (
    Group(
        "synthea-smart",
        "synthea-smart/*.json",
        30,
        {
            "Patient": 30,
            "Observation": 1982,
            "Condition": 127,
            "AllergyIntolerance": 23,
            "MedicationRequest": 74,
            "Immunization": 303,
            "Encounter": 385,
            "Procedure": 148,
            "DiagnosticReport": 104,
        },
    ),
    Group(
        "us-core-examples",
        f"{US_CORE}/*.json",
        230,
        {
            "Patient": 4,
            "Observation": 139,
            "Condition": 6,
            "AllergyIntolerance": 4,
            "MedicationRequest": 4,
            "Immunization": 1,
            "Encounter": 3,
            "Procedure": 2,
            "DiagnosticReport": 5,
            "CareTeam": 2,
        },
    ),
    Group(
        "us-core-transaction",
        "us-core/us-core-examples.transaction.json",
        1,
        {
            "Patient": 4,
            "Observation": 139,
            "Condition": 6,
            "AllergyIntolerance": 2,
            "MedicationRequest": 4,
            "Immunization": 1,
            "Encounter": 3,
            "Procedure": 2,
            "DiagnosticReport": 5,
            "CareTeam": 2,
        },
    ),
    Group(
        "carebundle",
        "carebundle/*.json",
        10,
        {
            "Patient": 10,
            "Observation": 340,
            "Condition": 18,
            "AllergyIntolerance": 3,
            "MedicationRequest": 27,
            "Encounter": 10,
            "DiagnosticReport": 50,
        },
        ids_from_full_url=True,
    ),
    Group(
        "medplum-mock",
        MEDPLUM,
        1,
        {
            "Patient": 5,
            "Observation": 8,
            "Encounter": 1,
            "DiagnosticReport": 1,
        },
    ),
)


@functools.cache
def _resources(pattern: str, ids_from_full_url: bool) -> tuple[tuple[str, Resource], ...]:
    """(file name, resource) for every resource in the files matching `pattern`."""
    fhir = require_shared_data() / "fhir"
    return tuple(
        (path.name, resource)
        for path in sorted(fhir.glob(pattern))
        for resource in iter_fhir_resources(path, ids_from_full_url=ids_from_full_url)
    )


def resources(pattern: str, *, ids_from_full_url: bool = False) -> tuple[tuple[str, Resource], ...]:
    found = _resources(pattern, ids_from_full_url)
    assert found, f"no FHIR resources under fhir/{pattern}"
    return found


def mapped(file: str, resource_type: str, local_id: str, *, ids_from_full_url: bool = False) -> Any:
    """The record mapped from the one resource of that type and id in `file`."""
    matches = [
        r
        for _, r in resources(file, ids_from_full_url=ids_from_full_url)
        if r.get("resourceType") == resource_type and r.get("id") == local_id
    ]
    assert len(matches) == 1, f"{len(matches)} {resource_type}/{local_id} in {file}"
    return mappers.MAPPERS[resource_type](SRC, matches[0])


def link_of(record: Any) -> SourceLink:
    return record.link if isinstance(record, SourcePatient) else record.sources[0]


# ---- 1. everything maps -------------------------------------------------------------------


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_every_supported_resource_maps_with_provenance(group: Group) -> None:
    fhir = require_shared_data() / "fhir"
    assert len(list(fhir.glob(group.pattern))) == group.files

    counts: Counter[str] = Counter()
    problems: list[str] = []
    for file, resource in resources(group.pattern, ids_from_full_url=group.ids_from_full_url):
        resource_type = resource.get("resourceType")
        if not isinstance(resource_type, str) or resource_type not in mappers.MAPPERS:
            continue
        where = f"{file}: {resource_type}/{resource.get('id')}"
        try:
            record = mappers.MAPPERS[resource_type](SRC, resource)
        except Exception as exc:  # report every failure, not just the first
            problems.append(f"{where}: {exc.__class__.__name__}: {exc}")
            continue
        source = link_of(record)
        if source != SourceLink(SRC, resource["id"], resource_type):
            problems.append(f"{where}: provenance {source}")
        if isinstance(record, SourcePatient):
            if not record_id(record.link):
                problems.append(f"{where}: empty record id")
        elif not (isinstance(record.id, str) and record.id):
            problems.append(f"{where}: empty record id")
        counts[resource_type] += 1

    assert not problems, "\n".join(problems)
    short = {t: f"{counts[t]} < {n}" for t, n in group.minimum.items() if counts[t] < n}
    assert not short, f"{group.name}: too few mapped {short}; mapped {dict(counts)}"


def test_carebundle_post_entries_without_id_are_rejected_as_mapping_errors() -> None:
    """carebundle's transaction entries are POSTs with no `id` (a server would assign one);
    mapped as stored they hit the `MappingError` contract, never another exception."""
    supported = [
        r for _, r in resources("carebundle/*.json") if r.get("resourceType") in mappers.MAPPERS
    ]
    assert len(supported) >= 458
    assert all("id" not in r for r in supported)
    for resource in supported:
        with pytest.raises(datatypes.MappingError):
            mappers.MAPPERS[resource["resourceType"]](SRC, resource)


def test_us_core_transaction_maps_like_the_example_files() -> None:
    examples = {
        (r["resourceType"], r["id"]): r
        for _, r in resources(f"{US_CORE}/*.json")
        if r.get("resourceType") in mappers.MAPPERS and "id" in r
    }
    transaction = [
        r
        for _, r in resources("us-core/us-core-examples.transaction.json")
        if r.get("resourceType") in mappers.MAPPERS
    ]
    assert len(transaction) == 168
    for resource in transaction:
        key = (resource["resourceType"], resource["id"])
        mapper = mappers.MAPPERS[key[0]]
        assert mapper(SRC, resource) == mapper(SRC, examples[key]), key


# ---- 2. spot values -----------------------------------------------------------------------


def test_synthea_patient_demographics_and_identifiers() -> None:
    patient = mapped(SYNTHEA_ABDUL, "Patient", "018f428e-34f6-4707-8009-5ad742f901e7")
    assert patient.name == HumanName("Koepp", ("Abdul",), "Abdul Koepp")
    assert (patient.birth_date, patient.gender) == ("1956-08-03", "male")
    assert Identifier(US_SSN, "999-22-1962", "Social Security Number") in patient.identifiers
    assert (
        Identifier(
            "http://hospital.smarthealthit.org",
            "e925b0f3-8006-43f6-aa31-94bd215e55e7",
            "Medical Record Number",
        )
        in patient.identifiers
    )
    assert len(patient.identifiers) == 5  # synthea, MRN, SSN, driver's licence, passport


def test_synthea_official_name_wins_over_maiden_name() -> None:
    patient = mapped(SYNTHEA_ANGELIC, "Patient", "2ec622d5-095b-44d4-9cb2-c0e7e451cd74")
    assert patient.name == HumanName("Mueller", ("Angelic",), "Angelic Mueller")


def test_synthea_observation_quantity() -> None:
    record = mapped(SYNTHEA_ABDUL, "Observation", "af5597a6-304d-4c8f-b596-60d17d445714")
    assert record.code.has_code(f"{LOINC}|8302-2")
    assert record.code.text == "Body Height"
    assert record.value_quantity == Quantity(176.35499866729558, "cm", UCUM, "cm")
    assert (record.effective, record.issued) == (
        "2011-10-14T23:37:54+00:00",
        "2011-10-14T23:37:54.530+00:00",
    )
    assert (record.status, record.category) == ("final", ("vital-signs",))
    assert record.meta == RecordMeta()  # synthea carries meta.tag only, not security labels


def test_us_core_observation_value_codeable_concept() -> None:
    record = mapped(
        f"{US_CORE}/observation-pregnancy-status.json", "Observation", "pregnancy-status"
    )
    assert record.code.has_code(f"{LOINC}|82810-3")
    assert record.value_concept is not None
    assert record.value_concept.has_code(f"{SNOMED}|77386006")
    assert (record.value_concept.text, record.value_string, record.value_quantity) == (
        "Pregnant",
        "Pregnant",
        None,
    )
    assert record.effective == "2022-08-24T10:39:52+00:00"
    assert record.category == ("social-history",)


def test_us_core_observation_value_boolean_and_string() -> None:
    sdoh = mapped(
        f"{US_CORE}/Observation-simple-observation-sdoh.json",
        "Observation",
        "simple-observation-sdoh",
    )
    assert (sdoh.value_string, sdoh.value_quantity, sdoh.value_concept) == ("true", None, None)
    assert sdoh.category == ("sdoh",)
    preference = mapped(
        f"{US_CORE}/Observation-care-experience-preference.json",
        "Observation",
        "care-experience-preference",
    )
    assert preference.value_string is not None
    assert preference.value_string.endswith("St. Martin in the Fields")


def test_us_core_blood_pressure_components() -> None:
    record = mapped(f"{US_CORE}/blood-pressure.json", "Observation", "blood-pressure")
    assert record.code.has_code(f"{LOINC}|85354-9")
    assert (record.value_quantity, record.value_string, record.effective) == (
        None,
        None,
        "1999-07-02",
    )
    mmhg = {"unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}
    assert record.components == (
        ObservationComponent(
            CodeableConcept(
                "Systolic blood pressure", (Coding(LOINC, "8480-6", "Systolic blood pressure"),)
            ),
            Quantity(109.0, **mmhg),
            None,
        ),
        ObservationComponent(
            CodeableConcept(
                "Diastolic blood pressure", (Coding(LOINC, "8462-4", "Diastolic blood pressure"),)
            ),
            Quantity(44.0, **mmhg),
            None,
        ),
    )


def test_us_core_effective_period_uses_its_start() -> None:
    record = mapped(
        f"{US_CORE}/Observation-average-blood-pressure.json",
        "Observation",
        "average-blood-pressure",
    )
    assert record.effective == "2023-08-03T01:06:52.480Z"
    assert record.components[0].code.has_code(f"{LOINC}|96608-5")
    assert record.components[0].value_quantity == Quantity(109.0, "mm[Hg]", UCUM, "mm[Hg]")


def test_us_core_medication_reference_to_contained_medication() -> None:
    record = mapped(
        f"{US_CORE}/medicationrequest-contained-oral-axid.json",
        "MedicationRequest",
        "medicationrequest-contained-oral-axid",
    )
    assert record.kind is MedicationKind.ORDER
    assert record.medication == CodeableConcept(
        "Nizatidine 15 MG/ML Oral Solution [Axid]",
        (Coding(RXNORM, "582620", "Nizatidine 15 MG/ML Oral Solution [Axid]"),),
    )
    assert (record.status, record.intent, record.authored_on) == ("active", "order", "2008-04-05")
    assert (record.dosage, record.requester) == (("10 mL bid",), "Ronald Bone, MD")


def test_us_core_medication_reference_elsewhere_keeps_its_display() -> None:
    # The referenced Medication is in the data set too, but references are never dereferenced.
    assert mappers.MAPPERS.get("Medication") is None
    assert any(r.get("id") == "uscore-med2" for _, r in resources(f"{US_CORE}/uscore-med2.json"))
    record = mapped(
        f"{US_CORE}/medicationrequest-referenced-oral-axid.json",
        "MedicationRequest",
        "medicationrequest-referenced-oral-axid",
    )
    assert record.medication == CodeableConcept("Nizatidine 15 MG/ML Oral Solution [Axid]")


def test_synthea_medication_request_codeable_concept() -> None:
    record = mapped(SYNTHEA_ABDUL, "MedicationRequest", "288b3dc6-1b86-4447-8826-8eb2de56b933")
    assert record.medication.has_code(f"{RXNORM}|310965")
    assert record.medication.text == "Ibuprofen 200 MG Oral Tablet"
    assert (record.status, record.intent, record.authored_on) == (
        "stopped",
        "order",
        "2017-03-21T23:37:54+00:00",
    )
    assert record.requester == "urn:uuid:6d705d81-8546-43b2-b336-31a282128f2d"
    assert record.dosage == ()  # only asNeededBoolean, no text


def test_immunization_cvx_codes() -> None:
    us_core = mapped(f"{US_CORE}/imm-1.json", "Immunization", "imm-1")
    assert us_core.vaccine.has_code(f"{CVX}|197")
    assert us_core.vaccine.text == "Influenza, high-dose, quadrivalent, PF"
    assert (us_core.status, us_core.occurrence) == ("completed", "2020-11-19T12:46:57-08:00")
    assert (us_core.primary_source, us_core.lot_number) == (False, "AAJN11K")

    synthea = mapped(SYNTHEA_ABDUL, "Immunization", "2c074792-6eab-473d-9574-c68436bfa56e")
    assert synthea.vaccine.has_code(f"{CVX}|140")
    assert (synthea.occurrence, synthea.primary_source) == ("2011-10-14T23:37:54+00:00", True)


def test_encounter_class_and_period() -> None:
    us_core = mapped(f"{US_CORE}/encounter-example-1.json", "Encounter", "example-1")
    assert (us_core.class_code, us_core.status) == ("AMB", "finished")
    assert (us_core.start, us_core.end) == (
        "2015-11-01T17:00:14-05:00",
        "2015-11-01T18:00:14-05:00",
    )
    assert [t.text for t in us_core.type] == ["Office Visit"]
    assert us_core.meta.last_updated == "2024-01-28T16:06:21-08:00"

    no_period = mapped(f"{US_CORE}/encounter-1036.json", "Encounter", "1036")
    assert (no_period.class_code, no_period.start, no_period.end) == ("IMP", None, None)

    synthea = mapped(SYNTHEA_ABDUL, "Encounter", "abbc5979-3aca-43fe-91a6-8065b7e4a90f")
    assert (synthea.class_code, synthea.start) == ("AMB", "1991-06-07T23:37:54+00:00")
    assert synthea.participants == ("urn:uuid:6d705d81-8546-43b2-b336-31a282128f2d",)
    # A urn:uuid reference to a Practitioner in the bundle identifies no one outside it.
    assert synthea.participant_identifiers == ()


def test_condition_status_onset_and_abatement() -> None:
    resolved = mapped(
        f"{US_CORE}/condition-duodenal-ulcer-resolved.json",
        "Condition",
        "condition-duodenal-ulcer-res",
    )
    assert (resolved.clinical_status, resolved.verification_status) == ("resolved", "confirmed")
    assert (resolved.onset, resolved.abatement) == ("2016-08-10", "2016-08-17")
    assert resolved.category == ("problem-list-item",)
    assert resolved.code.has_code(f"{SNOMED}|51868009")

    synthea = mapped(SYNTHEA_ABDUL, "Condition", "e5e50c51-acd9-4716-b4dc-4e245ca9f8c2")
    assert (synthea.clinical_status, synthea.onset, synthea.abatement) == (
        "active",
        "1991-06-07T23:37:54+00:00",
        None,
    )
    assert synthea.code.has_code(f"{SNOMED}|162864005")


def test_allergy_criticality_and_reaction() -> None:
    record = mapped(f"{US_CORE}/allergyintolerance-example.json", "AllergyIntolerance", "example")
    assert (record.criticality, record.category, record.clinical_status) == (
        "high",
        ("medication",),
        "active",
    )
    assert record.code.text == "sulfonamide antibacterial"
    assert record.code.has_code(f"{SNOMED}|763875007")
    assert [r.text for r in record.reactions] == ["skin rash"]


def test_diagnostic_report_result_references() -> None:
    cbc = mapped(f"{US_CORE}/diagnosticreport-cbc.json", "DiagnosticReport", "cbc")
    assert cbc.result_ids == tuple(
        f"Observation/cbc-{name}"
        for name in (
            "leukocytes",
            "erythrocytes",
            "hemoglobin",
            "hematocrit",
            "mcv",
            "mch",
            "mchc",
            "platelets",
        )
    )
    assert (cbc.category, cbc.effective, cbc.issued) == (
        ("LAB",),
        "2005-07-05",
        "2005-07-06T11:45:33Z",
    )
    assert cbc.code.has_code(f"{LOINC}|58410-2")

    synthea = mapped(SYNTHEA_ABDUL, "DiagnosticReport", "e2226510-ab31-4d82-b5fc-54cc95dc6c89")
    assert synthea.code.has_code(f"{LOINC}|57698-3")
    assert synthea.result_ids == (
        "urn:uuid:6bb49b35-dcf4-446d-9fed-05ad04607128",
        "urn:uuid:044a8dad-b41d-4dd3-ad65-976cdd898a85",
        "urn:uuid:5ca2bf7d-d6ed-4895-ae20-3dc3eb8e2d01",
        "urn:uuid:2f696d6b-8992-40af-9347-9e39a5db45c3",
    )


def test_us_core_care_team_members() -> None:
    team = mapped(f"{US_CORE}/careteam-example.json", "CareTeam", "example")
    assert (team.status, team.name, team.category) == ("active", "US-Core example CareTeam", ())
    assert (team.start, team.end) == (None, None)
    assert team.participants == (
        "Ronald Bone, MD",
        "Kathy Fielding, MD",
        "Amy V. Shaw",
        "Sarah van Putten",
    )
    # Every member is a literal reference (`Practitioner/practitioner-1`, ...): no identifier
    # that means anything outside that server, so no one for the care-team rule.
    assert team.participant_identifiers == ()


def test_synthea_procedure_performed_period() -> None:
    record = mapped(SYNTHEA_ABDUL, "Procedure", "4df91bab-a20c-49f0-a66c-3d0e3f4fd0d2")
    assert record.code.has_code(f"{SNOMED}|73761001")
    assert (record.status, record.performed) == ("completed", "2012-11-25T23:37:54+00:00")


def test_us_core_patient_ended_old_name_is_skipped() -> None:
    # name[0] is `use: old` with period.end 2020-07-22; name[1] is the current `usual` name.
    patient = mapped(f"{US_CORE}/patient-example.json", "Patient", "example")
    assert patient.name == HumanName("Baxter", ("Amy", "V."), "Amy V. Baxter")
    assert patient.birth_date == "1987-02-20"


def test_carebundle_security_labels_reach_every_record() -> None:
    labelled = 0
    for _, resource in resources("carebundle/*.json", ids_from_full_url=True):
        resource_type = resource["resourceType"]
        if resource_type not in mappers.MAPPERS or resource_type == "Patient":
            continue  # SourcePatient has no meta
        record = mappers.MAPPERS[resource_type](SRC, resource)
        assert record.meta.security == (HTEST,), f"{resource_type}/{resource['id']}"
        labelled += 1
    assert labelled == 448

    sodium = mapped(
        "carebundle/mixed-42-0005.json",
        "Observation",
        "3cebfe14-39d8-55a3-bc7b-5f219830d55d",
        ids_from_full_url=True,
    )
    assert sodium.code.has_code(f"{LOINC}|2951-2")
    assert sodium.value_quantity == Quantity(141.0, "mmol/L", UCUM, "mmol/L")
    assert sodium.meta.security == (HTEST,)


def test_medplum_mock_values() -> None:
    high = mapped(MEDPLUM, "Observation", "4")
    assert high.value_quantity == Quantity(50.0, "x", comparator=">")
    assert high.reference_range == (ReferenceRange(Quantity(10.0, "x"), Quantity(50.0, "x"), None),)
    assert (high.code.text, high.effective) == ("Test 4", None)

    hiv = mapped(MEDPLUM, "Observation", "8")
    assert hiv.components == (ObservationComponent(CodeableConcept("HIV"), None, "REACTIVE"),)
    assert hiv.reference_range == (ReferenceRange(None, None, "NEGATIVE"),)

    blinky = mapped(MEDPLUM, "Patient", "blinky")
    assert blinky.name == HumanName(None, ("Blinky",), "Blinky")
    homer = mapped(MEDPLUM, "Patient", "123")
    assert (homer.name, homer.birth_date, homer.gender) == (
        HumanName("Simpson", ("Homer",), "Homer Simpson"),
        "1956-05-12",
        "male",
    )


# ---- addresses, telecom, notes, participants ----------------------------------------------


def test_synthea_patient_address_and_phone() -> None:
    # The address carries a geolocation extension, which is ignored.
    patient = mapped(SYNTHEA_ABDUL, "Patient", "018f428e-34f6-4707-8009-5ad742f901e7")
    assert patient.addresses == (
        Address(None, ("313 Lockman Row Suite 4",), "Peabody", "Massachusetts", "01940", "US"),
    )
    assert patient.telecom == (ContactPoint("phone", "555-978-4581", "home"),)


def test_every_synthea_patient_has_an_address_and_a_phone() -> None:
    patients = [
        mappers.patient(SRC, r)
        for _, r in resources("synthea-smart/*.json")
        if r.get("resourceType") == "Patient"
    ]
    assert len(patients) == 30
    for patient in patients:
        (address,) = patient.addresses
        assert address.lines
        assert address.city
        assert address.postal_code
        assert (address.state, address.country) == ("Massachusetts", "US")
        assert [t.system for t in patient.telecom] == ["phone"]


def test_us_core_patient_old_and_current_address_and_telecom() -> None:
    # address[0] is `use: old` (period ended 2020-07-22), address[1] the current one, no use.
    patient = mapped(f"{US_CORE}/patient-example.json", "Patient", "example")
    assert patient.addresses == (
        Address("old", ("49 MEADOW ST",), "MOUNDS", "OK", "74047", "US"),
        Address(None, ("183 MOUNTAIN VIEW ST",), "MOUNDS", "OK", "74048", "US"),
    )
    assert patient.telecom == (
        ContactPoint("phone", "555-555-5555", "home"),
        ContactPoint("email", "amy.shaw@example.com"),
    )


def test_medplum_mock_patient_contact_details() -> None:
    homer = mapped(MEDPLUM, "Patient", "123")
    assert homer.addresses == (
        Address("home", ("742 Evergreen Terrace",), "Springfield", "IL", "12345", None),
    )
    assert homer.telecom == (
        ContactPoint("phone", "555-7334", "home"),
        ContactPoint("email", "chunkylover53@aol.com", "home"),
    )
    bart = mapped(MEDPLUM, "Patient", "555")
    assert bart.addresses == ()
    assert [t.value for t in bart.telecom] == ["555-1239", "bart@thesimpsons.com"]
    assert mapped(MEDPLUM, "Patient", "blinky").telecom == ()


def test_us_core_observation_notes() -> None:
    audit = mapped(
        f"{US_CORE}/Observation-AUDIT-C-item-example-68517-2.json",
        "Observation",
        "AUDIT-C-item-example-68517-2",
    )
    assert audit.notes == (
        "Where X is 5 for men and 4 for women, and a response of  greater than, or equal to, "
        "1 is positive.",
    )
    ofc = mapped(f"{US_CORE}/ofc-percentile.json", "Observation", "ofc-percentile")
    assert ofc.notes == ("WHO Males, 0-2 years Chart",)


NOTED = ("Observation", "Condition", "MedicationRequest", "MedicationStatement")


def test_every_note_text_in_the_shared_data_reaches_the_record() -> None:
    found = 0
    for group in GROUPS:
        for _, resource in resources(group.pattern, ids_from_full_url=group.ids_from_full_url):
            resource_type = resource.get("resourceType")
            if resource_type not in NOTED or "note" not in resource or "id" not in resource:
                continue
            record = mappers.MAPPERS[resource_type](SRC, resource)
            texts = tuple(n["text"] for n in resource["note"] if n.get("text"))
            assert record.notes == texts, f"{resource_type}/{resource['id']}"
            found += 1
    assert found == 18  # all of them Observations (us-core examples and their transaction)
