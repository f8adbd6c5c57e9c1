"""Patient: one person across every linked upstream, with their clinical collections."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any

import strawberry

from app.domain import patients as domain
from app.domain import records as kinds
from app.domain.records import RecordKind, RecordQuery
from resolvers.pagination import Page, PageLimits, paginate
from resolvers.patients import visible_addresses, visible_identifiers
from resolvers.records import RecordSet, records_of
from schema.allergies import Allergy
from schema.care_teams import CareTeam
from schema.common import Address, Connection, ContactPoint, HumanName, Identifier, SourceLink
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
Category = Annotated[
    str | None,
    strawberry.argument(description="Category token, e.g. `laboratory`, `vital-signs`."),
]
Code = Annotated[
    str | None,
    strawberry.argument(description="Code token: `http://loinc.org|2339-0` or `2339-0`."),
]
Since = Annotated[
    DateTime | None,
    strawberry.argument(description="Only those effective at or after this time."),
]
Merged = Annotated[
    bool,
    strawberry.argument(
        description="true (default): the same fact reported by several sources appears once, "
        "with every source in `sources`; false: each source's record separately."
    ),
]
NO_FILTER = RecordQuery(patient="")
LABORATORY = "laboratory"
PageOrLater = Page[Any] | Awaitable[Page[Any]]


def _page(
    info: Info,
    root: domain.Patient,
    kind: RecordKind[Any],
    first: int | None,
    after: str | None,
    filters: RecordQuery = NO_FILTER,
    *,
    merged: bool = True,
) -> PageOrLater:
    """The page itself when the records are already loaded (prefetched for a page of
    patients, `schema.prefetch`), else an awaitable: graphql-core awaits only what must be."""
    ctx = info.context
    found = records_of(ctx, root, kind, filters, path_of(info), merged=merged)
    if isinstance(found, RecordSet):
        return _paged(found, first, after, ctx.services.page_limits)
    return _page_later(found, first, after, ctx.services.page_limits)


def _paged(
    found: RecordSet[Any], first: int | None, after: str | None, limits: PageLimits
) -> Page[Any]:
    return paginate(found.records, first, after, limits, withheld=found.withheld)


async def _page_later(
    found: Awaitable[RecordSet[Any]], first: int | None, after: str | None, limits: PageLimits
) -> Page[Any]:
    return _paged(await found, first, after, limits)


def observation_filters(category: str | None, code: str | None, since: str | None) -> RecordQuery:
    return RecordQuery("", category or None, code or None, since)


# What each collection field of Patient loads, from its GraphQL arguments: `schema.prefetch`
# asks for it for a whole page of patients before graphql-core resolves the fields.
COLLECTIONS: Mapping[str, Callable[[Mapping[str, Any]], tuple[RecordKind[Any], RecordQuery]]] = {
    "observations": lambda a: (
        kinds.OBSERVATIONS,
        observation_filters(a.get("category"), a.get("code"), a.get("since")),
    ),
    "labResults": lambda a: (
        kinds.OBSERVATIONS,
        observation_filters(LABORATORY, a.get("code"), a.get("since")),
    ),
    "conditions": lambda _: (kinds.CONDITIONS, NO_FILTER),
    "allergies": lambda _: (kinds.ALLERGIES, NO_FILTER),
    "medications": lambda _: (kinds.MEDICATIONS, NO_FILTER),
    "immunizations": lambda _: (kinds.IMMUNIZATIONS, NO_FILTER),
    "encounters": lambda _: (kinds.ENCOUNTERS, NO_FILTER),
    "procedures": lambda _: (kinds.PROCEDURES, NO_FILTER),
    "diagnosticReports": lambda _: (kinds.DIAGNOSTIC_REPORTS, NO_FILTER),
    "careTeams": lambda _: (kinds.CARE_TEAMS, NO_FILTER),
}


def _collection(kind: RecordKind[Any], node: type, description: str) -> Any:
    """A paged collection field of Patient (arguments `first`, `after`) for one record kind."""

    def resolve(
        root: strawberry.Parent[domain.Patient],
        info: Info,
        first: First = None,
        after: After = None,
    ) -> PageOrLater:
        return _page(info, root, kind, first, after)

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

    @strawberry.field(
        description="Identifiers from every linked record (MRNs, SSN, ...), without duplicates. "
        "A US SSN is shown as its last four digits (`***-**-1234`) unless the caller's role "
        "needs it in full."
    )
    def identifiers(self, root: strawberry.Parent[domain.Patient], info: Info) -> list[Identifier]:
        return visible_identifiers(root, info.context.access)  # type: ignore[return-value]

    name: HumanName | None = strawberry.field(
        description="Official name, from the highest-priority source that has one."
    )
    birth_date: Date | None = strawberry.field(description="Date of birth.")
    gender: str | None = strawberry.field(description="male, female, other or unknown.")
    sources: list[SourceLink] = strawberry.field(
        description="Every upstream patient record linked to this person."
    )

    @strawberry.field(
        description="Postal addresses, from the highest-priority source that has any. Minimum "
        "necessary: roles that need less see only city, state, country and the first three "
        "ZIP digits."
    )
    def address(self, root: strawberry.Parent[domain.Patient], info: Info) -> list[Address] | None:
        return visible_addresses(root, info.context.access)  # type: ignore[return-value]

    telecom: list[ContactPoint] | None = strawberry.field(
        description="Phone numbers and e-mail addresses, from the highest-priority source that "
        "has any (null with a FORBIDDEN error for roles the policy denies them)."
    )

    @strawberry.field(
        graphql_type=Connection[Observation],
        description="Observations (vital signs, labs, ...), newest first. `category` and "
        "`code` are FHIR tokens (`laboratory`, `http://loinc.org|2339-0`); `since` keeps "
        "those effective at or after the given time.",
    )
    def observations(
        self,
        root: strawberry.Parent[domain.Patient],
        info: Info,
        category: Category = None,
        code: Code = None,
        since: Since = None,
        first: First = None,
        after: After = None,
        merged: Merged = True,
    ) -> PageOrLater:
        filters = observation_filters(category, code, since)
        return _page(info, root, kinds.OBSERVATIONS, first, after, filters, merged=merged)

    @strawberry.field(
        graphql_type=Connection[Observation],
        description="Laboratory results from every source (EHRs and lab feeds): the same as "
        '`observations(category: "laboratory")`, newest first.',
    )
    def lab_results(
        self,
        root: strawberry.Parent[domain.Patient],
        info: Info,
        code: Code = None,
        since: Since = None,
        first: First = None,
        after: After = None,
        merged: Merged = True,
    ) -> PageOrLater:
        filters = observation_filters(LABORATORY, code, since)
        return _page(info, root, kinds.OBSERVATIONS, first, after, filters, merged=merged)

    conditions = _collection(kinds.CONDITIONS, Condition, "Problems and diagnoses.")
    allergies = _collection(kinds.ALLERGIES, Allergy, "Allergies and intolerances.")

    @strawberry.field(
        graphql_type=Connection[Medication],
        description="Medications from every source: EHR orders and statements, with pharmacy "
        "fills attached (`fills`); drugs known only from fills appear as kind DISPENSE. Newest "
        "first. With `merged: false`, every source's entry separately.",
    )
    def medications(
        self,
        root: strawberry.Parent[domain.Patient],
        info: Info,
        first: First = None,
        after: After = None,
        merged: Merged = True,
    ) -> PageOrLater:
        return _page(info, root, kinds.MEDICATIONS, first, after, merged=merged)

    immunizations = _collection(kinds.IMMUNIZATIONS, Immunization, "Immunizations.")
    encounters = _collection(kinds.ENCOUNTERS, Encounter, "Visits and admissions.")
    procedures = _collection(kinds.PROCEDURES, Procedure, "Procedures performed.")
    diagnostic_reports = _collection(
        kinds.DIAGNOSTIC_REPORTS, DiagnosticReport, "Diagnostic reports (lab panels, imaging)."
    )
    care_teams = _collection(
        kinds.CARE_TEAMS, CareTeam, "Care teams: the clinicians and others caring for the patient."
    )
