"""The lab store (`app.sources.hl7v2.store`) on SQLite: a lab patient's addresses and telecom
and a result's notes survive the store, and rows written before those fields existed still
read back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain.codec import to_data
from app.domain.common import Address, ContactPoint
from app.domain.patients import PatientCriteria
from app.sources.hl7v2.mapping import parse_message
from app.sources.hl7v2.store import LabStore, lab_patients
from app.store import create_engine

SRC = "citylab"
PID = (
    "PID|1||LAB-42^^^CITYLAB&2.16.840.1.113883.3.1&ISO^MR~999-77-0001^^^USSSA^SS||"
    "Labtest^Lena||19800102|F|||12 Elm St^Apt 3^Ames^IA^50010^USA^H||"
    "^PRN^PH^^^515^5550100~^NET^Internet^lena@example.org|555-0199^WPN^PH"
)


def oru(control_id: str, pid: str = PID) -> str:
    return "\r".join(
        [
            f"MSH|^~\\&|LIS|CITYLAB|PG|PG|20250301090000||ORU^R01^ORU_R01|{control_id}|P|2.5.1",
            pid,
            "OBR|1||ORD-1^CITYLAB|24323-8^Metabolic panel^LN|||20250301080000",
            "OBX|1|NM|2339-0^Glucose^LN||182|mg/dL^mg/dL^UCUM|70-105|H|||F|||20250301080000",
            "NTE|1|L|Fasting specimen.",
            "NTE|2|L|Repeat advised.",
        ]
    )


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'lab.db'}")
    yield engine
    await engine.dispose()


async def test_addresses_telecom_and_notes_round_trip(engine: AsyncEngine) -> None:
    store = LabStore(engine)
    await store.create_tables()
    message = parse_message(oru("MSG-1"), SRC)
    patient = message.patient
    assert patient.addresses == (
        Address("home", ("12 Elm St", "Apt 3"), "Ames", "IA", "50010", "USA"),
    )
    assert patient.telecom == (
        ContactPoint("phone", "(515) 555-0100", "home"),
        ContactPoint("email", "lena@example.org", "home"),
        ContactPoint("phone", "555-0199", "work"),
    )
    await store.ingest(SRC, message, oru("MSG-1"))

    local = patient.link.local_id
    assert await store.patients_by_id(SRC, [local]) == {local: patient}
    assert await store.search_patients(SRC, PatientCriteria(family="labt")) == [patient]
    (observation,) = (await store.observations(SRC, [local]))[local]
    assert observation == message.reports[0].results[0].observation
    assert observation.notes == ("Fasting specimen.", "Repeat advised.")

    # A later PID without contact details replaces the stored demographics (latest wins).
    bare = PID.split("|||12 Elm St")[0]
    await store.ingest(SRC, parse_message(oru("MSG-2", bare), SRC), oru("MSG-2", bare))
    (stored,) = (await store.patients_by_id(SRC, [local])).values()
    assert (stored.addresses, stored.telecom) == ((), ())


async def test_patients_stored_before_contact_details_existed_still_read(
    engine: AsyncEngine,
) -> None:
    store = LabStore(engine)
    await store.create_tables()
    patient = parse_message(oru("MSG-1"), SRC).patient
    old = {k: v for k, v in to_data(patient).items() if k not in ("addresses", "telecom")}
    async with engine.begin() as conn:
        await conn.execute(
            lab_patients.insert().values(
                source_id=SRC,
                local_id=patient.link.local_id,
                family="labtest",
                given="lena",
                birth_date="1980-01-02",
                payload=orjson.dumps(old).decode(),
            )
        )
    (stored,) = (await store.patients_by_id(SRC, [patient.link.local_id])).values()
    assert (stored.addresses, stored.telecom) == ((), ())
    assert (stored.identifiers, stored.name, stored.birth_date) == (
        patient.identifiers,
        patient.name,
        patient.birth_date,
    )


async def test_a_resend_retires_only_the_current_versions(engine: AsyncEngine) -> None:
    """What keeps a resend's cost flat however long the history (benchmarks/lab_resends.py):
    it rewrites one row per result, never the result's earlier versions."""
    store = LabStore(engine)
    await store.create_tables()
    for n in range(5):
        await store.ingest(SRC, parse_message(oru(f"RESEND-{n}"), SRC), oru(f"RESEND-{n}"))
    updated: list[int] = []

    def count(_conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE LAB_RESULTS"):
            updated.append(cursor.rowcount)

    event.listen(engine.sync_engine, "after_cursor_execute", count)
    try:
        await store.ingest(SRC, parse_message(oru("RESEND-5"), SRC), oru("RESEND-5"))
    finally:
        event.remove(engine.sync_engine, "after_cursor_execute", count)
    assert updated == [2]  # the report and its one result, not their 10 stored versions
    observation = next(iter(parse_message(oru("X"), SRC).reports[0].results)).observation
    history = await store.history(SRC, observation.sources[0].local_id)
    assert [v for v, _, _ in history] == [1, 2, 3, 4, 5, 6]
    assert [current for _, _, current in history] == [False] * 5 + [True]
