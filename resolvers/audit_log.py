"""Reading the audit trail in the graph: `auditEvents` for auditors, and a patient's own
access log (`Patient.accessLog`): newest first, a page at a time (the cursor is the last
event's sequence number)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.audit.usage import Usage, usage_report
from app.domain.audit import DISCLOSED_OUTCOMES, AuditRecord
from app.identity.index import is_patient_id
from resolvers import access
from resolvers.context import Context
from resolvers.errors import Forbidden, UserInputError

Path = tuple[str | int, ...] | None
MAX_PAGE = 200


@dataclass(frozen=True, slots=True)
class EventPage:
    records: list[AuditRecord]
    has_next_page: bool
    end_cursor: str | None


async def audit_events(
    ctx: Context,
    patient_id: str | None,
    since: datetime | None,
    until: datetime | None,
    first: int,
    after: str | None,
) -> EventPage:
    if not access.is_auditor(ctx, "auditEvents"):
        raise Forbidden("Only auditors may read the audit trail")
    if patient_id is not None and not is_patient_id(patient_id):
        raise UserInputError("'patientId' is not a PatientGraph patient id")
    return await _page(ctx, patient_id, since, until, first, after, outcomes=None)


async def usage(ctx: Context, since: datetime | None, until: datetime | None) -> list[Usage]:
    """Per client app: unique patients disclosed in the period, and how many more than once."""
    if not access.is_auditor(ctx, "usageReport"):
        raise Forbidden("Only auditors may read the usage report")
    trail = ctx.services.audit
    if trail is None:
        return []
    return await usage_report(trail.since(since), until)


async def access_log(
    ctx: Context, patient_id: str, first: int, after: str | None, path: Path
) -> EventPage:
    """Who saw this patient's data: for the patient themself (a patient-context token for
    them); anyone else is refused, so no patient reads another's log."""
    if not access.may_read_access_log(ctx, patient_id, path):
        raise Forbidden("Only the patient may read their access log")
    return await _page(ctx, patient_id, None, None, first, after, outcomes=DISCLOSED_OUTCOMES)


async def _page(
    ctx: Context,
    patient_id: str | None,
    since: datetime | None,
    until: datetime | None,
    first: int,
    after: str | None,
    outcomes: tuple[str, ...] | None,
) -> EventPage:
    if not 1 <= first <= MAX_PAGE:
        raise UserInputError(f"'first' must be between 1 and {MAX_PAGE}")
    if after is not None and not after.isdigit():
        raise UserInputError("'after' is not a cursor of this list")
    trail = ctx.services.audit
    if trail is None:
        return EventPage([], False, None)
    found = await trail.newest(
        patient_id=patient_id,
        since=since,
        until=until,
        before=int(after) if after is not None else None,
        limit=first + 1,
        outcomes=outcomes,
    )
    records = found[:first]
    end = str(records[-1].seq) if records else None
    return EventPage(records, len(found) > first, end)
