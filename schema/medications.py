"""Medications: orders and statements."""

from __future__ import annotations

from enum import Enum

import strawberry

from schema.common import CodeableConcept
from schema.records import Record


@strawberry.enum(description="Where a medication entry comes from.")
class MedicationKind(Enum):
    ORDER = strawberry.enum_value("order", description="A prescription (MedicationRequest).")
    STATEMENT = strawberry.enum_value(
        "statement", description="A record that the patient takes it (MedicationStatement)."
    )


@strawberry.type(description="A medication ordered for, or taken by, the patient.")
class Medication(Record):
    kind: MedicationKind = strawberry.field(description="Order or statement.")
    medication: CodeableConcept = strawberry.field(
        description="The drug (RxNorm where given); a contained Medication is resolved."
    )
    status: str | None = strawberry.field(
        description="active, completed, stopped, on-hold, cancelled, ..."
    )
    intent: str | None = strawberry.field(description="For orders: order, plan, proposal, ...")
    authored_on: str | None = strawberry.field(
        description="When the order was written (or a statement asserted)."
    )
    effective: str | None = strawberry.field(description="For statements: when it was taken.")
    dosage: list[str] = strawberry.field(description="Dosage instructions as text.")
    requester: str | None = strawberry.field(description="Who ordered it (display text).")
