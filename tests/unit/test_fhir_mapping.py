"""FHIR R4 -> domain mapping: hand-written edge cases (no shared data needed).

Every choice-type variant, missing and malformed elements, extensions, unknown codes, junk in
lists, name selection, and the `MappingError` contract.
"""

from __future__ import annotations

import copy
import dataclasses
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
from app.domain.medications import Medication, MedicationKind
from app.domain.observations import ObservationComponent, ReferenceRange
from app.sources.fhir import datatypes
from app.sources.fhir import resources as mappers

SRC = "upstream-a"
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ALL_TYPES = sorted(mappers.MAPPERS)
Resource = dict[str, Any]


def res(resource_type: str, **fields: Any) -> Resource:
    return {"resourceType": resource_type, "id": "r1", **fields}


def obs(**fields: Any) -> Any:
    return mappers.observation(SRC, res("Observation", **fields))


def link_of(record: Any) -> SourceLink:
    link: SourceLink = record.link if hasattr(record, "link") else record.sources[0]
    return link


# ---- the contract: id, provenance, MappingError -------------------------------------------


@pytest.mark.parametrize("resource_type", ALL_TYPES)
def test_minimal_resource_maps_with_every_optional_field_empty(resource_type: str) -> None:
    record = mappers.MAPPERS[resource_type](SRC, {"resourceType": resource_type, "id": "min"})

    assert link_of(record) == SourceLink(SRC, "min", resource_type)
    empty = (None, (), RecordMeta(), CodeableConcept(None))
    for field in dataclasses.fields(record):
        if field.name in ("link", "sources", "kind"):
            continue
        assert getattr(record, field.name) in empty, field.name


@pytest.mark.parametrize("resource_type", [t for t in ALL_TYPES if t != "Patient"])
def test_record_id_is_derived_from_source_and_local_id(resource_type: str) -> None:
    mapper = mappers.MAPPERS[resource_type]
    a = mapper(SRC, res(resource_type))
    assert a.id == record_id(SourceLink(SRC, "r1", resource_type))
    assert a.id == mapper(SRC, res(resource_type)).id  # stable
    assert a.id != mapper("upstream-b", res(resource_type)).id  # per source
    assert a.id != mapper(SRC, {**res(resource_type), "id": "r2"}).id


@pytest.mark.parametrize("resource_type", ALL_TYPES)
@pytest.mark.parametrize(
    "broken",
    [
        pytest.param({}, id="no-id"),
        pytest.param({"id": ""}, id="empty-id"),
        pytest.param({"id": 42}, id="numeric-id"),
        pytest.param({"id": None}, id="null-id"),
        pytest.param({"id": ["r1"]}, id="list-id"),
    ],
)
def test_resource_without_usable_id_raises_mapping_error(
    resource_type: str, broken: Resource
) -> None:
    with pytest.raises(datatypes.MappingError):
        mappers.MAPPERS[resource_type](SRC, {"resourceType": resource_type, **broken})


@pytest.mark.parametrize("resource_type", ALL_TYPES)
def test_resource_without_resource_type_raises_mapping_error(resource_type: str) -> None:
    with pytest.raises(datatypes.MappingError):
        mappers.MAPPERS[resource_type](SRC, {"id": "r1"})


@pytest.mark.parametrize("resource_type", ALL_TYPES)
@pytest.mark.parametrize("junk", [None, [], ["r1"], "Patient/r1", 7], ids=repr)
def test_non_object_resource_raises_mapping_error(resource_type: str, junk: Any) -> None:
    with pytest.raises(datatypes.MappingError):
        mappers.MAPPERS[resource_type](SRC, junk)


def test_mapping_error_message_holds_no_resource_data() -> None:
    with pytest.raises(datatypes.MappingError) as exc:
        mappers.patient(
            SRC,
            {"resourceType": "Patient", "name": [{"family": "Zyxwvut"}], "birthDate": "1901-02-03"},
        )
    assert "Zyxwvut" not in str(exc.value)
    assert "1901" not in str(exc.value)


# ---- choice types -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"effectiveDateTime": "2024-01-02T03:04:05Z"}, "2024-01-02T03:04:05Z"),
        ({"effectiveDateTime": "2024-01"}, "2024-01"),
        ({"effectiveInstant": "2024-01-02T03:04:05.123+01:00"}, "2024-01-02T03:04:05.123+01:00"),
        ({"effectivePeriod": {"start": "2024-01-01", "end": "2024-01-03"}}, "2024-01-01"),
        ({"effectivePeriod": {"end": "2024-01-03"}}, "2024-01-03"),
        ({"effectivePeriod": {}}, None),
        (
            {"effectiveTiming": {"event": ["2024-02-01T08:00:00Z", "2024-02-02T08:00:00Z"]}},
            "2024-02-01T08:00:00Z",
        ),
        ({"effectiveTiming": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}}}, None),
        ({"effectiveTiming": {"event": []}}, None),
        ({"effectiveDateTime": ""}, None),
        ({}, None),
    ],
    ids=lambda v: next(iter(v), "none") if isinstance(v, dict) else None,
)
def test_effective_choice_variants(fields: Resource, expected: str | None) -> None:
    assert obs(**fields).effective == expected
    assert mappers.diagnostic_report(SRC, res("DiagnosticReport", **fields)).effective == expected
    statement = mappers.medication_statement(SRC, res("MedicationStatement", **fields))
    assert statement.effective == expected


