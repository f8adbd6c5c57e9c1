"""The kinds of clinical record a source can serve, and the batch key used to ask for them.

A `RecordKind[R]` names one capability ("observations") and its record type, so the source seam
and the loaders stay generic while mypy keeps each collection's element type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from app.domain.allergies import Allergy
from app.domain.care_teams import CareTeam
from app.domain.conditions import Condition
from app.domain.diagnostic_reports import DiagnosticReport
from app.domain.encounters import Encounter
from app.domain.immunizations import Immunization
from app.domain.medications import Medication, MedicationDispense
from app.domain.observations import Observation
from app.domain.procedures import Procedure

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class RecordKind(Generic[R]):
    name: str
    # The FHIR resource type names its records carry in `SourceLink.resource_type`: what an
    # access policy names.
    resource_types: tuple[str, ...]


OBSERVATIONS: RecordKind[Observation] = RecordKind("observations", ("Observation",))
CONDITIONS: RecordKind[Condition] = RecordKind("conditions", ("Condition",))
ALLERGIES: RecordKind[Allergy] = RecordKind("allergies", ("AllergyIntolerance",))
MEDICATIONS: RecordKind[Medication] = RecordKind(
    "medications", ("MedicationRequest", "MedicationStatement", "MedicationDispense")
)
IMMUNIZATIONS: RecordKind[Immunization] = RecordKind("immunizations", ("Immunization",))
ENCOUNTERS: RecordKind[Encounter] = RecordKind("encounters", ("Encounter",))
PROCEDURES: RecordKind[Procedure] = RecordKind("procedures", ("Procedure",))
DIAGNOSTIC_REPORTS: RecordKind[DiagnosticReport] = RecordKind(
    "diagnostic_reports", ("DiagnosticReport",)
)
CARE_TEAMS: RecordKind[CareTeam] = RecordKind("care_teams", ("CareTeam",))
DISPENSES: RecordKind[MedicationDispense] = RecordKind("dispenses", ("MedicationDispense",))

ALL_KINDS: tuple[RecordKind[Any], ...] = (
    OBSERVATIONS,
    CONDITIONS,
    ALLERGIES,
    MEDICATIONS,
    IMMUNIZATIONS,
    ENCOUNTERS,
    PROCEDURES,
    DIAGNOSTIC_REPORTS,
    CARE_TEAMS,
)


@dataclass(frozen=True, slots=True)
class PersonQuery:
    """A person described by demographics, for upstreams that have no id of ours (a pharmacy
    answering NCPDP medication history matches on name, birth date and gender)."""

    patient_id: str  # PatientGraph id: keys the answer, never sent upstream
    family: str
    given: tuple[str, ...]
    birth_date: str
    gender: str | None = None
    postal_code: str | None = None


@dataclass(frozen=True, slots=True)
class RecordQuery:
    """One patient's records of one kind at one source: the DataLoader key.

    `patient` is the source-local patient id; the filters apply to observations (and are
    pushed down to the upstream search where it supports them).
    """

    patient: str
    category: str | None = None
    code: str | None = None
    since: str | None = None
