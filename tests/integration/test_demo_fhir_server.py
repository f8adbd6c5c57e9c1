"""The demo FHIR server over real HTTP: read, search parameters, paging, instrumentation."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from starlette.applications import Starlette

from app.demo.fhir_server import create_fhir_app
from app.demo.generator import generate_population
from app.demo.serving import serving

SSN = "http://hl7.org/fhir/sid/us-ssn"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
Params = list[tuple[str, str]]


def _concept(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _patient(
    pid: str, family: str, given: list[str], birth: str, *ids: tuple[str, str]
) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"versionId": "3"},
        "identifier": [{"system": s, "value": v} for s, v in ids],
        "name": [{"family": family, "given": given}],
        "birthDate": birth,
    }


def _obs(oid: str, patient: str, category: str, code: str, when: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [_concept(OBS_CATEGORY, category)],
        "code": _concept("http://loinc.org", code),
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
    }


RESOURCES: list[dict[str, Any]] = [
    _patient(
        "p1",
        "Abernathy",
        ["Amara", "Beatrix"],
        "1980-05-12",
        (SSN, "999-01-0001"),
        ("urn:demo:hospital:mrn", "H1"),
    ),
    _patient(
        "p2",
        "Brightwater",
        ["Cyrus"],
        "1975-01-30",
        (SSN, "999-01-0002"),
        ("urn:demo:clinic:mrn", "C2"),
    ),
    _patient("p3", "Müller", ["Jonas"], "1990-12-31", ("urn:x", "a,b")),
    _obs("o1", "p1", "vital-signs", "8867-4", "2025-03-14T09:30:00Z"),
    _obs("o2", "p1", "laboratory", "2339-0", "2025-06-01T08:00:00Z"),
    _obs("o3", "p2", "laboratory", "2339-0", "2024-12-31T23:30:00Z"),
    _obs("o4", "p3", "vital-signs", "29463-7", "2025-01-01T01:00:00+02:00"),
    {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": "Patient/p1"},
        "code": _concept("http://snomed.info/sct", "44054006"),
        "onsetDateTime": "2020-02-02",
    },
    {
        "resourceType": "MedicationRequest",
        "id": "m1",
        "subject": {"reference": "Patient/p2"},
        "intent": "order",
        "medicationCodeableConcept": _concept(RXNORM, "860975"),
        "authoredOn": "2024-04-04T12:00:00Z",
    },
    {
        "resourceType": "MedicationRequest",
        "id": "m2",
        "subject": {"reference": "Patient/p1"},
        "intent": "order",
        "contained": [
            {"resourceType": "Medication", "id": "med1", "code": _concept(RXNORM, "314076")}
        ],
        "medicationReference": {"reference": "#med1"},
        "authoredOn": "2025-05-05T12:00:00Z",
    },
    {
        "resourceType": "Immunization",
        "id": "i1",
        "patient": {"reference": "Patient/p1"},
        "vaccineCode": _concept("http://hl7.org/fhir/sid/cvx", "140"),
        "occurrenceDateTime": "2024-10-01T10:00:00Z",
    },
    {
        "resourceType": "AllergyIntolerance",
        "id": "a1",
        "patient": {"reference": "Patient/p2"},
        "category": ["food"],
        "code": _concept("http://snomed.info/sct", "91935009"),
        "recordedDate": "2019-07-07",
    },
    {
        "resourceType": "Procedure",
        "id": "pr1",
        "subject": {"reference": "Patient/p1"},
        "code": _concept("http://snomed.info/sct", "73761001"),
        "performedPeriod": {"start": "2023-08-08T09:00:00Z", "end": "2023-08-08T10:00:00Z"},
    },
    {
        "resourceType": "Encounter",
        "id": "e1",
        "subject": {"reference": "Patient/p3"},
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "period": {"start": "2025-02-02T09:00:00Z", "end": "2025-02-02T09:30:00Z"},
    },
    {
        "resourceType": "DiagnosticReport",
        "id": "d1",
        "subject": {"reference": "Patient/p1"},
        "category": [_concept("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB")],
        "code": _concept("http://loinc.org", "51990-0"),
        "effectiveDateTime": "2025-06-01T08:00:00Z",
        "result": [{"reference": "Observation/o2"}],
    },
]


@contextlib.asynccontextmanager
async def running(
    resources: list[dict[str, Any]] = RESOURCES, **options: Any
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient, str]]:
    app = create_fhir_app(resources, **options)
    async with serving(app) as base, httpx.AsyncClient(base_url=f"{base}/fhir/R4") as client:
        yield app, client, base


def _ids(bundle: dict[str, Any]) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", [])}


def _link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((lk["url"] for lk in bundle["link"] if lk["relation"] == relation), None)


async def test_metadata_is_a_capability_statement() -> None:
    async with running() as (_, client, _base):
        response = await client.get("/metadata")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "CapabilityStatement"
    assert body["fhirVersion"] == "4.0.1"
    types = {r["type"] for r in body["rest"][0]["resource"]}
    assert {"Patient", "Observation", "Immunization"} <= types


async def test_read_returns_the_resource_or_a_404_outcome() -> None:
    async with running() as (_, client, _base):
        found = await client.get("/Patient/p1")
        missing = await client.get("/Observation/nope")
        unknown_type = await client.get("/Nonsense/p1")
    assert found.status_code == 200
    assert found.json() == RESOURCES[0]
    assert found.headers["etag"] == 'W/"3"'
    assert found.headers["content-type"].startswith("application/fhir+json")
    for response in (missing, unknown_type):
        assert response.status_code == 404
        assert response.json()["resourceType"] == "OperationOutcome"


SEARCHES: list[tuple[str, Params, set[str]]] = [
    # _id: comma = OR, repeat = AND
    ("Patient", [("_id", "p1,p3")], {"p1", "p3"}),
    ("Patient", [("_id", "p1"), ("_id", "p3")], set()),
    ("Patient", [("_id", "p1,p2"), ("_id", "p2,p3")], {"p2"}),
    # patient / subject, bare or typed
    ("Observation", [("patient", "p1,p2")], {"o1", "o2", "o3"}),
    ("Observation", [("patient", "Patient/p1")], {"o1", "o2"}),
    ("Observation", [("subject", "Patient/p2")], {"o3"}),
    ("Observation", [("subject:Patient", "p2")], {"o3"}),
    ("Observation", [("patient", "Group/p1")], set()),
    ("Immunization", [("patient", "p1")], {"i1"}),
    ("AllergyIntolerance", [("patient", "p1,p2")], {"a1"}),
    # identifier tokens
    ("Patient", [("identifier", f"{SSN}|999-01-0001")], {"p1"}),
    ("Patient", [("identifier", "999-01-0002")], {"p2"}),
    ("Patient", [("identifier", f"{SSN}|")], {"p1", "p2"}),
    ("Patient", [("identifier", "urn:demo:clinic:mrn|")], {"p2"}),
    ("Patient", [("identifier", "urn:other|999-01-0001")], set()),
    ("Patient", [("identifier", "urn:x|a\\,b")], {"p3"}),
    # names: case- and accent-insensitive starts-with
    ("Patient", [("name", "amar")], {"p1"}),
    ("Patient", [("name", "BRIGHT")], {"p2"}),
    ("Patient", [("name", "bea,cyr")], {"p1", "p2"}),
    ("Patient", [("family", "mull")], {"p3"}),
    ("Patient", [("family", "amara")], set()),
    ("Patient", [("given", "jo")], {"p3"}),
    ("Patient", [("name", "rus")], set()),
    # birthdate with prefixes
    ("Patient", [("birthdate", "1980-05-12")], {"p1"}),
    ("Patient", [("birthdate", "eq1980")], {"p1"}),
    ("Patient", [("birthdate", "ge1980-01-01")], {"p1", "p3"}),
    ("Patient", [("birthdate", "gt1980-05-12")], {"p3"}),
    ("Patient", [("birthdate", "lt1980-05-12")], {"p2"}),
    ("Patient", [("birthdate", "le1980-05-12")], {"p1", "p2"}),
    # category and code, with and without system
    ("Observation", [("category", "laboratory")], {"o2", "o3"}),
    ("Observation", [("category", f"{OBS_CATEGORY}|vital-signs")], {"o1", "o4"}),
    ("Observation", [("category", "http://wrong.example|vital-signs")], set()),
    ("Observation", [("code", "http://loinc.org|2339-0")], {"o2", "o3"}),
    ("Observation", [("code", "8867-4,2339-0"), ("patient", "p1")], {"o1", "o2"}),
    ("Observation", [("code:not", "2339-0")], {"o1", "o4"}),
    ("Condition", [("code", "44054006")], {"c1"}),
    ("MedicationRequest", [("code", "860975")], {"m1"}),
    ("MedicationRequest", [("code", f"{RXNORM}|314076")], {"m2"}),
    ("Immunization", [("code", "http://hl7.org/fhir/sid/cvx|140")], {"i1"}),
    ("AllergyIntolerance", [("category", "food")], {"a1"}),
    ("DiagnosticReport", [("category", "LAB"), ("code", "51990-0")], {"d1"}),
    # date, per type's natural date
    ("Observation", [("date", "ge2025-01-01")], {"o1", "o2"}),
    ("Observation", [("date", "ge2024-12-31T22:00:00Z")], {"o1", "o2", "o3", "o4"}),
    ("Observation", [("date", "ge2025-01-01"), ("date", "lt2025-06-01")], {"o1"}),
    ("Observation", [("date", "2025-03")], {"o1"}),
    ("Observation", [("date", "le2024-12-31")], {"o3", "o4"}),
    ("Observation", [("date", "gt2025-03-14T09:30:00+00:00")], {"o2"}),
    ("Condition", [("date", "2020")], {"c1"}),
    ("MedicationRequest", [("date", "lt2025")], {"m1"}),
    ("Immunization", [("date", "2024-10-01")], {"i1"}),
    ("AllergyIntolerance", [("date", "le2019-07-07")], {"a1"}),
    ("Procedure", [("date", "2023-08")], {"pr1"}),
    ("Encounter", [("date", "ge2025-02-02")], {"e1"}),
    ("DiagnosticReport", [("date", "lt2025-06-01")], set()),
    # unknown parameters are ignored
    ("Observation", [("unknown-thing", "x"), ("patient", "p2")], {"o3"}),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_client() -> AsyncIterator[httpx.AsyncClient]:
    """One server for the many read-only search cases (start-up per case adds up)."""
    async with running() as (_, client, _base):
        yield client


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("resource_type", "params", "expected"), SEARCHES)
async def test_search(
    shared_client: httpx.AsyncClient, resource_type: str, params: Params, expected: set[str]
) -> None:
    response = await shared_client.get(f"/{resource_type}", params=tuple(params))
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert (bundle["resourceType"], bundle["type"]) == ("Bundle", "searchset")
    assert _ids(bundle) == expected
    assert bundle["total"] == len(expected)
    assert all(e["search"]["mode"] == "match" for e in bundle.get("entry", []))


async def test_entries_have_absolute_full_urls_and_self_drops_ignored_params() -> None:
    async with running() as (_, client, base):
        bundle = (await client.get("/Observation", params={"patient": "p2", "junk": "1"})).json()
    assert bundle["entry"][0]["fullUrl"] == f"{base}/fhir/R4/Observation/o3"
    self_link = _link(bundle, "self")
    assert self_link is not None
    assert self_link.startswith(f"{base}/fhir/R4/Observation?")
    assert "patient=p2" in self_link
    assert "junk" not in self_link


async def test_paging_follows_next_links_until_exhausted() -> None:
    hospital = generate_population().upstreams["hospital"]
    expected = [r["id"] for r in hospital if r["resourceType"] == "Observation"]
    async with running(list(hospital)) as (_, client, base):
        bundle = (await client.get("/Observation", params={"_count": "25"})).json()
        seen = [e["resource"]["id"] for e in bundle["entry"]]
        pages = 1
        while (next_url := _link(bundle, "next")) is not None:
            assert next_url.startswith(f"{base}/fhir/R4/Observation?")
            bundle = (await client.get(next_url)).json()
            assert len(bundle["entry"]) <= 25
            seen += [e["resource"]["id"] for e in bundle["entry"]]
            pages += 1
    assert sorted(seen) == sorted(expected)
    assert len(seen) == len(set(seen))
    assert bundle["total"] == len(expected)
    assert pages == -(-len(expected) // 25)


async def test_paging_keeps_the_filters() -> None:
    population = generate_population()
    person = population.people[0]
    local = person.local_ids["clinic"]
    clinic = population.upstreams["clinic"]
    expected = {
        r["id"]
        for r in clinic
        if r["resourceType"] == "Observation" and r["subject"]["reference"] == f"Patient/{local}"
    }
    async with running(list(clinic)) as (_, client, _base):
        bundle = (await client.get("/Observation", params={"patient": local, "_count": "2"})).json()
        seen = _ids(bundle)
        while (next_url := _link(bundle, "next")) is not None:
            bundle = (await client.get(next_url)).json()
            seen |= _ids(bundle)
    assert seen == expected


async def test_count_is_capped_and_defaulted() -> None:
    resources = [_obs(f"o{n}", "p1", "laboratory", "2339-0", "2025-01-01") for n in range(30)]
    async with running(resources, default_count=4, max_count=10) as (_, client, _base):
        defaulted = (await client.get("/Observation")).json()
        capped = (await client.get("/Observation", params={"_count": "500"})).json()
        counted = (await client.get("/Observation", params={"_summary": "count"})).json()
        zero = (await client.get("/Observation", params={"_count": "0"})).json()
    assert len(defaulted["entry"]) == 4
    assert _link(defaulted, "next") is not None
    assert (zero["total"], zero["entry"], _link(zero, "next")) == (30, [], None)
    assert len(capped["entry"]) == 10
    assert capped["total"] == defaulted["total"] == 30
    assert (counted["total"], counted["entry"]) == (30, [])


async def test_without_next_links_everything_comes_in_one_page() -> None:
    resources = [_obs(f"o{n}", "p1", "laboratory", "2339-0", "2025-01-01") for n in range(30)]
    async with running(resources, next_links=False, max_count=10) as (_, client, _base):
        bundle = (await client.get("/Observation", params={"_count": "5"})).json()
    assert len(bundle["entry"]) == 30
    assert bundle["total"] == 30
    assert _link(bundle, "next") is None


async def test_requests_are_logged_on_arrival() -> None:
    async with running() as (app, client, _base):
        await client.get("/Patient/p1")
        await client.get("/Observation", params={"patient": "p1", "_count": "2"})
        await client.get("/Observation/none")
    assert app.state.requests == [
        "/fhir/R4/Patient/p1",
        "/fhir/R4/Observation?patient=p1&_count=2",
        "/fhir/R4/Observation/none",
    ]


async def test_delay_applies_to_every_request_without_serialising_them() -> None:
    async with running() as (app, client, _base):
        app.state.delay_seconds = 0.2
        started = time.perf_counter()
        responses = await asyncio.gather(*(client.get(f"/Patient/p{n}") for n in (1, 2, 3)))
        elapsed = time.perf_counter() - started
        app.state.delay_seconds = 0.0
        started = time.perf_counter()
        await client.get("/Patient/p1")
        fast = time.perf_counter() - started
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert 0.2 <= elapsed < 0.55
    assert fast < 0.2


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(
    ("params", "headers"),
    [
        ([("date", "2025-13-01")], {}),
        ([("date", "yesterday")], {}),
        ([("date", "ap2025-01-01")], {}),
        ([("_count", "-1")], {}),
        ([("_offset", "x")], {}),
        ([("code:text", "glucose")], {}),
        ([("code", "a|b|c")], {}),
        ([("nonsense", "1")], {"Prefer": "handling=strict"}),
    ],
)
async def test_malformed_searches_are_400(
    shared_client: httpx.AsyncClient, params: Params, headers: dict[str, str]
) -> None:
    response = await shared_client.get("/Observation", params=tuple(params), headers=headers)
    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "error"


async def test_unsupported_type_and_unknown_route_are_404_outcomes() -> None:
    async with running() as (_, client, base):
        unknown_type = await client.get("/Nonsense")
        empty_but_supported = await client.get("/DocumentReference", params={"patient": "p1"})
        off_base = await client.get(f"{base}/elsewhere")
    assert unknown_type.status_code == off_base.status_code == 404
    assert off_base.json()["resourceType"] == "OperationOutcome"
    assert empty_but_supported.status_code == 200
    assert empty_but_supported.json()["total"] == 0
