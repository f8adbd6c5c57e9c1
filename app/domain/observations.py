"""Observations: vital signs, laboratory results, social history, surveys, ..."""

from __future__ import annotations

from dataclasses import dataclass

from app.domain.common import CodeableConcept, Quantity, RecordMeta, Sourced, SourceLink


@dataclass(frozen=True, slots=True)
class ReferenceRange:
    low: Quantity | None
    high: Quantity | None
    text: str | None


@dataclass(frozen=True, slots=True)
class ObservationComponent:
    code: CodeableConcept
    value_quantity: Quantity | None
    value_string: str | None


@dataclass(frozen=True, slots=True)
class Observation(Sourced):
    sources: tuple[SourceLink, ...]
    meta: RecordMeta
    status: str | None
    category: tuple[str, ...]
    code: CodeableConcept
    effective: str | None
    issued: str | None
    value_quantity: Quantity | None
    value_concept: CodeableConcept | None
    value_string: str | None
    interpretation: tuple[str, ...]
    reference_range: tuple[ReferenceRange, ...]
    components: tuple[ObservationComponent, ...]
    notes: tuple[str, ...] = ()  # comments (FHIR Observation.note, HL7 v2 NTE)
