"""A patient's clinical records of one kind, from every linked source that serves it (and,
for medications, every pharmacy that knows the person), combined by `resolvers.merge`.

Two steps: `ask` starts the loads (one DataLoader key per linked source and, for
medications, per pharmacy) and `records_of` combines their answers. When every answer has
already arrived, `records_of` returns the records themselves rather than an awaitable: a page
of patients whose collections were asked for in advance (`ask` from the parent field, see
`schema.prefetch`) then resolves every collection without a coroutine per field.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

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
from app.sources.errors import SourceError
from resolvers import merge
from resolvers.context import Context, SourceProblems

R = TypeVar("R")
T = TypeVar("T")
Path = tuple[str | int, ...] | None


@dataclass(frozen=True, slots=True)
class RecordSet(Generic[R]):
    records: list[R]
    withheld: int  # held back by the sensitivity rules: the caller learns how many, not which


@dataclass(frozen=True, slots=True)
class Asked:
    """The loads one collection needs: each linked source's answer (priority order) and, for
    medications, each pharmacy's."""

    linked: tuple[asyncio.Future[Sequence[Any]], ...] = ()
    people: tuple[asyncio.Future[Sequence[Any]], ...] = ()

    def ready(self) -> bool:
        return all(f.done() for f in self.linked) and all(f.done() for f in self.people)

    async def wait(self) -> None:
        """Until every answer is in; never raises (failures are read by `settled`)."""
        await asyncio.gather(*self.linked, *self.people, return_exceptions=True)


NOTHING_ASKED = Asked()


def readable_types(ctx: Context, kind: RecordKind[Any]) -> frozenset[str]:
    """The resource types of `kind` the caller may read (granular scopes decide per record);
    worked out once per request and kind."""
    access, memo = ctx.access, ctx.loaders.readable_types
    known = memo.get(kind.name)
    if known is not None and known[0] is access:
        return known[1]
    readable = frozenset(t for t in kind.resource_types if access.can_read(t))
    memo[kind.name] = (access, readable)
    return readable


def ask(
    ctx: Context,
    patient: Patient,
    kind: RecordKind[R],
    filters: RecordQuery,
    allowed: frozenset[str] | None = None,
) -> Asked:
    """Start the loads `records_of` will combine (nothing for types the caller may not read).
    `filters.patient` is ignored: each linked source record supplies its own local id."""
    allowed = readable_types(ctx, kind) if allowed is None else allowed
    if not allowed:
        return NOTHING_ASKED
    if kind is MEDICATIONS:
        filters = RecordQuery("")
    linked = []
    for link in patient.sources:
        source = ctx.services.record_source(link.source_id)
        if source is not None and kind.name in source.record_kinds:
            query = RecordQuery(link.local_id, filters.category, filters.code, filters.since)
            linked.append(ctx.loaders.record_answer(source, kind, query))
    people: list[asyncio.Future[Sequence[Any]]] = []
    if kind is MEDICATIONS and DISPENSES.resource_types[0] in allowed:
        person = person_query(patient)  # pharmacies are asked by demographics
        if person is not None:
            people = [
                ctx.loaders.people_answer(source, DISPENSES, person)
                for source in ctx.services.person_sources
                if DISPENSES.name in source.record_kinds
            ]
    return Asked(tuple(linked), tuple(people))


def records_of(
    ctx: Context,
    patient: Patient,
    kind: RecordKind[R],
    filters: RecordQuery,
    path: Path = None,
    *,
    merged: bool = True,
) -> RecordSet[R] | Awaitable[RecordSet[R]]:
    """The records of `kind` this caller may see: the RecordSet itself when every source has
    already answered, else an awaitable of it. Record types the caller may not read are
    neither fetched nor returned (a FORBIDDEN error at `path` says so); sensitive records are
    counted in `withheld` unless the caller's role may see them."""
    allowed = _allowed_types(ctx, kind, path)
    asked = ask(ctx, patient, kind, filters, allowed)
    combine = functools.partial(_combine, ctx, kind, filters, path, asked, allowed, merged=merged)
    return combine() if asked.ready() else _when_answered(asked, combine)


async def _when_answered(asked: Asked, combine: Callable[[], RecordSet[R]]) -> RecordSet[R]:
    await asked.wait()
    return combine()


def _combine(
    ctx: Context,
    kind: RecordKind[R],
    filters: RecordQuery,
    path: Path,
    asked: Asked,
    allowed: frozenset[str],
    *,
    merged: bool,
) -> RecordSet[R]:
    per_source = settled(asked.linked, ctx.problems, path)
    found: list[Any]
    if kind is MEDICATIONS:
        fills = settled(asked.people, ctx.problems, path)
        found = _medications(per_source, fills, allowed, merged=merged)
    elif kind is not OBSERVATIONS:
        found = merge.combine_records(kind.name, per_source)
    else:
        found = _observations(per_source, filters, merged=merged)
    return _visible(ctx, found, path)


def _visible(ctx: Context, found: list[R], path: Path) -> RecordSet[R]:
    """Granular scopes, then sensitivity: one pass over the records."""
    allows, withholds = ctx.access.allows_record, ctx.access.withholds
    visible: list[R] = []
    in_scope = 0
    for record in found:
        if allows(record):
            in_scope += 1
            if not withholds(record):
                visible.append(record)
    if in_scope < len(found):
        ctx.denials.add(path, "Some records are outside the token's scopes")
    return RecordSet(visible, in_scope - len(visible))


def _observations(
    per_source: list[Sequence[Any]], filters: RecordQuery, *, merged: bool
) -> list[Observation]:
    observations: list[Observation] = [r for records in per_source for r in records]
    if filters.category or filters.code or filters.since:
        # Also filter here: a lenient upstream may ignore a search parameter it does not know.
        observations = [o for o in observations if _observation_matches(o, filters)]
    if merged:
        observations = merge.dedupe_observations(observations)
    return merge.newest_first(OBSERVATIONS.name, observations)


def _medications(
    orders: list[Sequence[Any]],
    fill_groups: list[Sequence[Any]],
    allowed: frozenset[str],
    *,
    merged: bool,
) -> list[Medication]:
    medications: list[Medication] = [
        m for records in orders for m in records if m.sources[0].resource_type in allowed
    ]
    fills: list[MedicationDispense] = [f for group in fill_groups for f in group]
    combine = merge.merge_medications if merged else merge.unmerged_medications
    return combine(medications, fills)


def settled(futures: Sequence[asyncio.Future[T]], problems: SourceProblems, path: Path) -> list[T]:
    """The answers of finished loads, in order, as `resolvers.outcomes.gather_sources` reports
    them: a failed source becomes one coded error for it and is left out; anything else
    raised is a bug and propagates."""
    out: list[T] = []
    for future in futures:
        error = future.exception()
        if error is None:
            out.append(future.result())
        elif isinstance(error, SourceError):
            problems.add(error, path)
        else:
            raise error
    return out


def _allowed_types(ctx: Context, kind: RecordKind[R], path: Path) -> frozenset[str]:
    allowed = readable_types(ctx, kind)
    withheld = sorted(set(kind.resource_types) - allowed)
    if not allowed:
        ctx.denials.add(path, f"Not allowed to read {kind.name.replace('_', ' ')}")
    elif withheld:
        ctx.denials.add(path, f"Not shown by policy: {', '.join(withheld)}")
    return allowed


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
