"""Concurrent lab senders over real MLLP sockets into SQLite and PostgreSQL: resends of the
same orders from 8 connections at once are all acknowledged AA (never a spurious AE from a
race between two transactions), and every result's history stays a gapless version chain with
one current version."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from app.bootstrap import lab_ingested
from app.domain.patients import SSN_SYSTEM
from app.identity.index import PatientIndex
from app.identity.tables import metadata as index_metadata
from app.settings import Hl7v2SourceSettings
from app.sources.hl7v2.mllp import MllpClient
from app.sources.hl7v2.source import Hl7v2Source
from app.sources.hl7v2.store import LabStore, lab_results
from app.sources.hl7v2.store import metadata as lab_metadata
from app.store import create_engine

POSTGRES_URL = os.environ.get(
    "PATIENTGRAPH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
SENDERS = 8
ROUNDS = 12
ORDERS = 3


def oru(control_id: str, order: int, value: int) -> bytes:
    return "\r".join(
        [
            f"MSH|^~\\&|LIS|CITYLAB|PG|PG|20250301090000||ORU^R01^ORU_R01|{control_id}|P|2.5.1",
            "PID|1||LAB-7^^^CITYLAB^MR~999-66-0007^^^USSSA^SS||Racer^Rita||19750505|F",
            f"OBR|1||ORD-{order}^CITYLAB|24323-8^Metabolic panel^LN|||20250301080000",
            f"OBX|1|NM|2339-0^Glucose^LN||{value}|mg/dL^mg/dL^UCUM|70-105|H|||C|||20250301080000",
            f"OBX|2|NM|2823-3^Potassium^LN||4.{value % 10}|mmol/L^mmol/L^UCUM||N|||C",
        ]
    ).encode()


async def reset(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(lab_metadata.drop_all)
        await conn.run_sync(index_metadata.drop_all)


async def postgres_engine() -> AsyncEngine:
    """The test PostgreSQL with the lab and index tables dropped; skips the test when it is
    not reachable, and fails it under CI, where it must be."""
    engine = create_engine(POSTGRES_URL)
    try:
        await reset(engine)
    except (OSError, sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        await engine.dispose()
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL not reachable in CI: {exc.__class__.__name__}")
        pytest.skip("PostgreSQL on 127.0.0.1:5432 not reachable")
    return engine


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'lab.db'}")
    else:
        engine = await postgres_engine()
    yield engine
    await reset(engine)
    await engine.dispose()


async def test_eight_senders_resending_the_same_orders_all_get_aa(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    store = LabStore(engine)
    await store.create_tables()
    index = PatientIndex(engine, [SSN_SYSTEM], "test-key")
    await index.create_tables()

    async def no_purge(_patient_id: str) -> None:
        return None

    settings = Hl7v2SourceSettings(id="citylab", kind="hl7v2", listen="127.0.0.1:0")
    source = Hl7v2Source(settings, store, on_ingested=lab_ingested(index, no_purge))
    await source.start()
    codes: list[str] = []

    async def sender(n: int) -> None:
        async with MllpClient("127.0.0.1", source.port, timeout=30) as client:
            for r in range(ROUNDS):
                for order in range(ORDERS):
                    # Every sender resends the same orders; the SHARED messages are one message
                    # delivered by all eight at once (a redelivery race on MSH-10).
                    control_id = f"SHARED-{r}-{order}" if r % 3 == 0 else f"S{n}-{r}-{order}"
                    ack = await client.send(oru(control_id, order, 100 + r))
                    codes.append(ack.split(b"MSA|")[1][:2].decode())

    try:
        with caplog.at_level(logging.WARNING):
            await asyncio.gather(*(sender(n) for n in range(SENDERS)))
    finally:
        await source.aclose()
    assert len(codes) == SENDERS * ROUNDS * ORDERS
    assert set(codes) == {"AA"}, {c: codes.count(c) for c in set(codes)}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text

    query = sa.select(lab_results.c.local_id, lab_results.c.version, lab_results.c.current)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    chains: dict[str, list[tuple[int, bool]]] = {}
    for local_id, version, current in rows:
        chains.setdefault(local_id, []).append((version, current))
    assert len(chains) == ORDERS * 3  # per order: the report and its two results
    distinct_messages = ORDERS * (ROUNDS // 3 + (ROUNDS - ROUNDS // 3) * SENDERS)
    for chain in chains.values():
        versions = sorted(v for v, _ in chain)
        assert versions == list(range(1, len(versions) + 1))  # no gap, no duplicate
        assert len(versions) == distinct_messages // ORDERS  # every message is one version
        assert sum(current for _, current in chain) == 1


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)  # workers need PostgreSQL
async def test_processes_creating_the_tables_at_once_all_succeed(engine: AsyncEngine) -> None:
    """What N workers do at startup on an empty database: each its own engine (connections)."""
    for _ in range(5):
        await reset(engine)
        engines = [create_engine(POSTGRES_URL) for _ in range(4)]
        try:
            await asyncio.gather(
                *(
                    task
                    for other in engines
                    for task in (
                        LabStore(other).create_tables(),
                        PatientIndex(other, [SSN_SYSTEM], "k").create_tables(),
                    )
                )
            )
        finally:
            for other in engines:
                await other.dispose()
