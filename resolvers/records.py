"""A patient's clinical records of one kind, from every linked source that serves it (and,
for medications, every pharmacy that knows the person), combined by `resolvers.merge`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from app.domain.medications import Medication, MedicationDispense
from app.domain.observations import Observation
from app.domain.patients import Patient
from app.domain.records import (
    DISPENSES,
    MEDICATIONS,
    OBSERVATIONS,
    PersonQuery,
    RecordKind,
    RecordQuery,
)
from resolvers import merge
from resolvers.context import Context
from resolvers.outcomes import gather_sources

R = TypeVar("R")
Path = tuple[str | int, ...] | None


@dataclass(frozen=True, slots=True)
class RecordSet(Generic[R]):
    records: list[R]
    withheld: int  # held back by the sensitivity rules: the caller learns how many, not which


async def records_of(
    ctx: Context,
    patient: Patient,
    kind: RecordKind[R],
    filters: RecordQuery,
    path: Path = None,
    *,
    merged: bool = True,
) -> RecordSet[R]:
    """The records of `kind` this caller may see. Record types the caller may not read are
    neither fetched nor returned (a FORBIDDEN error at `path` says so); sensitive records
    are counted in `withheld` unless the caller's role may see them."""
    found = await _readable_records(ctx, patient, kind, filters, path, merged=merged)
    in_scope = [r for r in found if ctx.access.allows_record(r)]
    if len(in_scope) < len(found):
        ctx.denials.add(path, "Some records are outside the token's scopes")
    visible = [r for r in in_scope if not ctx.access.withholds(r)]
    return RecordSet(visible, len(in_scope) - len(visible))


async def _readable_records(
    ctx: Context,
    patient: Patient,
    kind: RecordKind[R],
    filters: RecordQuery,
    path: Path,
    *,
    merged: bool,
) -> list[R]:
    """`filters.patient` is ignored: each linked source record supplies its own local id."""
    allowed = _allowed_types(ctx, kind, path)
    if not allowed:
        return []
    if kind is MEDICATIONS:
        medications = await _medications(ctx, patient, path, allowed, merged=merged)
        return cast(list[R], medications)
    per_source = await _linked_records(ctx, patient, kind, filters, path)
    if kind is not OBSERVATIONS:
        return merge.combine_records(kind.name, per_source)
    observations = [cast(Observation, r) for records in per_source for r in records]
    if filters.category or filters.code or filters.since:
        # Also filter here: a lenient upstream may ignore a search parameter it does not know.
        observations = [o for o in observations if _observation_matches(o, filters)]
    if merged:
        observations = merge.dedupe_observations(observations)
    return cast(list[R], merge.newest_first(kind.name, observations))


async def _linked_records(
    ctx: Context, patient: Patient, kind: RecordKind[R], filters: RecordQuery, path: Path
) -> list[Sequence[R]]:
    """Each linked source's records of `kind`, in source-priority order."""
    calls: list[Awaitable[Sequence[R]]] = []
    for link in patient.sources:
        source = ctx.services.record_source(link.source_id)
        if source is not None and kind.name in source.record_kinds:
            query = RecordQuery(link.local_id, filters.category, filters.code, filters.since)
            calls.append(ctx.loaders.records(source, kind).load(query))
    results, _ = await gather_sources(calls, ctx.problems, path)
    return [results[i] for i in sorted(results)]


def _allowed_types(ctx: Context, kind: RecordKind[R], path: Path) -> frozenset[str]:
    allowed = frozenset(t for t in kind.resource_types if ctx.access.can_read(t))
    withheld = sorted(set(kind.resource_types) - allowed)
    if not allowed:
        ctx.denials.add(path, f"Not allowed to read {kind.name.replace('_', ' ')}")
    elif withheld:
        ctx.denials.add(path, f"Not shown by policy: {', '.join(withheld)}")
    return allowed


async def _medications(
    ctx: Context, patient: Patient, path: Path, allowed: frozenset[str], *, merged: bool
) -> list[Medication]:
    asks_pharmacies = DISPENSES.resource_types[0] in allowed
    orders, fills = await asyncio.gather(
        _linked_records(ctx, patient, MEDICATIONS, RecordQuery(""), path),
        _dispenses(ctx, patient, path) if asks_pharmacies else _nothing(),
    )
    medications = [
        m for records in orders for m in records if m.sources[0].resource_type in allowed
    ]
    combine = merge.merge_medications if merged else merge.unmerged_medications
    return combine(medications, fills)


async def _dispenses(ctx: Context, patient: Patient, path: Path) -> list[MedicationDispense]:
    """Fills from pharmacies, asked by demographics (they hold no id of ours)."""
    person = person_query(patient)
    sources = [s for s in ctx.services.person_sources if DISPENSES.name in s.record_kinds]
    if person is None or not sources:
        return []
    calls = [ctx.loaders.people(source, DISPENSES).load(person) for source in sources]
    results, _ = await gather_sources(calls, ctx.problems, path)
    return [fill for i in sorted(results) for fill in results[i]]


async def _nothing() -> list[MedicationDispense]:
    return []


def person_query(patient: Patient) -> PersonQuery | None:
    name = patient.name
    if name is None or not name.family or not name.given or not patient.birth_date:
        return None  # too little to match on: asking would risk another person's records
    return PersonQuery(patient.id, name.family, name.given, patient.birth_date, patient.gender)


def _observation_matches(record: Observation, filters: RecordQuery) -> bool:
    if filters.category and filters.category.rpartition("|")[2] not in record.category:
        return False
    if filters.code and not record.code.has_code(filters.code):
        return False
    if filters.since:
        when = merge.parse_instant(record.effective)
        since = merge.parse_instant(filters.since)
        return when is not None and since is not None and when >= since
    return True
