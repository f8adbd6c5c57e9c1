"""Procedures."""

from __future__ import annotations

from dataclasses import dataclass

from app.domain.common import CodeableConcept, RecordMeta, Sourced, SourceLink


@dataclass(frozen=True, slots=True)
class Procedure(Sourced):
    sources: tuple[SourceLink, ...]
    meta: RecordMeta
    code: CodeableConcept
    status: str | None
    performed: str | None
