"""Conditions: problems, diagnoses and health concerns."""

from __future__ import annotations

from dataclasses import dataclass

from app.domain.common import CodeableConcept, RecordMeta, Sourced, SourceLink


@dataclass(frozen=True, slots=True)
class Condition(Sourced):
    sources: tuple[SourceLink, ...]
    meta: RecordMeta
    code: CodeableConcept
    clinical_status: str | None
    verification_status: str | None
    category: tuple[str, ...]
    onset: str | None
    abatement: str | None
    recorded_date: str | None
    notes: tuple[str, ...] = ()  # FHIR Condition.note
