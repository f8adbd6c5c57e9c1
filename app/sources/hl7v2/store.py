"""LabStore: HL7 v2 lab results, durably stored as they arrive, read back by patient.

Every accepted message is kept (raw, for history and audit) and each report and result is
versioned by its stable key: a redelivered message (same MSH-10) changes nothing, a correction
(OBX-11 = C) or any later result with the same key becomes the current version while earlier
versions stay in the table. A result whose latest status is D/W (deleted/wrong) is no longer
current. `ingest` commits before it returns, so an ACK sent after it is an honest AA.

Concurrent ingest (several senders, several workers) is race-free: a message first claims its
MSH-10 (an insert that does nothing when the row exists, so a redelivery racing the original
waits for it and then reads as a duplicate), then, on PostgreSQL, takes transaction advisory
locks on its patient and result keys in one sorted order (no deadlock) before reading the
latest versions; SQLite serialises writers already, and the claim being the transaction's
first statement makes each writer wait its turn instead of failing on a stale snapshot.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.domain.codec import from_data, to_data
from app.domain.diagnostic_reports import DiagnosticReport
from app.domain.observations import Observation
from app.domain.patients import PatientCriteria, SourcePatient
from app.sources.hl7v2.mapping import LabMessage
from app.store import create_tables

metadata = sa.MetaData()
lab_messages = sa.Table(
    "lab_messages",
    metadata,
    sa.Column("source_id", sa.String(64), primary_key=True),
    sa.Column("control_id", sa.String(200), primary_key=True),
    sa.Column("received_at", sa.String(40), nullable=False),
    sa.Column("message_type", sa.String(40), nullable=False),
    sa.Column("patient_id", sa.String(64), nullable=False),
    sa.Column("skipped", sa.Integer, nullable=False),
    sa.Column("raw", sa.Text, nullable=False),
)
lab_patients = sa.Table(
    "lab_patients",
    metadata,
    sa.Column("source_id", sa.String(64), primary_key=True),
    sa.Column("local_id", sa.String(64), primary_key=True),
    sa.Column("family", sa.String(200), index=True),  # lower-cased, for prefix search
    sa.Column("given", sa.String(200)),
    sa.Column("birth_date", sa.String(10)),
    sa.Column("payload", sa.Text, nullable=False),
)
lab_identifiers = sa.Table(
    "lab_patient_identifiers",
    metadata,
    sa.Column("source_id", sa.String(64), primary_key=True),
    sa.Column("system", sa.String(255), primary_key=True),
    sa.Column("value", sa.String(200), primary_key=True),
    sa.Column("local_id", sa.String(64), primary_key=True),
)
lab_results = sa.Table(
    "lab_results",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # observation | report
    sa.Column("local_id", sa.String(64), nullable=False),
    sa.Column("patient_id", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("status", sa.String(8), nullable=False),
    sa.Column("current", sa.Boolean, nullable=False),
    sa.Column("control_id", sa.String(200), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.UniqueConstraint("source_id", "kind", "local_id", "version"),
    sa.Index("ix_lab_results_current", "source_id", "kind", "patient_id", "current"),
)
RETIRED_STATUSES = frozenset({"D", "W"})  # OBX-11: deleted, post original as wrong


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    duplicate: bool  # same MSH-10 seen before: nothing changed
    results: int  # result versions written
    skipped: int


class LabStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create_tables(self) -> None:
        await create_tables(self._engine, metadata)

    async def ingest(self, source_id: str, message: LabMessage, raw: str) -> IngestOutcome:
        """Store one parsed message in one transaction (idempotent on MSH-10)."""
        # Serialised in a worker thread: a message with many results must not stall the loop.
        versions = await asyncio.to_thread(_versions, message)
        patient = message.patient
        async with self._engine.begin() as conn:
            claim = _insert(conn)(lab_messages).values(
                source_id=source_id,
                control_id=message.control_id,
                received_at=_now(),
                message_type=message.message_type,
                patient_id=patient.link.local_id,
                skipped=message.skipped,
                raw=raw,
            )
            claimed = await conn.execute(claim.on_conflict_do_nothing())
            if claimed.rowcount == 0:
                return IngestOutcome(True, 0, message.skipped)
            keys = [("pat", patient.link.local_id)] + [(v.kind, v.local_id) for v in versions]
            await _lock(conn, source_id, keys)
            await _upsert_patient(conn, source_id, patient)
            await _add_versions(
                conn, source_id, patient.link.local_id, message.control_id, versions
            )
        return IngestOutcome(False, len(versions), message.skipped)

    async def observations(
        self, source_id: str, patients: Sequence[str]
    ) -> dict[str, list[Observation]]:
        return await self._current(source_id, "observation", patients, Observation)

    async def reports(
        self, source_id: str, patients: Sequence[str]
    ) -> dict[str, list[DiagnosticReport]]:
        return await self._current(source_id, "report", patients, DiagnosticReport)

    async def history(self, source_id: str, local_id: str) -> list[tuple[int, str, bool]]:
        """(version, status, current) of every stored version of one result, oldest first."""
        query = (
            sa.select(lab_results.c.version, lab_results.c.status, lab_results.c.current)
            .where(lab_results.c.source_id == source_id, lab_results.c.local_id == local_id)
            .order_by(lab_results.c.version)
        )
        async with self._engine.connect() as conn:
            return [(r.version, r.status, r.current) for r in (await conn.execute(query)).all()]

    async def patients_by_id(
        self, source_id: str, local_ids: Sequence[str]
    ) -> dict[str, SourcePatient]:
        query = sa.select(lab_patients.c.local_id, lab_patients.c.payload).where(
            lab_patients.c.source_id == source_id, lab_patients.c.local_id.in_(list(local_ids))
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {r.local_id: _patient(r.payload) for r in rows}

    async def search_patients(
        self, source_id: str, criteria: PatientCriteria
    ) -> list[SourcePatient]:
        query = sa.select(lab_patients.c.payload).where(lab_patients.c.source_id == source_id)
        if criteria.family:
            query = query.where(
                lab_patients.c.family.startswith(criteria.family.lower(), autoescape=True)
            )
        if criteria.given:
            query = query.where(
                lab_patients.c.given.startswith(criteria.given.lower(), autoescape=True)
            )
        if criteria.birth_date:
            query = query.where(lab_patients.c.birth_date == criteria.birth_date)
        if criteria.identifier:
            query = query.where(
                lab_patients.c.local_id.in_(_identifier_match(source_id, criteria.identifier))
            )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query.order_by(lab_patients.c.local_id))).all()
        return [_patient(r.payload) for r in rows]

    async def _current(
        self, source_id: str, kind: str, patients: Sequence[str], cls: type[Any]
    ) -> dict[str, list[Any]]:
        if not patients:
            return {}
        query = (
            sa.select(lab_results.c.patient_id, lab_results.c.payload)
            .where(
                lab_results.c.source_id == source_id,
                lab_results.c.kind == kind,
                lab_results.c.patient_id.in_(list(dict.fromkeys(patients))),
                lab_results.c.current.is_(True),
            )
            .order_by(lab_results.c.id)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        out: dict[str, list[Any]] = defaultdict(list)
        for row in rows:
            out[row.patient_id].append(from_data(cls, orjson.loads(row.payload)))
        return out


def _insert(conn: AsyncConnection) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT DO NOTHING (SQLite and PostgreSQL)."""
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


