"""PatientIndex: (source, local id) <-> PatientGraph id, persisted in the store.

Two source patients are the same person when they share a value of one of the configured
`identity.link_identifier_systems` (e.g. US SSN), compared as `app.identity.identifiers`
normalises it (an SSN with or without dashes is one value; an impossible one links nothing).
Identifier values are stored only as keyed hashes (HMAC-SHA256), so the index never holds an
SSN in clear text. The first link decides; conflicting evidence never re-links an existing
record (a matching engine is later work).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence

import sqlalchemy as sa
from cachetools import LRUCache
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.domain.common import SourceLink
from app.domain.patients import SourcePatient
from app.identity.identifiers import normalised
from app.store import create_tables

metadata = sa.MetaData()
patient_links = sa.Table(
    "patient_links",
    metadata,
    sa.Column("source_id", sa.String(64), primary_key=True),
    sa.Column("local_id", sa.String(128), primary_key=True),
    sa.Column("patient_id", sa.String(64), nullable=False, index=True),
)
patient_identifiers = sa.Table(
    "patient_identifiers",
    metadata,
    sa.Column("system", sa.String(255), primary_key=True),
    sa.Column("value_hash", sa.String(64), primary_key=True),
    sa.Column("patient_id", sa.String(64), nullable=False, index=True),
)

LINK_ATTEMPTS = 3
REMEMBERED_LINKS = 50_000  # about 25 MB at most
PATIENT_ID = re.compile(r"pg-[0-9a-f]{24}")


def is_patient_id(value: str) -> bool:
    return PATIENT_ID.fullmatch(value) is not None


def new_patient_id() -> str:
    return "pg-" + secrets.token_hex(12)


class PatientIndex:
    def __init__(self, engine: AsyncEngine, link_systems: Iterable[str], hash_key: str) -> None:
        self._engine = engine
        self._systems = frozenset(link_systems)
        self._key = hash_key.encode()
        self._lock = asyncio.Lock()  # one linker at a time in this process
        # (source, local id) -> (its link keys, PatientGraph id), for records linked before:
        # a link never changes once made, so a search that finds the same records with the
        # same identifiers again needs no database round trip (every worker agrees anyway).
        self._linked: LRUCache[tuple[str, str], tuple[frozenset[tuple[str, str]], str]]
        self._linked = LRUCache(REMEMBERED_LINKS)

    async def create_tables(self) -> None:
        await create_tables(self._engine, metadata)

    def _hash(self, system: str, value: str) -> str:
        return hmac.new(self._key, f"{system}|{value}".encode(), hashlib.sha256).hexdigest()

    def _link_keys(self, patient: SourcePatient) -> list[tuple[str, str]]:
        keys = []
        for identifier in patient.identifiers:
            if identifier.system not in self._systems:
                continue
            value = normalised(identifier.system, identifier.value)
            if value is not None:  # one spelling per value; impossible values link nothing
                keys.append((identifier.system, self._hash(identifier.system, value)))
        return keys

    async def link(self, patients: Sequence[SourcePatient]) -> list[str]:
        """The PatientGraph id of each source patient (same order), creating links as needed.

        Another process may insert the same link first; the unique keys then reject our insert
        and a retry reads what it wrote, so every worker agrees on one id."""
        if not patients:
            return []
        refs = [(p.link.source_id, p.link.local_id) for p in patients]
        keys = [frozenset(self._link_keys(p)) for p in patients]
        remembered = [self._linked.get(ref) for ref in refs]
        if all(r is not None and r[0] == k for r, k in zip(remembered, keys, strict=True)):
            return [r[1] for r in remembered if r is not None]
        async with self._lock:
            for _ in range(LINK_ATTEMPTS - 1):
                try:
                    ids = await self._link_once(patients)
                    break
                except sa.exc.IntegrityError:
                    continue
            else:
                ids = await self._link_once(patients)
        for ref, key_set, pid in zip(refs, keys, ids, strict=True):
            self._linked[ref] = (key_set, pid)
        return ids

    async def _link_once(self, patients: Sequence[SourcePatient]) -> list[str]:
        async with self._engine.begin() as conn:
            known = await self._known_links(conn, [p.link for p in patients])
            all_keys = {k for p in patients for k in self._link_keys(p)}
            by_key = await self._known_keys(conn, all_keys)
            ids: list[str] = []
            new_links: dict[tuple[str, str], str] = {}
            new_keys: dict[tuple[str, str], str] = {}
            for patient in patients:
                ref = (patient.link.source_id, patient.link.local_id)
                keys = self._link_keys(patient)
                pid = known.get(ref) or next((by_key[k] for k in keys if k in by_key), None)
                if pid is None:
                    pid = new_patient_id()
                if ref not in known:
                    known[ref] = new_links[ref] = pid
                for key in keys:
                    if key not in by_key:
                        by_key[key] = new_keys[key] = pid
                ids.append(pid)
            await self._insert(conn, new_links, new_keys)
        return ids

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

    async def _known_links(
        self, conn: AsyncConnection, links: list[SourceLink]
    ) -> dict[tuple[str, str], str]:
        pairs = {(link.source_id, link.local_id) for link in links}
        query = sa.select(patient_links).where(
            sa.tuple_(patient_links.c.source_id, patient_links.c.local_id).in_(pairs)
        )
        rows = (await conn.execute(query)).all()
        return {(r.source_id, r.local_id): r.patient_id for r in rows}

    async def _known_keys(
        self, conn: AsyncConnection, keys: set[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        if not keys:
            return {}
        query = sa.select(patient_identifiers).where(
            sa.tuple_(patient_identifiers.c.system, patient_identifiers.c.value_hash).in_(keys)
        )
        rows = (await conn.execute(query)).all()
        return {(r.system, r.value_hash): r.patient_id for r in rows}

    async def _insert(
        self,
        conn: AsyncConnection,
        links: dict[tuple[str, str], str],
        keys: dict[tuple[str, str], str],
    ) -> None:
        if links:
            await conn.execute(
                patient_links.insert(),
                [
                    {"source_id": s, "local_id": lid, "patient_id": p}
                    for (s, lid), p in links.items()
                ],
            )
        if keys:
            await conn.execute(
                patient_identifiers.insert(),
                [{"system": s, "value_hash": h, "patient_id": p} for (s, h), p in keys.items()],
            )
