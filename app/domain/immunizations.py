"""Immunizations."""

from __future__ import annotations

from dataclasses import dataclass

from app.domain.common import CodeableConcept, RecordMeta, Sourced, SourceLink


@dataclass(frozen=True, slots=True)
class Immunization(Sourced):
    sources: tuple[SourceLink, ...]
    meta: RecordMeta
    vaccine: CodeableConcept
    status: str | None
    occurrence: str | None
    primary_source: bool | None
    lot_number: str | None
