"""Every source adapter, running against its real upstream, for the source contract suite
(tests/integration/test_source_contract.py), with what the demo data says it must answer.

Each adapter is constructed in exactly one factory function below (`memory_source`,
`fhir_source`, `hl7v2_source`, `ncpdp_source`): when a constructor changes, only that function
changes. The `*_adapter` context managers serve the upstream (uvicorn or MLLP on loopback),
feed it the demo population and yield a `Harness`.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.bootstrap import lab_ingested
from app.demo.fhir_server import create_fhir_app
from app.demo.generator import DemoPopulation
from app.demo.lab_feed import lab_messages
from app.demo.pharmacy_data import pharmacy_fills
from app.demo.pharmacy_server import create_pharmacy_app
from app.demo.serving import serving
from app.domain.patients import SSN_SYSTEM
from app.domain.records import (
    ALL_KINDS,
    DIAGNOSTIC_REPORTS,
    DISPENSES,
    OBSERVATIONS,
    PersonQuery,
    RecordKind,
)
from app.identity.index import PatientIndex
from app.settings import FhirSourceSettings, Hl7v2SourceSettings, NcpdpSourceSettings
from app.sources.base import Source
from app.sources.fhir.source import FhirSource
from app.sources.hl7v2.mapping import parse_message
from app.sources.hl7v2.mllp import MllpClient
from app.sources.hl7v2.source import Hl7v2Source
from app.sources.hl7v2.store import LabStore
from app.sources.ncpdp.source import NcpdpSource
from app.store import create_engine
from tests.conftest import closed_port_url
from tests.fakes.memory_source import InstrumentedMemorySource, demo_sources

UPSTREAM = "hospital"  # the demo FHIR upstream the memory and FHIR adapters serve
Expected = dict[tuple[str, str], int]  # (kind name, patient key) -> records the demo data holds


@dataclass(frozen=True)
class Harness:
    source: Source
    patients: Mapping[str, str]  # known local patient id -> family name (patient/record ports)
    people: tuple[PersonQuery, ...]  # known people (person ports)
    # A missing (kind, local id or PersonQuery.patient_id) means: no records there.
    expected: Mapping[tuple[str, str], int]
    another: Callable[[], Awaitable[Source]]  # a second working instance; the caller closes it
    broken: Callable[[], Awaitable[Source]]  # the same adapter, its upstream gone


# --- the factories: the one place each adapter is constructed -----------------------------------


def memory_source(population: DemoPopulation) -> InstrumentedMemorySource:
    (source,) = [s for s in demo_sources(population) if s.id == UPSTREAM]
    return source


def fhir_source(base_url: str) -> FhirSource:
    # Small batches and pages, so chunking and paging take part in every answer.
    settings = FhirSourceSettings(
        id=UPSTREAM, kind="fhir", base_url=base_url, timeout_seconds=2, page_size=25
    )
    return FhirSource(settings.model_copy(update={"max_batch_size": 2}))


async def hl7v2_source(engine: AsyncEngine, *, create_tables: bool = True) -> Hl7v2Source:
    """Listening on a free loopback port once started; its store and index on `engine`."""
    store = LabStore(engine)
    index = PatientIndex(engine, (SSN_SYSTEM,), "contract-hash-key")
    if create_tables:
        await store.create_tables()
        await index.create_tables()
    settings = Hl7v2SourceSettings(id="citylab", kind="hl7v2", listen="127.0.0.1:0")
    return Hl7v2Source(settings, store, on_ingested=lab_ingested(index, _nothing_cached))


async def _nothing_cached(patient_id: str) -> None:
    """The server purges the patient's cached responses here; the contract has no cache."""


def ncpdp_source(base_url: str) -> NcpdpSource:
    settings = NcpdpSourceSettings(
        id="pharmacy", kind="ncpdp", base_url=base_url, timeout_seconds=2
    )
    return NcpdpSource(settings)


# --- the adapters against their upstreams -------------------------------------------------------


def fhir_expected(population: DemoPopulation) -> Expected:
    """Records per (kind, local patient id) in the upstream's own resources."""
    counts: Counter[tuple[str, str]] = Counter()
    for resource in population.upstreams[UPSTREAM]:
        subject = resource.get("subject") or resource.get("patient") or {}
        patient = subject.get("reference", "").removeprefix("Patient/")
        for kind in ALL_KINDS:
            if resource["resourceType"] in kind.resource_types:
                counts[(kind.name, patient)] += 1
    return dict(counts)


def hospital_patients(population: DemoPopulation) -> dict[str, str]:
    return {p.local_ids[UPSTREAM]: p.family for p in population.people}


