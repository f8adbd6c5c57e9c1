"""PatientIndex: (source, local id) <-> PatientGraph id, persisted in the store.

Each source record is matched once, when first seen (`app.identity.matcher` decides), and its
link then holds: a search that finds it again needs no decision, and only an administrator
(`app.identity.admin`) moves it. Two things re-open a link: the record's demographics change so
that they contradict another record of its person (a lab message for a known PID-3 now naming
someone else), and a link the identifier-only index made before the matcher, which has no
demographics stored; either is checked when the record is next seen, and a contradicted record
is moved to a person of its own and listed as a conflict. Identifier values and blocking keys
are stored only as keyed hashes (HMAC-SHA256).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import sqlalchemy as sa
from cachetools import LRUCache
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.domain.common import SourceLink
from app.domain.patients import SSN_SYSTEM, SourcePatient
from app.identity.demographics import Demographics
from app.identity.identifiers import normalised, normalisers
from app.identity.matcher import Decision, Finding, Pool, Ref, Thresholds, contradiction, decide
from app.identity.scoring import RULE_VERSION, Comparison
from app.identity.tables import (
    identity_reviews,
    metadata,
    patient_blocks,
    patient_identifiers,
    patient_links,
    patient_records,
    same_record,
    stored_demographics,
)
from app.store import create_tables

LINK_ATTEMPTS = 3
REMEMBERED_LINKS = 50_000  # about 25 MB at most
MAX_BLOCK = 1_000  # records sharing one blocking key, beyond which the key is not used
MAX_CANDIDATES = 5_000  # blocked records read per batch: a bound, far above real batches
PATIENT_ID = re.compile(r"pg-[0-9a-f]{24}")
DEFAULT_THRESHOLDS = Thresholds(link_at=20.0, review_at=12.0)


def is_patient_id(value: str) -> bool:
    return PATIENT_ID.fullmatch(value) is not None


def new_patient_id() -> str:
    return "pg-" + secrets.token_hex(12)


@dataclass(frozen=True, slots=True)
class _Seen:
    """One record of a batch, prepared for matching."""

    patient: SourcePatient
    ref: Ref
    demographics: Demographics
    identifiers: list[tuple[str, str]]
    blocks: set[str]  # keyed hashes of its blocking keys
    search_blocks: set[str]  # ... and of the keys it is looked up by

    @property
    def stored(self) -> str:
        return self.demographics.to_json()


@dataclass(frozen=True, slots=True)
class _Known:
    """A record already in the index: its person, and (None before the matcher) what the
    matcher stored about it."""

    patient_id: str
    stored: str | None
    method: str | None


@dataclass
class _Writes:
    links: list[dict[str, object]] = field(default_factory=list)
    moved: dict[Ref, str] = field(default_factory=dict)  # existing links given a new person
    records: list[dict[str, object]] = field(default_factory=list)
    replaced: list[Ref] = field(default_factory=list)  # records whose rows are rewritten
    demographics: dict[Ref, str] = field(default_factory=dict)  # new demographics, same link
    reblocked: list[Ref] = field(default_factory=list)  # records filed under new blocks
    blocks: list[dict[str, object]] = field(default_factory=list)
    identifiers: list[dict[str, object]] = field(default_factory=list)
    reviews: list[dict[str, object]] = field(default_factory=list)
    created: set[str] = field(default_factory=set)  # persons new to the index


class PatientIndex:
    def __init__(
        self,
        engine: AsyncEngine,
        link_systems: Iterable[str],
        hash_key: str,
        thresholds: Thresholds = DEFAULT_THRESHOLDS,
        identifier_normalisers: Mapping[str, str] | None = None,
    ) -> None:
        self._engine = engine
        self._systems = frozenset(link_systems)
        self._normalisers = normalisers(identifier_normalisers or {})
        self._key = hash_key.encode()
        self.thresholds = thresholds
        self._lock = asyncio.Lock()  # one linker at a time in this process
        # (source, local id) -> (fingerprint, PatientGraph id) of records decided before: a
        # search finding the same record unchanged needs no database round trip. Another
        # worker's unlink makes an entry stale; `forget` drops it (see resolvers.patients).
        self._linked: LRUCache[Ref, tuple[int, str]] = LRUCache(REMEMBERED_LINKS)

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def create_tables(self) -> None:
        await create_tables(self._engine, metadata)

    def _hash(self, system: str, value: str) -> str:
        return hmac.new(self._key, f"{system}|{value}".encode(), hashlib.sha256).hexdigest()

    def _block_hash(self, key: str) -> str:
        return self._hash("block", key)[:32]

    def _link_keys(self, patient: SourcePatient) -> list[tuple[str, str]]:
        keys = []
        for identifier in patient.identifiers:
            if identifier.system not in self._systems:
                continue
            value = normalised(identifier.system, identifier.value, self._normalisers)
            if value is not None:  # one spelling per value; impossible values link nothing
                keys.append((identifier.system, self._hash(identifier.system, value)))
        return keys

    def _ssn_hash(self, patient: SourcePatient) -> str | None:
        for identifier in patient.identifiers:
            if identifier.system == SSN_SYSTEM:
                value = normalised(SSN_SYSTEM, identifier.value, self._normalisers)
                if value is not None:
                    return self._hash(SSN_SYSTEM, value)
        return None

    def _prepare(self, patient: SourcePatient) -> _Seen:
        demographics = Demographics.of(patient, self._ssn_hash(patient))
        return _Seen(
            patient,
            (patient.link.source_id, patient.link.local_id),
            demographics,
            self._link_keys(patient),
            {self._block_hash(k) for k in demographics.blocking_keys()},
            {self._block_hash(k) for k in demographics.search_keys()},
        )

    def _fingerprint(self, patient: SourcePatient) -> int:
        """Equal for two reads of a record whose matching inputs did not change."""
        linking = tuple(i for i in patient.identifiers if i.system in self._systems)
        name, addresses, telecom = patient.name, patient.addresses, patient.telecom
        return hash((linking, name, patient.birth_date, patient.gender, addresses, telecom))

    def forget(self, refs: Iterable[Ref]) -> None:
        for ref in refs:
            self._linked.pop(ref, None)

    async def link(self, patients: Sequence[SourcePatient]) -> list[str]:
        """The PatientGraph id of each source patient (same order), matching new records."""
        ids, _ = await self.link_new(patients)
        return ids

    async def link_new(self, patients: Sequence[SourcePatient]) -> tuple[list[str], frozenset[str]]:
        """As `link`, and the ids of the persons this call created (someone new appeared).

        Another process may insert the same link first; the unique keys then reject our insert
        and a retry reads what it wrote, so every worker agrees on one id."""
        if not patients:
            return [], frozenset()
        refs = [(p.link.source_id, p.link.local_id) for p in patients]
        prints = [self._fingerprint(p) for p in patients]
        remembered = [self._linked.get(ref) for ref in refs]
        if all(r is not None and r[0] == f for r, f in zip(remembered, prints, strict=True)):
            return [r[1] for r in remembered if r is not None], frozenset()
        async with self._lock:
            for _ in range(LINK_ATTEMPTS - 1):
                try:
                    ids, created = await self._link_once(patients)
                    break
                except sa.exc.IntegrityError:
                    continue
            else:
                ids, created = await self._link_once(patients)
        for ref, fingerprint, pid in zip(refs, prints, ids, strict=True):
            self._linked[ref] = (fingerprint, pid)
        return ids, created

    async def _link_once(
        self, patients: Sequence[SourcePatient]
    ) -> tuple[list[str], frozenset[str]]:
        seen = [self._prepare(p) for p in patients]
        now = datetime.now(UTC)
        async with self._engine.begin() as conn:
            known = await self._known(conn, [s.ref for s in seen])
            to_decide = [s for s in seen if s.ref not in known or known[s.ref].stored != s.stored]
            pool = await self._pool(
                conn, to_decide, {known[s.ref].patient_id for s in to_decide if s.ref in known}
            )
            writes = _Writes()
            ids: list[str] = []
            decided: dict[Ref, str] = {}
            for item in seen:
                if item.ref in decided:  # the same record twice in one batch
                    ids.append(decided[item.ref])
                elif item.ref in known:
                    was = known[item.ref]
                    pid = was.patient_id
                    if was.stored != item.stored:
                        pid = self._recheck(item, was, pool, writes, now)
                        known[item.ref] = _Known(pid, item.stored, was.method)
                    ids.append(pid)
                else:
                    decision = decide(
                        item.ref,
                        item.demographics,
                        item.identifiers,
                        item.search_blocks,
                        pool,
                        self.thresholds,
                    )
                    pid = self._record_decision(item, decision, pool, writes, now)
                    known[item.ref] = _Known(pid, item.stored, decision.method)
                    ids.append(pid)
                decided[item.ref] = ids[-1]
            await _flush(conn, writes)
        return ids, frozenset(writes.created)

    def _record_decision(
        self, item: _Seen, decision: Decision, pool: Pool, writes: _Writes, now: datetime
    ) -> str:
        pid = decision.patient_id
        if pid is None:
            pid = new_patient_id()
            writes.created.add(pid)
        source_id, local_id = item.ref
        writes.links.append({"source_id": source_id, "local_id": local_id, "patient_id": pid})
        detail: dict[str, object] = {}
        if decision.identifier_system is not None:
            detail["identifierSystem"] = decision.identifier_system
        score = None
        if decision.method == "score" and decision.comparison is not None:
            detail["contributions"] = decision.comparison.contributions
            score = decision.comparison.score
        writes.records.append(_record_row(item, decision.method, score, detail, RULE_VERSION, now))
        self._file(item, pid, pool, writes)
        self._claim_identifiers(item, pid, pool, writes)
        writes.reviews.extend(_review_row(item.ref, f, now) for f in decision.findings)
        return pid

    def _recheck(self, item: _Seen, was: _Known, pool: Pool, writes: _Writes, now: datetime) -> str:
        """A known record seen with new demographics (or none stored yet: a link made before
        the matcher): kept with its person, its link's evidence unchanged, unless it now
        contradicts one of their other records; then moved to a person of its own and listed
        as a conflict. An administrator's link stands whatever the demographics say."""
        pid = was.patient_id
        others = [r for r in pool.records.get(pid, []) if r[0] != item.ref]
        contradicting: Comparison | None = None
        if was.method != "manual":
            contradicting = contradiction(item.demographics, others)
        if contradicting is None:
            if was.stored is None:  # first sight since the identifier-only index linked it
                writes.records.append(_record_row(item, "legacy", None, {}, 1, now))
            else:
                writes.demographics[item.ref] = item.stored
            self._file(item, pid, pool, writes, replace=True)
            self._claim_identifiers(item, pid, pool, writes)
            return pid
        moved_to = new_patient_id()
        writes.created.add(moved_to)
        writes.moved[item.ref] = moved_to
        writes.replaced.append(item.ref)
        legacy = was.stored is None
        reason = "upgrade_recheck" if legacy else "demographics_changed"
        detail = {"keptApartFrom": pid, "field": contradicting.contradiction}
        writes.records.append(_record_row(item, "split", None, detail, RULE_VERSION, now))
        finding = Finding("conflict", reason, pid, contradicting.score, contradicting.contradiction)
        writes.reviews.append(_review_row(item.ref, finding, now))
        pool.records[pid] = others
        self._file(item, moved_to, pool, writes, replace=True)
        return moved_to

    def _file(
        self, item: _Seen, pid: str, pool: Pool, writes: _Writes, replace: bool = False
    ) -> None:
        """Make the record a candidate for later records, in this batch and in the index."""
        if replace:  # its earlier demographics (or none) give way to these
            for records in pool.records.values():
                records[:] = [r for r in records if r[0] != item.ref]
        pool.add(pid, item.ref, item.demographics, item.blocks)
        if replace:
            writes.reblocked.append(item.ref)
        source_id, local_id = item.ref
        writes.blocks.extend(
            {"key_hash": b, "source_id": source_id, "local_id": local_id} for b in item.blocks
        )

    def _claim_identifiers(self, item: _Seen, pid: str, pool: Pool, writes: _Writes) -> None:
        for key in item.identifiers:
            if key not in pool.by_identifier:  # the first person to show an identifier has it
                pool.by_identifier[key] = pid
                writes.identifiers.append(
                    {"system": key[0], "value_hash": key[1], "patient_id": pid}
                )

    async def _known(self, conn: AsyncConnection, refs: list[Ref]) -> dict[Ref, _Known]:
        """Each already linked record's person, stored demographics and link method."""
        query = stored_demographics().where(_match_ref(patient_links, refs))
        rows = (await conn.execute(query)).all()
        return {
            (r.source_id, r.local_id): _Known(r.patient_id, r.demographics, r.method) for r in rows
        }

    async def _pool(self, conn: AsyncConnection, items: list[_Seen], people: set[str]) -> Pool:
        """The candidates `items` may be: people sharing an identifier or a blocking key with
        one of them, and `people` (the persons of re-checked records), with their records."""
        pool = Pool()
        if not items:
            return pool
        identifiers = {k for item in items for k in item.identifiers}
        if identifiers:
            query = sa.select(patient_identifiers).where(
                sa.tuple_(patient_identifiers.c.system, patient_identifiers.c.value_hash).in_(
                    identifiers
                )
            )
            for row in (await conn.execute(query)).all():
                pool.by_identifier[(row.system, row.value_hash)] = row.patient_id
        blocks = set().union(*(item.search_blocks for item in items))
        sized = (
            sa.select(
                patient_blocks.c.key_hash,
                patient_links.c.patient_id,
                sa.func.count().over(partition_by=patient_blocks.c.key_hash).label("size"),
            )
            .join(patient_links, same_record(patient_links, patient_blocks))
            .where(patient_blocks.c.key_hash.in_(blocks))
            .subquery()
        )
        # A block shared by more than MAX_BLOCK records (a clinic's phone number given for
        # every patient) tells nobody apart: it is left out rather than read.
        query = (
            sa.select(sized.c.key_hash, sized.c.patient_id)
            .where(sized.c.size <= MAX_BLOCK)
            .limit(MAX_CANDIDATES)
        )
        for row in (await conn.execute(query)).all():
            pool.by_block.setdefault(row.key_hash, set()).add(row.patient_id)
        people = people | set(pool.by_identifier.values()) | set().union(*pool.by_block.values())
        if people:
            query = stored_demographics().where(patient_links.c.patient_id.in_(people))
            for row in (await conn.execute(query)).all():
                stored = Demographics.from_json(row.demographics) if row.demographics else None
                pool.add(row.patient_id, (row.source_id, row.local_id), stored)
        return pool

    async def links_for(self, patient_ids: Sequence[str]) -> Mapping[str, tuple[SourceLink, ...]]:
        """Every source record linked to each id; unknown ids are absent."""
        wanted = [p for p in dict.fromkeys(patient_ids) if is_patient_id(p)]
        if not wanted:
            return {}
        query = sa.select(patient_links).where(patient_links.c.patient_id.in_(wanted))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query.order_by(patient_links.c.source_id))).all()
        out: dict[str, list[SourceLink]] = {}
        for row in rows:
            out.setdefault(row.patient_id, []).append(
                SourceLink(row.source_id, row.local_id, "Patient")
            )
        return {pid: tuple(links) for pid, links in out.items()}