@pytest.mark.parametrize(
    ("fields", "quantity", "concept", "text"),
    [
        pytest.param(
            {"valueQuantity": {"value": 5.4, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"}},
            Quantity(5.4, "mmol/L", UCUM, "mmol/L"),
            None,
            None,
            id="Quantity",
        ),
        pytest.param(
            {"valueQuantity": {"value": 120, "system": UCUM, "code": "mg/dL"}},
            Quantity(120.0, "mg/dL", UCUM, "mg/dL"),
            None,
            None,
            id="Quantity-code-as-unit",
        ),
        pytest.param(
            {"valueQuantity": {"value": 0.01, "comparator": "<", "unit": "ng/mL"}},
            Quantity(0.01, "ng/mL", None, None, "<"),
            None,
            None,
            id="Quantity-comparator",
        ),
        pytest.param(
            {"valueQuantity": {"value": "12", "unit": "kg"}},
            Quantity(None, "kg"),
            None,
            None,
            id="Quantity-string-value",
        ),
        pytest.param(
            {
                "valueCodeableConcept": {
                    "coding": [{"system": SNOMED, "code": "10828004", "display": "Positive"}],
                    "text": "Pos",
                }
            },
            None,
            CodeableConcept("Pos", (Coding(SNOMED, "10828004", "Positive"),)),
            "Pos",
            id="CodeableConcept",
        ),
        pytest.param(
            {
                "valueCodeableConcept": {
                    "coding": [{"system": SNOMED, "code": "260385009", "display": "Negative"}]
                }
            },
            None,
            CodeableConcept("Negative", (Coding(SNOMED, "260385009", "Negative"),)),
            "Negative",
            id="CodeableConcept-text-from-display",
        ),
        pytest.param({"valueString": "REACTIVE"}, None, None, "REACTIVE", id="String"),
        pytest.param({"valueBoolean": True}, None, None, "true", id="Boolean-true"),
        pytest.param({"valueBoolean": False}, None, None, "false", id="Boolean-false"),
        pytest.param({"valueInteger": 3}, Quantity(3.0, None), None, None, id="Integer"),
        pytest.param({"valueInteger": 0}, Quantity(0.0, None), None, None, id="Integer-zero"),
        pytest.param(
            {
                "valueRange": {
                    "low": {"value": 1, "unit": "mg"},
                    "high": {"value": 2.5, "unit": "mg"},
                }
            },
            None,
            None,
            "1 mg-2.5 mg",
            id="Range",
        ),
        pytest.param({"valueRange": {"low": {"value": 7}}}, None, None, "7-", id="Range-open"),
        pytest.param({"valueRange": {}}, None, None, None, id="Range-empty"),
        pytest.param(
            {"valueRatio": {"numerator": {"value": 1}, "denominator": {"value": 128}}},
            None,
            None,
            "1/128",
            id="Ratio",
        ),
        pytest.param(
            {"valuePeriod": {"start": "2024-01-01", "end": "2024-02-01"}},
            None,
            None,
            "2024-01-01",
            id="Period",
        ),
        pytest.param({"valueTime": "08:30:00"}, None, None, "08:30:00", id="Time"),
        pytest.param({"valueDateTime": "2024-05-06"}, None, None, "2024-05-06", id="DateTime"),
        pytest.param(
            {
                "valueSampledData": {
                    "origin": {"value": 0},
                    "period": 10,
                    "dimensions": 1,
                    "data": "1 2 3",
                }
            },
            None,
            None,
            None,
            id="SampledData-unsupported",
        ),
        pytest.param({"valueQuantity": "12 kg"}, None, None, None, id="Quantity-not-object"),
        pytest.param({}, None, None, None, id="absent"),
    ],
)
def test_value_choice_variants(
    fields: Resource, quantity: Quantity | None, concept: CodeableConcept | None, text: str | None
) -> None:
    record = obs(**fields)
    assert (record.value_quantity, record.value_concept, record.value_string) == (
        quantity,
        concept,
        text,
    )


def test_component_values_and_junk_components() -> None:
    record = obs(
        component=[
            {
                "code": {"coding": [{"system": LOINC, "code": "8480-6"}], "text": "Systolic"},
                "valueQuantity": {"value": 120, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
            },
            None,
            "diastolic",
            {"code": {"text": "Finding"}, "valueCodeableConcept": {"text": "normal"}},
            {"code": {"text": "Note"}, "valueString": "fasting"},
            {"code": {"text": "Absent"}, "dataAbsentReason": {"text": "unknown"}},
        ]
    )
    assert record.components == (
        ObservationComponent(
            CodeableConcept("Systolic", (Coding(LOINC, "8480-6"),)),
            Quantity(120.0, "mmHg", UCUM, "mm[Hg]"),
            None,
        ),
        ObservationComponent(CodeableConcept("Finding"), None, "normal"),
        ObservationComponent(CodeableConcept("Note"), None, "fasting"),
        ObservationComponent(CodeableConcept("Absent"), None, None),
    )


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"onsetDateTime": "2016-08-10"}, "2016-08-10"),
        ({"onsetAge": {"value": 45, "unit": "a", "system": UCUM, "code": "a"}}, "45 a"),
        ({"onsetAge": {"value": 2.5, "code": "mo"}}, "2.5 mo"),
        ({"onsetAge": {"value": 45}}, "45"),
        ({"onsetAge": {"unit": "a"}}, None),
        ({"onsetPeriod": {"start": "2010-01-01", "end": "2011-01-01"}}, "2010-01-01"),
        ({"onsetString": "childhood"}, "childhood"),
        (
            {"onsetRange": {"low": {"value": 40, "unit": "a"}, "high": {"value": 50, "unit": "a"}}},
            "40 a-50 a",
        ),
        ({}, None),
    ],
    ids=lambda v: next(iter(v), "none") if isinstance(v, dict) else None,
)
def test_onset_choice_variants(fields: Resource, expected: str | None) -> None:
    assert mappers.condition(SRC, res("Condition", **fields)).onset == expected
    assert mappers.allergy(SRC, res("AllergyIntolerance", **fields)).onset == expected


