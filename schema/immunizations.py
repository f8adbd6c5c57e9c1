"""Immunizations."""

from __future__ import annotations

import strawberry

from schema.common import CodeableConcept
from schema.records import Record


@strawberry.type(description="A vaccination given or reported (FHIR Immunization).")
class Immunization(Record):
    vaccine: CodeableConcept = strawberry.field(description="Vaccine product (CVX where given).")
    status: str | None = strawberry.field(description="completed, entered-in-error or not-done.")
    occurrence: str | None = strawberry.field(description="When it was given.")
    primary_source: bool | None = strawberry.field(
        description="True when recorded by the giver, false when reported by someone else."
    )
    lot_number: str | None = strawberry.field(description="Vaccine lot number.")