def _record_row(
    item: _Seen,
    method: str,
    score: float | None,
    detail: Mapping[str, object],
    rule_version: int,
    now: datetime,
) -> dict[str, object]:
    return {
        "source_id": item.ref[0],
        "local_id": item.ref[1],
        "demographics": item.stored,
        "method": method,
        "score": score,
        "detail": orjson.dumps(detail).decode(),
        "rule_version": rule_version,
        "linked_at": now,
        "linked_by": None,
    }


def _review_row(ref: Ref, finding: Finding, now: datetime) -> dict[str, object]:
    return {
        "kind": finding.kind,
        "reason": finding.reason,
        "source_id": ref[0],
        "local_id": ref[1],
        "patient_id": finding.patient_id,
        "score": finding.score,
        "field": finding.field,
        "created_at": now,
        "status": "open",
    }


def _match_ref(table: sa.Table, refs: Iterable[Ref]) -> sa.ColumnElement[bool]:
    return sa.tuple_(table.c.source_id, table.c.local_id).in_(set(refs))


async def _flush(conn: AsyncConnection, writes: _Writes) -> None:
    if writes.replaced:
        await conn.execute(
            patient_records.delete().where(_match_ref(patient_records, writes.replaced))
        )
    if writes.reblocked:
        await conn.execute(
            patient_blocks.delete().where(_match_ref(patient_blocks, writes.reblocked))
        )
    for (source_id, local_id), stored in writes.demographics.items():
        await conn.execute(
            patient_records.update()
            .where(patient_records.c.source_id == source_id, patient_records.c.local_id == local_id)
            .values(demographics=stored)
        )
    for (source_id, local_id), pid in writes.moved.items():
        await conn.execute(
            patient_links.update()
            .where(patient_links.c.source_id == source_id, patient_links.c.local_id == local_id)
            .values(patient_id=pid)
        )
    for table, rows in (
        (patient_links, writes.links),
        (patient_records, writes.records),
        (patient_blocks, writes.blocks),
        (patient_identifiers, writes.identifiers),
        (identity_reviews, writes.reviews),
    ):
        if rows:
            await conn.execute(table.insert(), rows)