def test_abatement_occurrence_and_performed_choices() -> None:
    assert mappers.condition(SRC, res("Condition", abatementDateTime="2016-08-17")).abatement == (
        "2016-08-17"
    )
    assert mappers.condition(SRC, res("Condition", abatementString="in remission")).abatement == (
        "in remission"
    )
    immunization = mappers.immunization
    assert immunization(SRC, res("Immunization", occurrenceString="fall 2019")).occurrence == (
        "fall 2019"
    )
    assert (
        immunization(
            SRC, res("Immunization", occurrenceDateTime="2020-11-19T12:46:57-08:00")
        ).occurrence
        == "2020-11-19T12:46:57-08:00"
    )
    procedure = mappers.procedure
    assert procedure(SRC, res("Procedure", performedDateTime="2020-01-01")).performed == (
        "2020-01-01"
    )
    assert (
        procedure(
            SRC, res("Procedure", performedPeriod={"start": "2012-11-25T23:37:54+00:00"})
        ).performed
        == "2012-11-25T23:37:54+00:00"
    )
    assert procedure(SRC, res("Procedure", performedString="as a child")).performed == "as a child"
    assert procedure(SRC, res("Procedure", performedAge={"value": 7, "unit": "a"})).performed == (
        "7 a"
    )


# ---- medication[x] ------------------------------------------------------------------------

AXID = {
    "coding": [{"system": RXNORM, "code": "582620", "display": "Nizatidine 15 MG/ML"}],
    "text": "Nizatidine 15 MG/ML Oral Solution",
}
AXID_CONCEPT = CodeableConcept(
    "Nizatidine 15 MG/ML Oral Solution", (Coding(RXNORM, "582620", "Nizatidine 15 MG/ML"),)
)


def med_request(**fields: Any) -> Medication:
    return mappers.medication_request(SRC, res("MedicationRequest", **fields))


def test_medication_codeable_concept() -> None:
    record = med_request(medicationCodeableConcept=AXID, status="active", intent="order")
    assert record.medication == AXID_CONCEPT
    assert record.medication.has_code(f"{RXNORM}|582620")
    assert (record.kind, record.status, record.intent) == (MedicationKind.ORDER, "active", "order")


def test_medication_reference_to_contained_medication_is_resolved() -> None:
    record = med_request(
        contained=[
            {"resourceType": "Organization", "id": "med1", "name": "not a medication"},
            {"resourceType": "Medication", "id": "med1", "code": AXID},
        ],
        medicationReference={"reference": "#med1", "display": "Axid"},
    )
    assert record.medication == AXID_CONCEPT


@pytest.mark.parametrize(
    "reference",
    [
        pytest.param("Medication/med1", id="relative"),
        pytest.param("https://other.example.org/fhir/Medication/med1", id="absolute"),
        pytest.param("#other", id="contained-missing"),
        pytest.param("med1", id="bare-id"),
    ],
)
def test_medication_reference_elsewhere_is_never_resolved(reference: str) -> None:
    record = med_request(
        contained=[{"resourceType": "Medication", "id": "med1", "code": AXID}],
        medicationReference={"reference": reference, "display": "Axid 15 mg/mL (display)"},
    )
    assert record.medication == CodeableConcept("Axid 15 mg/mL (display)")


def test_medication_reference_edge_cases() -> None:
    assert med_request(medicationReference={"reference": "Medication/9"}).medication == (
        CodeableConcept(None)
    )
    # A contained Medication with no code (ingredients only) keeps the reference's display.
    record = med_request(
        contained=[
            {
                "resourceType": "Medication",
                "id": "m",
                "ingredient": [{"itemCodeableConcept": {"text": "x"}}],
            }
        ],
        medicationReference={"reference": "#m", "display": "Compounded cream"},
    )
    assert record.medication == CodeableConcept("Compounded cream")
    # Both variants present (invalid, tolerated): the CodeableConcept wins.
    record = med_request(
        medicationCodeableConcept=AXID, medicationReference={"reference": "#m", "display": "other"}
    )
    assert record.medication == AXID_CONCEPT
    assert med_request(medicationReference="#m", contained="junk").medication == (
        CodeableConcept(None)
    )


def test_medication_request_details() -> None:
    record = med_request(
        authoredOn="2008-04-05",
        requester={"reference": "Practitioner/p1", "display": "Dr Bone"},
        dosageInstruction=[{"text": "10 mL bid"}, None, {"timing": {}}, {"text": ""}],
    )
    assert (record.authored_on, record.requester, record.dosage) == (
        "2008-04-05",
        "Dr Bone",
        ("10 mL bid",),
    )
    assert record.effective is None
    no_display = med_request(requester={"reference": "Practitioner/p1"})
    assert no_display.requester == "Practitioner/p1"


def test_medication_statement() -> None:
    record = mappers.medication_statement(
        SRC,
        res(
            "MedicationStatement",
            status="active",
            medicationCodeableConcept=AXID,
            effectivePeriod={"start": "2020-01-01"},
            dateAsserted="2020-02-02",
            informationSource={"display": "Patient"},
            dosage=[{"text": "1 tablet daily"}],
        ),
    )
    assert record.kind is MedicationKind.STATEMENT
    assert (record.medication, record.status, record.intent) == (AXID_CONCEPT, "active", None)
    assert (record.effective, record.authored_on, record.requester, record.dosage) == (
        "2020-01-01",
        "2020-02-02",
        "Patient",
        ("1 tablet daily",),
    )


# ---- extensions, unknown codes, junk ------------------------------------------------------

