"""The audit trail's store on both backends: group commit, several writers, fail closed, and
`verify` finding every kind of tampering done directly in the database."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa

from app.audit.events import EXECUTED, Caller, Operation, events_of
from app.audit.trail import AuditTrail, AuditUnavailable, Pending, chain_hash, metadata
from app.domain.audit import PatientDisclosure, Summary
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


def pending(patient_id: str | None, event: dict[str, object]) -> Pending:
    """An event given as a mapping, in the form `record` takes."""
    body = orjson.dumps({**event, "patient": patient_id}, option=orjson.OPT_SORT_KEYS).decode()
    outcome = event.get("outcome")
    return patient_id, outcome if isinstance(outcome, str) else None, body


def event(n: int) -> Pending:
    return pending(f"pg-{n:024x}", {"type": "disclosure", "n": n, "kinds": ["Observation"]})


async def filled(trail: AuditTrail, count: int = 6) -> None:
    for n in range(1, count + 1):
        await trail.record([event(n)])


async def test_concurrent_records_share_transactions_and_chain_in_order(
    trail: AuditTrail,
) -> None:
    await asyncio.gather(*(trail.record([event(n), event(n + 1000)]) for n in range(40)))
    rows = await trail.events()
    assert [r.seq for r in rows] == list(range(1, 81))
    assert 0 < trail.transactions < 40  # grouped: later callers joined a transaction under way
    assert (await trail.verify()).ok


async def test_two_writers_on_one_store_keep_one_chain(trail: AuditTrail, store_url: str) -> None:
    engine = create_engine(store_url)
    try:
        other = AuditTrail(engine, KEY)
        for n in range(30):  # each round: one transaction from each writer, at once
            await asyncio.gather(trail.record([event(n)]), other.record([event(n)]))
        await other.aclose()
    finally:
        await engine.dispose()
    result = await trail.verify()
    assert (result.ok, result.events) == (True, 60)


async def test_an_unwritable_store_fails_the_record(trail: AuditTrail) -> None:
    await filled(trail, 1)
    async with trail._engine.begin() as conn:
        await conn.execute(sa.text("DROP TABLE audit_events"))
    with pytest.raises(AuditUnavailable):
        await trail.record([event(2)])


async def tamper(trail: AuditTrail, statement: str, **values: object) -> None:
    async with trail._engine.begin() as conn:
        await conn.execute(sa.text(statement), values)


@pytest.mark.parametrize(
    ("statements", "first_bad", "problem"),
    [
        (["UPDATE audit_events SET body = replace(body, '3', '4') WHERE seq = 3"], 3, "content"),
        (
            ["UPDATE audit_events SET patient_id = NULL, at = '2020-01-01' WHERE seq = 2"],
            2,
            "content",
        ),
        (["UPDATE audit_events SET patient_id = 'pg-other' WHERE seq = 3"], 3, "patient"),
        (["UPDATE audit_events SET outcome = 'denied' WHERE seq = 5"], 5, "outcome"),
        (["DELETE FROM audit_events WHERE seq = 4"], 5, "sequence"),
        (
            [  # swap events 2 and 3
                "UPDATE audit_events SET seq = -2 WHERE seq = 2",
                "UPDATE audit_events SET seq = 2 WHERE seq = 3",
                "UPDATE audit_events SET seq = 3 WHERE seq = -2",
            ],
            2,
            "follow",
        ),
        (  # an event inserted in the middle, its successors renumbered
            [
                "UPDATE audit_events SET seq = seq + 100 WHERE seq >= 4",
                "UPDATE audit_events SET seq = seq - 99 WHERE seq >= 104",
                "INSERT INTO audit_events (seq, at, patient_id, body, prev_hash, hash) "
                "SELECT 4, at, patient_id, body, hash, hash FROM audit_events WHERE seq = 3",
            ],
            4,
            "content",
        ),
    ],
)
async def test_verify_names_the_first_tampered_event(
    trail: AuditTrail, statements: list[str], first_bad: int, problem: str
) -> None:
    await filled(trail)
    assert (await trail.verify()).ok
    for statement in statements:
        await tamper(trail, statement)
    result = await trail.verify()
    assert result.first_bad == first_bad
    assert result.problem is not None
    assert problem in result.problem


async def test_an_appended_event_needs_the_key_to_verify(trail: AuditTrail) -> None:
    await filled(trail, 2)
    (last,) = [r for r in await trail.events() if r.seq == 2]
    body = '{"type":"disclosure"}'
    forged = chain_hash(b"a guessed key", last.hash, 3, last.at, body)
    await tamper(
        trail,
        "INSERT INTO audit_events (seq, at, patient_id, body, prev_hash, hash) "
        "VALUES (3, :at, NULL, :body, :prev, :hash)",
        at=last.at,
        body=body,
        prev=last.hash,
        hash=forged,
    )
    result = await trail.verify()
    assert (result.first_bad, result.events) == (3, 2)


async def test_the_verify_command(tmp_path: Path) -> None:
    config = tmp_path / "audit.toml"
    database = tmp_path / "trail.db"
    config.write_text(
        '[auth]\nissuer = "i"\naudience = "a"\njwks_file = "jwks.json"\n'
        f'[store]\nurl = "sqlite:///{database}"\n'
        '[audit]\nhash_key = "' + KEY + '"\n'
    )
    engine = create_engine(f"sqlite:///{database}")
    try:
        trail = AuditTrail(engine, KEY)
        await trail.create_tables()
        await filled(trail, 3)
        good = await asyncio.to_thread(run_cli, "audit", "verify", "--config", str(config))
        await tamper(trail, "DELETE FROM audit_events WHERE seq = 2")
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
        "problem": "sequence number 3 where 2 was expected",
    }


async def test_prune_removes_old_events_and_the_rest_still_verifies(trail: AuditTrail) -> None:
    await filled(trail, 4)
    cut = datetime.now(UTC)
    await filled(trail, 3)
    assert await trail.prune(cut) == 4
    assert await trail.prune(cut) == 0  # nothing older is left
    result = await trail.verify()
    assert (result.ok, result.events) == (True, 3)
    await trail.record([event(99)])  # the chain goes on after the pruned events
    assert [r.seq for r in await trail.events()] == [5, 6, 7, 8]
    assert (await trail.verify()).ok
    assert await trail.prune(datetime.now(UTC)) == 4  # everything, then append again
    await trail.record([event(100)])
    assert [r.seq for r in await trail.events()] == [9]
    assert (await trail.verify()).ok
    # Removing events at the front without the key, or moving the recorded start, is seen.
    await tamper(trail, "UPDATE audit_prunes SET seq = seq - 1")
    assert "pruning" in ((await trail.verify()).problem or "")


async def test_a_removed_front_without_a_pruning_record_is_detected(trail: AuditTrail) -> None:
    await filled(trail, 4)
    await tamper(trail, "DELETE FROM audit_events WHERE seq <= 2")
    result = await trail.verify()
    assert (result.first_bad, result.problem) == (3, "sequence number 3 where 1 was expected")


def disclosure(client: str | None, patient: str, **who: object) -> list[Pending]:
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
    config = tmp_path / "audit.toml"
    database = tmp_path / "trail.db"
    config.write_text(
        '[auth]\nissuer = "i"\naudience = "a"\njwks_file = "jwks.json"\n'
        f'[store]\nurl = "sqlite:///{database}"\n'
        '[audit]\nhash_key = "' + KEY + '"\nretention_days = 30\n'
    )
    engine = create_engine(f"sqlite:///{database}")
    try:
        trail = AuditTrail(engine, KEY)
        await trail.create_tables()
        for client, patient in [("portal", "pg-1"), ("portal", "pg-1"), ("portal", "pg-2")]:
            await trail.record(disclosure(client, patient))
        await trail.record(disclosure("dashboard", "pg-1", break_glass="cardiac arrest"))
        await trail.record(disclosure(None, "pg-3"))
        exported = await asyncio.to_thread(run_cli, "audit", "export", "--config", str(config))
        usage = await asyncio.to_thread(run_cli, "audit", "usage", "--config", str(config))
        later = await asyncio.to_thread(
            run_cli, "audit", "usage", "--config", str(config), "--since", "2999-01-01"
        )
        alerted = await asyncio.to_thread(run_cli, "audit", "alerts", "--config", str(config))
        kept = await asyncio.to_thread(run_cli, "audit", "prune", "--config", str(config))
        await tamper(
            trail, "UPDATE audit_events SET at = '2000-01-01T00:00:00.000000+00:00' WHERE seq <= 2"
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
