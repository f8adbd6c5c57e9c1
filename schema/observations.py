"""Observations: vital signs, laboratory results and other measurements."""

from __future__ import annotations

import strawberry

from schema.common import CodeableConcept, Quantity
from schema.records import Record


@strawberry.type(description="A reference range for interpreting a result.")
class ReferenceRange:
    low: Quantity | None = strawberry.field(description="Lower bound, inclusive.")
    high: Quantity | None = strawberry.field(description="Upper bound, inclusive.")
    text: str | None = strawberry.field(description="The range as text.")


@strawberry.type(description="One part of a multi-part observation (e.g. systolic pressure).")
class ObservationComponent:
    code: CodeableConcept = strawberry.field(description="What this part measures.")
    value_quantity: Quantity | None = strawberry.field(description="Numeric result.")
    value_string: str | None = strawberry.field(description="Non-numeric result as text.")


@strawberry.type(description="A measurement or assertion about the patient (FHIR Observation).")
class Observation(Record):
    status: str | None = strawberry.field(
        description="registered, preliminary, final, amended, corrected, cancelled, ..."
    )
    category: list[str] = strawberry.field(
        description="Category codes, e.g. vital-signs, laboratory, social-history."
    )
    code: CodeableConcept = strawberry.field(description="What was observed (LOINC where given).")
    effective: str | None = strawberry.field(
        description="When it was observed (ISO 8601; start of a period)."
    )
    issued: str | None = strawberry.field(description="When the result was released.")
    value_quantity: Quantity | None = strawberry.field(description="Numeric result with unit.")
    value_concept: CodeableConcept | None = strawberry.field(
        name="valueCodeableConcept", description="Coded result (e.g. positive/negative)."
    )
    value_string: str | None = strawberry.field(
        description="The result as text when it is not a quantity (string, boolean, range, ...)."
    )
    interpretation: list[str] = strawberry.field(
        description="Interpretation codes such as H (high), L (low), N (normal)."
    )
    reference_range: list[ReferenceRange] = strawberry.field(description="Reference ranges.")
    components: list[ObservationComponent] = strawberry.field(
        description="Parts of a panel-like observation (e.g. blood pressure)."
    )
    notes: list[str] | None = strawberry.field(
        description="Free-text comments on the record (may be withheld by role: null with a "
        "FORBIDDEN error)."
    )