async def _lock(conn: AsyncConnection, source_id: str, keys: Sequence[tuple[str, str]]) -> None:
    """Hold each key until the transaction ends, against every other ingest (PostgreSQL)."""
    if conn.dialect.name != "postgresql":
        return
    ids = sorted({_lock_id(source_id, kind, key) for kind, key in keys})
    await conn.execute(
        sa.text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:ids AS bigint[])) AS k"),
        {"ids": ids},
    )


def _lock_id(source_id: str, kind: str, key: str) -> int:
    digest = hashlib.sha256(f"lab\0{source_id}\0{kind}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def _upsert_patient(conn: AsyncConnection, source_id: str, patient: SourcePatient) -> None:
    """Latest demographics win (a lab sends the current PID with every message)."""
    local_id = patient.link.local_id
    key = (lab_patients.c.source_id == source_id) & (lab_patients.c.local_id == local_id)
    payload = orjson.dumps(to_data(patient)).decode()
    stored = (await conn.execute(sa.select(lab_patients.c.payload).where(key))).scalar()
    if stored == payload:
        return  # the usual case: the same PID as last time, nothing to write
    await conn.execute(lab_patients.delete().where(key))
    name = patient.name
    await conn.execute(
        lab_patients.insert().values(
            source_id=source_id,
            local_id=local_id,
            family=(name.family or "").lower() if name else "",
            given=" ".join(name.given).lower() if name else "",
            birth_date=patient.birth_date,
            payload=payload,
        )
    )
    ident_key = (lab_identifiers.c.source_id == source_id) & (
        lab_identifiers.c.local_id == local_id
    )
    await conn.execute(lab_identifiers.delete().where(ident_key))
    idents = {(i.system or "", i.value) for i in patient.identifiers}
    if idents:
        await conn.execute(
            lab_identifiers.insert(),
            [
                {"source_id": source_id, "system": s, "value": v, "local_id": local_id}
                for s, v in idents
            ],
        )


@dataclass(frozen=True, slots=True)
class _Version:
    kind: str  # observation | report
    local_id: str
    status: str
    payload: str  # the record as stored


def _versions(message: LabMessage) -> list[_Version]:
    reports = [
        _Version("report", r.report.sources[0].local_id, r.report.status or "", _dump(r.report))
        for r in message.reports
    ]
    results = [
        _Version(
            "observation", res.observation.sources[0].local_id, res.status, _dump(res.observation)
        )
        for r in message.reports
        for res in r.results
    ]
    return reports + results


def _dump(record: Any) -> str:
    return orjson.dumps(to_data(record)).decode()


async def _add_versions(
    conn: AsyncConnection,
    source_id: str,
    patient_id: str,
    control_id: str,
    rows: list[_Version],
) -> None:
    """Each row becomes the next version of its result; earlier versions stay but are no
    longer current. Three statements for up to 500 rows."""
    if not rows:
        return
    latest = await _latest(conn, source_id, sorted({(row.kind, row.local_id) for row in rows}))
    current_ids = [row_id for row_id, _ in latest.values()]
    if current_ids:
        # Primary-key updates of each result's latest version (the only one that can be
        # current): a resend costs the same however long the history.
        await conn.execute(
            lab_results.update()
            .where(lab_results.c.id.in_(current_ids), lab_results.c.current.is_(True))
            .values(current=False)
        )
    await conn.execute(
        lab_results.insert(),
        [
            {
                "source_id": source_id,
                "kind": row.kind,
                "local_id": row.local_id,
                "patient_id": patient_id,
                "version": latest.get((row.kind, row.local_id), (0, 0))[1] + 1,
                "status": row.status[:8],
                "current": row.status not in RETIRED_STATUSES,
                "control_id": control_id,
                "payload": row.payload,
            }
            for row in rows
        ],
    )


_KEYS_PER_STATEMENT = 500  # bounds the bind parameters of one statement


async def _latest(
    conn: AsyncConnection, source_id: str, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int, int]]:
    """(row id, version) of the newest stored version of each (kind, local id) that has one.

    One `ORDER BY version DESC LIMIT 1` per key: a backward seek on the unique index, whatever
    the planner's statistics say (a grouped max over an IN list was planned as a scan of the
    source's whole history once the table grew faster than it was analysed)."""
    found: dict[tuple[str, str], tuple[int, int]] = {}
    c = lab_results.c
    for start in range(0, len(keys), _KEYS_PER_STATEMENT):
        newest = [
            sa.select(c.id, c.kind, c.local_id, c.version)
            .where(c.source_id == source_id, c.kind == kind, c.local_id == local_id)
            .order_by(c.version.desc())
            .limit(1)
            .subquery()
            for kind, local_id in keys[start : start + _KEYS_PER_STATEMENT]
        ]
        query = sa.union_all(*(sa.select(*sub.c) for sub in newest))
        for row_id, kind, local_id, version in (await conn.execute(query)).all():
            found[(kind, local_id)] = (row_id, version)
    return found


def _identifier_match(source_id: str, token: str) -> sa.Select[tuple[str]]:
    system, bar, value = token.rpartition("|")
    query = sa.select(lab_identifiers.c.local_id).where(
        lab_identifiers.c.source_id == source_id, lab_identifiers.c.value == value
    )
    return query.where(lab_identifiers.c.system == system) if bar and system else query


def _patient(payload: str) -> SourcePatient:
    return from_data(SourcePatient, orjson.loads(payload))


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
