"""Every GraphQL disclosure and access decision is in the audit trail before the response
leaves (issue 13): executed, served from the response cache, or shared by a single-flight
follower; denials with the rule that decided them; a trail that cannot be written fails the
request closed; and under bounded concurrent load the trail holds exactly one event per
patient per response that disclosed them, on both store backends."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from app.audit.trail import metadata as audit_metadata
from app.demo.generator import DemoPopulation
from app.domain.audit import AuditRecord
from app.identity.tables import metadata as identity_metadata
from tests.conftest import Api, ApiFactory, Upstream, fhir_source
from tests.integration.conftest import store_url_for
from tests.integration.test_authorization import a_patient_id
from tests.integration.test_response_cache import cache_settings

ONE = "query One($id: ID!) { patient(id: $id) { id name { family } observations { totalCount nodes { id } } } }"  # noqa: E501
SEARCH = "query Find($f: String) { patients(family: $f, first: 2) { nodes { id } } }"

AuditedApi = Callable[..., contextlib.AbstractAsyncContextManager[Api]]


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    await store_url_for(request.param, tmp_path, identity_metadata)
    return await store_url_for(request.param, tmp_path, audit_metadata)


@pytest.fixture
def audited_api(
    store_url: str, upstreams: dict[str, Upstream], api_factory: ApiFactory
) -> AuditedApi:
    def factory(**cache: Any) -> contextlib.AbstractAsyncContextManager[Api]:
        sources = [fhir_source(u) for u in upstreams.values()]
        return api_factory(
            sources, store={"url": store_url}, cache=cache_settings("memory", **cache)
        )

    return factory


async def events(api: Api) -> list[tuple[str | None, dict[str, Any]]]:
    return [(r.patient_id, dict(r.event)) for r in await records(api)]


async def records(api: Api) -> list[AuditRecord]:
    trail = api.runtime.audit
    assert trail is not None
    return [record async for record in trail.since()]


@contextlib.asynccontextmanager
async def counted(api: Api) -> AsyncIterator[list[tuple[str | None, dict[str, Any]]]]:
    """The events recorded inside the block."""
    before = len(await events(api))
    found: list[tuple[str | None, dict[str, Any]]] = []
    yield found
    found.extend((await events(api))[before:])


async def test_a_read_is_recorded_with_who_what_where_and_how_it_was_served(
    audited_api: AuditedApi, population: DemoPopulation
) -> None:
    async with audited_api() as api:
        pid = await a_patient_id(api, population)
        token: dict[str, Any] = {
            "name": "Dr. Ada Quinn",
            "client_id": "ward-dashboard",
            "purposes": ["TREAT"],
        }
        async with counted(api) as first:
            response = await api.query(ONE, {"id": pid}, **token)
        async with counted(api) as again:
            hit = await api.query(ONE, {"id": pid}, **token)
        assert (response.headers["x-cache"], hit.headers["x-cache"]) == ("miss", "hit")
        shown = response.json()["data"]["patient"]["observations"]
        ((patient, event),) = first
        assert patient == pid
        assert event["outcome"] == "success"
        assert event["served"] == "executed"
        who = event["who"]
        assert (who["subject"], who["name"], who["client"]) == (
            "test-clinician",
            "Dr. Ada Quinn",
            "ward-dashboard",
        )
        assert (who["roles"], who["purposes"]) == (["clinician"], ["TREAT"])
        assert event["where"]["address"] == "127.0.0.1"
        assert event["operation"]["name"] == "One"
        assert len(event["operation"]["hash"]) == 64
        assert pid not in json.dumps(event["operation"])  # variable values only as keyed hashes
        assert event["what"]["kinds"] == {"demographics": 1, "observations": len(shown["nodes"])}
        assert event["operation"]["fields"] == [
            "HumanName.family",
            "Observation.id",
            "ObservationConnection.nodes",
            "ObservationConnection.totalCount",
            "Patient.id",
            "Patient.name",
            "Patient.observations",
            "Query.patient",
        ]
        assert event["what"]["sources"]
        assert {"rule": "record type", "target": "Patient", "allowed": True} in event["decisions"]
        ((hit_patient, hit_event),) = again
        assert hit_patient == pid
        assert hit_event["served"] == "cache"
        assert hit_event["what"] == event["what"]
        assert (await api.runtime.audit.verify()).ok  # type: ignore[union-attr]


async def test_a_search_records_the_patients_on_its_page_and_hashes_what_was_searched(
    audited_api: AuditedApi, population: DemoPopulation
) -> None:
    family = population.people[0].family
    async with audited_api() as api:
        async with counted(api) as recorded:
            response = await api.query(SEARCH, {"f": family})
        shown = [n["id"] for n in response.json()["data"]["patients"]["nodes"]]
        assert shown
        assert [pid for pid, _ in recorded] == shown
        for _, event in recorded:
            assert family not in json.dumps(event)
            assert event["what"]["kinds"] == {"demographics": 1}
        async with counted(api) as nobody:
            await api.query(SEARCH, {"f": "Nobody-by-this-name"})
        ((none, searched),) = nobody  # a search that found no one is still on the trail
        assert none is None
        assert searched["what"]["kinds"] == {}
        assert (
            searched["operation"]["variables"]["f"] != recorded[0][1]["operation"]["variables"]["f"]
        )


async def test_a_denied_read_is_recorded_with_the_rule_that_denied_it(
    audited_api: AuditedApi, population: DemoPopulation
) -> None:
    async with audited_api() as api:
        mine, other = [await a_patient_id(api, population, i) for i in (0, 1)]
        async with counted(api) as recorded:
            response = await api.query(ONE, {"id": other}, role="patient", patient=mine)
        assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        ((patient, event),) = recorded
        assert patient == other
        assert event["outcome"] == "denied"
        assert {"rule": "confinement", "target": "Patient", "allowed": False} in event["decisions"]
        async with counted(api) as refused:
            purpose = await api.query(ONE, {"id": mine}, purposes=["MARKETING"])
        assert purpose.status_code == 403
        ((nobody, refusal),) = refused
        assert nobody is None
        assert refusal["outcome"] == "denied"
        assert refusal["decisions"] == [
            {"rule": "purpose of use", "target": "request", "allowed": False}
        ]


async def test_single_flight_followers_are_each_recorded(
    audited_api: AuditedApi, upstreams: dict[str, Upstream], population: DemoPopulation
) -> None:
    async with audited_api() as api:
        pid = await a_patient_id(api, population)
        for upstream in upstreams.values():
            upstream.faults.state.delay_seconds = 0.2  # type: ignore[union-attr]
        try:
            async with counted(api) as recorded:
                answers = await asyncio.gather(*(api.query(ONE, {"id": pid}) for _ in range(6)))
        finally:
            for upstream in upstreams.values():
                upstream.faults.state.delay_seconds = 0.0  # type: ignore[union-attr]
        states = sorted(r.headers["x-cache"] for r in answers)
        assert states == ["miss"] + ["shared"] * 5
        assert sorted(e["served"] for _, e in recorded) == ["executed"] + ["shared"] * 5
        assert {pid for pid, _ in recorded} == {pid}


async def test_a_trail_that_cannot_be_written_fails_every_request_closed(
    audited_api: AuditedApi, population: DemoPopulation
) -> None:
    async with audited_api() as api:
        pid = await a_patient_id(api, population)
        assert (await api.query(ONE, {"id": pid})).status_code == 200  # now cached
        async with api.runtime.engine.begin() as conn:
            await conn.execute(sa.text("ALTER TABLE audit_operations RENAME TO audit_away"))
        try:
            for query, variables in ((ONE, {"id": pid}), (SEARCH, {"f": "A"})):
                response = await api.query(query, variables)
                assert response.status_code == 500
                body = response.json()
                assert body["errors"][0]["extensions"]["code"] == "INTERNAL"
                assert "data" not in body
        finally:
            async with api.runtime.engine.begin() as conn:
                await conn.execute(sa.text("ALTER TABLE audit_away RENAME TO audit_operations"))
        assert (await api.query(ONE, {"id": pid})).status_code == 200


AUDIT = """query($p: ID, $first: Int, $after: String, $since: DateTime) {
  auditEvents(patientId: $p, first: $first, after: $after, since: $since) {
    nodes { id patientId outcome served subject name client organization operationName
      kinds { kind count } }
    pageInfo { hasNextPage endCursor }
  }
}"""
LOG = """query($first: Int, $after: String) { me { accessLog(first: $first, after: $after) {
  nodes { at who organization roles app kinds purposes emergency }
  pageInfo { hasNextPage endCursor } } } }"""
OTHERS_LOG = "query($id: ID!) { patient(id: $id) { accessLog { nodes { who } } } }"


async def test_auditors_page_through_the_events_and_no_one_else_reads_them(
    audited_api: AuditedApi, population: DemoPopulation
) -> None:
    async with audited_api() as api:
        pid = await a_patient_id(api, population)
        for n in range(3):
            await api.query(ONE, {"id": pid}, subject=f"dr-{n}", name=f"Dr. {n}")
        page = (await api.query(AUDIT, {"p": pid, "first": 2}, role="auditor")).json()
        nodes = page["data"]["auditEvents"]["nodes"]
        assert [n["subject"] for n in nodes] == ["dr-2", "dr-1"]  # newest first
        assert {n["patientId"] for n in nodes} == {pid}
        cursor = page["data"]["auditEvents"]["pageInfo"]
        assert cursor["hasNextPage"] is True
        rest = await api.query(
            AUDIT, {"p": pid, "first": 2, "after": cursor["endCursor"]}, role="auditor"
        )
        later = [n["subject"] for n in rest.json()["data"]["auditEvents"]["nodes"]]
        assert later[0] == "dr-0"
        future = await api.query(AUDIT, {"since": "2999-01-01T00:00:00Z"}, role="auditor")
        assert future.json()["data"]["auditEvents"]["nodes"] == []
        for role in ("clinician", "admin", "billing"):
            refused = (await api.query(AUDIT, {"p": pid}, role=role)).json()
            assert refused["data"] is None
            assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        bad = (await api.query(AUDIT, {"first": 0}, role="auditor")).json()
        assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_patient_reads_who_saw_their_record_and_never_anothers_log(
    audited_api: AuditedApi, population: DemoPopulation
) -> None:
    async with audited_api() as api:
        mine, other = [await a_patient_id(api, population, i) for i in (0, 1)]
        await api.query(
            ONE,
            {"id": mine},
            name="Dr. Ada Quinn",
            client_id="ward-dashboard",
            organization="Northside Clinic",
        )
        await api.query(ONE, {"id": other}, name="Dr. Other")
        await api.query(ONE, {"id": mine}, role="billing", name="Billing Office")
        log = (await api.query(LOG, role="patient", patient=mine)).json()
        entries = log["data"]["me"]["accessLog"]["nodes"]
        who = [e["who"] for e in entries]
        assert who[:2] == ["Billing Office", "Dr. Ada Quinn"]  # newest first
        assert "Dr. Other" not in who
        ada = entries[1]
        assert (ada["roles"], ada["app"]) == (["clinician"], "ward-dashboard")
        assert ada["organization"] == "Northside Clinic"
        assert entries[0]["organization"] is None  # the billing token named none
        assert set(ada["kinds"]) == {"demographics", "observations"}
        assert ada["emergency"] is False
        for entry in entries:
            assert "test-" not in json.dumps(entry)  # token subjects are internal ids
        # Through patient(id): the patient's own record yes, another patient's never.
        other_log = (
            await api.query(OTHERS_LOG, {"id": other}, role="patient", patient=mine)
        ).json()
        assert other_log["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert "Dr. Other" not in json.dumps(other_log)
        clinician = (await api.query(OTHERS_LOG, {"id": mine})).json()
        assert clinician["data"]["patient"]["accessLog"] is None
        assert clinician["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        audit = (await api.query(AUDIT, {"p": mine}, role="auditor")).json()
        ada_events = [
            e for e in audit["data"]["auditEvents"]["nodes"] if e["name"] == "Dr. Ada Quinn"
        ]
        assert ada_events  # auditors read it as audit events
        assert {e["organization"] for e in ada_events} == {"Northside Clinic"}
        auditor = (await api.query(OTHERS_LOG, {"id": mine}, role="auditor")).json()
        assert auditor["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_a_cache_purge_is_recorded_for_its_patient(
    audited_api: AuditedApi, population: DemoPopulation
) -> None:
    purge = "mutation Purge($id: ID!) { purgePatientCache(patientId: $id) { responses } }"
    async with audited_api() as api:
        pid = await a_patient_id(api, population)
        scope = "user/*.cruds patientgraph/cache.purge"
        async with counted(api) as recorded:
            done = await api.query(purge, {"id": pid}, role="admin", scope=scope)
        assert "errors" not in done.json()
        ((patient, event),) = recorded
        assert patient == pid
        assert (event["operation"]["kind"], event["operation"]["name"]) == ("mutation", "Purge")
        assert (event["what"]["changed"], event["outcome"]) == (True, "success")


# ---- under load ----

REQUESTS = 240
CONCURRENCY = 12


def disclosed(response: httpx.Response) -> list[str]:
    """The patients whose data a response holds."""
    data = response.json().get("data") or {}
    if data.get("patient"):
        return [data["patient"]["id"]]
    if data.get("patients"):
        return [n["id"] for n in data["patients"]["nodes"]]
    return []


async def load(api: Api, population: DemoPopulation, ids: list[str]) -> list[httpx.Response]:
    families = [p.family for p in population.people[:3]]
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(n: int) -> httpx.Response:
        async with gate:
            if n % 3:
                return await api.query(ONE, {"id": ids[n % len(ids)]}, subject=f"u{n % 5}")
            return await api.query(SEARCH, {"f": families[n % len(families)]})

    return list(await asyncio.gather(*(one(n) for n in range(REQUESTS))))


async def test_events_equal_disclosures_under_load(
    audited_api: AuditedApi, population: DemoPopulation
) -> None:
    async with audited_api() as api:
        ids = [await a_patient_id(api, population, i) for i in range(4)]
        before = len(await records(api))
        responses = await load(api, population, ids)
        rows = (await records(api))[before:]
        trail = api.runtime.audit
        assert trail is not None
        verified = await trail.verify()
    assert {r.status_code for r in responses} == {200}
    served = Counter(r.headers["x-cache"] for r in responses)
    assert served["hit"] > 0  # cache hits are part of the load, and audited
    expected = Counter((r.headers["x-request-id"], pid) for r in responses for pid in disclosed(r))
    recorded = Counter(
        (row.event["where"]["request_id"], row.patient_id)
        for row in rows
        if row.patient_id is not None
    )
    assert sum(expected.values()) > REQUESTS / 2
    assert recorded == expected  # every disclosure once: none lost, none duplicated
    how: Counter[Any] = Counter(row.event["served"] for row in rows)
    assert how["cache"] > 0
    assert verified.ok


async def test_auditors_read_the_usage_report_per_client_app(
    audited_api: AuditedApi, population: DemoPopulation
) -> None:
    usage = "{ usageReport { client patients repeatPatients disclosures } }"
    async with audited_api() as api:
        ids = [await a_patient_id(api, population, i) for i in range(3)]
        for pid in [*ids, ids[0]]:  # the portal shows three patients, one of them twice
            await api.query(ONE, {"id": pid}, client_id="portal")
        report = (await api.query(usage, role="auditor")).json()
        refused = (await api.query(usage, role="admin")).json()
    rows = {r["client"]: r for r in report["data"]["usageReport"]}
    assert rows["portal"] == {
        "client": "portal",
        "patients": 3,
        "repeatPatients": 1,
        "disclosures": 4,
    }
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
