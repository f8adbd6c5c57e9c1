"""Patient: one person across every linked upstream, with their clinical collections."""

from __future__ import annotations

from typing import Annotated, Any

import strawberry

from app.domain import patients as domain
from app.domain import records as kinds
from app.domain.records import RecordKind, RecordQuery
from resolvers.pagination import Page, paginate
from resolvers.records import records_of
from schema.allergies import Allergy
from schema.common import Connection, HumanName, Identifier, SourceLink
from schema.conditions import Condition
from schema.context import Info, path_of
from schema.diagnostic_reports import DiagnosticReport
from schema.encounters import Encounter
from schema.immunizations import Immunization
from schema.medications import Medication
from schema.observations import Observation
from schema.procedures import Procedure
from schema.scalars import Date, DateTime

First = Annotated[
    int | None, strawberry.argument(description="How many to return (default 20, at most 100).")
]
After = Annotated[
    str | None,
    strawberry.argument(description="Cursor from a previous page's `pageInfo.endCursor`."),
]
NO_FILTER = RecordQuery(patient="")


async def _page(
    info: Info,
    root: domain.Patient,
    kind: RecordKind[Any],
    first: int | None,
    after: str | None,
    filters: RecordQuery = NO_FILTER,
) -> Page[Any]:
    ctx = info.context
    records = await records_of(ctx, root, kind, filters, path_of(info))
    return paginate(records, first, after, ctx.services.page_limits)


def _collection(kind: RecordKind[Any], node: type, description: str) -> Any:
    """A paged collection field of Patient (arguments `first`, `after`) for one record kind."""

    async def resolve(
        root: strawberry.Parent[domain.Patient],
        info: Info,
        first: First = None,
        after: After = None,
    ) -> Page[Any]:
        return await _page(info, root, kind, first, after)

    return strawberry.field(
        resolver=resolve,
        graphql_type=Connection[node],  # type: ignore[valid-type]  # node is a Strawberry type
        description=description,
    )


@strawberry.type(description="A patient: one person, linked across every upstream system.")
class Patient:
    id: strawberry.ID = strawberry.field(
        description="PatientGraph id: stable, opaque, one per person."
    )
    identifiers: list[Identifier] = strawberry.field(
        description="Identifiers from every linked record (MRNs, SSN, ...), without duplicates."
    )
    name: HumanName | None = strawberry.field(
        description="Official name, from the highest-priority source that has one."
    )
    birth_date: Date | None = strawberry.field(description="Date of birth.")
    gender: str | None = strawberry.field(description="male, female, other or unknown.")
    sources: list[SourceLink] = strawberry.field(
        description="Every upstream patient record linked to this person."
    )

    @strawberry.field(
        graphql_type=Connection[Observation],
        description="Observations (vital signs, labs, ...), newest first. `category` and "
        "`code` are FHIR tokens (`laboratory`, `http://loinc.org|2339-0`); `since` keeps "
        "those effective at or after the given time.",
    )
    async def observations(
        self,
        root: strawberry.Parent[domain.Patient],
        info: Info,
        category: Annotated[
            str | None,
            strawberry.argument(description="Category token, e.g. `laboratory`, `vital-signs`."),
        ] = None,
        code: Annotated[
            str | None,
            strawberry.argument(description="Code token: `http://loinc.org|2339-0` or `2339-0`."),
        ] = None,
        since: Annotated[
            DateTime | None,
            strawberry.argument(description="Only those effective at or after this time."),
        ] = None,
        first: First = None,
        after: After = None,
    ) -> Page[Any]:
        filters = RecordQuery("", category or None, code or None, since)
        return await _page(info, root, kinds.OBSERVATIONS, first, after, filters)

    conditions = _collection(kinds.CONDITIONS, Condition, "Problems and diagnoses.")
    allergies = _collection(kinds.ALLERGIES, Allergy, "Allergies and intolerances.")
    medications = _collection(
        kinds.MEDICATIONS, Medication, "Medication orders and statements, newest first."
    )
    immunizations = _collection(kinds.IMMUNIZATIONS, Immunization, "Immunizations.")
    encounters = _collection(kinds.ENCOUNTERS, Encounter, "Visits and admissions.")
    procedures = _collection(kinds.PROCEDURES, Procedure, "Procedures performed.")
    diagnostic_reports = _collection(
        kinds.DIAGNOSTIC_REPORTS, DiagnosticReport, "Diagnostic reports (lab panels, imaging)."
    )