@contextlib.asynccontextmanager
async def memory_adapter(population: DemoPopulation, _workdir: Path) -> AsyncIterator[Harness]:
    async def broken() -> Source:
        source = memory_source(population)
        source.down = True
        return source

    async def another() -> Source:
        return memory_source(population)

    source = memory_source(population)
    yield Harness(
        source, hospital_patients(population), (), fhir_expected(population), another, broken
    )
    await source.aclose()


@contextlib.asynccontextmanager
async def fhir_adapter(population: DemoPopulation, _workdir: Path) -> AsyncIterator[Harness]:
    app = create_fhir_app(population.upstreams[UPSTREAM], max_count=1000)
    async with serving(app) as base:
        url = f"{base}/fhir/R4"

        async def broken() -> Source:
            return fhir_source(closed_port_url())

        async def another() -> Source:
            return fhir_source(url)

        source = fhir_source(url)
        try:
            yield Harness(
                source,
                hospital_patients(population),
                (),
                fhir_expected(population),
                another,
                broken,
            )
        finally:
            await source.aclose()


def lab_expected(messages: Iterable[str]) -> tuple[dict[str, str], Expected]:
    """The lab's patients (local id -> family) and its current results and reports per
    patient: a correction replaces the result it corrects (same key), so ids are counted once."""
    patients: dict[str, str] = {}
    ids: dict[tuple[str, str], set[str]] = {}
    for raw in messages:
        message = parse_message(raw.encode(), "citylab")
        local_id = message.patient.link.local_id
        name = message.patient.name
        assert name is not None
        assert name.family is not None
        patients[local_id] = name.family
        for lab_report in message.reports:
            reports = ids.setdefault((DIAGNOSTIC_REPORTS.name, local_id), set())
            reports.add(lab_report.report.sources[0].local_id)
            for result in lab_report.results:
                results = ids.setdefault((OBSERVATIONS.name, local_id), set())
                results.add(result.observation.sources[0].local_id)
    return patients, {key: len(found) for key, found in ids.items()}


async def send_all(port: int, messages: Sequence[str]) -> None:
    async with MllpClient("127.0.0.1", port) as client:
        for raw in messages:
            ack = (await client.send(raw.encode())).decode()
            assert "\rMSA|AA|" in ack, ack.split("\r")


@contextlib.asynccontextmanager
async def hl7v2_adapter(population: DemoPopulation, workdir: Path) -> AsyncIterator[Harness]:
    messages = lab_messages(population)
    patients, expected = lab_expected(messages)
    engines: list[AsyncEngine] = []

    def engine(name: str) -> AsyncEngine:
        engines.append(create_engine(f"sqlite:///{workdir / name}"))
        return engines[-1]

    async def another() -> Source:
        source = await hl7v2_source(engine(f"lab-{len(engines)}.db"))
        await source.start()
        return source

    async def broken() -> Source:  # its upstream is its store: one that cannot be opened
        return await hl7v2_source(engine("missing/lab.db"), create_tables=False)

    source = await hl7v2_source(engine("lab.db"))
    await source.start()
    try:
        await send_all(source.port, messages)
        yield Harness(source, patients, (), expected, another, broken)
    finally:
        await source.aclose()
        for each in engines:
            await each.dispose()


def person_query(population: DemoPopulation, index: int) -> PersonQuery:
    person = population.people[index]
    return PersonQuery(
        f"pg-{person.key}", person.family, person.given, person.birth_date, person.gender
    )


@contextlib.asynccontextmanager
async def ncpdp_adapter(population: DemoPopulation, _workdir: Path) -> AsyncIterator[Harness]:
    fills = pharmacy_fills(population)
    people = tuple(person_query(population, i) for i in range(len(population.people)))
    expected: Expected = {
        (DISPENSES.name, q.patient_id): len(fills[(q.family, q.given[0], q.birth_date)])
        for q in people
    }
    async with serving(create_pharmacy_app(fills)) as base:
        url = f"{base}/script"

        async def broken() -> Source:
            return ncpdp_source(closed_port_url())

        async def another() -> Source:
            return ncpdp_source(url)

        source = ncpdp_source(url)
        try:
            yield Harness(source, {}, people, expected, another, broken)
        finally:
            await source.aclose()


Adapter = Callable[[DemoPopulation, Path], contextlib.AbstractAsyncContextManager[Harness]]
ADAPTERS: Mapping[str, Adapter] = {
    "memory": memory_adapter,
    "fhir": fhir_adapter,
    "hl7v2": hl7v2_adapter,
    "ncpdp": ncpdp_adapter,
}


def known_kinds(names: frozenset[str]) -> list[RecordKind[Any]]:
    """The RecordKinds named (an unknown name fails: every served kind is a known one)."""
    by_name = {k.name: k for k in (*ALL_KINDS, DISPENSES)}
    return [by_name[n] for n in sorted(names)]
