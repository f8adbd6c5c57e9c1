"""Care teams: the people who take part in a patient's care (FHIR CareTeam)."""

from __future__ import annotations

from dataclasses import dataclass

from app.domain.common import Identifier, RecordMeta, Sourced, SourceLink


@dataclass(frozen=True, slots=True)
class CareTeam(Sourced):
    sources: tuple[SourceLink, ...]
    meta: RecordMeta
    status: str | None
    name: str | None
    category: tuple[str, ...]  # codes
    start: str | None
    end: str | None
    participants: tuple[str, ...]  # members as displayed (name, else reference)
    # Practitioner identifiers (e.g. NPI) of the members, for the care-team rule: from
    # `member.identifier` or a conditional reference `Practitioner?identifier=sys|value`.
    participant_identifiers: tuple[Identifier, ...] = ()
