"""Identity review and repair through the graph, with the response cache on (both backends):
how records were linked, who may see it, and an unlink or link that takes effect at once."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import create_async_engine

from app.demo.generator import DemoPerson, DemoPopulation
from app.identity.index import PatientIndex
from app.identity.review import IdentityReview
from app.identity.tables import patient_links
from tests.conftest import Api, ApiFactory, Upstream, fhir_source
from tests.integration.test_lab_concurrency import POSTGRES_URL, postgres_engine
from tests.integration.test_response_cache import CachedApi, cache_settings, cached_api

__all__ = ["cached_api"]  # fixture

READ = "user/*.rs patientgraph/identity.read"
WRITE = "user/*.rs patientgraph/identity.read patientgraph/identity.write"
SOURCES = "query($id: ID!) { patient(id: $id) { id sources { sourceId localId } } }"
LINKS = """query($id: ID!) { patient(id: $id) { links { sourceId method identifierSystem
  ruleVersion linkedAt linkedBy contributions { field weight } } } }"""
SEARCH = "query($i: String) { patients(identifier: $i) { nodes { id sources { sourceId } } } }"
UNLINK = """mutation($s: String!, $l: String!, $r: String!) {
  unlinkPatientRecord(sourceId: $s, localId: $l, reason: $r) { fromPatientId toPatientId } }"""
LINK = """mutation($s: String!, $l: String!, $p: ID!, $r: String!) {
  linkPatientRecord(sourceId: $s, localId: $l, patientId: $p, reason: $r) { toPatientId } }"""
OPERATIONS = "{ identityOperations { operation actor reason sourceId fromPatientId toPatientId } }"


async def admin(api: Api, query: str, variables: dict[str, Any], scope: str = WRITE) -> Any:
    answer = (await api.query(query, variables, role="admin", scope=scope)).json()
    assert "errors" not in answer, answer["errors"]
    return answer["data"]


async def test_links_are_explained_to_admins_with_the_identity_scope_only(
    cached_api: CachedApi, population: DemoPopulation
) -> None:
    person = population.people[0]
    async with cached_api() as api:
        found = await admin(api, SEARCH, {"i": person.ssn})
        (patient,) = found["patients"]["nodes"]
        explained = await admin(api, LINKS, {"id": patient["id"]}, scope=READ)
        refused = [
            (await api.query(LINKS, {"id": patient["id"]}, role=role, scope=scope)).json()
            for role, scope in (("clinician", READ), ("admin", "user/*.rs"))
        ]
    links = explained["patient"]["links"]
    assert sorted(link["method"] for link in links) == ["identifier", "new"]
    assert all(link["ruleVersion"] == 2 and link["linkedAt"] for link in links)
    for answer in refused:
        assert answer["data"]["patient"]["links"] is None
        assert answer["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_unlink_and_link_take_effect_at_once_cached_answers_included(
    cached_api: CachedApi, population: DemoPopulation
) -> None:
    async with cached_api() as api:
        await unlink_and_link_back(api, population.people[1])


async def test_unlink_and_link_on_postgresql_with_the_redis_cache(
    api_factory: ApiFactory, upstreams: dict[str, Upstream], population: DemoPopulation
) -> None:
    await (await postgres_engine()).dispose()  # the index's tables dropped: a fresh store
    sources = [fhir_source(u) for u in upstreams.values()]
    store = {"url": POSTGRES_URL}
    async with api_factory(sources, cache=cache_settings("redis"), store=store) as api:
        assert api.runtime.engine.dialect.name == "postgresql"
        await unlink_and_link_back(api, population.people[1])


async def unlink_and_link_back(api: Api, person: DemoPerson) -> None:
    clinic = {"s": "clinic", "l": person.local_ids["clinic"]}
    (patient,) = (await admin(api, SEARCH, {"i": person.ssn}))["patients"]["nodes"]
    pid = patient["id"]
    await api.query(SOURCES, {"id": pid}, role="admin", scope=WRITE)
    cached = await api.query(SOURCES, {"id": pid}, role="admin", scope=WRITE)
    assert cached.headers["x-cache"] == "hit"
    no_scope = (await api.query(UNLINK, {**clinic, "r": "x"}, role="admin", scope=READ)).json()
    no_reason = (await api.query(UNLINK, {**clinic, "r": " "}, role="admin", scope=WRITE)).json()
    moved = (await admin(api, UNLINK, {**clinic, "r": "two people, ticket 7"}))[
        "unlinkPatientRecord"
    ]
    after = await admin(api, SOURCES, {"id": pid})
    alone = await admin(api, SOURCES, {"id": moved["toPatientId"]})
    relinked = await admin(api, LINK, {**clinic, "p": pid, "r": "same person after all"})
    back = await admin(api, SOURCES, {"id": pid})
    operations = (await admin(api, OPERATIONS, {}, scope=READ))["identityOperations"]
    assert no_scope["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert no_reason["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert moved["fromPatientId"] == pid
    assert [s["sourceId"] for s in after["patient"]["sources"]] == ["hospital"]
    assert [s["sourceId"] for s in alone["patient"]["sources"]] == ["clinic"]
    assert relinked["linkPatientRecord"]["toPatientId"] == pid
    assert sorted(s["sourceId"] for s in back["patient"]["sources"]) == ["clinic", "hospital"]
    assert [(o["operation"], o["reason"], o["fromPatientId"]) for o in operations] == [
        ("unlink", "two people, ticket 7", pid),
        ("link", "same person after all", moved["toPatientId"]),
    ]
    assert all(o["actor"].endswith("#test-admin") for o in operations)


async def test_a_link_another_worker_changed_is_not_answered_from_memory(
    cached_api: CachedApi, population: DemoPopulation
) -> None:
    """This server remembers the clinic record as the patient's; another worker unlinks it.
    A search that finds the record again must answer from the index, not the memory."""
    person = population.people[2]
    async with cached_api() as api:
        (patient,) = (await admin(api, SEARCH, {"i": person.ssn}))["patients"]["nodes"]
        engine = create_async_engine(api.runtime.engine.url)
        try:
            other = IdentityReview(PatientIndex(engine, [], "other-worker"))
            moved = await other.unlink(("clinic", person.local_ids["clinic"]), "admin", "test")
        finally:
            await engine.dispose()
        # Another document: a search nothing has cached.
        found = await admin(
            api, SEARCH.replace("id sources", "id name { family } sources"), {"i": person.ssn}
        )
    nodes = found["patients"]["nodes"]
    assert moved.from_patient_id == patient["id"]
    assert sorted((n["id"], n["sources"][0]["sourceId"]) for n in nodes) == sorted(
        [(patient["id"], "hospital"), (moved.to_patient_id, "clinic")]
    )


async def test_a_legacy_link_joining_two_people_is_split_when_read_by_id(
    api_factory: ApiFactory, upstreams: dict[str, Upstream], population: DemoPopulation
) -> None:
    """An index from before the matcher linked two different people (one person's clinic
    record, another's hospital record). Read by id, the patient shows one of them only, and
    the other is moved out and listed."""
    first, second = population.people[4], population.people[5]
    legacy = "pg-" + "c" * 24
    async with api_factory([fhir_source(u) for u in upstreams.values()]) as api:
        async with api.runtime.engine.begin() as conn:
            await conn.execute(
                patient_links.insert(),
                [
                    {
                        "source_id": "clinic",
                        "local_id": first.local_ids["clinic"],
                        "patient_id": legacy,
                    },
                    {
                        "source_id": "hospital",
                        "local_id": second.local_ids["hospital"],
                        "patient_id": legacy,
                    },
                ],
            )
        read = await admin(api, SOURCES, {"id": legacy})
        again = await admin(api, SOURCES, {"id": legacy})
        reviews = await admin(api, "{ identityReviews { reason sourceId patientId } }", {})
    assert [s["sourceId"] for s in read["patient"]["sources"]] == ["clinic"]
    assert again == read
    assert reviews["identityReviews"] == [
        {"reason": "upgrade_recheck", "sourceId": "hospital", "patientId": legacy}
    ]
