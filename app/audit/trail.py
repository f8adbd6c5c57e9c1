"""AuditTrail: append-only, hash-chained events in the store, written in batches.

Each event is stored as the exact canonical JSON that was hashed, with its sequence number,
the previous event's hash and its own: hash = HMAC-SHA256(key, previous hash | seq | time |
body), so without `[audit] hash_key` no one can write a row that verifies. An
edited body, a deleted or inserted row, or two rows swapped breaks the chain at that event, and
`verify` names it. (Removing the newest events leaves a shorter valid chain; signed
checkpoints kept elsewhere would bound that, and are not built yet.)

Appends are serialised across processes: on PostgreSQL under an advisory lock held by the
transaction; on SQLite (one host) the sequence number's primary key rejects a second writer's
duplicate, which retries. `record` waits until its events are committed: callers disclose
nothing before that (fail closed), and concurrent callers share one transaction (group
commit), so the cost per request stays one queue hop when the store is busy.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.store import create_tables

metadata = sa.MetaData()
audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=False,
    ),
    sa.Column("at", sa.String(32), nullable=False),  # ISO 8601 UTC, as hashed
    sa.Column("patient_id", sa.String(64), nullable=True, index=True),
    sa.Column("body", sa.Text, nullable=False),  # canonical JSON, as hashed
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

GENESIS = "0" * 64  # the previous hash of the first event
APPEND_LOCK = 0x70675F61756474  # "pg_audt": the advisory lock appends take on PostgreSQL
APPEND_ATTEMPTS = 5
VERIFY_CHUNK = 10_000


class AuditUnavailable(Exception):
    """The trail could not be written: whatever the events describe must not be disclosed."""


def chain_hash(key: bytes, prev_hash: str, seq: int, at: str, body: str) -> str:
    message = f"{prev_hash}|{seq}|{at}|{body}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def canonical(event: Mapping[str, Any]) -> str:
    return orjson.dumps(event, option=orjson.OPT_SORT_KEYS).decode()


@dataclass(frozen=True, slots=True)
class Verification:
    events: int  # events checked
    first_bad: int | None  # the sequence number where the chain first breaks
    problem: str | None  # what is wrong there

    @property
    def ok(self) -> bool:
        return self.first_bad is None


class AuditTrail:
    def __init__(self, engine: AsyncEngine, hash_key: str) -> None:
        self._engine = engine
        self._key = hash_key.encode()
        self._pending: list[tuple[list[tuple[str | None, str]], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.conflicts = 0  # appends that lost a race to another process and were redone

    async def create_tables(self) -> None:
        await create_tables(self._engine, metadata)

    async def record(self, events: Sequence[tuple[str | None, Mapping[str, Any]]]) -> None:
        """Append (patient id or None, event) pairs; returns once they are committed. Raises
        AuditUnavailable if they could not be."""
        if not events:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(([(pid, canonical(e)) for pid, e in events], done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending())
        await done

    async def _write_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._append([event for events, _ in batch for event in events])
            except Exception:  # every failure means the same: not recorded
                for _, done in batch:
                    if not done.done():
                        done.set_exception(AuditUnavailable("the audit trail could not be written"))
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)

    async def _append(self, events: list[tuple[str | None, str]]) -> None:
        for attempt in range(APPEND_ATTEMPTS):
            try:
                async with self._engine.begin() as conn:
                    await self._append_in(conn, events)
                return
            except sa.exc.IntegrityError:  # another process appended first: chain after it
                self.conflicts += 1
                if attempt == APPEND_ATTEMPTS - 1:
                    raise

    async def _append_in(self, conn: AsyncConnection, events: list[tuple[str | None, str]]) -> None:
        if conn.dialect.name == "postgresql":
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": APPEND_LOCK})
        last = (
            await conn.execute(
                sa.select(audit_events.c.seq, audit_events.c.hash)
                .order_by(audit_events.c.seq.desc())
                .limit(1)
            )
        ).first()
        seq, prev = (last.seq, last.hash) if last is not None else (0, GENESIS)
        at = datetime.now(UTC).isoformat(timespec="microseconds")
        rows = []
        for patient_id, body in events:
            seq += 1
            digest = chain_hash(self._key, prev, seq, at, body)
            rows.append(
                {
                    "seq": seq,
                    "at": at,
                    "patient_id": patient_id,
                    "body": body,
                    "prev_hash": prev,
                    "hash": digest,
                }
            )
            prev = digest
        await conn.execute(audit_events.insert(), rows)

    async def events(self, after: int = 0, limit: int = VERIFY_CHUNK) -> list[sa.Row[Any]]:
        async with self._engine.connect() as conn:
            query = (
                sa.select(audit_events)
                .where(audit_events.c.seq > after)
                .order_by(audit_events.c.seq)
                .limit(limit)
            )
            return list((await conn.execute(query)).all())

    async def verify(self) -> Verification:
        """Walk the whole chain in order; the first event whose links or hash do not hold."""
        checked, prev, expected_seq = 0, GENESIS, 1
        async for row in self._all():
            if row.seq != expected_seq:
                problem = f"sequence number {row.seq} where {expected_seq} was expected"
                return Verification(checked, row.seq, problem)
            if row.prev_hash != prev:
                return Verification(checked, row.seq, "does not follow the event before it")
            if chain_hash(self._key, row.prev_hash, row.seq, row.at, row.body) != row.hash:
                return Verification(checked, row.seq, "its content does not match its hash")
            checked, prev, expected_seq = checked + 1, row.hash, row.seq + 1
        return Verification(checked, None, None)

    async def _all(self) -> AsyncIterator[sa.Row[Any]]:
        after = 0
        while True:
            rows = await self.events(after)
            if not rows:
                return
            for row in rows:
                yield row
            after = rows[-1].seq
