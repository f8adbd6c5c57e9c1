"""Medications: orders (MedicationRequest), statements (MedicationStatement) and pharmacy
fills (dispenses, e.g. from NCPDP SCRIPT medication history)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from app.domain.common import CodeableConcept, Quantity, RecordMeta, Sourced, SourceLink


class MedicationKind(StrEnum):
    ORDER = "order"
    STATEMENT = "statement"
    DISPENSE = "dispense"  # known only from pharmacy fills


@dataclass(frozen=True, slots=True)
class MedicationDispense(Sourced):
    """One pharmacy fill of a prescription."""

    sources: tuple[SourceLink, ...]
    meta: RecordMeta
    medication: CodeableConcept  # drug description as text, NDC (and RxNorm) as codings
    quantity: Quantity | None
    days_supply: int | None
    written_date: str | None
    last_fill_date: str | None
    pharmacy: str | None  # business name
    pharmacy_id: str | None  # NCPDP id or NPI
    prescriber: str | None  # name as text
    prescriber_npi: str | None
    sig: str | None


@dataclass(frozen=True, slots=True)
class Medication(Sourced):
    sources: tuple[SourceLink, ...]
    meta: RecordMeta
    kind: MedicationKind
    medication: CodeableConcept
    status: str | None
    intent: str | None
    authored_on: str | None
    effective: str | None
    dosage: tuple[str, ...]
    requester: str | None
    fills: tuple[MedicationDispense, ...] = ()  # pharmacy fills matched to this medication
    notes: tuple[str, ...] = ()  # FHIR MedicationRequest.note / MedicationStatement.note
