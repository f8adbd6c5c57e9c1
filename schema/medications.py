"""Medications: orders and statements."""

from __future__ import annotations

from enum import Enum

import strawberry

from schema.common import CodeableConcept, Quantity
from schema.records import Record


@strawberry.enum(description="Where a medication entry comes from.")
class MedicationKind(Enum):
    ORDER = strawberry.enum_value("order", description="A prescription (MedicationRequest).")
    STATEMENT = strawberry.enum_value(
        "statement", description="A record that the patient takes it (MedicationStatement)."
    )
    DISPENSE = strawberry.enum_value(
        "dispense", description="Known only from pharmacy fills (no order or statement found)."
    )


@strawberry.type(description="One pharmacy fill (e.g. from NCPDP SCRIPT medication history).")
class MedicationDispense(Record):
    medication: CodeableConcept = strawberry.field(
        description="The drug dispensed: description as text, NDC (and RxNorm) codes."
    )
    quantity: Quantity | None = strawberry.field(description="Quantity dispensed.")
    days_supply: int | None = strawberry.field(description="Days the fill should last.")
    written_date: str | None = strawberry.field(description="When the prescription was written.")
    last_fill_date: str | None = strawberry.field(description="When it was (last) filled.")
    pharmacy: str | None = strawberry.field(description="Pharmacy name.")
    pharmacy_id: str | None = strawberry.field(description="Pharmacy NCPDP id or NPI.")
    prescriber: str | None = strawberry.field(description="Prescriber name.")
    prescriber_npi: str | None = strawberry.field(description="Prescriber NPI.")
    sig: str | None = strawberry.field(description="Directions for use, as written.")


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
    fills: list[MedicationDispense] = strawberry.field(
        description="Pharmacy fills of this medication, newest first (see `merged`)."
    )
    notes: list[str] | None = strawberry.field(
        description="Free-text comments on the record (may be withheld by role: null with a "
        "FORBIDDEN error)."
    )
