"""A patient's clinical records of one kind, from every linked source that serves it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

from app.domain.observations import Observation
from app.domain.patients import Patient
from app.domain.records import OBSERVATIONS, RecordKind, RecordQuery
from resolvers.context import Context
from resolvers.merge import combine_records
from resolvers.outcomes import gather_sources

R = TypeVar("R")
Path = tuple[str | int, ...] | None


async def records_of(
    ctx: Context, patient: Patient, kind: RecordKind[R], filters: RecordQuery, path: Path = None
) -> list[R]:
    """`filters.patient` is ignored: each linked source record supplies its own local id."""
    calls = []
    for link in patient.sources:
        source = ctx.services.record_source(link.source_id)
        if source is not None and kind.name in source.record_kinds:
            query = RecordQuery(link.local_id, filters.category, filters.code, filters.since)
            calls.append(ctx.loaders.records(source, kind).load(query))
    results, _ = await gather_sources(calls, ctx.problems, path)
    combined = combine_records(kind.name, results.values())
    if kind is OBSERVATIONS and (filters.category or filters.code or filters.since):
        # Also filter here: a lenient upstream may ignore a search parameter it does not know.
        return [r for r in combined if _observation_matches(r, filters)]
    return combined


def _observation_matches(record: Any, filters: RecordQuery) -> bool:
    assert isinstance(record, Observation)
    if filters.category and filters.category.rpartition("|")[2] not in record.category:
        return False
    if filters.code and not record.code.has_code(filters.code):
        return False
    if filters.since:
        when = parse_instant(record.effective)
        return when is not None and when >= parse_instant(filters.since)  # type: ignore[operator]
    return True


def parse_instant(value: str | None) -> datetime | None:
    """ISO 8601 date or dateTime as an aware datetime (dates and naive times taken as UTC)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value if len(value) > 7 else f"{value}-01-01"[:10])
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
