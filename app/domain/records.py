"""The kinds of clinical record a source can serve, and the batch keys used to ask for them.

A `RecordKind[R]` is everything known about one kind in one entry: its name (the capability a
source serves), the resource types its records carry, the date it is ordered by, which
combine rule applies when several sources report it, and the elements access rules read.
Adding a kind means one entry here (plus its domain module, mapper and schema type).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, Protocol, TypeVar

from app.domain.allergies import Allergy
from app.domain.care_teams import CareTeam
from app.domain.common import CodeableConcept, RecordMeta, SourceLink
from app.domain.conditions import Condition
from app.domain.diagnostic_reports import DiagnosticReport
from app.domain.encounters import Encounter
from app.domain.immunizations import Immunization
from app.domain.medications import Medication, MedicationDispense
from app.domain.observations import Observation
from app.domain.procedures import Procedure


class Record(Protocol):
    """What every clinical record has: provenance and upstream bookkeeping (security labels)."""

    @property
    def sources(self) -> tuple[SourceLink, ...]: ...

    @property
    def meta(self) -> RecordMeta: ...


R = TypeVar("R")


class Combine(Enum):
    """How records of one kind from several sources become one view (`resolvers.merge`)."""

    KEEP_ALL = "keep all"  # every source's record, newest first
    SAME_FACT = "same fact"  # one fact from several sources appears once (rules: merge.py)
    SAME_DRUG = "same drug"  # medications: one entry per drug and day; pharmacy fills attached


def _none(_: Any) -> None:
    return None


def _no_categories(_: Any) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True, slots=True, eq=False)  # one instance per kind: identity is equality
class RecordKind(Generic[R]):
    name: str
    # The FHIR resource type names its records carry in `SourceLink.resource_type`: what an
    # access policy names.
    resource_types: tuple[str, ...]
    date: Callable[[R], str | None]  # ordered by, newest first (ISO 8601 sorts as text)
    combine: Combine = Combine.KEEP_ALL
    # The coded concept the policy's `[sensitive] codes` match (its main code).
    concept: Callable[[R], CodeableConcept | None] = _none
    # The `code` element a SMART granular `code=` constraint tests (None: has none).
    code: Callable[[R], CodeableConcept | None] = _none
    categories: Callable[[R], tuple[str, ...]] = _no_categories  # category codes
    # The instant a `since` filter compares (the FHIR `date` search parameter's element).
    since_date: Callable[[R], str | None] = _none
    # Records found by who the person is (pharmacies) that this kind's combine rule attaches.
    companion: RecordKind[Any] | None = None


DISPENSES: RecordKind[MedicationDispense] = RecordKind(
    "dispenses",
    ("MedicationDispense",),
    date=lambda r: r.last_fill_date or r.written_date,
    concept=lambda r: r.medication,
)
OBSERVATIONS: RecordKind[Observation] = RecordKind(
    "observations",
    ("Observation",),
    date=lambda r: r.effective or r.issued,
    combine=Combine.SAME_FACT,
    concept=lambda r: r.code,
    code=lambda r: r.code,
    categories=lambda r: r.category,
    since_date=lambda r: r.effective,
)
CONDITIONS: RecordKind[Condition] = RecordKind(
    "conditions",
    ("Condition",),
    date=lambda r: r.onset or r.recorded_date,
    combine=Combine.SAME_FACT,
    concept=lambda r: r.code,
    code=lambda r: r.code,
    categories=lambda r: r.category,
)
ALLERGIES: RecordKind[Allergy] = RecordKind(
    "allergies",
    ("AllergyIntolerance",),
    date=lambda r: r.recorded_date or r.onset,
    combine=Combine.SAME_FACT,
    concept=lambda r: r.code,
    code=lambda r: r.code,
    categories=lambda r: r.category,
)
MEDICATIONS: RecordKind[Medication] = RecordKind(
    "medications",
    ("MedicationRequest", "MedicationStatement", "MedicationDispense"),
    date=lambda r: r.authored_on or r.effective,
    combine=Combine.SAME_DRUG,
    concept=lambda r: r.medication,
    companion=DISPENSES,
)
IMMUNIZATIONS: RecordKind[Immunization] = RecordKind(
    "immunizations",
    ("Immunization",),
    date=lambda r: r.occurrence,
    combine=Combine.SAME_FACT,
    concept=lambda r: r.vaccine,
)
ENCOUNTERS: RecordKind[Encounter] = RecordKind(
    "encounters", ("Encounter",), date=lambda r: r.start, combine=Combine.SAME_FACT
)
PROCEDURES: RecordKind[Procedure] = RecordKind(
    "procedures",
    ("Procedure",),
    date=lambda r: r.performed,
    combine=Combine.SAME_FACT,
    concept=lambda r: r.code,
    code=lambda r: r.code,
)
DIAGNOSTIC_REPORTS: RecordKind[DiagnosticReport] = RecordKind(
    "diagnostic_reports",
    ("DiagnosticReport",),
    date=lambda r: r.effective or r.issued,
    combine=Combine.SAME_FACT,
    concept=lambda r: r.code,
    code=lambda r: r.code,
    categories=lambda r: r.category,
)
CARE_TEAMS: RecordKind[CareTeam] = RecordKind(
    "care_teams",
    ("CareTeam",),
    date=lambda r: r.start,
    combine=Combine.SAME_FACT,
    categories=lambda r: r.category,
)

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
