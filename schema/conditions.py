"""Conditions: problems and diagnoses."""

from __future__ import annotations

import strawberry

from schema.common import CodeableConcept
from schema.records import Record


@strawberry.type(description="A problem, diagnosis or health concern (FHIR Condition).")
class Condition(Record):
    code: CodeableConcept = strawberry.field(description="The condition (SNOMED CT, ICD-10).")
    clinical_status: str | None = strawberry.field(
        description="active, recurrence, relapse, inactive, remission or resolved."
    )
    verification_status: str | None = strawberry.field(
        description="unconfirmed, provisional, differential, confirmed, refuted, ..."
    )
    category: list[str] = strawberry.field(
        description="problem-list-item, encounter-diagnosis, health-concern, ..."
    )
    onset: str | None = strawberry.field(description="When it began (ISO 8601 or text).")
    abatement: str | None = strawberry.field(description="When it resolved, if it did.")
    recorded_date: str | None = strawberry.field(description="When it was first recorded.")
    notes: list[str] | None = strawberry.field(
        description="Free-text comments on the record (may be withheld by role: null with a "
        "FORBIDDEN error)."
    )
