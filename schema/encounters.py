"""Encounters."""

from __future__ import annotations

import strawberry

from schema.common import CodeableConcept
from schema.records import Record


@strawberry.type(description="A visit, admission or other interaction (FHIR Encounter).")
class Encounter(Record):
    status: str | None = strawberry.field(description="planned, in-progress, finished, ...")
    class_code: str | None = strawberry.field(
        name="class", description="AMB (ambulatory), EMER, IMP (inpatient), VR (virtual), ..."
    )
    type: list[CodeableConcept] = strawberry.field(description="Specific type of encounter.")
    start: str | None = strawberry.field(description="When it started.")
    end: str | None = strawberry.field(description="When it ended.")
    reason: list[CodeableConcept] = strawberry.field(description="Why it took place.")
    service_provider: str | None = strawberry.field(
        description="The organization responsible (display text)."
    )
    participants: list[str] = strawberry.field(
        description="People involved, as display text (e.g. the attending clinician)."
    )