FULL_OBSERVATION: Resource = res(
    "Observation",
    status="final",
    meta={
        "versionId": "3",
        "lastUpdated": "2024-01-01T00:00:00Z",
        "security": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HTEST"}
        ],
    },
    category=[
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "laboratory",
                }
            ]
        }
    ],
    code={"coding": [{"system": LOINC, "code": "2345-7", "display": "Glucose"}]},
    effectiveDateTime="2024-01-01",
    issued="2024-01-01T10:00:00Z",
    valueQuantity={"value": 95, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
    interpretation=[{"coding": [{"code": "N"}]}],
    referenceRange=[{"low": {"value": 70}, "high": {"value": 99}, "text": "70-99"}],
    component=[{"code": {"text": "c"}, "valueString": "v"}],
)
FULL_PATIENT: Resource = res(
    "Patient",
    identifier=[{"system": "urn:mrn", "value": "M1"}],
    name=[{"use": "official", "family": "Shaw", "given": ["Amy", "V."]}],
    birthDate="1987-02-20",
    gender="female",
)
FULL_CONDITION: Resource = res(
    "Condition",
    clinicalStatus={"coding": [{"code": "active"}]},
    code={"text": "Ulcer"},
    onsetDateTime="2016-08-10",
)


def _with_extensions(value: Any) -> Any:
    """A copy with `extension`/`modifierExtension` on every object and `_x` primitive
    extensions beside every primitive: all must be ignored."""
    ext = [
        {
            "url": "http://example.org/ext",
            "valueString": "ignored",
            "extension": [{"url": "nested", "valueInteger": 1}],
        }
    ]
    if isinstance(value, dict):
        out: Resource = {}
        for key, item in value.items():
            out[key] = _with_extensions(item)
            if not isinstance(item, dict | list) and key not in ("resourceType",):
                out[f"_{key}"] = {"extension": ext}
        return {**out, "extension": ext, "modifierExtension": copy.deepcopy(ext)}
    if isinstance(value, list):
        return [_with_extensions(v) for v in value]
    return value


@pytest.mark.parametrize(
    "resource", [FULL_OBSERVATION, FULL_PATIENT, FULL_CONDITION], ids=lambda r: r["resourceType"]
)
def test_extensions_are_ignored(resource: Resource) -> None:
    mapper = mappers.MAPPERS[resource["resourceType"]]
    plain = mapper(SRC, resource)
    assert mapper(SRC, _with_extensions(resource)) == plain
    assert plain != mapper(SRC, {"resourceType": resource["resourceType"], "id": "r1"})


def test_full_observation() -> None:
    record = mappers.observation(SRC, FULL_OBSERVATION)
    assert record.meta == RecordMeta(
        "2024-01-01T00:00:00Z",
        "3",
        (Coding("http://terminology.hl7.org/CodeSystem/v3-ActReason", "HTEST"),),
    )
    assert (record.status, record.category, record.interpretation) == (
        "final",
        ("laboratory",),
        ("N",),
    )
    assert record.code == CodeableConcept("Glucose", (Coding(LOINC, "2345-7", "Glucose"),))
    assert record.code.has_code("2345-7")
    assert record.code.has_code(f"{LOINC}|2345-7")
    assert not record.code.has_code("http://other|2345-7")
    assert (record.effective, record.issued) == ("2024-01-01", "2024-01-01T10:00:00Z")
    assert record.reference_range == (
        ReferenceRange(Quantity(70.0, None), Quantity(99.0, None), "70-99"),
    )


def test_unknown_codes_pass_through() -> None:
    record = obs(
        status="made-up-status",
        category=[{"coding": [{"system": "urn:local:cat", "code": "zz-unknown"}]}],
        code={"coding": [{"system": "urn:local:codes", "code": "ABC-1"}]},
        valueCodeableConcept={"coding": [{"system": "urn:local:answers", "code": "Q9"}]},
        interpretation=[{"coding": [{"system": "urn:local:interp", "code": "WEIRD"}]}],
    )
    assert (record.status, record.category, record.interpretation) == (
        "made-up-status",
        ("zz-unknown",),
        ("WEIRD",),
    )
    assert record.code == CodeableConcept(None, (Coding("urn:local:codes", "ABC-1"),))
    assert record.value_concept == CodeableConcept(None, (Coding("urn:local:answers", "Q9"),))

    condition = mappers.condition(
        SRC,
        res(
            "Condition",
            clinicalStatus={"coding": [{"code": "dormant"}]},
            verificationStatus={"text": "sort of"},
        ),
    )
    assert (condition.clinical_status, condition.verification_status) == ("dormant", "sort of")
    allergy = mappers.allergy(
        SRC, res("AllergyIntolerance", criticality="extreme", type="quirk", category=["cosmic"])
    )
    assert (allergy.criticality, allergy.type, allergy.category) == (
        "extreme",
        "quirk",
        ("cosmic",),
    )
    encounter = mappers.encounter(SRC, {**res("Encounter"), "class": {"code": "SPACE"}})
    assert encounter.class_code == "SPACE"


