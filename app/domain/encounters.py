"""Encounters: visits, admissions and other patient interactions."""

from __future__ import annotations

from dataclasses import dataclass

from app.domain.common import CodeableConcept, Identifier, RecordMeta, Sourced, SourceLink


@dataclass(frozen=True, slots=True)
class Encounter(Sourced):
    sources: tuple[SourceLink, ...]
    meta: RecordMeta
    status: str | None
    class_code: str | None
    type: tuple[CodeableConcept, ...]
    start: str | None
    end: str | None
    reason: tuple[CodeableConcept, ...]
    service_provider: str | None
    participants: tuple[str, ...]  # as displayed (name, else reference)
    # Practitioner identifiers (e.g. NPI) of the participants, for the care-team rule: from
    # `individual.identifier` or a conditional reference `Practitioner?identifier=sys|value`.
    participant_identifiers: tuple[Identifier, ...] = ()
