"""Domain records <-> stored data (`app.domain.codec`): the fields stores persist round-trip,
and rows written before a field existed still decode (with the field's default)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from app.domain.codec import from_data, to_data
from app.domain.common import (
    Address,
    CodeableConcept,
    ContactPoint,
    HumanName,
    Identifier,
    RecordMeta,
    SourceLink,
)
from app.domain.conditions import Condition
from app.domain.encounters import Encounter
from app.domain.medications import Medication, MedicationKind
from app.domain.observations import Observation
from app.domain.patients import SourcePatient

NPI = "http://hl7.org/fhir/sid/us-npi"

PATIENT = SourcePatient(
    link=SourceLink("citylab", "pat-1", "Patient"),
    identifiers=(Identifier("urn:oid:1.2.3", "MRN1", "MR"),),
    name=HumanName("Doe", ("Jane",), "Jane Doe"),
    birth_date="1980-01-15",
    gender="female",
    addresses=(
        Address("home", ("1 Main St", "Apt 2"), "Ames", "IA", "50010", "USA"),
        Address(None, (), None, None, None, None, "somewhere"),
    ),
    telecom=(ContactPoint("phone", "(515) 555-0100", "home"), ContactPoint("email", "j@x.org")),
)
CONDITION = Condition(
    sources=(SourceLink("hospital", "c1", "Condition"),),
    meta=RecordMeta(),
    code=CodeableConcept("Asthma"),
    clinical_status="active",
    verification_status=None,
    category=(),
    onset=None,
    abatement=None,
    recorded_date=None,
    notes=("First.", "Second."),
)
MEDICATION = Medication(
    sources=(SourceLink("hospital", "m1", "MedicationRequest"),),
    meta=RecordMeta(),
    kind=MedicationKind.ORDER,
    medication=CodeableConcept("Metformin"),
    status="active",
    intent="order",
    authored_on="2024-01-10",
    effective=None,
    dosage=("daily",),
    requester=None,
    notes=("Take with food.",),
)
OBSERVATION = Observation(
    sources=(SourceLink("citylab", "obs-1", "Observation"),),
    meta=RecordMeta(),
    status="final",
    category=("laboratory",),
    code=CodeableConcept("Glucose"),
    effective=None,
    issued=None,
    value_quantity=None,
    value_concept=None,
    value_string="Negative",
    interpretation=(),
    reference_range=(),
    components=(),
    notes=("Hemolysed.",),
)
ENCOUNTER = Encounter(
    sources=(SourceLink("hospital", "e1", "Encounter"),),
    meta=RecordMeta(),
    status="finished",
    class_code="AMB",
    type=(),
    start=None,
    end=None,
    reason=(),
    service_provider=None,
    participants=("Dr. Ada Quill",),
    participant_identifiers=(Identifier(NPI, "9998984485"), Identifier(None, "x", "local")),
)
RECORDS: list[Any] = [PATIENT, CONDITION, MEDICATION, OBSERVATION, ENCOUNTER]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_new_fields_round_trip_through_json(record: Any) -> None:
    stored = orjson.dumps(to_data(record))  # what the stores write
    assert from_data(type(record), orjson.loads(stored)) == record


@pytest.mark.parametrize(
    ("record", "fields"),
    [
        (PATIENT, ("addresses", "telecom")),
        (CONDITION, ("notes",)),
        (MEDICATION, ("notes",)),
        (OBSERVATION, ("notes",)),
        (ENCOUNTER, ("participant_identifiers",)),
    ],
    ids=lambda x: type(x).__name__ if not isinstance(x, tuple) else "",
)
def test_data_stored_before_the_fields_existed_decodes_with_defaults(
    record: Any, fields: tuple[str, ...]
) -> None:
    old = {k: v for k, v in to_data(record).items() if k not in fields}
    decoded = from_data(type(record), orjson.loads(orjson.dumps(old)))
    for field in fields:
        assert getattr(decoded, field) == ()
    assert {k: v for k, v in to_data(decoded).items() if k not in fields} == old