def test_non_dict_junk_in_lists_is_ignored() -> None:
    good_coding = {"system": LOINC, "code": "1-8"}
    record = obs(
        category=[None, "vital-signs", 3, {"coding": [None, "x", good_coding]}],
        code={"coding": [None, 7, "8302-2", good_coding, ["nested"]]},
        interpretation=["H", {"coding": "not a list"}, {"coding": [{"code": "H"}]}],
        referenceRange=[1, None, {"text": "normal"}],
        component=["x", None, {"code": {"text": "c"}, "valueString": "v"}],
        meta={"security": [None, "HTEST", {"code": "HTEST"}]},
    )
    assert record.category == ("1-8",)
    assert record.code == CodeableConcept(None, (Coding(LOINC, "1-8"),))
    assert record.interpretation == ("H",)
    assert record.reference_range == (ReferenceRange(None, None, "normal"),)
    assert record.components == (ObservationComponent(CodeableConcept("c"), None, "v"),)
    assert record.meta.security == (Coding(None, "HTEST"),)

    patient = mappers.patient(
        SRC,
        res(
            "Patient",
            identifier=[None, "M1", {"system": "urn:mrn"}, {"system": "urn:mrn", "value": "M1"}],
            name=[None, "Amy Shaw", {"family": "Shaw", "given": ["Amy", None, 3, "", "V."]}],
        ),
    )
    assert patient.identifiers == (Identifier("urn:mrn", "M1"),)
    assert patient.name == HumanName("Shaw", ("Amy", "V."), "Amy V. Shaw")

    report = mappers.diagnostic_report(
        SRC,
        res(
            "DiagnosticReport",
            result=[
                None,
                "Observation/x",
                {"display": "no reference"},
                {"reference": "Observation/1"},
                {"reference": "Observation/2"},
            ],
        ),
    )
    assert report.result_ids == ("Observation/1", "Observation/2")

    allergy = mappers.allergy(
        SRC,
        res(
            "AllergyIntolerance",
            category=["food", 3, None, {"x": 1}],
            reaction=[
                None,
                {"manifestation": [None, {"text": "hives"}]},
                {"manifestation": "rash"},
            ],
        ),
    )
    assert allergy.category == ("food",)
    assert allergy.reactions == (CodeableConcept("hives"),)

    encounter = mappers.encounter(
        SRC,
        res(
            "Encounter",
            type=[None, {"text": "Visit"}],
            reasonCode="cough",
            participant=[None, {"individual": "Dr X"}, {"individual": {"display": "Dr Y"}}],
        ),
    )
    assert encounter.type == (CodeableConcept("Visit"),)
    assert encounter.reason == ()
    assert encounter.participants == ("Dr Y",)


@pytest.mark.parametrize("resource_type", ALL_TYPES)
def test_wrongly_typed_elements_are_treated_as_absent(resource_type: str) -> None:
    keys = (
        "meta",
        "code",
        "category",
        "status",
        "effectivePeriod",
        "effectiveTiming",
        "valueQuantity",
        "valueRange",
        "valueRatio",
        "component",
        "referenceRange",
        "interpretation",
        "clinicalStatus",
        "verificationStatus",
        "onsetAge",
        "onsetPeriod",
        "reaction",
        "contained",
        "medicationReference",
        "medicationCodeableConcept",
        "dosageInstruction",
        "dosage",
        "requester",
        "vaccineCode",
        "primarySource",
        "period",
        "class",
        "type",
        "reasonCode",
        "participant",
        "serviceProvider",
        "result",
        "identifier",
        "name",
        "birthDate",
        "gender",
        "performedPeriod",
        "informationSource",
        "address",
        "telecom",
        "note",
    )
    mapper = mappers.MAPPERS[resource_type]
    for junk in (7, None, [7], "x", True):
        resource = {"resourceType": resource_type, "id": "j", **dict.fromkeys(keys, junk)}
        assert link_of(mapper(SRC, resource)) == SourceLink(SRC, "j", resource_type)


# ---- patients -----------------------------------------------------------------------------


def name_of(*names: Any) -> HumanName | None:
    return mappers.patient(SRC, res("Patient", name=list(names))).name


def test_official_name_wins_over_usual_regardless_of_order() -> None:
    usual = {"use": "usual", "family": "Baxter", "given": ["Amy"]}
    official = {"use": "official", "family": "Shaw", "given": ["Amy", "V."]}
    assert name_of(usual, official) == HumanName("Shaw", ("Amy", "V."), "Amy V. Shaw")
    assert name_of({"use": "nickname", "given": ["Ames"]}, usual) == HumanName(
        "Baxter", ("Amy",), "Amy Baxter"
    )


def test_ended_names_are_skipped() -> None:
    ended_official = {
        "use": "official",
        "family": "Shaw",
        "given": ["Amy"],
        "period": {"start": "2016-12-06", "end": "2020-07-22"},
    }
    usual = {
        "use": "usual",
        "family": "Baxter",
        "given": ["Amy"],
        "period": {"start": "2020-07-22"},
    }
    assert name_of(ended_official, usual) == HumanName("Baxter", ("Amy",), "Amy Baxter")
    # `use: old` is no longer in use, even without a period.
    assert name_of({"use": "old", "family": "Old"}, {"family": "Current"}) == HumanName(
        "Current", (), "Current"
    )
    # No official or usual name: the first current one.
    assert name_of(ended_official, {"use": "maiden", "family": "Howe"}) == HumanName(
        "Howe", (), "Howe"
    )
    # Only ended names: better the first than none.
    assert name_of(ended_official, {"use": "old", "family": "Older"}) == HumanName(
        "Shaw", ("Amy",), "Amy Shaw"
    )


def test_name_text_and_parts() -> None:
    assert name_of({"text": "Dr. Amy Shaw", "family": "Shaw"}) == HumanName(
        "Shaw", (), "Dr. Amy Shaw"
    )
    assert name_of({"given": ["Blinky"]}) == HumanName(None, ("Blinky",), "Blinky")
    assert name_of({"given": "John", "family": "Doe"}) == HumanName("Doe", (), "Doe")
    assert name_of({"given": None}) == HumanName(None, (), None)
    assert name_of() is None
    assert mappers.patient(SRC, res("Patient", name="Amy Shaw")).name is None


def test_patient_identifiers_and_demographics() -> None:
    patient = mappers.patient(
        SRC,
        res(
            "Patient",
            birthDate="1956-08-03",
            gender="male",
            identifier=[
                {
                    "system": "http://hl7.org/fhir/sid/us-ssn",
                    "value": "999-22-1962",
                    "type": {"coding": [{"code": "SS", "display": "Social Security Number"}]},
                },
                {"system": "urn:mrn", "value": "M1", "type": {"text": "MRN"}},
                {"value": "no-system"},
                {"system": "urn:empty", "value": ""},
            ],
        ),
    )
    assert patient.link == SourceLink(SRC, "r1", "Patient")
    assert (patient.birth_date, patient.gender) == ("1956-08-03", "male")
    assert patient.identifiers == (
        Identifier("http://hl7.org/fhir/sid/us-ssn", "999-22-1962", "Social Security Number"),
        Identifier("urn:mrn", "M1", "MRN"),
        Identifier(None, "no-system"),
    )


