"""AuditTrail: append-only, hash-chained events in the store, written in batches.

Each event is stored as the exact JSON text that was hashed, with its sequence number,
the previous event's hash and its own: hash = HMAC-SHA256(key, previous hash | seq | time |
body), so without `[audit] hash_key` no one can write a row that verifies. An
edited body, a deleted or inserted row, or two rows swapped breaks the chain at that event, and
`verify` names it. (Removing the newest events leaves a shorter valid chain; signed
checkpoints kept elsewhere would bound that, and are not built yet.)

Appends are serialised across processes by a lock the transaction takes before it reads the
chain's head: on PostgreSQL an advisory lock, on SQLite the write lock (`BEGIN IMMEDIATE`).
`record` waits until its events are committed: callers disclose nothing before that (fail
closed), and concurrent callers share one transaction (group commit), so the cost per request
stays one queue hop when the store is busy. On SQLite that transaction runs whole on a thread
of its own (one hop there and back, not one per statement through aiosqlite: measured, the
hops, each queued behind the event loop's other work, were most of a busy server's wait).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.domain.audit import AuditRecord
from app.store import connect_sqlite, create_tables

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
    # ISO 8601 UTC, as hashed. Not indexed: it rises with `seq`, and an index would cost every
    # event's write more than it saves the time-range reads.
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("patient_id", sa.String(64), nullable=True, index=True),
    sa.Column("outcome", sa.String(16), nullable=True),  # as in the body, for queries
    sa.Column("body", sa.Text, nullable=False),  # JSON, exactly as hashed
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

# Where a pruned chain now starts: the last removed event's number and hash, with an HMAC so
# that no one without the key can move the start (and hide events removed at the front).
audit_prunes = sa.Table(
    "audit_prunes",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("pruned_at", sa.String(32), nullable=False),
    sa.Column("mac", sa.String(64), nullable=False),
)

GENESIS = "0" * 64  # the previous hash of the first event
APPEND_LOCK = 0x70675F61756474  # "pg_audt": the advisory lock appends take on PostgreSQL
VERIFY_CHUNK = 10_000
Pending = tuple[str | None, str | None, str]  # patient id, outcome, the JSON body (as hashed)
Head = tuple[int, str]  # the newest event's (or, all pruned, the last removed one's) seq and hash
Stored = tuple[int, str, str | None, str | None, str, str, str]  # a row, in the table's order


class AuditUnavailable(Exception):
    """The trail could not be written: whatever the events describe must not be disclosed."""


def chain_hash(key: bytes, prev_hash: str, seq: int, at: str, body: str) -> str:
    return _chain_hasher(key)(prev_hash, seq, at, body)


def _chain_hasher(key: bytes) -> Callable[[str, int, str, str], str]:
    """`chain_hash` with the key set up once: copying a keyed HMAC is about half the cost of
    keying a new one, and every event is hashed on write and on verify."""
    keyed = hmac.new(key, digestmod=hashlib.sha256)

    def digest(prev_hash: str, seq: int, at: str, body: str) -> str:
        mac = keyed.copy()
        mac.update(f"{prev_hash}|{seq}|{at}|{body}".encode())
        return mac.hexdigest()

    return digest


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
        self.key = hash_key.encode()  # the chain's HMAC key, also for keyed hashes in events
        self._hash = _chain_hasher(self.key)
        self._pending: list[tuple[list[Pending], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._sqlite = (
            SqliteAppender(engine, self._chain) if engine.dialect.name == "sqlite" else None
        )
        self.transactions = 0  # appends committed (each one group of `record` calls)

    async def create_tables(self) -> None:
        await create_tables(self._engine, metadata)

    async def record(self, rows: Sequence[Pending]) -> None:
        """Append events (patient id or None, outcome, the JSON body, which names both: a row
        moved to another patient or outcome breaks the chain); returns once they are
        committed. Raises AuditUnavailable if they could not be."""
        if not rows:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((list(rows), done))
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

    async def _append(self, events: list[Pending]) -> None:
        if self._sqlite is not None:
            await self._sqlite.append(events)
        else:
            async with self._engine.begin() as conn:
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": APPEND_LOCK})
                last = await _newest(conn, audit_events) or await _newest(conn, audit_prunes)
                rows = self._chain((last.seq, last.hash) if last is not None else None, events)
                # Straight to the driver: compiling a Core insert's parameters cost more per
                # event than hashing it, and this runs for every patient of every request.
                await conn.exec_driver_sql(_insert_sql(conn.dialect), rows)
        self.transactions += 1

    def _chain(self, head: Head | None, events: list[Pending]) -> list[Stored]:
        """`events` as rows chained after `head` (None: the trail is new)."""
        seq, prev = head if head is not None else (0, GENESIS)
        at = _stamp(datetime.now(UTC))
        rows = []
        for patient_id, outcome, body in events:
            seq += 1
            digest = self._hash(prev, seq, at, body)
            rows.append((seq, at, patient_id, outcome, body, prev, digest))
            prev = digest
        return rows

    async def aclose(self) -> None:
        if self._sqlite is not None:
            await self._sqlite.aclose()

    async def events(self, after: int = 0, limit: int = VERIFY_CHUNK) -> list[sa.Row[Any]]:
        async with self._engine.connect() as conn:
            query = (
                sa.select(audit_events)
                .where(audit_events.c.seq > after)
                .order_by(audit_events.c.seq)
                .limit(limit)
            )
            return list((await conn.execute(query)).all())

    async def prune(self, before: datetime) -> int:
        """Remove the events recorded before `before`, oldest first, and keep where the chain
        now starts (`audit_prunes`), so that `verify` still checks every event left."""
        cutoff = _stamp(before)
        async with self._engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # no append between reading and deleting
                await conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": APPEND_LOCK}
                )
            last = (
                await conn.execute(
                    sa.select(audit_events.c.seq, audit_events.c.hash)
                    .where(audit_events.c.at < cutoff)
                    .order_by(audit_events.c.seq.desc())
                    .limit(1)
                )
            ).first()
            if last is None:
                return 0
            removed = await conn.execute(
                audit_events.delete().where(audit_events.c.seq <= last.seq)
            )
            await conn.execute(
                audit_prunes.insert().values(
                    seq=last.seq,
                    hash=last.hash,
                    pruned_at=_stamp(datetime.now(UTC)),
                    mac=self._prune_mac(last.seq, last.hash),
                )
            )
            return int(removed.rowcount)

    def _prune_mac(self, seq: int, digest: str) -> str:
        return hmac.new(self.key, f"pruned|{seq}|{digest}".encode(), hashlib.sha256).hexdigest()

    async def _start(self) -> tuple[int, str] | Verification:
        """The number and previous hash the chain's first event must have, or what is wrong
        with the record of a pruning."""
        async with self._engine.connect() as conn:
            start = (
                await conn.execute(sa.select(audit_prunes).order_by(audit_prunes.c.seq.desc()))
            ).first()
        if start is None:
            return 1, GENESIS
        if not hmac.compare_digest(self._prune_mac(start.seq, start.hash), start.mac):
            return Verification(0, start.seq + 1, "the record of a pruning has been changed")
        return start.seq + 1, start.hash

    async def newest(
        self,
        *,
        patient_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before: int | None = None,
        limit: int = 50,
        outcomes: Sequence[str] | None = None,
    ) -> list[AuditRecord]:
        """Events newest first (a page: `before` is the last sequence number of the previous
        one), for one patient or all, recorded in [since, until)."""
        query = sa.select(audit_events).order_by(audit_events.c.seq.desc()).limit(limit)
        if patient_id is not None:
            query = query.where(audit_events.c.patient_id == patient_id)
        if since is not None:
            query = query.where(audit_events.c.at >= _stamp(since))
        if until is not None:
            query = query.where(audit_events.c.at < _stamp(until))
        if before is not None:
            query = query.where(audit_events.c.seq < before)
        if outcomes is not None:
            query = query.where(audit_events.c.outcome.in_(outcomes))
        async with self._engine.connect() as conn:
            return [_record(row) for row in (await conn.execute(query)).all()]

    async def since(self, since: datetime | None = None) -> AsyncIterator[AuditRecord]:
        """Every event recorded at or after `since`, oldest first (export, reports)."""
        stamp, after = (_stamp(since) if since is not None else ""), 0
        while True:
            query = (
                sa.select(audit_events)
                .where(audit_events.c.seq > after, audit_events.c.at >= stamp)
                .order_by(audit_events.c.seq)
                .limit(VERIFY_CHUNK)
            )
            async with self._engine.connect() as conn:
                rows = (await conn.execute(query)).all()
            if not rows:
                return
            for row in rows:
                yield _record(row)
            after = rows[-1].seq

    async def verify(self) -> Verification:
        """Walk the whole chain in order; the first event whose links or hash do not hold."""
        start = await self._start()
        if isinstance(start, Verification):
            return start
        checked, (expected_seq, prev) = 0, start
        async for row in self._all():
            if row.seq != expected_seq:
                problem = f"sequence number {row.seq} where {expected_seq} was expected"
                return Verification(checked, row.seq, problem)
            if row.prev_hash != prev:
                return Verification(checked, row.seq, "does not follow the event before it")
            if self._hash(row.prev_hash, row.seq, row.at, row.body) != row.hash:
                return Verification(checked, row.seq, "its content does not match its hash")
            body = orjson.loads(row.body)
            if (body.get("patient"), body.get("outcome")) != (row.patient_id, row.outcome):
                return Verification(checked, row.seq, "its patient or outcome has been changed")
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


class SqliteAppender:
    """Appends to a SQLite trail, each transaction whole on one thread with a blocking
    connection of its own."""

    def __init__(
        self, engine: AsyncEngine, chain: Callable[[Head | None, list[Pending]], list[Stored]]
    ) -> None:
        self._engine = engine
        self._chain = chain
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="audit-append")
        self._connection: sqlite3.Connection | None = None  # opened on, and used by, the thread
        dialect = engine.dialect
        self._head_sql = [_head_sql(table, dialect) for table in (audit_events, audit_prunes)]
        self._insert_sql = _insert_sql(dialect)

    async def append(self, events: list[Pending]) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._append, events)

    def _append(self, events: list[Pending]) -> None:
        if self._connection is None:
            self._connection = connect_sqlite(self._engine)
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")  # the write lock, before the head is read
        try:
            head = None
            for sql in self._head_sql:
                head = head or connection.execute(sql).fetchone()
            connection.executemany(self._insert_sql, self._chain(head, events))
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    async def aclose(self) -> None:
        def close() -> None:
            if self._connection is not None:
                self._connection.close()

        await asyncio.get_running_loop().run_in_executor(self._thread, close)
        self._thread.shutdown()


@functools.cache
def _head_sql(table: sa.Table, dialect: sa.Dialect) -> str:
    """The highest sequence number in `table` and its hash."""
    query = sa.select(table.c.seq, table.c.hash).order_by(table.c.seq.desc()).limit(1)
    return str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


@functools.cache
def _insert_sql(dialect: sa.Dialect) -> str:
    """The table's insert in the driver's own parameter style, compiled once; its positional
    parameters follow the table's column order, as `_chain`'s row tuples do."""
    compiled = audit_events.insert().compile(dialect=dialect)
    assert compiled.positiontup == [column.name for column in audit_events.columns]
    return str(compiled)


async def _newest(conn: AsyncConnection, table: sa.Table) -> sa.Row[Any] | None:
    return (await conn.exec_driver_sql(_head_sql(table, conn.dialect))).first()


def _stamp(moment: datetime) -> str:
    """The stored form of a time: ISO 8601 in UTC to the microsecond, so that text order is
    time order (a naive time is taken as UTC)."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="microseconds")


def _record(row: sa.Row[Any]) -> AuditRecord:
    return AuditRecord(
        row.seq, datetime.fromisoformat(row.at), row.patient_id, orjson.loads(row.body)
    )
