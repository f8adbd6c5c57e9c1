"""Match latency with 1,000,000 patients in the index, on PostgreSQL (or SQLite).

    .venv/bin/python benchmarks/identity_scale.py [--patients 1000000] [--probes 1000]
        [--store postgresql://postgres@127.0.0.1:5432/patientgraph_bench | sqlite:///file.db]

Fills a database of its own (created if absent; its index tables are dropped first) with one
hospital record per synthetic person, through the index's own hashing and blocking keys
(COPY on PostgreSQL, batched INSERTs on SQLite), then ANALYZEs. Then times `PatientIndex.link`
for one new record at a time: half are another source's (corrupted) record of an indexed
person, half people not in the index, so both the match path and the new-person path are
measured. Prints p50/p95/p99 and how many probes linked. Not a test: it prints what it measures.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import random
import statistics
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from app.domain.patients import SSN_SYSTEM
from app.identity.index import PatientIndex, new_patient_id
from app.identity.scoring import RULE_VERSION
from app.identity.tables import (
    metadata,
    patient_blocks,
    patient_identifiers,
    patient_links,
    patient_records,
)
from app.store import create_engine
from benchmarks.identity import Person, people, record

DEFAULT_STORE = "postgresql://postgres@127.0.0.1:5432/patientgraph_bench"


async def _database(url: str) -> None:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = create_engine(parts._replace(path="/postgres").geturl())
    try:
        async with admin.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            found = await conn.scalar(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            )
            if not found:
                await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()


async def _fill(url: str, index: PatientIndex, count: int, rng: random.Random) -> list[Person]:
    everyone = people(count, rng)
    rows: dict[sa.Table, list[dict[str, object]]] = {
        patient_links: [],
        patient_records: [],
        patient_blocks: [],
        patient_identifiers: [],
    }
    claimed: set[tuple[str, str]] = set()
    now = datetime.now(UTC)
    started = time.perf_counter()
    for person in everyone:
        patient = record(person, "hospital", f"h{person.number}", everyone, rng)
        seen = index._prepare(patient)
        ref = {"source_id": "hospital", "local_id": seen.ref[1]}
        pid = new_patient_id()
        rows[patient_links].append({**ref, "patient_id": pid})
        rows[patient_records].append(
            {
                **ref,
                "demographics": seen.stored,
                "method": "new",
                "score": None,
                "detail": "{}",
                "rule_version": RULE_VERSION,
                "linked_at": now,
                "linked_by": None,
            }
        )
        rows[patient_blocks].extend({**ref, "key_hash": b} for b in seen.blocks)
        for system, value_hash in seen.identifiers:
            if (system, value_hash) not in claimed:
                claimed.add((system, value_hash))
                rows[patient_identifiers].append(
                    {"system": system, "value_hash": value_hash, "patient_id": pid}
                )
    print(f"prepared {count} records in {time.perf_counter() - started:.0f} s")
    started = time.perf_counter()
    async with index.engine.begin() as wrapper:
        if wrapper.dialect.name == "postgresql":  # COPY: minutes faster than INSERTs
            conn: Any = (await wrapper.get_raw_connection()).driver_connection  # asyncpg's
            for table, values in rows.items():
                names = [c.name for c in table.columns]
                records = [tuple(v[n] for n in names) for v in values]
                await conn.copy_records_to_table(table.name, records=records, columns=names)
        else:
            for table, values in rows.items():
                for at in range(0, len(values), 50_000):
                    await wrapper.execute(table.insert(), values[at : at + 50_000])
        await wrapper.execute(sa.text("ANALYZE"))
    sizes = ", ".join(f"{table.name} {len(values)}" for table, values in rows.items())
    print(f"loaded in {time.perf_counter() - started:.0f} s: {sizes}")
    return everyone


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run(count: int, probes: int, url: str) -> None:
    if url.startswith("postgresql"):
        await _database(url)
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
    index = PatientIndex(engine, [SSN_SYSTEM], "benchmark-key")
    await index.create_tables()
    rng = random.Random(11)
    everyone = await _fill(url, index, count, rng)
    strangers = people(probes // 2, random.Random(12))
    timings: dict[str, list[float]] = {"indexed person": [], "new person": []}
    linked = 0
    for n in range(probes):
        if n % 2 == 0:
            person = rng.choice(everyone)
            kind = "indexed person"
        else:
            person = strangers[n // 2]
            person = replace(person, number=count + n)
            kind = "new person"
        patient = record(person, "clinic", f"c{n}", everyone, rng)
        started = time.perf_counter()
        (pid,) = await index.link([patient])
        timings[kind].append((time.perf_counter() - started) * 1000)
        if kind == "indexed person":
            links = (await index.links_for([pid]))[pid]
            linked += any(link.local_id == f"h{person.number}" for link in links)
    await engine.dispose()
    print(f"{count} patients indexed; {probes} probes, one link() each (a transaction)")
    for kind, values in timings.items():
        print(
            f"{kind}: p50 {statistics.median(values):.1f} ms, p95 {_percentile(values, 0.95):.1f}"
            f" ms, p99 {_percentile(values, 0.99):.1f} ms, max {max(values):.1f} ms"
        )
    print(f"indexed persons' records linked to them: {linked} of {len(timings['indexed person'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--probes", type=int, default=1000)
    parser.add_argument("--store", default=DEFAULT_STORE)
    args = parser.parse_args()
    asyncio.run(run(args.patients, args.probes, args.store))


if __name__ == "__main__":
    main()
