"""`patientgraph identity …` against a running server's store and Redis cache."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from app.demo.generator import DemoPopulation
from tests.conftest import ApiFactory, Upstream, fhir_source
from tests.integration.conftest import REDIS_URL
from tests.integration.test_response_cache import cache_settings
from tests.unit.test_cli import run as run_cli

SOURCES = "query($id: ID!) { patient(id: $id) { id sources { sourceId } } }"
SEARCH = "query($i: String) { patients(identifier: $i) { nodes { id } } }"


def identity(config: Path, *args: str) -> list[dict[str, Any]]:
    done = run_cli("identity", args[0], "--config", str(config), *args[1:])
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


async def test_explain_unlink_and_operations_from_the_command_line(
    upstreams: dict[str, Upstream],
    api_factory: ApiFactory,
    population: DemoPopulation,
    tmp_path: Path,
) -> None:
    person = population.people[3]
    cache = cache_settings("redis")
    config = tmp_path / "identity.toml"
    config.write_text(
        '[auth]\nissuer = "i"\naudience = "a"\njwks_file = "jwks.json"\n'
        f'[store]\nurl = "sqlite:///{tmp_path / "index.db"}"\n'
        f'[cache]\nbackend = "redis"\nredis_url = "{REDIS_URL}"\n'
        f'key_prefix = "{cache["key_prefix"]}"\n'
    )
    memory = tmp_path / "memory.toml"
    memory.write_text(config.read_text().replace('backend = "redis"', 'backend = "memory"'))
    clinic = ["--source", "clinic", "--local", person.local_ids["clinic"]]
    async with api_factory([fhir_source(u) for u in upstreams.values()], cache=cache) as api:
        found = (await api.query(SEARCH, {"i": person.ssn}, role="admin")).json()
        pid = found["data"]["patients"]["nodes"][0]["id"]
        await api.query(SOURCES, {"id": pid})
        assert (await api.query(SOURCES, {"id": pid})).headers["x-cache"] == "hit"
        explained = await asyncio.to_thread(identity, config, "explain", "--patient", pid)
        refused = run_cli(
            "identity", "unlink", "--config", str(memory), *clinic, "--reason", "r", "--actor", "a"
        )
        (moved,) = await asyncio.to_thread(
            identity, config, "unlink", *clinic, "--reason", "two people", "--actor", "jdoe"
        )
        after = (await api.query(SOURCES, {"id": pid})).json()
        trail = api.runtime.audit
        assert trail is not None
        (command,) = [
            r
            for r in await trail.newest(patient_id=pid)
            if r.event["operation"]["kind"] == "command"
        ]
    operations = identity(config, "operations")
    reviews = identity(config, "reviews", "--status", "all")
    unknown = run_cli(
        "identity",
        "unlink",
        "--config",
        str(config),
        "--source",
        "clinic",
        "--local",
        "nope",
        "--reason",
        "r",
        "--actor",
        "a",
    )
    no_reason = run_cli("identity", "unlink", "--config", str(config), *clinic, "--actor", "a")
    assert sorted(e["method"] for e in explained) == ["identifier", "new"]
    assert refused.returncode == 2
    assert "unlinkPatientRecord" in refused.stderr
    assert moved["from_patient_id"] == pid
    # The move is on the audit trail for both patients, under the operator's name.
    assert (command.event["operation"]["name"], command.event["who"]["subject"]) == (
        "identity unlink",
        "jdoe",
    )
    assert command.event["what"]["changed"] is True
    assert [s["sourceId"] for s in after["data"]["patient"]["sources"]] == ["hospital"]
    assert [(o["operation"], o["actor"], o["reason"]) for o in operations] == [
        ("unlink", "jdoe", "two people")
    ]
    assert reviews == []
    for failed in (unknown, no_reason):
        assert failed.returncode == 2
        assert "Traceback" not in failed.stderr
    assert "no such source record" in unknown.stderr
