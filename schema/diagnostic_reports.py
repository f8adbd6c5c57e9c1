"""Diagnostic reports."""

from __future__ import annotations

import strawberry

from schema.common import CodeableConcept
from schema.records import Record


@strawberry.type(description="A report of results: a lab panel, imaging study, ... ")
class DiagnosticReport(Record):
    code: CodeableConcept = strawberry.field(description="The report or panel (LOINC).")
    status: str | None = strawberry.field(description="registered, partial, final, amended, ...")
    category: list[str] = strawberry.field(description="Category codes, e.g. LAB, RAD.")
    effective: str | None = strawberry.field(description="Clinically relevant time.")
    issued: str | None = strawberry.field(description="When the report was released.")
    conclusion: str | None = strawberry.field(description="Summary conclusion, as text.")
    result_ids: list[str] = strawberry.field(
        name="resultReferences",
        description="Upstream references of the observations the report contains.",
    )
