"""The HL7 v2 source tells `on_ingested` the patient of each newly stored message before its
ACK; the server's callback (`app.bootstrap.lab_ingested`) links them, then purges their cached
responses, both best effort. Over a real MLLP socket and a SQLite store."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.bootstrap import lab_ingested
from app.domain.patients import SourcePatient
from app.identity.index import PatientIndex, is_patient_id
from app.settings import Hl7v2SourceSettings
from app.sources.hl7v2.mapping import parse_message
from app.sources.hl7v2.mllp import MllpClient
from app.sources.hl7v2.source import Hl7v2Source, Ingested
from app.sources.hl7v2.store import LabStore
from app.store import create_engine
from tests.integration.test_lab_ingest import SSN, msa, oru


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'lab.db'}")
    yield engine
    await engine.dispose()


@pytest.fixture
async def store(engine: AsyncEngine) -> LabStore:
    store = LabStore(engine)
    await store.create_tables()
    return store


@pytest.fixture
async def index(engine: AsyncEngine) -> PatientIndex:
    index = PatientIndex(engine, ["http://hl7.org/fhir/sid/us-ssn"], "test-key")
    await index.create_tables()
    return index


async def listening(store: LabStore, on_ingested: Ingested | None) -> Hl7v2Source:
    settings = Hl7v2SourceSettings(id="citylab", kind="hl7v2", listen="127.0.0.1:0")
    source = Hl7v2Source(settings, store, on_ingested=on_ingested)
    await source.start()
    return source


async def test_the_callback_has_the_patient_before_the_ack(store: LabStore) -> None:
    told: list[SourcePatient] = []
    called, release = asyncio.Event(), asyncio.Event()

    async def ingested(patient: SourcePatient) -> None:
        told.append(patient)
        called.set()
        await release.wait()

    source = await listening(store, ingested)
    try:
        async with MllpClient("127.0.0.1", source.port) as client:
            sent = asyncio.ensure_future(client.send(oru("MSG-1")))
            await asyncio.wait_for(called.wait(), 5)
            await asyncio.sleep(0.1)
            assert not sent.done()  # no ACK while the callback runs
            release.set()
            assert msa(await sent)[1] == "AA"
            assert msa(await client.send(oru("MSG-1")))[1] == "AA"  # a redelivery: not told
    finally:
        await source.aclose()
    assert [p.link.source_id for p in told] == ["citylab"]  # once, for the first delivery
    assert SSN in {i.value for i in told[0].identifiers}


class BrokenStore(LabStore):
    async def ingest(self, *args: Any, **kwargs: Any) -> Any:
        raise OperationalError("INSERT", {}, OSError("disk full"))


async def test_a_raising_callback_fails_the_message_and_a_store_failure_is_ae(
    store: LabStore, engine: AsyncEngine
) -> None:
    told: list[SourcePatient] = []

    async def broken(patient: SourcePatient) -> None:
        told.append(patient)
        raise RuntimeError("a bug")

    source = await listening(store, broken)
    unstorable = await listening(BrokenStore(engine), broken)
    try:
        async with MllpClient("127.0.0.1", source.port) as client:
            with pytest.raises(ConnectionError):  # closed without an ACK: the lab resends
                await client.send(oru("MSG-1"))
        async with MllpClient("127.0.0.1", unstorable.port) as client:
            ack = await client.send(oru("MSG-2"))
    finally:
        await source.aclose()
        await unstorable.aclose()
    assert msa(ack)[1] == "AE"
    assert len(told) == 1  # nothing stored for MSG-2: nobody told


class FailingIndex(PatientIndex):
    async def link_new(self, patients: Sequence[SourcePatient]) -> tuple[list[str], frozenset[str]]:
        raise OperationalError("INSERT", {}, OSError("disk full"))


async def test_the_servers_callback_links_then_purges(store: LabStore, index: PatientIndex) -> None:
    purged: list[str] = []

    async def purge(patient_id: str) -> None:
        purged.append(patient_id)

    source = await listening(store, lab_ingested(index, purge))
    try:
        async with MllpClient("127.0.0.1", source.port) as client:
            assert msa(await client.send(oru("MSG-1")))[1] == "AA"
    finally:
        await source.aclose()
    (patient_id,) = purged
    assert is_patient_id(patient_id)
    (link,) = (await index.links_for([patient_id]))[patient_id]
    assert link.source_id == "citylab"


async def test_the_servers_callback_is_best_effort(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    purged: list[str] = []

    async def purge(patient_id: str) -> None:
        purged.append(patient_id)
        raise ConnectionError("redis down")

    index = PatientIndex(engine, ["http://hl7.org/fhir/sid/us-ssn"], "test-key")
    await index.create_tables()
    unlinkable = FailingIndex(engine, ["http://hl7.org/fhir/sid/us-ssn"], "test-key")
    caplog.set_level(logging.ERROR)
    await lab_ingested(unlinkable, purge)(await one_patient())
    assert purged == []  # not linked: no id to purge with
    await lab_ingested(index, purge)(await one_patient())  # the purge fails: logged only
    assert len(purged) == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any("linking after ingest failed" in m for m in messages)
    assert any("announcing new results failed" in m for m in messages)
    assert not any(SSN in m or "Labtest" in m for m in messages)  # no PHI


async def one_patient() -> SourcePatient:
    return parse_message(oru("MSG-9"), "citylab").patient
