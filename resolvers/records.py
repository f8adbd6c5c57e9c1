"""A patient's clinical records of one kind, from every linked source that serves it (and,
for a kind with a companion, every person source that knows the patient: pharmacy fills for
medications), combined by the kind's rule in `resolvers.merge` and filtered by
`resolvers.access`.

Two steps: `start` begins the loads (`ask`: one DataLoader key per linked source and person
source) and `Pending.result` turns their answers into what the caller sees; `records_of` does
both. `schema.prefetch` starts the loads of a whole page of patients in advance, so that each
collection field finds its answers in and takes its result without waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from app.domain.patients import Patient
from app.domain.records import PersonQuery, RecordKind, RecordQuery
from app.sources.errors import SourceError
from resolvers import access, merge
from resolvers.access import RecordSet
from resolvers.context import Context, SourceProblems
from resolvers.pagination import Page, paginate

R = TypeVar("R")
T = TypeVar("T")
Path = tuple[str | int, ...] | None


@dataclass(frozen=True, slots=True)
class Asked:
    """The loads one collection needs: each linked source's answer (priority order) and each
    person source's (companion records)."""

    linked: tuple[asyncio.Future[Sequence[Any]], ...] = ()
    people: tuple[asyncio.Future[Sequence[Any]], ...] = ()

    def ready(self) -> bool:
        return all(f.done() for f in self.linked) and all(f.done() for f in self.people)

    async def wait(self) -> None:
        """Until every answer is in; never raises (failures are read by `settled`)."""
        await asyncio.gather(*self.linked, *self.people, return_exceptions=True)


NOTHING_ASKED = Asked()


def ask(
    ctx: Context,
    patient: Patient,
    kind: RecordKind[Any],
    filters: RecordQuery,
    allowed: frozenset[str] | None = None,
) -> Asked:
    """Start the loads `combine` will read (nothing for types the caller may not read).
    `filters.patient` is ignored: each linked source record supplies its own local id."""
    allowed = access.readable_types(ctx, kind) if allowed is None else allowed
    if not allowed:
        return NOTHING_ASKED
    linked = []
    for link in patient.sources:
        source = ctx.services.record_source(link.source_id)
        if source is not None and kind.name in source.record_kinds:
            query = RecordQuery(link.local_id, filters.category, filters.code, filters.since)
            linked.append(ctx.loaders.record_answer(source, kind, query))
    people: list[asyncio.Future[Sequence[Any]]] = []
    companion = kind.companion
    if companion is not None and companion.resource_types[0] in allowed:
        person = person_query(patient)  # person sources are asked by demographics
        if person is not None:
            people = [
                ctx.loaders.people_answer(source, companion, person)
                for source in ctx.services.person_sources
                if companion.name in source.record_kinds
            ]
    return Asked(tuple(linked), tuple(people))


@dataclass(frozen=True, slots=True)
class Pending(Generic[R]):
    """One collection's loads, started: `result` once they have finished (`ready`)."""

    ctx: Context
    patient: Patient
    kind: RecordKind[R]
    filters: RecordQuery
    path: Path
    allowed: frozenset[str]
    asked: Asked

    def ready(self) -> bool:
        return self.asked.ready()

    async def wait(self) -> None:
        await self.asked.wait()

    def result(self, *, merged: bool = True) -> RecordSet[R]:
        """What the caller sees (call once every load has finished)."""
        ctx, path = self.ctx, self.path
        per_source = settled(self.asked.linked, ctx.problems, path)
        companions = settled(self.asked.people, ctx.problems, path)
        found = merge.combine(
            self.kind, per_source, companions, self.allowed, self.filters, merged=merged
        )
        return access.visible_records(ctx, self.kind, found, path)

    def page(self, first: int | None, after: str | None, *, merged: bool = True) -> Page[R]:
        """One page of `result`: those records are what the response discloses."""
        found = self.result(merged=merged)
        limits = self.ctx.services.page_limits
        page = paginate(found.records, first, after, limits, withheld=found.withheld)
        if page.nodes:  # what the response holds of the patient, and the sources read for it
            read = tuple(link.source_id for link in self.patient.sources)
            if self.asked.people:
                read += tuple(s.id for s in self.ctx.services.person_sources)
            self.ctx.disclosures.add(self.patient.id, self.kind.name, len(page.nodes), read)
        return page


def start(
    ctx: Context, patient: Patient, kind: RecordKind[R], filters: RecordQuery, path: Path = None
) -> Pending[R]:
    """Start loading the records of `kind` this caller may see. Record types the caller may
    not read are neither fetched nor returned (a FORBIDDEN error at `path` says so)."""
    allowed = access.allowed_types(ctx, kind, path)
    asked = ask(ctx, patient, kind, filters, allowed)
    return Pending(ctx, patient, kind, filters, path, allowed, asked)


async def records_of(
    ctx: Context,
    patient: Patient,
    kind: RecordKind[R],
    filters: RecordQuery,
    path: Path = None,
    *,
    merged: bool = True,
) -> RecordSet[R]:
    """The records of `kind` this caller may see (`start`, then `Pending.result`): sensitive
    records are counted in `withheld` unless the caller's role may see them."""
    pending = start(ctx, patient, kind, filters, path)
    await pending.wait()
    return pending.result(merged=merged)


def settled(futures: Sequence[asyncio.Future[T]], problems: SourceProblems, path: Path) -> list[T]:
    """The answers of finished loads, in order, as `resolvers.fan_out.gather_sources` reports
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


def person_query(patient: Patient) -> PersonQuery | None:
    name = patient.name
    if name is None or not name.family or not name.given or not patient.birth_date:
        return None  # too little to match on: asking would risk another person's records
    return PersonQuery(patient.id, name.family, name.given, patient.birth_date, patient.gender)
