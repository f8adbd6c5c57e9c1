"""Allergies and intolerances."""

from __future__ import annotations

from dataclasses import dataclass

from app.domain.common import CodeableConcept, RecordMeta, Sourced, SourceLink


@dataclass(frozen=True, slots=True)
class Allergy(Sourced):
    sources: tuple[SourceLink, ...]
    meta: RecordMeta
    code: CodeableConcept
    clinical_status: str | None
    verification_status: str | None
    type: str | None
    category: tuple[str, ...]
    criticality: str | None
    onset: str | None
    recorded_date: str | None
    reactions: tuple[CodeableConcept, ...]
