"""Procedures."""

from __future__ import annotations

import strawberry

from schema.common import CodeableConcept
from schema.records import Record


@strawberry.type(description="An action performed on or for the patient (FHIR Procedure).")
class Procedure(Record):
    code: CodeableConcept = strawberry.field(description="The procedure (SNOMED CT, CPT, ...).")
    status: str | None = strawberry.field(description="completed, in-progress, not-done, ...")
    performed: str | None = strawberry.field(description="When it was performed (start).")
