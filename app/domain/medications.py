"""Medications: orders (MedicationRequest) and statements (MedicationStatement)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from app.domain.common import CodeableConcept, RecordMeta, Sourced, SourceLink


class MedicationKind(StrEnum):
    ORDER = "order"
    STATEMENT = "statement"


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
