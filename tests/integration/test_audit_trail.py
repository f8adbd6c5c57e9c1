"""The audit trail's store on both backends: group commit, several writers, fail closed, and
`verify` finding every kind of tampering done directly in the database."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa

from app.audit.events import EXECUTED, Caller, Operation, events_of
from app.audit.trail import (
    AuditTrail,
    AuditUnavailable,
    Checkpoint,
    Pending,
    audit_patients,
    chain_hash,
    metadata,
)
from app.domain.audit import AuditRecord, PatientDisclosure, Summary
from app.store import create_engine
from tests.integration.conftest import store_url_for
from tests.unit.test_cli import run as run_cli

KEY = "audit-test-key-0123456789"


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return await store_url_for(request.param, tmp_path, metadata)


@pytest.fixture
async def trail(store_url: str) -> AsyncIterator[AuditTrail]:
    engine = create_engine(store_url)
    made = AuditTrail(engine, KEY)
    await made.create_tables()
    yield made
    await made.aclose()
    async with engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
    await engine.dispose()


def pending(*events: tuple[str | None, dict[str, object]]) -> Pending:
    """One operation's events, each given as (patient id, mapping), in the form `record`
    takes."""
    parts = []
    for patient_id, event in events:
        shown = {"outcome": "success", **event, "patient": patient_id}
        part = orjson.dumps(shown, option=orjson.OPT_SORT_KEYS).decode()
        parts.append((patient_id, str(shown["outcome"]), part))
    return '{"type":"disclosure",', parts


def patient(n: int) -> str:
    return f"pg-{n:024x}"


def event(n: int) -> Pending:
    return pending((patient(n), {"n": n, "kinds": ["Observation"]}))


async def filled(trail: AuditTrail, count: int = 6) -> None:
    """`count` operations of one event each, so that event n is in row n."""
    for n in range(1, count + 1):
        await trail.record(*event(n))


async def every(trail: AuditTrail) -> list[AuditRecord]:
    return [record async for record in trail.since()]


async def test_concurrent_records_share_transactions_and_chain_in_order(
    trail: AuditTrail,
) -> None:
    two = [pending((patient(n), {}), (patient(n + 1000), {})) for n in range(40)]
    await asyncio.gather(*(trail.record(*operation) for operation in two))
    assert [r.seq for r in await trail.operations()] == list(range(1, 81, 2))
    assert [r.seq for r in await every(trail)] == list(range(1, 81))
    assert 0 < trail.transactions < 40  # grouped: later callers joined a transaction under way
    assert (await trail.verify()).ok


async def test_an_operations_events_are_numbered_on_and_read_back_one_by_one(
    trail: AuditTrail,
) -> None:
    await trail.record(*pending(("pg-1", {"n": 1}), (None, {"n": 2}), ("pg-2", {"n": 3})))
    await trail.record(*pending(("pg-1", {"n": 4, "outcome": "denied"})))
    records = await every(trail)
    assert [(r.seq, r.patient_id, r.event["n"]) for r in records] == [
        (1, "pg-1", 1), (2, None, 2), (3, "pg-2", 3), (4, "pg-1", 4)
    ]  # fmt: skip
    assert all(r.event["type"] == "disclosure" for r in records)  # the shared head, in each
    assert [r.seq for r in await trail.operations()] == [1, 4]
    result = await trail.verify()
    assert (result.ok, result.events) == (True, 4)


async def test_reads_per_patient_are_the_same_before_and_after_indexing(
    trail: AuditTrail,
) -> None:
    """A patient's events come from the index up to its watermark and from the rows after it:
    the same answer whatever the watermark, page by page, with the outcome filter."""
    for n in range(1, 31):
        outcome = "denied" if n % 4 == 0 else "success"
        await trail.record(
            *pending((f"pg-{n % 3}", {"outcome": outcome}), (f"pg-{n % 5}", {}), (None, {}))
        )
    everything = await every(trail)

    async def pages(patient_id: str, outcomes: tuple[str, ...] | None) -> list[int]:
        seen: list[int] = []
        before = None
        while True:
            page = await trail.newest(
                patient_id=patient_id, before=before, limit=4, outcomes=outcomes
            )
            seen += [r.seq for r in page]
            if len(page) < 4:
                return seen
            before = page[-1].seq

    def expected(patient_id: str, outcomes: tuple[str, ...] | None) -> list[int]:
        return [
            r.seq
            for r in reversed(everything)
            if r.patient_id == patient_id and (outcomes is None or r.event["outcome"] in outcomes)
        ]

    cases = [(f"pg-{k}", outcomes) for k in range(5) for outcomes in (None, ("success",))]
    assert all(expected(p, o) for p, o in cases)
    for chunk in (0, 7, 100):  # nothing indexed, part of the rows, all of them
        if chunk:
            await trail.index(chunk)
        for patient_id, outcomes in cases:
            assert await pages(patient_id, outcomes) == expected(patient_id, outcomes)
    assert await trail.index() == 0  # up to date
    all_newest = await trail.newest(limit=200)
    assert [r.seq for r in all_newest] == [r.seq for r in reversed(everything)]
    assert (await trail.verify()).ok


async def test_two_indexers_at_once_index_each_event_once(
    trail: AuditTrail, store_url: str
) -> None:
    for n in range(1, 41):
        await trail.record(*pending((patient(n), {}), (patient(n + 1), {})))
    engine = create_engine(store_url)
    other = AuditTrail(engine, KEY)
    try:
        while sum(await asyncio.gather(trail.index(7), other.index(7))):
            pass
    finally:
        await other.aclose()
        await engine.dispose()
    async with trail._engine.connect() as conn:
        rows = (await conn.execute(sa.select(audit_patients.c.seq))).scalars().all()
    assert sorted(rows) == list(range(1, 81))
    assert (await trail.verify()).ok


async def test_appends_index_the_events_once_enough_are_waiting(
    trail: AuditTrail, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("app.audit.trail.INDEX_EVENTS", 4)

    async def indexed() -> list[int]:
        async with trail._engine.connect() as conn:
            return list((await conn.execute(sa.select(audit_patients.c.seq))).scalars())

    await filled(trail, 3)
    assert await indexed() == []  # three waiting: the reads scan them
    await trail.record(*pending((patient(4), {}), (None, {}), (patient(6), {})))
    await trail.caught_up()  # written behind the append
    assert sorted(await indexed()) == [1, 2, 3, 4, 6]
    assert [r.seq for r in await trail.newest(patient_id=patient(6))] == [6]
    assert (await trail.verify()).ok


async def test_two_writers_on_one_store_keep_one_chain(trail: AuditTrail, store_url: str) -> None:
    engine = create_engine(store_url)
    try:
        other = AuditTrail(engine, KEY)
        for n in range(30):  # each round: one transaction from each writer, at once
            await asyncio.gather(trail.record(*event(n)), other.record(*event(n)))
        await other.aclose()
    finally:
        await engine.dispose()
    result = await trail.verify()
    assert (result.ok, result.events) == (True, 60)


async def test_a_busy_sqlite_file_is_waited_for_without_blocking_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer holds the file's write lock: the append sleeps and retries (the event
    loop goes on meanwhile), succeeds once the lock is let go, and fails closed if it is
    held for longer than BUSY_SECONDS."""
    database = tmp_path / "busy.db"
    engine = create_engine(f"sqlite:///{database}")
    trail = AuditTrail(engine, KEY)
    await trail.create_tables()
    holder = sqlite3.connect(database, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticking = asyncio.create_task(ticker())
        appending = asyncio.create_task(trail.record(*event(1)))
        await asyncio.sleep(0.3)
        assert not appending.done()
        assert ticks >= 10  # the loop was not held up by the wait
        holder.execute("COMMIT")
        await asyncio.wait_for(appending, 2)
        ticking.cancel()
        monkeypatch.setattr("app.audit.trail.BUSY_SECONDS", 0.2)
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(AuditUnavailable):
            await trail.record(*event(2))
        holder.execute("COMMIT")
        await trail.record(*event(3))
        assert [r.seq for r in await every(trail)] == [1, 2]
    finally:
        holder.close()
        await trail.aclose()
        await engine.dispose()


async def test_an_unwritable_store_fails_the_record(trail: AuditTrail) -> None:
    await filled(trail, 1)
    async with trail._engine.begin() as conn:
        await conn.execute(sa.text("DROP TABLE audit_operations"))
    with pytest.raises(AuditUnavailable):
        await trail.record(*event(2))


async def test_a_lost_postgresql_connection_fails_closed_and_the_next_append_reconnects(
    tmp_path: Path,
) -> None:
    url = await store_url_for("postgresql", tmp_path, metadata)
    engine = create_engine(url)
    trail = AuditTrail(engine, KEY)
    await trail.create_tables()
    try:
        await filled(trail, 2)
        async with engine.begin() as conn:  # every other session: the appender's own included
            await conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        with pytest.raises(AuditUnavailable):
            await trail.record(*event(3))
        await trail.record(*event(4))  # on a connection of its own again
        # An append that fails inside its transaction leaves neither it nor the lock behind.
        await tamper(trail, "ALTER TABLE audit_operations RENAME TO audit_away")
        with pytest.raises(AuditUnavailable):
            await trail.record(*event(5))
        await tamper(trail, "ALTER TABLE audit_away RENAME TO audit_operations")
        await asyncio.wait_for(trail.record(*event(6)), 10)
        assert [r.event["n"] for r in await every(trail)] == [1, 2, 4, 6]
        assert (await trail.verify()).ok
    finally:
        await trail.aclose()
        async with engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
        await engine.dispose()


async def tamper(trail: AuditTrail, statement: str, **values: object) -> None:
    async with trail._engine.begin() as conn:
        await conn.execute(sa.text(statement), values)


@pytest.mark.parametrize(
    ("statements", "first_bad", "problem"),
    [
        (
            ["UPDATE audit_operations SET body = replace(body, '3', '4') WHERE seq = 3"],
            3,
            "content",
        ),
        (["UPDATE audit_operations SET at = '2020-01-01' WHERE seq = 2"], 2, "content"),
        (["UPDATE audit_operations SET events = 2 WHERE seq = 2"], 2, "count"),
        (["DELETE FROM audit_operations WHERE seq = 4"], 5, "event number 5 where 4"),
        (
            [  # swap rows 2 and 3
                "UPDATE audit_operations SET seq = -2 WHERE seq = 2",
                "UPDATE audit_operations SET seq = 2 WHERE seq = 3",
                "UPDATE audit_operations SET seq = 3 WHERE seq = -2",
            ],
            2,
            "follow",
        ),
        (  # a row inserted in the middle, its successors renumbered
            [
                "UPDATE audit_operations SET seq = seq + 100 WHERE seq >= 4",
                "UPDATE audit_operations SET seq = seq - 99 WHERE seq >= 104",
                "INSERT INTO audit_operations (seq, events, at, body, prev_hash, hash, patients) "
                "SELECT 4, events, at, body, hash, hash, patients FROM audit_operations "
                "WHERE seq = 3",
            ],
            4,
            "content",
        ),
        # The patient index: an event moved to another patient or outcome, or hidden from a
        # patient's access log, or one made up.
        (["UPDATE audit_patients SET patient_id = 'pg-other' WHERE seq = 3"], 3, "changed"),
        (["UPDATE audit_patients SET outcome = 'denied' WHERE seq = 5"], 5, "changed"),
        (["UPDATE audit_patients SET operation = 2 WHERE seq = 3"], 3, "changed"),
        (["DELETE FROM audit_patients WHERE seq = 4"], 4, "missing"),
        (
            ["INSERT INTO audit_patients VALUES ('pg-x', 99, 6, 'success')"],
            99,
            "does not have",
        ),
        (["UPDATE audit_indexed SET seq = 9"], 7, "not recorded"),
        # What the index is written from, changed before it is written.
        (["UPDATE audit_operations SET patients = '[]' WHERE seq = 6"], 6, "patients"),
    ],
)
async def test_verify_names_the_first_tampered_event(
    trail: AuditTrail, statements: list[str], first_bad: int, problem: str
) -> None:
    await filled(trail)
    await trail.index()
    assert (await trail.verify()).ok
    for statement in statements:
        await tamper(trail, statement)
    result = await trail.verify()
    assert result.first_bad == first_bad
    assert result.problem is not None
    assert problem in result.problem


async def test_verify_sees_a_watermark_raised_over_unindexed_events(trail: AuditTrail) -> None:
    """Raising the watermark would hide the events under it from per-patient reads."""
    await filled(trail)
    await trail.index(3)
    assert (await trail.verify()).ok
    await tamper(trail, "UPDATE audit_indexed SET seq = 6")
    assert not await trail.newest(patient_id=patient(4))  # hidden from the patient
    result = await trail.verify()
    assert (result.first_bad, result.problem) == (4, "it is missing from the patient index")


async def test_an_appended_event_needs_the_key_to_verify(trail: AuditTrail) -> None:
    await filled(trail, 2)
    (last,) = [r for r in await trail.operations() if r.seq == 2]
    body = '{"type":"disclosure","events":[{"patient":null,"outcome":"success"}]}'
    forged = chain_hash(b"a guessed key", last.hash, 3, last.at, body)
    await tamper(
        trail,
        "INSERT INTO audit_operations (seq, events, at, body, prev_hash, hash, patients) "
        "VALUES (3, 1, :at, :body, :prev, :hash, '[]')",
        at=last.at,
        body=body,
        prev=last.hash,
        hash=forged,
    )
    result = await trail.verify()
    assert (result.first_bad, result.events) == (3, 2)


def cli_config(tmp_path: Path, audit: str = "") -> tuple[Path, Path]:
    """A config for the audit commands over a SQLite trail of its own, with `audit` lines
    added to its [audit] table: (config, database)."""
    config = tmp_path / "audit.toml"
    database = tmp_path / "trail.db"
    config.write_text(
        '[auth]\nissuer = "i"\naudience = "a"\njwks_file = "jwks.json"\n'
        f'[store]\nurl = "sqlite:///{database}"\n'
        '[audit]\nhash_key = "' + KEY + '"\n' + audit
    )
    return config, database


async def test_the_verify_command(tmp_path: Path) -> None:
    config, database = cli_config(tmp_path)
    engine = create_engine(f"sqlite:///{database}")
    try:
        trail = AuditTrail(engine, KEY)
        await trail.create_tables()
        await filled(trail, 3)
        good = await asyncio.to_thread(run_cli, "audit", "verify", "--config", str(config))
        await tamper(trail, "DELETE FROM audit_operations WHERE seq = 2")
        bad = await asyncio.to_thread(run_cli, "audit", "verify", "--config", str(config))
    finally:
        await trail.aclose()
        await engine.dispose()
    assert (good.returncode, json.loads(good.stdout)) == (0, {"events": 3, "ok": True})
    assert bad.returncode == 1
    assert json.loads(bad.stdout) == {
        "events": 1,
        "ok": False,
        "firstBad": 3,
        "problem": "event number 3 where 2 was expected",
    }


async def test_the_checkpoint_command_and_verify_with_checkpoints(tmp_path: Path) -> None:
    config, database = cli_config(tmp_path)
    kept = tmp_path / "checkpoints.ndjson"
    engine = create_engine(f"sqlite:///{database}")
    cli = ("audit", "verify", "--config", str(config), "--checkpoints", str(kept))
    try:
        trail = AuditTrail(engine, KEY)
        await trail.create_tables()
        for count in (0, 3):  # an empty trail's checkpoint is `null`, and skipped
            await filled(trail, count)
            taken = await asyncio.to_thread(run_cli, "audit", "checkpoint", "--config", str(config))
            assert taken.returncode == 0, taken.stderr
            with kept.open("a") as file:
                file.write(taken.stdout)
        assert json.loads(kept.read_text().splitlines()[1])["seq"] == 3
        good = await asyncio.to_thread(run_cli, *cli)
        await tamper(trail, "DELETE FROM audit_operations WHERE seq = 3")
        bad = await asyncio.to_thread(run_cli, *cli)
        kept.write_text("not json\n")
        unreadable = await asyncio.to_thread(run_cli, *cli)
    finally:
        await trail.aclose()
        await engine.dispose()
    assert (good.returncode, json.loads(good.stdout)) == (0, {"events": 3, "ok": True})
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["firstBad"] == 3
    assert unreadable.returncode == 2
    assert "not a file of checkpoints" in unreadable.stderr


async def test_prune_removes_old_events_and_the_rest_still_verifies(trail: AuditTrail) -> None:
    await trail.record(*pending(("pg-1", {}), ("pg-2", {}), ("pg-3", {})))
    await filled(trail, 1)
    await trail.index()
    cut = datetime.now(UTC)
    await filled(trail, 3)
    assert await trail.prune(cut) == 4
    assert await trail.prune(cut) == 0  # nothing older is left
    result = await trail.verify()
    assert (result.ok, result.events) == (True, 3)
    assert not await trail.newest(patient_id="pg-1")  # its index entries went with it
    await trail.record(*event(99))  # the chain goes on after the pruned events
    assert [r.seq for r in await trail.operations()] == [5, 6, 7, 8]
    await trail.index()
    assert (await trail.verify()).ok
    assert await trail.prune(datetime.now(UTC)) == 4  # everything, then append again
    await trail.record(*event(100))
    assert [r.seq for r in await trail.operations()] == [9]
    assert [r.seq for r in await trail.newest(patient_id=patient(100))] == [9]
    assert (await trail.verify()).ok
    # Removing events at the front without the key, or moving the recorded start, is seen.
    await tamper(trail, "UPDATE audit_prunes SET seq = seq - 1")
    assert "pruning" in ((await trail.verify()).problem or "")


async def test_checkpoints_catch_the_newest_events_removed_or_rewritten(
    trail: AuditTrail,
) -> None:
    assert await trail.checkpoint() is None  # nothing recorded yet
    await filled(trail, 6)
    taken = await trail.checkpoint()
    assert taken is not None
    assert taken.seq == 6
    assert (await trail.verify([taken])).ok
    await filled(trail, 1)  # event 7: the chain goes on past the checkpoint
    assert (await trail.verify([taken])).ok
    await tamper(trail, "DELETE FROM audit_operations WHERE seq >= 6")
    assert (await trail.verify()).ok  # a shorter chain is still a valid one ...
    cut = await trail.verify([taken])  # ... but not the one the checkpoint saw
    assert (cut.first_bad, cut.events) == (6, 5)
    assert "removed" in (cut.problem or "")
    await trail.record(*event(60))  # a different event 6, chained with the key
    rewritten = await trail.verify([taken])
    assert rewritten.first_bad == 6
    assert "differs" in (rewritten.problem or "")
    forged = Checkpoint(5, taken.hash, taken.at, taken.mac)  # moved without the key
    assert "changed" in ((await trail.verify([forged])).problem or "")


async def test_checkpoints_of_pruned_events_still_verify(trail: AuditTrail) -> None:
    await filled(trail, 2)
    early = await trail.checkpoint()
    await filled(trail, 1)
    last = await trail.checkpoint()
    assert early is not None
    assert last is not None
    assert await trail.prune(datetime.now(UTC)) == 3
    assert (await trail.verify([early, last])).ok  # the start the pruning recorded is event 3's


async def test_a_removed_front_without_a_pruning_record_is_detected(trail: AuditTrail) -> None:
    await filled(trail, 4)
    await tamper(trail, "DELETE FROM audit_operations WHERE seq <= 2")
    result = await trail.verify()
    assert (result.first_bad, result.problem) == (3, "event number 3 where 1 was expected")


def disclosure(client: str | None, patient: str, **who: object) -> Pending:
    caller = Caller(
        str(who.get("subject", "dr-a")),
        "Dr. A",
        client,
        ("clinician",),
        tuple(who.get("purposes", ("TREAT",))),  # type: ignore[arg-type]
        "jti-1",
        "10.0.0.7",
        "req-1",
        who.get("break_glass"),  # type: ignore[arg-type]
    )
    op = Operation("query", "Chart", "ab" * 32, {"id": "cd" * 32})
    summary = Summary(
        {patient: PatientDisclosure({"demographics": 1, "observations": 3}, {"ehr"})}, ()
    )
    return events_of(caller, op, summary, EXECUTED)


async def test_export_usage_and_prune_commands(tmp_path: Path) -> None:
    config, database = cli_config(tmp_path, "retention_days = 30\n")
    engine = create_engine(f"sqlite:///{database}")
    try:
        trail = AuditTrail(engine, KEY)
        await trail.create_tables()
        for client, patient in [("portal", "pg-1"), ("portal", "pg-1"), ("portal", "pg-2")]:
            await trail.record(*disclosure(client, patient))
        await trail.record(*disclosure("dashboard", "pg-1", break_glass="cardiac arrest"))
        await trail.record(*disclosure(None, "pg-3"))
        exported = await asyncio.to_thread(run_cli, "audit", "export", "--config", str(config))
        usage = await asyncio.to_thread(run_cli, "audit", "usage", "--config", str(config))
        later = await asyncio.to_thread(
            run_cli, "audit", "usage", "--config", str(config), "--since", "2999-01-01"
        )
        alerted = await asyncio.to_thread(run_cli, "audit", "alerts", "--config", str(config))
        kept = await asyncio.to_thread(run_cli, "audit", "prune", "--config", str(config))
        await tamper(
            trail,
            "UPDATE audit_operations SET at = '2000-01-01T00:00:00.000000+00:00' WHERE seq <= 2",
        )
        # (their hashes no longer hold, but prune removes them: what is left verifies)
        pruned = await asyncio.to_thread(run_cli, "audit", "prune", "--config", str(config))
        verified = await trail.verify()
    finally:
        await trail.aclose()
        await engine.dispose()
    assert exported.returncode == 0, exported.stderr
    resources = [json.loads(line) for line in exported.stdout.splitlines()]
    assert len(resources) == 5
    first = resources[0]
    assert first["resourceType"] == "AuditEvent"
    assert first["meta"]["profile"] == [
        "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientQuery"
    ]
    assert (first["type"]["code"], first["action"], first["outcome"]) == ("rest", "E", "0")
    assert first["entity"][0]["what"] == {"reference": "Patient/pg-1"}
    user = first["agent"][0]
    assert (user["who"]["identifier"]["value"], user["requestor"]) == ("dr-a", True)
    assert user["network"] == {"address": "10.0.0.7", "type": "2"}
    assert first["agent"][1]["who"] == {"display": "portal"}
    assert first["purposeOfEvent"][0]["coding"][0]["code"] == "TREAT"
    emergency = resources[3]
    assert {c["coding"][0]["code"] for c in emergency["purposeOfEvent"]} == {"TREAT", "ETREAT"}
    assert {"type": "break-the-glass reason", "valueString": "cardiac arrest"} in emergency[
        "entity"
    ][1]["detail"]
    assert usage.returncode == 0, usage.stderr
    assert json.loads(usage.stdout) == [
        {"client": "(no client id)", "patients": 1, "repeat_patients": 0, "disclosures": 1},
        {"client": "dashboard", "patients": 1, "repeat_patients": 0, "disclosures": 1},
        {"client": "portal", "patients": 2, "repeat_patients": 1, "disclosures": 3},
    ]
    assert json.loads(later.stdout) == []
    assert alerted.returncode == 1  # something to look at
    assert "break_glass" in {json.loads(line)["rule"] for line in alerted.stdout.splitlines()}
    assert json.loads(kept.stdout)["removed"] == 0  # all within the 30 days
    assert json.loads(pruned.stdout)["removed"] == 2
    assert (verified.ok, verified.events) == (True, 3)
