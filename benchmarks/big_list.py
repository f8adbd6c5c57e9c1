"""A 10,000-item list response: PatientGraph against bare graphql-core over the same data, in
memory and end to end over HTTP, every ratio measured in one run.

    .venv/bin/python benchmarks/big_list.py [--items 10000] [--iterations 15]

One patient, linked in two sources, with `--items` laboratory observations (a tenth of them
reported by both sources, so de-duplication has work to do), asked for in one page:

    patient(id: $id) { observations(first: $first) {
      totalCount nodes { id effective status valueQuantity { value unit } } } }

Everything runs in this process on 127.0.0.1 (see benchmarks/README.md). Not a test: it
asserts nothing about speed.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python benchmarks/big_list.py` puts benchmarks/ on sys.path, not the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import contextlib
import dataclasses
import platform
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import graphql
import httpx
import orjson
import strawberry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.demo.generator import generate_population
from app.demo.runner import demo_settings
from app.demo.serving import serving
from app.domain.patients import Patient, PatientCriteria, SourcePatient
from app.domain.records import OBSERVATIONS, RecordQuery
from app.identity.index import PatientIndex
from app.main import create_app
from app.settings import GraphQLSettings, Settings
from app.sources.fhir import resources as mappers
from app.store import create_engine
from benchmarks.overhead import (
    Query,
    baseline_schema,
    context_for,
    count_fields,
    memory_index,
    run_graphql_core,
    run_patientgraph,
    services_over,
)
from benchmarks.served_api import clinician_token, uncached
from benchmarks.timing import WARMUP, Stats, machine_line, settle, time_interleaved
from resolvers.context import Context, Services
from resolvers.pagination import paginate
from resolvers.patients import search_patients
from resolvers.records import records_of
from schema.build import build_schema
from schema.fast_paths import has_fast_paths
from tests.fakes.memory_source import MemorySource

Data = dict[str, Any]
BIG_LIST_QUERY = """\
query BigList($id: ID!, $first: Int!) {
  patient(id: $id) {
    observations(first: $first) {
      totalCount
      nodes { id effective status valueQuantity { value unit } }
    }
  }
}
"""
SOURCES = ("hospital", "clinic")
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
LABORATORY = "http://terminology.hl7.org/CodeSystem/observation-category"
TESTS = (  # (LOINC code, name, unit, typical value)
    ("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 95.0),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.9),
    ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 4.2),
    ("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 140.0),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 14.1),
)


# --- data: one linked patient, `items` observations in two sources ------------------------------


def observation_resource(i: int, source: str, patient: str) -> dict[str, Any]:
    """Fact `i` as a FHIR Observation of `source` (every fact has its own time and value)."""
    code, name, unit, typical = TESTS[i % len(TESTS)]
    minutes = 10_000_000 - 7 * i  # newest first = ascending i, one every 7 minutes
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_700_000_000 - 60 * minutes))
    return {
        "resourceType": "Observation",
        "id": f"{source[0]}-big-{i}",
        "meta": {"versionId": "1", "lastUpdated": when},
        "status": "final",
        "category": [{"coding": [{"system": LABORATORY, "code": "laboratory"}]}],
        "code": {"coding": [{"system": LOINC, "code": code, "display": name}], "text": name},
        "effectiveDateTime": when,
        "valueQuantity": {
            "value": round(typical * (0.8 + (i % 41) / 100), 2),
            "unit": unit,
            "system": UCUM,
            "code": unit,
        },
        "subject": {"reference": f"Patient/{patient}"},
    }


def reported_by(i: int) -> tuple[str, ...]:
    """Even facts from the hospital, odd ones from the clinic; one in ten from both."""
    if i % 10 == 1:
        return SOURCES
    return (SOURCES[i % 2],)


def reported_count(items: int) -> int:
    return sum(len(reported_by(i)) for i in range(items))


def big_patient_sources(items: int) -> list[MemorySource]:
    """The first demo person in both sources, with `items` observations mapped through the
    FHIR mapping (as the connector maps them)."""
    population = generate_population(patients=1)
    sources = []
    for name in SOURCES:
        patients: list[SourcePatient] = [
            mappers.patient(name, r)
            for r in population.upstreams[name]
            if r["resourceType"] == "Patient"
        ]
        local = patients[0].link.local_id
        observations = [
            mappers.observation(name, observation_resource(i, name, local))
            for i in range(items)
            if name in reported_by(i)
        ]
        sources.append(MemorySource(name, patients, {OBSERVATIONS.name: {local: observations}}))
    return sources


# --- the runs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    settings: Settings
    services: Services
    patient_id: str
    root: Data  # the baseline's dicts

    def query(self, items: int) -> Query:
        return Query(BIG_LIST_QUERY, {"id": self.patient_id, "first": items})


async def prepare(workdir: Path, items: int, sources: Sequence[MemorySource]) -> Setup:
    urls = {name: f"http://{name}.invalid/fhir/R4" for name in SOURCES}  # never contacted
    settings = uncached(demo_settings(workdir, "127.0.0.1", 8000, urls, "unused"))
    limits = GraphQLSettings(default_page_size=20, max_page_size=max(items, 100))
    settings = settings.model_copy(update={"graphql": limits})
    engine = create_engine(f"sqlite:///{workdir / 'big-index.db'}")
    real = PatientIndex(engine, settings.identity.link_identifier_systems, "bench")
    await real.create_tables()
    services = services_over(sources, await memory_index(real, sources), settings)
    await engine.dispose()
    ctx = context_for(services)
    (patient,) = await resolve_patients(ctx)
    found = await records_of(ctx, patient, OBSERVATIONS, RecordQuery(""))
    root = {"patient": {"observations": [observation_dict(o) for o in found.records]}}
    return Setup(settings, services, patient.id, root)


async def resolve_patients(ctx: Context) -> list[Patient]:
    return list(await search_patients(ctx, PatientCriteria()))


def observation_dict(o: Any) -> Data:
    """An observation as the baseline serves it: the selected fields, already merged."""
    q = o.value_quantity
    return {
        "id": o.id,
        "effective": o.effective,
        "status": o.status,
        "valueQuantity": None if q is None else {"value": q.value, "unit": q.unit},
    }


def records_work(setup: Setup, items: int) -> Callable[[], Awaitable[object]]:
    """PatientGraph's per-request loading, merging and paging alone, without GraphQL."""

    async def run() -> object:
        ctx = context_for(setup.services)
        (patient,) = await resolve_patients(ctx)
        found = await records_of(ctx, patient, OBSERVATIONS, RecordQuery(""))
        return paginate(found.records, items, None, setup.services.page_limits)

    return run