def test_patient_addresses_keep_every_part_and_skip_empty_ones() -> None:
    patient = mappers.patient(
        SRC,
        res(
            "Patient",
            address=[
                {
                    "use": "old",
                    "line": ["49 MEADOW ST"],
                    "city": "MOUNDS",
                    "state": "OK",
                    "postalCode": "74047",
                    "country": "US",
                    "period": {"start": "2016-12-06", "end": "2020-07-22"},
                },
                {
                    "use": "home",
                    "text": "183 Mountain View St, Apt 2, Mounds OK 74048",
                    "line": ["183 MOUNTAIN VIEW ST", "APT 2"],
                    "city": "MOUNDS",
                    "district": "Creek",
                    "state": "OK",
                    "postalCode": "74048",
                    "country": "US",
                    "extension": [{"url": "http://example.org/geo", "valueString": "x"}],
                },
                {"use": "work"},  # nothing but a use: skipped
                {"line": []},
            ],
        ),
    )
    assert patient.addresses == (
        Address("old", ("49 MEADOW ST",), "MOUNDS", "OK", "74047", "US"),
        Address(
            "home",
            ("183 MOUNTAIN VIEW ST", "APT 2"),
            "MOUNDS",
            "OK",
            "74048",
            "US",
            "183 Mountain View St, Apt 2, Mounds OK 74048",
        ),
    )


def test_patient_address_bad_shapes_are_tolerated() -> None:
    patient = mappers.patient(
        SRC,
        res(
            "Patient",
            address=[
                None,
                "1 Main St",
                ["nested"],
                {"line": "1 Main St", "city": "Springfield"},  # line not a list
                {"line": ["", "  ", 7, None, "2 Elm St"], "postalCode": 12345},
                {"text": "Somewhere"},
            ],
        ),
    )
    assert patient.addresses == (
        Address(None, (), "Springfield", None, None, None),
        Address(None, ("2 Elm St",), None, None, None, None),  # a number is no postal code
        Address(None, (), None, None, None, None, "Somewhere"),
    )
    assert mappers.patient(SRC, res("Patient", address={"city": "x"})).addresses == ()


def test_patient_telecom_needs_a_string_value() -> None:
    patient = mappers.patient(
        SRC,
        res(
            "Patient",
            telecom=[
                {"system": "phone", "value": "555-555-5555", "use": "home"},
                {"system": "email", "value": "amy.shaw@example.com"},
                {"system": "phone", "value": 5555555},  # not a string
                {"system": "phone", "value": ""},
                {"system": "phone", "value": "   "},
                {"system": "phone"},
                {"system": "sms", "value": "+1 555 0100", "use": "mobile", "rank": 1},
                None,
                "555-0100",
            ],
        ),
    )
    assert patient.telecom == (
        ContactPoint("phone", "555-555-5555", "home"),
        ContactPoint("email", "amy.shaw@example.com"),
        ContactPoint("sms", "+1 555 0100", "mobile"),
    )
    assert mappers.patient(SRC, res("Patient", telecom="555-0100")).telecom == ()


@pytest.mark.parametrize(
    "resource_type", ["Observation", "Condition", "MedicationRequest", "MedicationStatement"]
)
def test_note_texts_become_notes_in_order(resource_type: str) -> None:
    note = [
        {"authorString": "Dr A", "time": "2024-01-01", "text": "First note."},
        {"text": ""},
        {"text": "  "},
        {"authorString": "no text"},
        None,
        "a bare string",
        {"text": 7},
        {"text": "Second\nline two."},
    ]
    record = mappers.MAPPERS[resource_type](SRC, res(resource_type, note=note))
    assert record.notes == ("First note.", "Second\nline two.")  # 7 is not a markdown text
    assert mappers.MAPPERS[resource_type](SRC, res(resource_type, note="x")).notes == ()


NPI = "http://hl7.org/fhir/sid/us-npi"


def participant_ids(*individuals: Any) -> tuple[Identifier, ...]:
    participant = [{"individual": i} for i in individuals]
    return mappers.encounter(SRC, res("Encounter", participant=participant)).participant_identifiers


def test_participant_identifiers_from_identifier_or_conditional_reference() -> None:
    assert participant_ids(
        {"identifier": {"system": NPI, "value": "9991234567"}, "display": "Dr A"},
        {"reference": f"Practitioner?identifier={NPI}|9997654321", "display": "Dr B"},
        {"reference": "Practitioner?identifier=http%3A%2F%2Fhl7.org%2Ffhir%2Fsid%2Fus-npi%7C42"},
        {"reference": "Practitioner?identifier=urn%3Aoid%3A1.2.3|A%26B&active=true"},
    ) == (
        Identifier(NPI, "9991234567"),
        Identifier(NPI, "9997654321"),
        Identifier(NPI, "42"),
        Identifier("urn:oid:1.2.3", "A&B"),
    )


def test_participant_identifier_prefers_the_identifier_over_the_reference() -> None:
    both = {
        "identifier": {"system": NPI, "value": "1", "type": {"text": "NPI"}},
        "reference": f"Practitioner?identifier={NPI}|2",
    }
    assert participant_ids(both) == (Identifier(NPI, "1", "NPI"),)
    no_value = {"identifier": {"system": NPI}, "reference": f"Practitioner?identifier={NPI}|2"}
    assert participant_ids(no_value) == (Identifier(NPI, "2"),)


