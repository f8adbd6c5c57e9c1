"""FhirSource against the demo FHIR server over real loopback HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from app.demo.generator import DemoPopulation
from app.domain.patients import SSN_SYSTEM, PatientCriteria
from app.domain.records import MEDICATIONS, OBSERVATIONS, RecordQuery
from app.settings import FhirSourceSettings
from app.sources.errors import SourceDataError
from app.sources.fhir.source import FhirSource
from tests.conftest import running_upstream


def source_for(base_url: str, **options: Any) -> FhirSource:
    settings = FhirSourceSettings(
        id="hospital", kind="fhir", base_url=base_url, timeout_seconds=5, **options
    )
    return FhirSource(settings)


def hospital_ids(population: DemoPopulation) -> list[str]:
    return [p.local_ids["hospital"] for p in population.people]


def expected_observations(population: DemoPopulation, patient: str) -> set[str]:
    return {
        r["id"]
        for r in population.upstreams["hospital"]
        if r["resourceType"] == "Observation" and r["subject"]["reference"] == f"Patient/{patient}"
    }


async def test_paging_follows_next_links_and_loses_nothing(population: DemoPopulation) -> None:
    async with running_upstream("hospital", population.upstreams["hospital"]) as upstream:
        source = source_for(upstream.base_url, page_size=7, max_batch_size=50)
        ids = hospital_ids(population)[:6]
        result = await source.records_for(OBSERVATIONS, [RecordQuery(i) for i in ids])
        await source.aclose()
    for patient in ids:
        got = [o.sources[0].local_id for o in result[RecordQuery(patient)]]
        assert len(got) == len(set(got))  # each exactly once
        assert set(got) == expected_observations(population, patient)
    first_pages = [r for r in upstream.requests if "_offset" not in r]
    assert len(first_pages) == 1  # one search for all six patients
    assert len(upstream.requests) > 1  # and it really paged


async def test_upstream_without_paging_links_returns_everything(population: DemoPopulation) -> None:
    async with running_upstream(
        "hospital", population.upstreams["hospital"], next_links=False
    ) as upstream:
        source = source_for(upstream.base_url, page_size=5)
        ids = hospital_ids(population)[:4]
        result = await source.records_for(OBSERVATIONS, [RecordQuery(i) for i in ids])
        await source.aclose()
    assert len(upstream.requests) == 1
    for patient in ids:
        assert {
            o.sources[0].local_id for o in result[RecordQuery(patient)]
        } == expected_observations(population, patient)


async def test_next_link_to_another_origin_is_not_followed(population: DemoPopulation) -> None:
    async with running_upstream("hospital", population.upstreams["hospital"]) as upstream:
        upstream.faults.mode = "foreign-next"
        source = source_for(upstream.base_url)
        with pytest.raises(SourceDataError) as raised:
            await source.search_patients(PatientCriteria(family="A"))
        await source.aclose()
    # A data error, not a connection error: the foreign host was never contacted.
    assert raised.value.detail == "next link leaves the source base URL"


async def test_batches_ids_into_one_comma_joined_search(population: DemoPopulation) -> None:
    async with running_upstream("hospital", population.upstreams["hospital"]) as upstream:
        source = source_for(upstream.base_url, max_batch_size=10)
        ids = hospital_ids(population)[:25]
        found = await source.patients_by_id(ids)
        await source.aclose()
    assert set(found) == set(ids)
    assert len(upstream.requests) == 3  # 25 ids in chunks of 10
    assert all("_id=" in r and "%2C" in r for r in upstream.requests)


async def test_invalid_ids_never_reach_the_upstream(population: DemoPopulation) -> None:
    async with running_upstream("hospital", population.upstreams["hospital"]) as upstream:
        source = source_for(upstream.base_url)
        found = await source.patients_by_id(["../../metadata", "a b", "x" * 65, "Patient/1"])
        records = await source.records_for(OBSERVATIONS, [RecordQuery("1,2"), RecordQuery("a&b=c")])
        await source.aclose()
    assert found == {}
    assert all(not v for v in records.values())
    assert upstream.requests == []


async def test_search_values_are_escaped_and_encoded(population: DemoPopulation) -> None:
    person = population.people[0]
    async with running_upstream("hospital", population.upstreams["hospital"]) as upstream:
        source = source_for(upstream.base_url)
        hits = await source.search_patients(
            PatientCriteria(identifier=f"{SSN_SYSTEM}|{person.ssn}")
        )
        odd = await source.search_patients(PatientCriteria(family="O'Brien,Smith&x=1"))
        await source.aclose()
    assert [p.link.local_id for p in hits] == [person.local_ids["hospital"]]
    assert odd == []
    # The comma was escaped (a literal comma, not OR) and everything URL-encoded.
    assert any("family=O%27Brien%5C%2CSmith%26x%3D1" in r for r in upstream.requests)


async def test_observation_filters_are_pushed_down(population: DemoPopulation) -> None:
    async with running_upstream("hospital", population.upstreams["hospital"]) as upstream:
        source = source_for(upstream.base_url)
        patient = hospital_ids(population)[0]
        query = RecordQuery(patient, category="laboratory", since="2020-01-01")
        result = await source.records_for(OBSERVATIONS, [query])
        await source.aclose()
    assert result[query], "the demo patient has lab results since 2020"
    assert all("laboratory" in o.category for o in result[query])
    assert "category=laboratory" in upstream.requests[0]
    assert "date=ge2020-01-01" in upstream.requests[0]


async def test_medications_read_orders_and_statements(population: DemoPopulation) -> None:
    async with running_upstream("hospital", population.upstreams["hospital"]) as upstream:
        source = source_for(upstream.base_url)
        ids = hospital_ids(population)
        result = await source.records_for(MEDICATIONS, [RecordQuery(i) for i in ids])
        await source.aclose()
    kinds = {m.kind.value for meds in result.values() for m in meds}
    assert kinds == {"order", "statement"}
    assert sorted(r.split("?")[0].rsplit("/", 1)[1] for r in upstream.requests) == [
        "MedicationRequest",
        "MedicationStatement",
    ]
