"""The response cache (issue 5) on both backends (in-process and real Redis): hits, misses,
expiry, per-type TTLs, purging, single-flight, and what is never cached."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from app.demo.generator import DemoPopulation
from app.sources.hl7v2.mllp import MllpClient
from tests.conftest import Api, ApiFactory, Upstream, closed_port_url, fhir_source, lab_source
from tests.integration.conftest import REDIS_URL, unique_prefix
from tests.integration.test_authorization import a_patient_id
from tests.integration.test_lab_ingest import msa, oru, pid_fields
from tests.unit.test_cli import run as run_cli

ROOT = Path(__file__).resolve().parents[2]
ONE = "query($id: ID!) { patient(id: $id) { id name { family } observations { totalCount } } }"
NAMES = "{ patients(first: 100) { nodes { id name { family } } } }"

CachedApi = Callable[..., contextlib.AbstractAsyncContextManager[Api]]


def cache_settings(backend: str, **options: Any) -> dict[str, Any]:
    """A backend with keys of its own (several test runs may share one Redis)."""
    return {
        "backend": backend,
        "redis_url": REDIS_URL,
        "key_prefix": unique_prefix(),
        "source_ttl_seconds": 0,  # responses only: upstream calls show what was computed
        **options,
    }


@pytest.fixture(params=["memory", "redis"])
def cached_api(
    request: pytest.FixtureRequest, upstreams: dict[str, Upstream], api_factory: ApiFactory
) -> CachedApi:
    def factory(**options: Any) -> contextlib.AbstractAsyncContextManager[Api]:
        sources = [fhir_source(u) for u in upstreams.values()]
        return api_factory(sources, cache=cache_settings(request.param, **options))

    return factory


def upstream_calls(upstreams: dict[str, Upstream]) -> int:
    return sum(len(u.requests) for u in upstreams.values())


async def test_a_repeated_query_is_a_hit_with_the_same_bytes_and_no_upstream_call(
    cached_api: CachedApi, upstreams: dict[str, Upstream], population: DemoPopulation
) -> None:
    async with cached_api() as api:
        patient_id = await a_patient_id(api, population)
        first = await api.query(ONE, {"id": patient_id})
        calls = upstream_calls(upstreams)
        # Whitespace and comments do not make a different document.
        second = await api.query("# again\n" + ONE.replace(" ", "  "), {"id": patient_id})
        assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
        assert second.content == first.content
        assert upstream_calls(upstreams) == calls
        for response in (first, second):
            assert response.headers["cache-control"] == "no-store"  # never in browser caches


async def test_callers_with_different_rights_never_share_an_entry(
    cached_api: CachedApi, population: DemoPopulation
) -> None:
    async with cached_api() as api:
        ids = [await a_patient_id(api, population, i) for i in (0, 1)]
        query = "{ me { id name { family } identifiers { value } } }"
        me = [(await api.query(query, role="patient", patient=pid)) for pid in ids]
        assert [r.headers["x-cache"] for r in me] == ["miss", "miss"]
        assert [r.json()["data"]["me"]["id"] for r in me] == ids
        ssn_query = "query($id: ID!) { patient(id: $id) { identifiers { value } } }"
        clinician = await api.query(ssn_query, {"id": ids[0]}, role="clinician")
        billing = await api.query(ssn_query, {"id": ids[0]}, role="billing")
        assert billing.headers["x-cache"] == "miss"
        assert population.people[0].ssn in billing.text
        assert population.people[0].ssn not in clinician.text
        # Same rights, another subject: the same answer may be shared.
        colleague = await api.query(ssn_query, {"id": ids[0]}, role="clinician", subject="dr-b")
        assert colleague.headers["x-cache"] == "hit"
        assert colleague.content == clinician.content


async def test_entries_expire_and_per_type_ttls_shorten_them(
    cached_api: CachedApi, population: DemoPopulation
) -> None:
    async with cached_api(response_ttl_seconds=30, response_ttl_by_type={"Observation": 1}) as api:
        patient_id = await a_patient_id(api, population)
        names = "query($id: ID!) { patient(id: $id) { id name { family } } }"
        for query in (ONE, names):
            assert (await api.query(query, {"id": patient_id})).headers["x-cache"] == "miss"
        await asyncio.sleep(1.3)
        assert (await api.query(ONE, {"id": patient_id})).headers["x-cache"] == "miss"
        assert (await api.query(names, {"id": patient_id})).headers["x-cache"] == "hit"


async def test_an_admin_purge_removes_that_patients_entries_only(
    cached_api: CachedApi, population: DemoPopulation
) -> None:
    purge = "mutation($id: ID!) { purgePatientCache(patientId: $id) { responses sources } }"
    async with cached_api() as api:
        mine, other = [await a_patient_id(api, population, i) for i in (0, 1)]
        for pid in (mine, other):
            await api.query(ONE, {"id": pid})
        await api.query(NAMES)
        refused = (await api.query(purge, {"id": mine}, role="clinician")).json()
        # The admin role alone is not enough: the token must carry the operation's scope.
        unscoped = (await api.query(purge, {"id": mine}, role="admin", scope="user/*.cruds")).json()
        scope = "user/*.cruds patientgraph/cache.purge"
        done = await api.query(purge, {"id": mine}, role="admin", scope=scope)
        for answer in (refused, unscoped):
            assert answer["data"] is None
            assert answer["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert done.headers["x-cache"] == "bypass"  # a mutation is never cached
        # The patient's own entry and the list that discloses them (and a_patient_id's search).
        assert done.json()["data"]["purgePatientCache"]["responses"] >= 2
        assert (await api.query(ONE, {"id": mine})).headers["x-cache"] == "miss"
        assert (await api.query(NAMES)).headers["x-cache"] == "miss"
        assert (await api.query(ONE, {"id": other})).headers["x-cache"] == "hit"


async def test_concurrent_identical_misses_compute_once(
    cached_api: CachedApi, upstreams: dict[str, Upstream], population: DemoPopulation
) -> None:
    async with cached_api() as api:
        patient_id = await a_patient_id(api, population)
        await api.query(ONE, {"id": patient_id}, role="admin")  # links known: a fair count
        for upstream in upstreams.values():
            upstream.faults.state.delay_seconds = 0.2  # type: ignore[union-attr]
        before = upstream_calls(upstreams)
        # The same rights under another fingerprint (a patient claim): one computation alone.
        alone = await api.query(ONE, {"id": patient_id}, patient=patient_id)
        once = upstream_calls(upstreams) - before
        responses = await asyncio.gather(*(api.query(ONE, {"id": patient_id}) for _ in range(8)))
        for upstream in upstreams.values():
            upstream.faults.state.delay_seconds = 0.0  # type: ignore[union-attr]
        states = sorted(r.headers["x-cache"] for r in responses)
        assert states == ["miss"] + ["shared"] * 7
        assert upstream_calls(upstreams) - before - once == once  # one computation's calls
        assert len({r.content for r in responses}) == 1
        assert alone.headers["x-cache"] == "miss"


async def test_break_the_glass_and_errors_are_never_cached(
    upstreams: dict[str, Upstream], api_factory: ApiFactory, population: DemoPopulation
) -> None:
    sources = [fhir_source(u) for u in upstreams.values()]
    broken = {"id": "offline", "kind": "fhir", "base_url": closed_port_url()}
    async with api_factory(sources, cache=cache_settings("memory")) as api:
        patient_id = await a_patient_id(api, population)
        emergency = {"X-Break-The-Glass": "unconscious patient, allergy history needed"}
        headers = {**api.signer.headers("clinician"), **emergency}
        glass = await api.client.post(
            f"{api.url}/graphql",
            json={"query": ONE, "variables": {"id": patient_id}},
            headers=headers,
        )
        after = await api.query(ONE, {"id": patient_id})
        assert glass.headers["x-cache"] == "bypass"
        assert after.headers["x-cache"] == "miss"  # not answered from the emergency response
    async with api_factory([*sources, broken], cache=cache_settings("memory")) as api:
        patient_id = await a_patient_id(api, population)
        failing = [await api.query(NAMES) for _ in range(2)]
        assert [r.headers["x-cache"] for r in failing] == ["miss", "miss"]
        assert all(r.json()["errors"] for r in failing)


async def test_queries_still_work_when_redis_is_down(
    upstreams: dict[str, Upstream], api_factory: ApiFactory, population: DemoPopulation
) -> None:
    down = closed_port_url().replace("http://", "redis://").split("/fhir")[0]
    sources = [fhir_source(u) for u in upstreams.values()]
    async with api_factory(sources, cache=cache_settings("redis", redis_url=down)) as api:
        patient_id = await a_patient_id(api, population)
        responses = [await api.query(ONE, {"id": patient_id}) for _ in range(2)]
    assert [r.headers["x-cache"] for r in responses] == ["miss", "miss"]
    assert all(r.json()["data"]["patient"]["id"] == patient_id for r in responses)


async def test_redis_entries_are_shared_between_servers(
    upstreams: dict[str, Upstream], api_factory: ApiFactory, population: DemoPopulation
) -> None:
    """Two API processes' worth of servers (same store, same Redis keys) share one cache."""
    settings = cache_settings("redis")
    sources = [fhir_source(u) for u in upstreams.values()]
    async with (
        api_factory(sources, cache=settings) as one,
        api_factory(sources, cache=settings) as two,
    ):
        patient_id = await a_patient_id(one, population)
        first = await one.query(ONE, {"id": patient_id})
        second = await two.query(ONE, {"id": patient_id})
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
    assert first.content == second.content


