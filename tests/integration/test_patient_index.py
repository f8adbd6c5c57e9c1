"""PatientIndex on both stores: embedded SQLite and real PostgreSQL (127.0.0.1:5432, db test)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.domain.common import Identifier, SourceLink
from app.domain.patients import SourcePatient
from app.identity.index import PatientIndex, is_patient_id
from app.identity.tables import metadata
from app.store import create_engine
from tests.integration.conftest import store_url_for

SSN = "http://hl7.org/fhir/sid/us-ssn"


def person(source: str, local: str, ssn: str | None, mrn: str = "M1") -> SourcePatient:
    idents = [Identifier("urn:mrn", mrn)]
    if ssn:
        idents.append(Identifier(SSN, ssn))
    return SourcePatient(SourceLink(source, local, "Patient"), tuple(idents), None, None, None)


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return await store_url_for(request.param, tmp_path, metadata)


@pytest.fixture
async def index(store_url: str) -> AsyncIterator[PatientIndex]:
    engine = create_engine(store_url)
    idx = PatientIndex(engine, [SSN], "test-key")
    await idx.create_tables()
    yield idx
    async with engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
    await engine.dispose()


async def test_links_patients_sharing_an_identifier(index: PatientIndex) -> None:
    ids = await index.link(
        [
            person("hospital", "h1", "999-00-0001"),
            person("clinic", "c9", "999-00-0001", mrn="other"),
            person("hospital", "h2", "999-00-0002"),
            person("clinic", "c3", None),
        ]
    )
    assert ids[0] == ids[1]
    assert len({ids[0], ids[2], ids[3]}) == 3
    assert all(is_patient_id(i) for i in ids)
    links = await index.links_for([ids[0]])
    assert {(x.source_id, x.local_id) for x in links[ids[0]]} == {
        ("hospital", "h1"),
        ("clinic", "c9"),
    }


async def test_ids_are_stable_across_calls_and_restarts(
    index: PatientIndex, store_url: str
) -> None:
    first = await index.link([person("hospital", "h1", "999-00-0001")])
    again = await index.link([person("hospital", "h1", "999-00-0001")])
    later = await index.link([person("clinic", "c1", "999-00-0001")])
    assert first == again == later
    engine = create_engine(store_url)
    try:
        reopened = PatientIndex(engine, [SSN], "test-key")
        assert await reopened.link([person("hospital", "h1", None)]) == first
    finally:
        await engine.dispose()


async def test_identifier_values_are_not_stored_in_clear(
    index: PatientIndex, store_url: str
) -> None:
    await index.link([person("hospital", "h1", "999-00-0001")])
    engine = create_engine(store_url)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(sa.text("SELECT system, value_hash FROM patient_identifiers"))
            ).all()
    finally:
        await engine.dispose()
    assert rows
    assert all("999-00-0001" not in row.value_hash for row in rows)


async def test_unknown_and_malformed_ids(index: PatientIndex) -> None:
    assert (
        await index.links_for(["pg-000000000000000000000000", "nope", "'; DROP TABLE x;--"]) == {}
    )


async def test_concurrent_linking_agrees(index: PatientIndex) -> None:
    batches = [[person("hospital", f"h{i}", f"999-00-{i:04d}")] for i in range(20)]
    batches += [[person("clinic", f"c{i}", f"999-00-{i:04d}")] for i in range(20)]
    results = await asyncio.gather(*(index.link(b) for b in batches))
    assert [r[0] for r in results[:20]] == [r[0] for r in results[20:]]


async def test_two_workers_racing_agree_on_one_id(index: PatientIndex, store_url: str) -> None:
    """Two indexes with their own engines (as two worker processes have) link the same people
    at once; unique keys plus retry make them agree."""
    engine = create_engine(store_url)
    try:
        other = PatientIndex(engine, [SSN], "test-key")
        people = [person("hospital", f"h{i}", f"999-01-{i:04d}") for i in range(30)]
        mine, theirs = await asyncio.gather(index.link(people), other.link(people))
    finally:
        await engine.dispose()
    assert mine == theirs


async def test_records_linked_before_need_no_database_round_trip(
    index: PatientIndex, store_url: str
) -> None:
    statements: list[str] = []
    engine = index._engine.sync_engine

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        page = [person("hospital", "h1", "999-00-0001"), person("clinic", "c1", "999-00-0001")]
        first = await index.link(page)
        asked = len(statements)
        again = await index.link(page)
        assert again == first
        assert len(statements) == asked  # remembered: nothing asked of the store
        # Another MRN changes no link key (only the SSN system links): still remembered.
        other_mrn = await index.link([person("hospital", "h1", "999-00-0001", mrn="M2")])
        assert other_mrn == first[:1]
        assert len(statements) == asked
        # A new linking identifier on a known record is evidence the store must record; the
        # record keeps its id (the first link decides).
        new_key = await index.link([person("hospital", "h1", "999-00-0003")])
        assert new_key == first[:1]
        assert len(statements) > asked
        asked = len(statements)
        unseen = await index.link([person("citylab", "l2", "999-00-0001")])
        assert unseen == first[:1]
        assert len(statements) > asked  # a record not seen before goes to the store
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


async def test_an_ssn_links_however_it_is_written(index: PatientIndex) -> None:
    ids = await index.link(
        [
            person("hospital", "h1", "999-44-0001"),
            person("clinic", "c1", "999440001"),
            person("citylab", "l1", " 999 44 0001 "),
        ]
    )
    assert len(set(ids)) == 1


@pytest.mark.parametrize("placeholder", ["000-00-0000", "999-99-9999", "123-45-6789", "12-34", ""])
async def test_a_placeholder_ssn_links_nobody(index: PatientIndex, placeholder: str) -> None:
    ids = await index.link(
        [person("hospital", "h1", placeholder or " "), person("clinic", "c1", placeholder or " ")]
    )
    assert ids[0] != ids[1]