# --- over HTTP ----------------------------------------------------------------------------------


def bare_app(gql: graphql.GraphQLSchema, root: Data) -> Starlette:
    """Bare graphql-core behind a bare Starlette endpoint: JSON in, `graphql.graphql`, orjson
    out. No authentication, no per-request context, no error formatting."""

    async def endpoint(request: Request) -> Response:
        body = orjson.loads(await request.body())
        result = await graphql.graphql(
            gql, body["query"], root_value=root, variable_values=body.get("variables")
        )
        payload: Data = {"data": result.data}
        if result.errors:
            payload["errors"] = [e.formatted for e in result.errors]
        return Response(orjson.dumps(payload), media_type="application/json")

    return Starlette(routes=[Route("/graphql", endpoint, methods=["POST"])])


@contextlib.asynccontextmanager
async def served(
    setup: Setup, gql: graphql.GraphQLSchema, token: str
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """(client of PatientGraph's API, client of the bare endpoint), both served by uvicorn in
    this process. The API is `create_app(settings)` whose runtime then gets the in-memory
    sources: authentication, policy, Context, schema and JSON are the real ones."""
    app = create_app(setup.settings)
    async with (
        serving(app) as api_url,
        serving(bare_app(gql, setup.root), lifespan="off") as bare_url,
        httpx.AsyncClient(
            base_url=api_url, timeout=120, headers={"Authorization": f"Bearer {token}"}
        ) as api,
        httpx.AsyncClient(base_url=bare_url, timeout=120) as bare,
    ):
        app.state.runtime = dataclasses.replace(app.state.runtime, services=setup.services)
        yield api, bare


def http_run(client: httpx.AsyncClient, query: Query) -> Callable[[], Awaitable[Data]]:
    body = {"query": query.text, "variables": query.variables}

    async def run() -> Data:
        response = await client.post("/graphql", json=body)
        payload: Data = orjson.loads(response.content)
        if response.status_code != 200 or payload.get("errors"):
            raise RuntimeError(f"{response.status_code}: {str(payload)[:300]}")
        data: Data = payload["data"]
        return data

    return run


# --- report -------------------------------------------------------------------------------------


def print_rows(
    title: str,
    rows: Sequence[tuple[str, str]],
    seconds: Mapping[str, Sequence[float]],
    fields: int,
) -> dict[str, float]:
    print(f"\n{title}")
    print(f"   {'':<58} {'p50 ms':>8} {'p90 ms':>8} {'min ms':>8} {'µs/field':>9}")
    us = {}
    for name, label in rows:
        stats = Stats.of(seconds[name])
        us[name] = stats.p50 / fields * 1e6
        print(
            f"   {label:<58} {stats.p50 * 1000:8.2f} {stats.p90 * 1000:8.2f} "
            f"{stats.best * 1000:8.2f} {us[name]:9.2f}"
        )
    return us


async def benchmark(args: argparse.Namespace) -> None:
    print(machine_line())
    print(
        f"python {platform.python_version()}, strawberry {version('strawberry-graphql')}, "
        f"graphql-core {graphql.__version__}; {args.iterations} timed runs after {WARMUP} warm-up"
    )
    with tempfile.TemporaryDirectory(prefix="patientgraph-big-") as tmp:
        workdir = Path(tmp)
        token = clinician_token(workdir)
        sources = big_patient_sources(args.items)
        setup = await prepare(workdir, args.items, sources)
        tenth = args.items // 10
        (workdir / "tenth").mkdir()
        small = await prepare(workdir / "tenth", tenth, big_patient_sources(tenth))
        pg: strawberry.Schema = build_schema()
        gql = baseline_schema()
        query = setup.query(args.items)
        memory_runs = {
            "graphql-core": run_graphql_core(gql, query, setup.root, parsed_once=False),
            "graphql-core parsed": run_graphql_core(gql, query, setup.root, parsed_once=True),
            "patientgraph": run_patientgraph(pg, query, lambda: context_for(setup.services)),
            "records": records_work(setup, args.items),
            "records tenth": records_work(small, tenth),
        }
        expected = await memory_runs["patientgraph"]()
        same = expected == await memory_runs["graphql-core"]()
        fields = count_fields(expected)
        memory = await time_interleaved(memory_runs, args.iterations)
        async with served(setup, gql, token) as (api, bare):
            http_runs = {
                "bare http": http_run(bare, query),
                "patientgraph http": http_run(api, query),
            }
            same_http = await http_runs["bare http"]() == await http_runs["patientgraph http"]()
            settle()
            http = await time_interleaved(http_runs, args.iterations)
    reported = reported_count(args.items)
    print(
        f"\n1 patient in 2 sources, {reported} observations reported, {args.items} facts after "
        f"de-duplication; response: {args.items} items, {fields} resolved fields"
    )
    installed = "installed" if has_fast_paths(pg) else "NOT installed by build_schema()"
    print(f"schema fast paths (schema/fast_paths.py): {installed}")
    print(
        f"PatientGraph and graphql-core returned {'identical' if same else 'DIFFERENT'} `data` "
        f"in memory, {'identical' if same_http else 'DIFFERENT'} `data` over HTTP"
    )
    us = print_rows(
        "In memory (same process, interleaved; no JSON)",
        [
            ("graphql-core", "bare graphql-core: parse, validate, execute"),
            ("graphql-core parsed", "bare graphql-core: execute (parsed once)"),
            ("patientgraph", "PatientGraph, in-memory sources"),
            ("records", "  of which loading, merging, paging (no GraphQL)"),
        ],
        memory,
        fields,
    )
    us |= print_rows(
        "End to end over HTTP (uvicorn in this process, httpx client in the same loop)",
        [
            ("bare http", "bare graphql-core behind a bare Starlette endpoint"),
            ("patientgraph http", "PatientGraph API (auth, policy, schema, JSON), in-memory"),
        ],
        http,
        fields,
    )
    per_record = statistics.median(memory["records"]) / reported * 1e6
    per_record_tenth = statistics.median(memory["records tenth"]) / reported_count(tenth) * 1e6
    print("\nRatios measured in this run")
    print(
        f"   in memory: PatientGraph ÷ graphql-core      {us['patientgraph'] / us['graphql-core parsed']:5.2f}"  # noqa: E501
        f"   ({us['patientgraph'] / us['graphql-core']:.2f} against parsing every query)"
    )
    print(
        f"   end to end: PatientGraph ÷ graphql-core     {us['patientgraph http'] / us['bare http']:5.2f}"  # noqa: E501
    )
    print(
        f"   loading + merging + paging, µs per reported record: {per_record:.2f} for "
        f"{args.items} facts, {per_record_tenth:.2f} for {tenth} (linear: equal but for the "
        "fixed per-request cost)"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000, help="facts in the list (10000)")
    parser.add_argument("--iterations", type=int, default=15, help="timed runs (default 15)")
    args = parser.parse_args()
    if args.items < 10 or args.iterations < 1:
        parser.error("--items must be at least 10 and --iterations at least 1")
    return args


def main() -> None:
    asyncio.run(benchmark(parse_args()))


if __name__ == "__main__":
    main()