@pytest.fixture
async def no_cache_api(
    upstreams: dict[str, Upstream], api_factory: ApiFactory
) -> AsyncIterator[Api]:
    sources = [fhir_source(u) for u in upstreams.values()]
    async with api_factory(sources, cache={"response_ttl_seconds": 0}) as api:
        yield api


async def test_caching_off_answers_bypass(no_cache_api: Api, population: DemoPopulation) -> None:
    patient_id = await a_patient_id(no_cache_api, population)
    response = await no_cache_api.query(ONE, {"id": patient_id})
    assert response.headers["x-cache"] == "bypass"


async def test_the_purge_command_reaches_a_running_servers_redis_cache(
    upstreams: dict[str, Upstream],
    api_factory: ApiFactory,
    population: DemoPopulation,
    tmp_path: Path,
) -> None:
    cache = cache_settings("redis")
    sources = [fhir_source(u) for u in upstreams.values()]
    config = tmp_path / "purge.toml"
    config.write_text(
        '[auth]\nissuer = "i"\naudience = "a"\njwks_file = "jwks.json"\n'
        f'[store]\nurl = "sqlite:///{tmp_path / "index.db"}"\n'
        f'[cache]\nbackend = "redis"\nredis_url = "{REDIS_URL}"\n'
        f'key_prefix = "{cache["key_prefix"]}"\n'
    )
    memory = tmp_path / "memory.toml"
    memory.write_text(config.read_text().replace('backend = "redis"', 'backend = "memory"'))
    async with api_factory(sources, cache=cache) as api:
        patient_id = await a_patient_id(api, population)
        await api.query(ONE, {"id": patient_id})
        assert (await api.query(ONE, {"id": patient_id})).headers["x-cache"] == "hit"
        purged = await asyncio.to_thread(
            run_cli, "cache", "purge", "--config", str(config), "--patient", patient_id
        )
        assert purged.returncode == 0, purged.stderr
        assert json.loads(purged.stdout)["responses"] >= 1
        assert (await api.query(ONE, {"id": patient_id})).headers["x-cache"] == "miss"
    bad_id = run_cli("cache", "purge", "--config", str(config), "--patient", "Smith")
    in_memory = run_cli("cache", "purge", "--config", str(memory), "--patient", patient_id)
    for result in (bad_id, in_memory):
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
    assert "purgePatientCache" in in_memory.stderr


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_a_new_lab_result_purges_that_patients_responses_before_the_ack(
    upstreams: dict[str, Upstream],
    api_factory: ApiFactory,
    population: DemoPopulation,
    backend: str,
) -> None:
    mine, other = population.people[0], population.people[1]
    query = (
        "query($i: String) { patients(identifier: $i) { nodes { "
        "labResults(first: 100) { totalCount nodes { valueQuantity { value } } } } } }"
    )
    sources = [fhir_source(upstreams["hospital"]), lab_source()]
    async with (
        api_factory(sources, cache=cache_settings(backend)) as api,
        MllpClient("127.0.0.1", api.lab_port()) as client,
    ):
        assert (
            msa(await client.send(oru("MSG-1", ssn=mine.ssn, patient=pid_fields(mine))))[1] == "AA"
        )
        before = await api.query(query, {"i": mine.ssn})
        theirs = await api.query(query, {"i": other.ssn})
        assert (await api.query(query, {"i": mine.ssn})).headers["x-cache"] == "hit"
        new = oru(
            "MSG-2",
            "245",
            order="ORD-2",
            when="20250302080000",
            ssn=mine.ssn,
            patient=pid_fields(mine),
        )
        assert msa(await client.send(new))[1] == "AA"
        # As soon as the lab holds its AA, the next answer has the new result.
        after = await api.query(query, {"i": mine.ssn})
        theirs_again = await api.query(query, {"i": other.ssn})
    assert after.headers["x-cache"] == "miss"
    count = before.json()["data"]["patients"]["nodes"][0]["labResults"]["totalCount"]
    (patient,) = after.json()["data"]["patients"]["nodes"]
    assert patient["labResults"]["totalCount"] == count + 1
    assert {"value": 245.0} in [n["valueQuantity"] for n in patient["labResults"]["nodes"]]
    assert theirs_again.headers["x-cache"] == "hit"  # other patients' entries stay
    assert theirs_again.content == theirs.content


