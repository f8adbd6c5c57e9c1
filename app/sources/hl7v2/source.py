"""Hl7v2Source: a lab that pushes ORU^R01 results over MLLP.

Ingest: sender check -> parse (in a worker thread: a large message must not stall HTTP) ->
store (committed) -> tell `on_ingested` the message's patient (the server links
them in the patient index and purges their cached responses) -> ACK AA. A message that cannot
be parsed, or comes from a sending party the source does not list, gets AR/AE and nothing is
stored; a store failure gets AE (the sender retries).
Reads come from the store through the same batched ports as every other source.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

from sqlalchemy.exc import SQLAlchemyError

from app.domain.patients import PatientCriteria, SourcePatient
from app.domain.records import DIAGNOSTIC_REPORTS, OBSERVATIONS, RecordKind, RecordQuery
from app.logging import describe_exception
from app.settings import Hl7v2SourceSettings
from app.sources.base import SourceHealth
from app.sources.errors import SourceUnavailable
from app.sources.hl7v2.ack import build_ack
from app.sources.hl7v2.mapping import LabMessage, MessageLimits, MessageRejected, parse_message
from app.sources.hl7v2.mllp import MllpServer
from app.sources.hl7v2.senders import SenderPolicy
from app.sources.hl7v2.store import LabStore
from app.sources.hl7v2.syntax import decode_message
from app.sources.tls import listener_context

log = logging.getLogger(__name__)
R = TypeVar("R")
T = TypeVar("T")
# Told the patient of a message whose new results were just stored, before the ACK. It must
# not raise for failures it can live with: an exception fails the message like any handler
# failure (the connection closes without an ACK, and the sender resends).
Ingested = Callable[[SourcePatient], Awaitable[None]]


class Hl7v2Source:
    kind = "hl7v2"
    record_kinds = frozenset({OBSERVATIONS.name, DIAGNOSTIC_REPORTS.name})

    def __init__(
        self,
        settings: Hl7v2SourceSettings,
        store: LabStore,
        *,
        on_ingested: Ingested | None = None,
        shared_port: bool = False,  # other worker processes listen on the same port
    ) -> None:
        self._settings = settings
        self._store = store
        self._on_ingested = on_ingested
        self._policy = SenderPolicy.of(settings.allowed_clients, settings.allowed_senders)
        self._limits = MessageLimits(settings.max_segments, settings.max_results)
        self._server = MllpServer(
            self.handle,
            settings.host,
            settings.port,
            max_message_bytes=settings.max_message_bytes,
            idle_timeout=settings.idle_timeout_seconds,
            frame_timeout=settings.frame_timeout_seconds,
            max_connections=settings.max_connections,
            admits=self._policy.admits_peer,
            reuse_port=shared_port,
            tls=listener_context(settings),
        )
        self.unmapped = 0

    @property
    def id(self) -> str:
        return self._settings.id

    @property
    def port(self) -> int:
        return self._server.port

    async def start(self) -> None:
        await self._server.start()

    async def aclose(self) -> None:
        await self._server.aclose()

    async def health(self) -> SourceHealth:
        ok = self._server.running
        return SourceHealth(self.id, self.kind, ok, "ok" if ok else "not listening")

    async def handle(self, raw: bytes) -> bytes:
        """One MLLP message in, its ACK out."""
        try:
            message = await asyncio.to_thread(self._read, raw)
        except MessageRejected as rejected:
            log.info(
                "source %s: rejected a message (%s: %s)",
                self.id,
                rejected.ack_code,
                rejected.reason,
            )
            return build_ack(
                raw, rejected.ack_code, rejected.reason, error_code=rejected.error_code
            )
        try:
            outcome = await self._store.ingest(self.id, message, raw.decode("utf-8", "replace"))
        except Exception as exc:  # nothing was committed: say so, the sender will resend
            log.error("source %s: could not store a message: %s", self.id, describe_exception(exc))
            return build_ack(raw, "AE", "message could not be stored")
        if outcome.skipped and not outcome.duplicate:
            self.unmapped += outcome.skipped
            log.warning(
                "source %s: %d result(s) of a message could not be mapped", self.id, outcome.skipped
            )
        if not outcome.duplicate and self._on_ingested is not None:
            await self._on_ingested(message.patient)
        return build_ack(raw, "AA")

    def _read(self, raw: bytes) -> LabMessage:
        if not self._policy.admits_sender(decode_message(raw)[0]):
            raise MessageRejected("AR", "sending application not accepted", "207")
        return parse_message(raw, self.id, self._limits)

    async def patients_by_id(self, local_ids: Sequence[str]) -> Mapping[str, SourcePatient]:
        return await self._guard(self._store.patients_by_id(self.id, local_ids))

    async def search_patients(self, criteria: PatientCriteria) -> Sequence[SourcePatient]:
        return await self._guard(self._store.search_patients(self.id, criteria))

    async def records_for(
        self, kind: RecordKind[R], queries: Sequence[RecordQuery]
    ) -> Mapping[RecordQuery, Sequence[R]]:
        patients = [q.patient for q in queries]
        read = self._store.observations if kind is OBSERVATIONS else self._store.reports
        found: Mapping[str, Sequence[Any]] = await self._guard(read(self.id, patients))
        return {q: cast(Sequence[R], found.get(q.patient, ())) for q in queries}

    async def _guard(self, call: Awaitable[T]) -> T:
        """The store is this source's upstream: its failures are this source's failures."""
        try:
            return await call
        except (SQLAlchemyError, OSError) as exc:
            raise SourceUnavailable(self.id, exc.__class__.__name__) from exc
