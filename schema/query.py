"""The root Query: find patients."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import strawberry

from app.domain.patients import PatientCriteria
from resolvers import audit_log, identity_admin
from resolvers import patients as resolve
from resolvers.pagination import Page
from schema.audit import AuditEventPage, ClientUsage
from schema.collections import After, First
from schema.common import Connection
from schema.context import Info, path_of
from schema.identity import IdentityOperation, IdentityReview
from schema.patient import COLLECTIONS, Patient
from schema.prefetch import prefetch_collections
from schema.scalars import Date, DateTime


@strawberry.type(description="Entry points into the Patient graph.")
class Query:
    @strawberry.field(
        graphql_type=Patient | None,
        description="One patient by PatientGraph id; null when no such patient exists.",
    )
    async def patient(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="A PatientGraph id.")],
    ) -> Any:
        return await resolve.patient_by_id(info.context, str(id), path_of(info))

    @strawberry.field(
        graphql_type=Connection[Patient],
        description="Patients matching all given criteria, searched in every source at once. "
        "`identifier` is `system|value` or a bare value; `family`/`given` match "
        "case-insensitively from the start of the name; `birthDate` is exact.",
    )
    async def patients(
        self,
        info: Info,
        identifier: Annotated[
            str | None,
            strawberry.argument(
                description="FHIR token: `system|value`, or a bare value in any system."
            ),
        ] = None,
        family: Annotated[
            str | None,
            strawberry.argument(description="Family name, case-insensitive, from its start."),
        ] = None,
        given: Annotated[
            str | None,
            strawberry.argument(description="Given name, case-insensitive, from its start."),
        ] = None,
        birth_date: Annotated[
            Date | None, strawberry.argument(description="Exact date of birth, YYYY-MM-DD.")
        ] = None,
        first: First = None,
        after: After = None,
    ) -> Page[Any]:
        criteria = PatientCriteria(identifier, family, given, birth_date)
        found = await resolve.search_patients(info.context, criteria, path_of(info))
        page = resolve.page_of_patients(info.context, found, first, after)
        await prefetch_collections(info, page.nodes, COLLECTIONS)
        return page

    @strawberry.field(
        description="Source records the matcher kept apart from a patient, oldest first: "
        "conflicts (never linked automatically) and possible matches. `status` open (default), "
        "linked or dismissed; `after` a review id. Admin role with the "
        "patientgraph/identity.read scope only."
    )
    async def identity_reviews(
        self,
        info: Info,
        status: Annotated[
            str | None, strawberry.argument(description="open, linked or dismissed; null: all.")
        ] = "open",
        kind: Annotated[
            str | None, strawberry.argument(description="conflict or possible_match; null: both.")
        ] = None,
        first: Annotated[
            int, strawberry.argument(description="At most this many (1 to 200).")
        ] = 50,
        after: Annotated[
            int | None, strawberry.argument(description="The last review id of the previous page.")
        ] = None,
    ) -> list[IdentityReview]:
        found = await identity_admin.identity_reviews(info.context, status, kind, first, after)
        return [IdentityReview.of(r) for r in found]

    @strawberry.field(
        description="Administrators' identity operations (link, unlink, dismiss) with who, when "
        "and why, oldest first; `after` an operation id. Admin role with the "
        "patientgraph/identity.read scope only."
    )
    async def identity_operations(
        self,
        info: Info,
        first: Annotated[
            int, strawberry.argument(description="At most this many (1 to 200).")
        ] = 100,
        after: Annotated[
            int | None,
            strawberry.argument(description="The last operation id of the previous page."),
        ] = None,
    ) -> list[IdentityOperation]:
        found = await identity_admin.identity_operations(info.context, first, after)
        return [IdentityOperation.of(op) for op in found]

    @strawberry.field(
        graphql_type=Patient | None,
        description="The patient of a patient-context token (its `patient` claim); null otherwise.",
    )
    async def me(self, info: Info) -> Any:
        return await resolve.my_patient(info.context, path_of(info))

    @strawberry.field(
        description="The audit trail, newest first: every disclosure of and refusal for a "
        "patient, with who, what, where, how it was served and the decisions made. Auditor "
        "role only."
    )
    async def audit_events(
        self,
        info: Info,
        patient_id: Annotated[
            strawberry.ID | None, strawberry.argument(description="One patient's events only.")
        ] = None,
        since: Annotated[
            DateTime | None, strawberry.argument(description="Recorded at or after this time.")
        ] = None,
        until: Annotated[
            DateTime | None, strawberry.argument(description="Recorded before this time.")
        ] = None,
        first: Annotated[int, strawberry.argument(description="How many (1 to 200).")] = 50,
        after: Annotated[
            str | None, strawberry.argument(description="The previous page's endCursor.")
        ] = None,
    ) -> AuditEventPage:
        page = await audit_log.audit_events(
            info.context,
            str(patient_id) if patient_id is not None else None,
            _moment(since),
            _moment(until),
            first,
            after,
        )
        return AuditEventPage.of(page)

    @strawberry.field(
        description="Per client app over a period: unique patients whose data was disclosed and "
        "how many of them more than once (the Patient Access API figures payers report to "
        "CMS). Auditor role only."
    )
    async def usage_report(
        self,
        info: Info,
        since: Annotated[
            DateTime | None, strawberry.argument(description="From this time (default: all).")
        ] = None,
        until: Annotated[
            DateTime | None, strawberry.argument(description="Before this time (default: now).")
        ] = None,
    ) -> list[ClientUsage]:
        found = await audit_log.usage(info.context, _moment(since), _moment(until))
        return [ClientUsage.of(u) for u in found]


def _moment(value: DateTime | None) -> datetime | None:
    """A DateTime argument (validated ISO 8601) as an aware time; without an offset, UTC."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
