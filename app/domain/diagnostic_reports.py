"""Diagnostic reports: lab panels, imaging and other reports with their results."""

from __future__ import annotations

from dataclasses import dataclass

from app.domain.common import CodeableConcept, RecordMeta, Sourced, SourceLink


@dataclass(frozen=True, slots=True)
class DiagnosticReport(Sourced):
    sources: tuple[SourceLink, ...]
    meta: RecordMeta
    code: CodeableConcept
    status: str | None
    category: tuple[str, ...]
    effective: str | None
    issued: str | None
    conclusion: str | None
    result_ids: tuple[str, ...]