@pytest.mark.parametrize(
    "reference",
    [
        "Practitioner/123",
        "urn:uuid:6d705d81-8546-43b2-b336-31a282128f2d",
        "https://ehr.example/fhir/Practitioner?identifier=x|1",  # not relative
        "PractitionerRole?identifier=x|1",
        "Practitioner?name=Quill",
        "Practitioner?identifier=",
        "Practitioner?identifier=x|",
        "Practitioner?identifier=x|1,y|2",  # any of several: no one in particular
        "Practitioner?identifier=x|1&identifier=y|2",
        "#p1",
        "",
    ],
)
def test_other_participant_references_identify_no_one(reference: str) -> None:
    assert participant_ids({"reference": reference, "display": "Dr X"}) == ()


def test_participant_identifier_edge_cases() -> None:
    # A token without a system (bare or `|value`), FHIR search escapes, duplicates once, junk.
    assert participant_ids(
        {"reference": "Practitioner?identifier=9991234567"},
        {"reference": "Practitioner?identifier=|77"},
        {"reference": "Practitioner?identifier=urn:x|a\\|b\\,c"},
        {"reference": f"Practitioner?identifier={NPI}|5"},
        {"identifier": {"system": NPI, "value": "5"}},
        {"identifier": "x", "reference": 7},
        None,
        "Practitioner?identifier=x|1",
    ) == (
        Identifier(None, "9991234567"),
        Identifier(None, "77"),
        Identifier("urn:x", "a|b,c"),
        Identifier(NPI, "5"),
    )
    record = mappers.encounter(SRC, res("Encounter", participant="Dr X"))
    assert (record.participants, record.participant_identifiers) == ((), ())


# ---- other record types -------------------------------------------------------------------


def test_encounter_fields() -> None:
    record = mappers.encounter(
        SRC,
        {
            **res("Encounter", status="finished"),
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "period": {"start": "2015-11-01T17:00:14-05:00", "end": "2015-11-01T18:00:14-05:00"},
            "reasonCode": [{"text": "Check-up"}],
            "serviceProvider": {"reference": "Organization/o1"},
            "participant": [
                {"individual": {"reference": "Practitioner/p1", "display": "Dr Bone"}},
                {"individual": {"reference": "Practitioner/p2"}},
                {"type": []},
            ],
        },
    )
    assert (record.status, record.class_code, record.start, record.end) == (
        "finished",
        "AMB",
        "2015-11-01T17:00:14-05:00",
        "2015-11-01T18:00:14-05:00",
    )
    assert record.reason == (CodeableConcept("Check-up"),)
    assert record.service_provider == "Organization/o1"
    assert record.participants == ("Dr Bone", "Practitioner/p2")
    assert record.participant_identifiers == ()  # literal references identify no one here
    # R5 shape (`class` as a list of CodeableConcepts) is not R4: no class code, no error.
    r5 = mappers.encounter(SRC, {**res("Encounter"), "class": [{"coding": [{"code": "AMB"}]}]})
    assert r5.class_code is None


CARE_TEAM: Resource = {
    "resourceType": "CareTeam",
    "id": "ct-1",
    "meta": {"versionId": "3", "lastUpdated": "2024-05-02T10:00:00Z"},
    "status": "active",
    "name": "Diabetes care team",
    "category": [
        {
            "coding": [
                {
                    "system": LOINC,
                    "code": "LA28865-6",
                    "display": "Longitudinal care-coordination focused care team",
                }
            ]
        }
    ],
    "subject": {"reference": "Patient/p1", "display": "Amy V. Shaw"},
    "period": {"start": "2024-01-15", "end": "2024-12-31"},
    "participant": [
        {
            "role": [{"coding": [{"system": SNOMED, "code": "453231000124104"}]}],
            "member": {
                "identifier": {"system": NPI, "value": "9991234567"},
                "display": "Dr Ada Quill",
            },
        },
        {
            "role": [{"coding": [{"system": SNOMED, "code": "17561000"}]}],
            "member": {
                "reference": f"Practitioner?identifier={NPI}|9997654321",
                "display": "Dr Ben Marsh",
            },
            "period": {"start": "2024-03-01"},
        },
        {
            "member": {"reference": "Practitioner/practitioner-2", "display": "Dr Kathy Fielding"},
        },
        {"member": {"reference": "RelatedPerson/niece"}},
        {"role": [{"text": "no member"}]},
        "junk",
    ],
}


def test_care_team_fields() -> None:
    record = mappers.care_team(SRC, CARE_TEAM)
    assert record.sources == (SourceLink(SRC, "ct-1", "CareTeam"),)
    assert record.meta == RecordMeta("2024-05-02T10:00:00Z", "3")
    assert (record.status, record.name, record.category) == (
        "active",
        "Diabetes care team",
        ("LA28865-6",),
    )
    assert (record.start, record.end) == ("2024-01-15", "2024-12-31")
    assert record.participants == (
        "Dr Ada Quill",
        "Dr Ben Marsh",
        "Dr Kathy Fielding",
        "RelatedPerson/niece",
    )
    # A member by identifier and one by conditional reference; a literal reference identifies
    # no one outside its own server.
    assert record.participant_identifiers == (
        Identifier(NPI, "9991234567"),
        Identifier(NPI, "9997654321"),
    )
    assert mappers.MAPPERS["CareTeam"] is mappers.care_team


def test_care_team_members_follow_the_encounter_rules() -> None:
    references = [
        {
            "identifier": {"system": NPI, "value": "1"},
            "reference": f"Practitioner?identifier={NPI}|2",
        },
        {"reference": f"Practitioner?identifier={NPI}|5"},
        {"identifier": {"system": NPI, "value": "5"}},
        {"reference": "Practitioner?identifier=x|1,y|2"},
        None,
    ]
    team = mappers.care_team(SRC, res("CareTeam", participant=[{"member": r} for r in references]))
    assert team.participant_identifiers == participant_ids(*references)
    assert team.participant_identifiers == (Identifier(NPI, "1"), Identifier(NPI, "5"))
    # An Encounter's `individual` key means nothing on a CareTeam participant.
    other = mappers.care_team(SRC, res("CareTeam", participant=[{"individual": references[0]}]))
    assert (other.participants, other.participant_identifiers) == ((), ())


