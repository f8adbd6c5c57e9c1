"""Per-request DataLoaders: one batch per (source, capability) per event-loop tick.

Every loader is keyed by source-local ids, so each batch becomes one upstream search (chunked
only past the source's `max_batch_size`). Loaders for different sources dispatch in the same
tick and therefore run concurrently.

`record_answer` and `people_answer` also remember each answer's future for the rest of the
request, failed ones included (a DataLoader forgets a key whose batch failed, so asking again
would repeat the upstream call): a collection prefetched for a page of patients and then read
by each patient's field costs one upstream search, whether it succeeded or not.
"""

from __future__ import annotations

import asyncio
from asyncio import Future
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from aiodataloader import DataLoader

from app.auth.policy import Access
from app.domain.common import SourceLink
from app.domain.patients import SourcePatient
from app.domain.records import PersonQuery, RecordKind, RecordQuery
from app.identity.index import PatientIndex
from app.sources.base import PatientSource, PersonRecordSource, RecordSource
from app.sources.errors import DeadlineExceeded

T = TypeVar("T")


class RequestLoaders:
    def __init__(self, index: PatientIndex, deadline: float | None = None) -> None:
        """`deadline`: the event-loop time (`loop.time()`) by which every source call of this
        request is abandoned as DeadlineExceeded; None: each source's own timeout only."""
        self._index = index
        self.deadline = deadline
        self._links: DataLoader[str, tuple[SourceLink, ...]] | None = None
        self._patients: dict[str, DataLoader[str, SourcePatient | None]] = {}
        self._records: dict[tuple[str, str], DataLoader[RecordQuery, Sequence[Any]]] = {}
        self._people: dict[tuple[str, str], DataLoader[PersonQuery, Sequence[Any]]] = {}
        self._answers: dict[tuple[str, str, object], Future[Sequence[Any]]] = {}
        # Record types of each kind the caller may read (`resolvers.records.readable_types`),
        # with the Access they were worked out for.
        self.readable_types: dict[str, tuple[Access, frozenset[str]]] = {}

    @property
    def links(self) -> DataLoader[str, tuple[SourceLink, ...]]:
        """PatientGraph id -> linked source records (tuple, empty when unknown)."""
        if self._links is None:
            index = self._index

            async def load(ids: list[str]) -> list[tuple[SourceLink, ...]]:
                found = await index.links_for(ids)
                return [found.get(i, ()) for i in ids]

            self._links = DataLoader(load)
        return self._links

    def patients(self, source: PatientSource) -> DataLoader[str, SourcePatient | None]:
        """Source-local id -> SourcePatient | None, one `Patient?_id=a,b,c` per batch."""
        loader = self._patients.get(source.id)
        if loader is None:

            async def load(ids: list[str]) -> list[SourcePatient | None]:
                found = await self.bounded(source.id, source.patients_by_id(ids))
                return [found.get(i) for i in ids]

            loader = self._patients[source.id] = DataLoader(load)
        return loader

    def records(
        self, source: RecordSource, kind: RecordKind[Any]
    ) -> DataLoader[RecordQuery, Sequence[Any]]:
        """RecordQuery -> records of `kind`, one search per batch (per filter group)."""
        loader = self._records.get((source.id, kind.name))
        if loader is None:

            async def load(queries: list[RecordQuery]) -> list[Sequence[Any]]:
                found = await self.bounded(source.id, source.records_for(kind, queries))
                return [found.get(q, ()) for q in queries]

            loader = self._records[(source.id, kind.name)] = DataLoader(load)
        return loader

    def people(
        self, source: PersonRecordSource, kind: RecordKind[Any]
    ) -> DataLoader[PersonQuery, Sequence[Any]]:
        """PersonQuery -> records of `kind` from a source that matches on demographics."""
        loader = self._people.get((source.id, kind.name))
        if loader is None:

            async def load(people: list[PersonQuery]) -> list[Sequence[Any]]:
                found = await self.bounded(source.id, source.records_for_people(kind, people))
                return [found.get(p, ()) for p in people]

            loader = self._people[(source.id, kind.name)] = DataLoader(load)
        return loader

    async def bounded(self, source_id: str, call: Awaitable[T]) -> T:
        """`call` to source `source_id`, abandoned at the deadline. Cancelling it cancels this
        request's upstream exchange; one shared with other requests (the source cache's
        single flight) goes on for them."""
        if self.deadline is None:
            return await call
        try:
            async with asyncio.timeout_at(self.deadline):
                return await call
        except TimeoutError:
            raise DeadlineExceeded(source_id, "operation deadline") from None

    def record_answer(
        self, source: RecordSource, kind: RecordKind[Any], query: RecordQuery
    ) -> Future[Sequence[Any]]:
        """`records(source, kind).load(query)`, the same future all request long."""
        key = (source.id, kind.name, query)
        answer = self._answers.get(key)
        if answer is None:
            answer = self._answers[key] = self.records(source, kind).load(query)
        return answer

    def people_answer(
        self, source: PersonRecordSource, kind: RecordKind[Any], person: PersonQuery
    ) -> Future[Sequence[Any]]:
        """`people(source, kind).load(person)`, the same future all request long."""
        key = (source.id, kind.name, person)
        answer = self._answers.get(key)
        if answer is None:
            answer = self._answers[key] = self.people(source, kind).load(person)
        return answer
