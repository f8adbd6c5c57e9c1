"""Care teams."""

from __future__ import annotations

import strawberry

from schema.records import Record


@strawberry.type(description="The people who take part in the patient's care (FHIR CareTeam).")
class CareTeam(Record):
    status: str | None = strawberry.field(
        description="proposed, active, suspended, inactive, entered-in-error"
    )
    name: str | None = strawberry.field(description="The team's name, e.g. `Diabetes care`.")
    category: list[str] = strawberry.field(
        description="Category codes, e.g. LOINC `LA28865-6` (longitudinal care coordination)."
    )
    start: str | None = strawberry.field(description="When the team started.")
    end: str | None = strawberry.field(description="When the team ended.")
    participants: list[str] = strawberry.field(
        description="Members, as display text (e.g. the clinicians on the team)."
    )
