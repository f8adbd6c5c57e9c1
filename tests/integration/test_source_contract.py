"""The source contract (app/sources/base.py), the same cases over every adapter: the in-memory
fake, FhirSource against the demo FHIR server, Hl7v2Source fed the demo lab's ORU^R01 messages
over MLLP, NcpdpSource against the demo pharmacy (tests/contract/adapters.py). A case about a
port an adapter does not implement is skipped by capability, never by adapter name.

Keys in, mapping out: the keys answered are a subset of those asked, a missing key (or an empty
sequence) means "knows nothing", batching and duplicates never change an answer, and every
failure is a SourceError.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio

from app.demo.generator import generate_population
from app.domain.patients import PatientCriteria
from app.domain.records import PersonQuery, RecordKind, RecordQuery
from app.sources.base import (
    PatientSource,
    PersonRecordSource,
    RecordSource,
    Source,
    SourceHealth,
)
from app.sources.errors import SourceTimeout, SourceUnavailable
from tests.contract.adapters import ADAPTERS, Harness, known_kinds

pytestmark = pytest.mark.asyncio(loop_scope="module")

POPULATION = generate_population(patients=5)
UNKNOWN = RecordQuery("no-such-patient")
INVALID = RecordQuery("not a valid id!")  # not a FHIR id: must be refused without a request
UNKNOWN_PERSON = PersonQuery("pg-unknown", "Nobody", ("Known",), "1970-01-01", "female")
K = TypeVar("K")


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=list(ADAPTERS))
async def harness(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Harness]:
    workdir: Path = tmp_path_factory.mktemp(request.param)
    async with ADAPTERS[request.param](POPULATION, workdir) as running:
        yield running


# Skips by capability: the port the case is about, or a skip when the adapter lacks it.
def record_port(harness: Harness) -> RecordSource:
    if not isinstance(harness.source, RecordSource):
        pytest.skip("does not implement RecordSource")
    return harness.source


def patient_port(harness: Harness) -> PatientSource:
    if not isinstance(harness.source, PatientSource):
        pytest.skip("does not implement PatientSource")
    return harness.source


def person_port(harness: Harness) -> PersonRecordSource:
    if not isinstance(harness.source, PersonRecordSource):
        pytest.skip("does not implement PersonRecordSource")
    return harness.source


def known_queries(harness: Harness) -> list[RecordQuery]:
    return [RecordQuery(local_id) for local_id in harness.patients]


def check_records(
    source: Source, kind: RecordKind[Any], asked: Sequence[K], found: Mapping[K, Sequence[Any]]
) -> None:
    """Only asked keys; every record is this source's and of one of the kind's types."""
    assert set(found) <= set(asked)
    for records in found.values():
        for record in records:
            assert record.sources[0].source_id == source.id
            assert record.sources[0].resource_type in kind.resource_types


def counts(kind: RecordKind[Any], found: Mapping[K, Sequence[Any]], key: Callable[[K], str]) -> Any:
    return {(kind.name, key(q)): len(records) for q, records in found.items() if records}


def expected_of(harness: Harness, kind: RecordKind[Any]) -> dict[tuple[str, str], int]:
    return {k: n for k, n in harness.expected.items() if k[0] == kind.name}


async def each_alone(
    ask: Callable[[list[K]], Awaitable[Mapping[K, Sequence[Any]]]], keys: Sequence[K]
) -> dict[K, list[Any]]:
    return {q: list((await ask([q])).get(q, ())) for q in keys}


# --- every source ---------------------------------------------------------------------------------


async def test_names_and_health_while_the_upstream_runs(harness: Harness) -> None:
    source = harness.source
    assert isinstance(source.id, str)
    assert source.id
    assert isinstance(source.kind, str)
    assert source.kind
    assert await source.health() == SourceHealth(source.id, source.kind, True, "ok")


async def test_every_failure_is_a_source_error(harness: Harness) -> None:
    """With its upstream gone, every port the adapter implements fails with SourceUnavailable
    or SourceTimeout (never httpx's or the database's own errors), and health says not ok."""
    broken = await harness.broken()
    family = next(iter(harness.patients.values()), "Nobody")
    calls: list[Callable[[], Awaitable[object]]] = []
    if isinstance(broken, PatientSource):
        calls.append(partial(broken.patients_by_id, list(harness.patients)))
        calls.append(partial(broken.search_patients, PatientCriteria(family=family)))
    if isinstance(broken, RecordSource):
        for kind in known_kinds(broken.record_kinds):
            calls.append(partial(broken.records_for, kind, known_queries(harness)))
    if isinstance(broken, PersonRecordSource):
        for kind in known_kinds(broken.record_kinds):
            calls.append(partial(broken.records_for_people, kind, harness.people))
    try:
        health = await broken.health()
        assert (health.source_id, health.ok) == (broken.id, False)
        assert calls
        for call in calls:
            with pytest.raises((SourceUnavailable, SourceTimeout)):
                await call()
    finally:
        await broken.aclose()


async def test_aclose_is_safe_twice(harness: Harness) -> None:
    source = await harness.another()
    assert (await source.health()).ok
    await source.aclose()
    await source.aclose()


# --- RecordSource -------------------------------------------------------------------------------


async def test_records_are_the_demo_data(harness: Harness) -> None:
    source = record_port(harness)
    queries = known_queries(harness)
    kinds = known_kinds(source.record_kinds)
    assert kinds
    for kind in kinds:
        found = await source.records_for(kind, queries)
        check_records(source, kind, queries, found)
        assert counts(kind, found, lambda q: q.patient) == expected_of(harness, kind), kind.name
    assert any(n for (name, _), n in harness.expected.items() if name in source.record_kinds)


async def test_unknown_or_invalid_patients_get_nothing(harness: Harness) -> None:
    source = record_port(harness)
    for kind in known_kinds(source.record_kinds):
        found = await source.records_for(kind, [UNKNOWN, INVALID])
        assert set(found) <= {UNKNOWN, INVALID}
        assert not any(found.values())


async def test_batching_does_not_change_answers(harness: Harness) -> None:
    source = record_port(harness)
    queries = [*known_queries(harness), UNKNOWN, INVALID]
    for kind in known_kinds(source.record_kinds):
        together = await source.records_for(kind, queries)
        check_records(source, kind, queries, together)
        batched = {q: list(together.get(q, ())) for q in queries}
        assert batched == await each_alone(partial(source.records_for, kind), queries)


async def test_duplicate_queries_answer_once_per_key(harness: Harness) -> None:
    source = record_port(harness)
    first, second, *_ = known_queries(harness)
    for kind in known_kinds(source.record_kinds):
        found = await source.records_for(kind, [first, second, first, UNKNOWN, first])
        check_records(source, kind, [first, second, UNKNOWN], found)
        alone = await each_alone(partial(source.records_for, kind), [first, second])
        assert {q: list(found.get(q, ())) for q in (first, second)} == alone


# --- PatientSource ------------------------------------------------------------------------------


async def test_patients_by_id_answers_the_known_and_omits_the_rest(harness: Harness) -> None:
    source = patient_port(harness)
    known = list(harness.patients)[:3]
    found = await source.patients_by_id([*known, UNKNOWN.patient, INVALID.patient, known[0]])
    assert set(found) == set(known)
    for local_id, patient in found.items():
        assert (patient.link.source_id, patient.link.local_id) == (source.id, local_id)
        assert patient.link.resource_type == "Patient"
        assert patient.name is not None
        assert patient.name.family == harness.patients[local_id]
    assert await source.patients_by_id([UNKNOWN.patient, INVALID.patient]) == {}


async def test_search_finds_a_known_patient_by_family_name(harness: Harness) -> None:
    source = patient_port(harness)
    for local_id, family in list(harness.patients.items())[:2]:
        for asked in (family, family[:4].lower()):  # FHIR string search: case-blind prefix
            found = await source.search_patients(PatientCriteria(family=asked))
            assert local_id in {p.link.local_id for p in found}
            for patient in found:
                assert patient.link.source_id == source.id
                assert patient.name is not None
                assert patient.name.family is not None
                assert patient.name.family.casefold().startswith(asked.casefold())
    assert list(await source.search_patients(PatientCriteria(family="Nosuchfamily"))) == []


# --- PersonRecordSource -------------------------------------------------------------------------


async def test_person_records_are_the_demo_data(harness: Harness) -> None:
    source = person_port(harness)
    people = list(harness.people)
    kinds = known_kinds(source.record_kinds)
    assert kinds
    for kind in kinds:
        found = await source.records_for_people(kind, people)
        check_records(source, kind, people, found)
        assert counts(kind, found, lambda p: p.patient_id) == expected_of(harness, kind)
    assert any(harness.expected.values())


async def test_an_unknown_person_gets_nothing(harness: Harness) -> None:
    source = person_port(harness)
    for kind in known_kinds(source.record_kinds):
        found = await source.records_for_people(kind, [UNKNOWN_PERSON])
        assert not found.get(UNKNOWN_PERSON)
        assert set(found) <= {UNKNOWN_PERSON}


async def test_person_batching_and_duplicates_do_not_change_answers(harness: Harness) -> None:
    source = person_port(harness)
    people = [*harness.people, UNKNOWN_PERSON]
    asked = [*people, people[0], people[0]]
    for kind in known_kinds(source.record_kinds):
        together = await source.records_for_people(kind, asked)
        check_records(source, kind, people, together)
        batched = {p: list(together.get(p, ())) for p in people}
        assert batched == await each_alone(partial(source.records_for_people, kind), people)