def test_condition_and_allergy_statuses() -> None:
    condition = mappers.condition(
        SRC,
        res(
            "Condition",
            clinicalStatus={"coding": [{"system": "x", "code": "resolved", "display": "Resolved"}]},
            verificationStatus={"coding": [{"display": "no code"}], "text": "Confirmed"},
            category=[{"coding": [{"code": "problem-list-item"}]}],
            recordedDate="2016-08-17",
        ),
    )
    assert (condition.clinical_status, condition.verification_status) == ("resolved", "Confirmed")
    assert (condition.category, condition.recorded_date) == (("problem-list-item",), "2016-08-17")
    assert mappers.condition(SRC, res("Condition", clinicalStatus=None)).clinical_status is None

    allergy = mappers.allergy(
        SRC,
        res(
            "AllergyIntolerance",
            clinicalStatus={"coding": [{"code": "active"}]},
            criticality="high",
            type="allergy",
            recordedDate="2020-01-01",
            reaction=[
                {"manifestation": [{"text": "rash"}, {"coding": [{"display": "hives"}]}]},
                {"manifestation": [{"text": "wheeze"}]},
            ],
        ),
    )
    assert (allergy.clinical_status, allergy.criticality, allergy.type) == (
        "active",
        "high",
        "allergy",
    )
    assert [r.text for r in allergy.reactions] == ["rash", "hives", "wheeze"]


def test_immunization_primary_source_only_when_boolean() -> None:
    vaccine = {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140"}]}
    record = mappers.immunization(
        SRC, res("Immunization", vaccineCode=vaccine, primarySource=False, lotNumber="AAJN11K")
    )
    assert record.vaccine.has_code("http://hl7.org/fhir/sid/cvx|140")
    assert (record.primary_source, record.lot_number) == (False, "AAJN11K")
    loose = mappers.immunization(SRC, res("Immunization", primarySource="yes"))
    assert loose.primary_source is None


def test_diagnostic_report_fields() -> None:
    record = mappers.diagnostic_report(
        SRC,
        res(
            "DiagnosticReport",
            status="final",
            conclusion="Normal",
            category=[{"coding": [{"code": "LAB"}]}],
            issued="2005-07-06T11:45:33Z",
            result=[{"reference": "Observation/b"}, {"reference": "Observation/a"}],
        ),
    )
    assert (record.status, record.conclusion, record.category, record.issued) == (
        "final",
        "Normal",
        ("LAB",),
        "2005-07-06T11:45:33Z",
    )
    assert record.result_ids == ("Observation/b", "Observation/a")  # order kept


# ---- primitives of the wrong type or format ----------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"birthDate": "1985-07-04", "gender": "female"}, ("1985-07-04", "female")),
        ({"birthDate": "1985-07", "gender": "unknown"}, ("1985-07", "unknown")),
        ({"birthDate": "1985", "gender": "other"}, ("1985", "other")),
        ({"birthDate": 12, "gender": 5}, (None, None)),  # was "12" and "5"
        ({"birthDate": "yesterday", "gender": "F"}, (None, None)),
        ({"birthDate": "1985-02-30", "gender": True}, (None, None)),  # not a calendar day
        ({"birthDate": "1985-07-04T10:00:00Z", "gender": ["male"]}, (None, None)),  # date only
        ({"birthDate": "85-07-04", "gender": {"code": "male"}}, (None, None)),
    ],
)
def test_patient_birth_date_and_gender_must_be_valid_or_are_absent(
    fields: Resource, expected: tuple[str | None, str | None]
) -> None:
    with datatypes.counting_wrong_values() as wrong:
        patient = mappers.patient(SRC, res("Patient", **fields))
    assert (patient.birth_date, patient.gender) == expected
    assert wrong[0] == sum(value is None for value in expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05Z"),
        ("2024-01-02T03:04:05.5-05:00", "2024-01-02T03:04:05.5-05:00"),
        ("2024-01-02", "2024-01-02"),
        ("2024", "2024"),
        ("2024-01-02T03:04Z", None),  # a dateTime with a time needs seconds
        ("2024-01-02T03:04:05", None),  # ... and an offset
        ("2024-13-01", None),
        ("yesterday", None),
        (20240102, None),
        (True, None),
    ],
)
def test_date_times_are_read_as_fhir_defines_them(value: Any, expected: str | None) -> None:
    with datatypes.counting_wrong_values() as wrong:
        observation = obs(effectiveDateTime=value, issued=value)
        condition = mappers.condition(SRC, res("Condition", recordedDate=value))
    assert observation.effective == condition.recorded_date == expected
    # `issued` is an instant: a date alone is not one either.
    assert observation.issued == (expected if expected and "T" in expected else None)
    assert wrong[0] == (3 if expected is None else (0 if "T" in expected else 1))


def test_text_values_keep_their_types() -> None:
    assert obs(valueBoolean=False).value_string == "false"
    assert obs(valueString=12).value_string is None  # was "12"
    assert obs(valueTime="10:30:00").value_string == "10:30:00"
    assert obs(valueTime="half past ten").value_string is None
    assert obs(valueBoolean="yes").value_string is None
    assert obs(valueDateTime="2024-01-02").value_string == "2024-01-02"


def test_wrong_values_are_counted_only_inside_the_counting_block() -> None:
    mappers.patient(SRC, res("Patient", birthDate=12))  # outside: nothing to count into
    with datatypes.counting_wrong_values() as wrong:
        mappers.patient(SRC, res("Patient", birthDate=12, gender="male"))
        with datatypes.counting_wrong_values() as inner:
            mappers.patient(SRC, res("Patient", gender=5))
    assert (wrong[0], inner[0]) == (1, 1)
