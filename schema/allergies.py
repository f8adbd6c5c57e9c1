"""Allergies and intolerances."""

from __future__ import annotations

import strawberry

from schema.common import CodeableConcept
from schema.records import Record


@strawberry.type(description="An allergy or intolerance (FHIR AllergyIntolerance).")
class Allergy(Record):
    code: CodeableConcept = strawberry.field(description="The substance (or class) involved.")
    clinical_status: str | None = strawberry.field(description="active, inactive or resolved.")
    verification_status: str | None = strawberry.field(
        description="unconfirmed, confirmed, refuted or entered-in-error."
    )
    type: str | None = strawberry.field(description="allergy or intolerance.")
    category: list[str] = strawberry.field(description="food, medication, environment or biologic.")
    criticality: str | None = strawberry.field(description="low, high or unable-to-assess.")
    onset: str | None = strawberry.field(description="When it was first noticed.")
    recorded_date: str | None = strawberry.field(description="When it was recorded.")
    reactions: list[CodeableConcept] = strawberry.field(
        description="Manifestations of reactions seen (e.g. hives, anaphylaxis)."
    )