async def test_responses_say_when_each_sources_data_was_fetched(
    cached_api: CachedApi, population: DemoPopulation
) -> None:
    async with cached_api() as api:
        patient_id = await a_patient_id(api, population)
        asked = time.time()
        first = await api.query(ONE, {"id": patient_id})
        await asyncio.sleep(0.05)
        second = await api.query(ONE, {"id": patient_id})
    sources = first.json()["extensions"]["sources"]
    assert set(sources) == {"hospital", "clinic"}
    for entry in sources.values():
        fetched = datetime.fromisoformat(entry["fetchedAt"].replace("Z", "+00:00"))
        assert abs(fetched.timestamp() - asked) < 5
    assert second.headers["x-cache"] == "hit"
    assert second.json()["extensions"] == first.json()["extensions"]  # the age shows


async def test_a_type_with_ttl_zero_is_never_cached(
    upstreams: dict[str, Upstream], api_factory: ApiFactory, population: DemoPopulation
) -> None:
    sources = [fhir_source(u) for u in upstreams.values()]
    settings = cache_settings("memory", response_ttl_by_type={"Observation": 0})
    async with api_factory(sources, cache=settings) as api:
        patient_id = await a_patient_id(api, population)
        names = "query($id: ID!) { patient(id: $id) { id name { family } } }"
        states = [
            (await api.query(query, {"id": patient_id})).headers["x-cache"]
            for query in (ONE, ONE, names, names)
        ]
    assert states == ["miss", "miss", "miss", "hit"]


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_someone_new_from_the_lab_is_found_by_a_search_cached_before(
    api_factory: ApiFactory, backend: str
) -> None:
    """A search for a person no system knows yet is cached empty; their first lab result
    makes them someone new, and every cached search is dropped so the next one finds them.
    A cached answer that is no search stays."""
    search = "query($i: String) { patients(identifier: $i) { nodes { id } } }"
    ssn = "999-88-0123"
    async with (
        api_factory([lab_source()], cache=cache_settings(backend)) as api,
        MllpClient("127.0.0.1", api.lab_port()) as client,
    ):
        empty = await api.query(search, {"i": ssn})
        assert (await api.query(search, {"i": ssn})).headers["x-cache"] == "hit"
        me = await api.query("{ me { id } }")
        assert (await api.query("{ me { id } }")).headers["x-cache"] == "hit"
        assert msa(await client.send(oru("MSG-NEW", ssn=ssn)))[1] == "AA"
        found = await api.query(search, {"i": ssn})
        me_again = await api.query("{ me { id } }")
    assert empty.json()["data"]["patients"]["nodes"] == []
    assert found.headers["x-cache"] == "miss"
    assert len(found.json()["data"]["patients"]["nodes"]) == 1
    assert me_again.headers["x-cache"] == "hit"
    assert me_again.content == me.content
