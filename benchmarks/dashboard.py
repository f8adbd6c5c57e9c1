"""Clinician dashboard benchmark: upstream round trips, latency amplification, server overhead.

    .venv/bin/python benchmarks/dashboard.py [--latency-ms 50] [--iterations 40] [--patients 20]

Everything runs on 127.0.0.1 and every figure comes from this one run (see benchmarks/README.md
for the method and what each figure means). Not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python benchmarks/dashboard.py` puts benchmarks/ on sys.path, not the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import platform
import statistics
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from time import perf_counter, process_time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import graphql
import httpx
import strawberry
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from app.auth.principal import Principal
from app.auth.signing import issue_token, key_id, public_jwk
from app.demo.fhir_server import create_fhir_app
from app.demo.generator import UPSTREAMS, generate_population
from app.demo.runner import AUDIENCE, ISSUER, ROLE_SCOPES, demo_settings
from app.demo.serving import serving
from app.domain.common import SourceLink
from app.domain.patients import Patient, PatientCriteria, SourcePatient
from app.domain.records import ALL_KINDS, RecordKind, RecordQuery
from app.identity.index import PatientIndex
from app.main import create_app
from app.settings import Settings
from app.sources.base import PatientSource, RecordSource, SourceHealth
from app.sources.registry import build_sources
from app.store import create_engine
from app.web.examples import DASHBOARD_QUERY
from resolvers.context import Context, Services
from resolvers.loaders import RequestLoaders
from resolvers.pagination import PageLimits
from resolvers.patients import search_patients
from resolvers.records import records_of
from schema.build import build_schema, sdl

DEMO_POPULATION = 24  # the demo's default population size
WARMUP = 5
CONTROL = "/_bench"  # the child upstream's control routes (outside the FHIR base path)
Data = dict[str, Any]


# --- upstream child process: a demo FHIR server whose request log and delay the parent drives ---


def with_controls(fhir: Starlette) -> ASGIApp:
    """`POST /_bench/requests` returns and clears the request log; `PUT /_bench/delay` sets the
    injected latency. The parent needs both across the process boundary."""

    async def take_requests(request: Request) -> Response:
        taken = list(fhir.state.requests)
        fhir.state.requests.clear()
        return JSONResponse(taken)

    async def set_delay(request: Request) -> Response:
        fhir.state.delay_seconds = float((await request.json())["seconds"])
        return Response(status_code=204)

    controls = Starlette(
        routes=[
            Route(f"{CONTROL}/requests", take_requests, methods=["POST"]),
            Route(f"{CONTROL}/delay", set_delay, methods=["PUT"]),
        ]
    )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        is_control = scope["type"] == "http" and scope["path"].startswith(f"{CONTROL}/")
        await (controls if is_control else fhir)(scope, receive, send)

    return app


async def serve_upstream(name: str, population: int) -> None:
    resources = generate_population(patients=population).upstreams[name]
    # max_count as tests/fakes/upstream_process.py: the connector's own page size decides paging.
    async with serving(with_controls(create_fhir_app(resources, max_count=1000))) as base:
        print(f"READY {base.rsplit(':', 1)[1]}", flush=True)
        await asyncio.to_thread(sys.stdin.read)  # until the parent closes our stdin


@dataclass
class Upstream:
    name: str
    root: str  # http://127.0.0.1:port
    control: httpx.AsyncClient

    @property
    def fhir_url(self) -> str:
        return f"{self.root}/fhir/R4"

    async def set_delay(self, seconds: float) -> None:
        response = await self.control.put(f"{self.root}{CONTROL}/delay", json={"seconds": seconds})
        response.raise_for_status()

    async def take_requests(self) -> list[str]:
        response = await self.control.post(f"{self.root}{CONTROL}/requests")
        response.raise_for_status()
        log: list[str] = response.json()
        return log


@contextlib.asynccontextmanager
async def upstream_process(
    name: str, population: int, control: httpx.AsyncClient
) -> AsyncIterator[Upstream]:
    """A separate process, so upstream CPU never shares the API's event loop (or GIL)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--serve-upstream",
        name,
        "--population",
        str(population),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        if not line.startswith("READY "):
            raise RuntimeError(f"upstream {name} did not start: {line!r}")
        yield Upstream(name, f"http://127.0.0.1:{int(line.split()[1])}", control)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


# --- the API, with a transport under each source that times every upstream round trip ---------


@dataclass
class RequestTimer:
    spans: list[tuple[str, float, float]] = field(default_factory=list)  # (source, start, end)


class TimingTransport(httpx.AsyncBaseTransport):
    """Times each upstream request as the API's own client sees it: send -> last body byte."""

    def __init__(self, source_id: str, timer: RequestTimer) -> None:
        # Same pool limits FhirClient gives its default transport (a custom one replaces them).
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=16)
        self._inner = httpx.AsyncHTTPTransport(limits=limits)
        self._source_id, self._timer = source_id, timer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        start = perf_counter()
        response = await self._inner.handle_async_request(request)
        try:
            body = b"".join([chunk async for chunk in response.aiter_raw()])
        finally:
            await response.aclose()
        self._timer.spans.append((self._source_id, start, perf_counter()))
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=body,
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass
class Api:
    client: httpx.AsyncClient
    settings: Settings
    workdir: Path
    timer: RequestTimer

    async def dashboard(self, first: int) -> Data:
        response = await self.client.post(
            "/graphql", json={"query": DASHBOARD_QUERY, "variables": {"first": first}}
        )
        body = response.json()
        if response.status_code != 200 or body.get("errors"):
            raise RuntimeError(f"dashboard query failed: {response.status_code} {body}")
        data: Data = body["data"]
        return data


@contextlib.asynccontextmanager
async def running_api(upstreams: Sequence[Upstream]) -> AsyncIterator[Api]:
    """The API in this process, configured as the demo configures it (`demo_settings`)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = key_id(key)
    token = issue_token(
        key,
        issuer=ISSUER,
        audience=AUDIENCE,
        subject="bench-clinician",
        roles=["clinician"],
        scope=ROLE_SCOPES["clinician"],
        kid=kid,
    )
    timer = RequestTimer()
    with tempfile.TemporaryDirectory(prefix="patientgraph-bench-") as tmp:
        workdir = Path(tmp)
        (workdir / "jwks.json").write_text(json.dumps({"keys": [public_jwk(key, kid)]}))
        urls = {u.name: u.fhir_url for u in upstreams}
        settings = demo_settings(workdir, "127.0.0.1", 8000, urls, token)
        transports = {name: TimingTransport(name, timer) for name in urls}
        app = create_app(settings, transports=transports)
        async with (
            serving(app) as base,
            httpx.AsyncClient(
                base_url=base, timeout=60, headers={"Authorization": f"Bearer {token}"}
            ) as client,
        ):
            yield Api(client, settings, workdir, timer)


# --- measuring helpers --------------------------------------------------------------------------


def count_fields(value: Any) -> int:
    """Resolved fields: every key of every object in `data`, inside list items too."""
    if isinstance(value, dict):
        return sum(1 + count_fields(v) for v in value.values())
    if isinstance(value, list):
        return sum(count_fields(v) for v in value)
    return 0


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass(frozen=True)
class Stats:
    p50: float
    p90: float
    best: float  # least disturbed by other load on the machine

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        return cls(statistics.median(values), percentile(values, 0.9), min(values))


async def time_interleaved(
    runs: Mapping[str, Callable[[], Awaitable[object]]], iterations: int
) -> dict[str, list[float]]:
    """Round-robin the variants so drift in machine load hits all of them alike."""
    settle()
    for _ in range(WARMUP):
        for run in runs.values():
            await run()
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(iterations):
        for name, run in runs.items():
            start = perf_counter()
            await run()
            seconds[name].append(perf_counter() - start)
    return seconds


def settle() -> None:
    """Collect, then freeze what survived (set-up data, as a server freezes after start-up) so
    full collections during timing scan only what the measured work allocates."""
    gc.collect()
    gc.freeze()


def sequential_rounds(spans: Sequence[tuple[str, float, float]]) -> int:
    """Longest chain of upstream requests each starting after the previous one ended: the
    round trips on the critical path, whatever ran in parallel beside them."""
    ordered = sorted(spans, key=lambda s: s[1])
    depth: list[int] = []
    for i, (_, start, _end) in enumerate(ordered):
        before = [depth[j] for j in range(i) if ordered[j][2] <= start]
        depth.append(1 + max(before, default=0))
    return max(depth, default=0)


# --- 1. upstream requests per query -------------------------------------------------------------


@dataclass(frozen=True)
class RequestCount:
    first_pages: Counter[str]  # resource type -> requests without a paging offset
    follow_ups: Counter[str]  # resource type -> `next` pages (`_offset` > 0)

    @property
    def total(self) -> int:
        return sum(self.first_pages.values()) + sum(self.follow_ups.values())


def classify(log: Sequence[str]) -> RequestCount:
    first, follow = Counter[str](), Counter[str]()
    for entry in log:
        parts = urlsplit(entry)
        resource_type = parts.path.rstrip("/").rsplit("/", 1)[-1]
        offset = int(parse_qs(parts.query).get("_offset", ["0"])[0])
        (follow if offset > 0 else first)[resource_type] += 1
    return RequestCount(first, follow)


async def count_requests(
    api: Api, upstreams: Sequence[Upstream], first: int
) -> dict[str, RequestCount]:
    for upstream in upstreams:
        await upstream.take_requests()  # discard earlier traffic
    api.timer.spans.clear()
    await api.dashboard(first)
    counts = {u.name: classify(await u.take_requests()) for u in upstreams}
    seen_by_client = len(api.timer.spans)
    if seen_by_client != sum(c.total for c in counts.values()):
        print(f"  note: the API's client saw {seen_by_client} requests, the upstream logs differ")
    return counts


# --- 2. latency: total ÷ slowest upstream request ------------------------------------------------


@dataclass(frozen=True)
class LatencyRun:
    wall: float
    slowest: float
    rounds: int


async def latency_runs(api: Api, first: int, iterations: int) -> list[LatencyRun]:
    settle()
    for _ in range(WARMUP):
        await api.dashboard(first)
    runs = []
    for _ in range(iterations):
        api.timer.spans.clear()
        start = perf_counter()
        await api.dashboard(first)
        wall = perf_counter() - start
        spans = list(api.timer.spans)
        slowest = max(end - begin for _, begin, end in spans)
        runs.append(LatencyRun(wall, slowest, sequential_rounds(spans)))
    return runs


async def http_runs(api: Api, first: int, iterations: int) -> tuple[list[float], float]:
    """Wall seconds per HTTP query at zero injected latency, and this process's CPU seconds per
    query (the API plus the client driving it; warm-up queries included in that average)."""
    cpu = process_time()
    seconds = await time_interleaved({"http": lambda: api.dashboard(first)}, iterations)
    return seconds["http"], (process_time() - cpu) / (WARMUP + iterations)


# --- 3. server overhead: in-memory sources vs a bare graphql-core schema -------------------------


class MemorySource:
    """PatientSource + RecordSource over records captured once from a real FhirSource:
    answers instantly, so timing it measures PatientGraph's own work only."""

    kind = "memory"

    def __init__(
        self,
        source_id: str,
        patients: Sequence[SourcePatient],
        records: Mapping[str, Mapping[str, Sequence[Any]]],
    ) -> None:
        self._id = source_id
        self._patients = {p.link.local_id: p for p in patients}
        self._records = records  # kind name -> local patient id -> records
        self.record_kinds = frozenset(records)

    @property
    def id(self) -> str:
        return self._id

    async def health(self) -> SourceHealth:
        return SourceHealth(self._id, self.kind, True, "ok")

    async def aclose(self) -> None:
        return None

    async def patients_by_id(self, local_ids: Sequence[str]) -> Mapping[str, SourcePatient]:
        return {i: self._patients[i] for i in local_ids if i in self._patients}

    async def search_patients(self, criteria: PatientCriteria) -> Sequence[SourcePatient]:
        # Only the dashboard's criteria-less search is captured.
        assert criteria.is_empty()
        return list(self._patients.values())

    async def records_for(
        self, kind: RecordKind[Any], queries: Sequence[RecordQuery]
    ) -> Mapping[RecordQuery, Sequence[Any]]:
        by_patient = self._records[kind.name]
        return {q: by_patient.get(q.patient, ()) for q in queries}


class MemoryPatientIndex(PatientIndex):
    """The patient index as dicts (copied from the real one), to separate SQLite's share."""

    def __init__(
        self, ids: Mapping[tuple[str, str], str], links: Mapping[str, tuple[SourceLink, ...]]
    ) -> None:
        self._ids, self._links_by_id = ids, links  # no engine: nothing touches SQLite

    async def link(self, patients: Sequence[SourcePatient]) -> list[str]:
        return [self._ids[(p.link.source_id, p.link.local_id)] for p in patients]

    async def links_for(self, patient_ids: Sequence[str]) -> Mapping[str, tuple[SourceLink, ...]]:
        return {
            i: self._links_by_id[i] for i in dict.fromkeys(patient_ids) if i in self._links_by_id
        }


async def capture_sources(settings: Settings) -> list[MemorySource]:
    """Every patient and every record kind, fetched once through the real FHIR connector."""
    registry = build_sources(settings.sources)
    captured = []
    try:
        for source in registry.sources:
            assert isinstance(source, PatientSource)
            assert isinstance(source, RecordSource)
            patients = await source.search_patients(PatientCriteria())
            queries = [RecordQuery(p.link.local_id) for p in patients]
            records: dict[str, dict[str, Sequence[Any]]] = {}
            for kind in ALL_KINDS:
                found = await source.records_for(kind, queries)
                records[kind.name] = {q.patient: rs for q, rs in found.items()}
            captured.append(MemorySource(source.id, patients, records))
    finally:
        await registry.aclose()
    return captured


def services_over(
    sources: Sequence[MemorySource], index: PatientIndex, settings: Settings
) -> Services:
    limits = PageLimits(settings.graphql.default_page_size, settings.graphql.max_page_size)
    return Services(
        patient_sources=tuple(sources),
        record_sources=tuple(sources),
        index=index,
        page_limits=limits,
    )


def context_for(services: Services) -> Context:
    scopes = tuple(ROLE_SCOPES["clinician"].split())
    principal = Principal("bench-clinician", frozenset({"clinician"}), scopes, None, None, ISSUER)
    return Context(principal, services, RequestLoaders(services.index))


async def memory_index(real: PatientIndex, sources: Sequence[MemorySource]) -> MemoryPatientIndex:
    patients = [p for s in sources for p in await s.search_patients(PatientCriteria())]
    ids = await real.link(patients)
    links = await real.links_for(ids)
    return MemoryPatientIndex(
        {(p.link.source_id, p.link.local_id): i for p, i in zip(patients, ids, strict=True)}, links
    )


# Baseline: PatientGraph's own SDL (`schema.build.sdl()`) in bare graphql-core, over plain dicts
# with default resolvers.


def resolve_connection(
    parent: Data, info: graphql.GraphQLResolveInfo[Any], first: int | None = None, **_filters: Any
) -> Data:
    """The one non-default resolver: slice a pre-merged list like `paginate` does."""
    items = parent[info.field_name]
    size = 20 if first is None else first  # the dashboard always passes `first`
    return {
        "nodes": items[:size],
        "totalCount": len(items),
        "pageInfo": {"hasNextPage": size < len(items), "endCursor": None},
    }


def baseline_schema() -> graphql.GraphQLSchema:
    gql = graphql.build_schema(sdl())
    for named in gql.type_map.values():
        if isinstance(named, graphql.GraphQLObjectType) and not named.name.startswith("__"):
            for gql_field in named.fields.values():
                if graphql.get_named_type(gql_field.type).name.endswith("Connection"):
                    gql_field.resolve = resolve_connection
    return gql


@dataclass(frozen=True)
class Converter:
    """Domain objects -> plain dicts keyed by GraphQL field names (Strawberry's own mapping)."""

    pg: strawberry.Schema
    records: Mapping[str, Mapping[str, list[Any]]]  # patient id -> kind name -> merged records

    def value(self, value: Any, gql_type: graphql.GraphQLOutputType) -> Any:
        nullable = graphql.get_nullable_type(gql_type)
        if value is None:
            return None
        if isinstance(nullable, graphql.GraphQLList):
            return [self.value(v, nullable.of_type) for v in value]
        if isinstance(nullable, graphql.GraphQLObjectType):
            return self.obj(value, nullable)
        return value

    def obj(self, value: Any, gql_type: graphql.GraphQLObjectType) -> Data:
        definition = self.pg.get_type_by_name(gql_type.name)
        assert isinstance(definition, strawberry.types.base.StrawberryObjectDefinition)
        out: Data = {}
        for f in definition.fields:
            name = self.pg.config.name_converter.get_graphql_name(f)
            if f.base_resolver is None:
                out[name] = self.value(getattr(value, f.python_name), gql_type.fields[name].type)
            elif isinstance(value, Patient) and f.python_name in self.records[value.id]:
                nodes = graphql.get_named_type(gql_type.fields[name].type)
                assert isinstance(nodes, graphql.GraphQLObjectType)
                node_type = nodes.fields["nodes"].type
                out[name] = self.value(self.records[value.id][f.python_name], node_type)
        return out


async def baseline_root(ctx: Context, pg: strawberry.Schema, gql: graphql.GraphQLSchema) -> Data:
    """The same merged data PatientGraph serves, gathered once through its own resolvers."""
    patients = await search_patients(ctx, PatientCriteria())
    records: dict[str, dict[str, list[Any]]] = {}
    for patient in patients:
        records[patient.id] = {
            kind.name: await records_of(ctx, patient, kind, RecordQuery(patient=""))
            for kind in ALL_KINDS
        }
    patient_type = gql.get_type("Patient")
    assert isinstance(patient_type, graphql.GraphQLObjectType)
    converter = Converter(pg, records)
    return {"patients": [converter.obj(p, patient_type) for p in patients]}


@dataclass(frozen=True)
class Overhead:
    fields: int
    seconds: dict[str, list[float]]
    same_data: bool


async def measure_overhead(
    settings: Settings, workdir: Path, first: int, iterations: int
) -> Overhead:
    sources = await capture_sources(settings)
    # A fresh SQLite index with the API's settings: the embedded default, as deployed.
    engine = create_engine(f"sqlite:///{workdir / 'bench-index.db'}")
    real_index = PatientIndex(
        engine, settings.identity.link_identifier_systems, settings.identity.hash_key
    )
    await real_index.create_tables()
    sqlite_services = services_over(sources, real_index, settings)
    memory_services = services_over(sources, await memory_index(real_index, sources), settings)
    pg, gql = build_schema(), baseline_schema()
    root = await baseline_root(context_for(memory_services), pg, gql)
    variables = {"first": first}

    async def patientgraph(services: Services) -> Data | None:
        result = await pg.execute(
            DASHBOARD_QUERY, variable_values=variables, context_value=context_for(services)
        )
        assert not result.errors, result.errors
        return result.data

    async def bare() -> Data | None:
        result = await graphql.graphql(
            gql, DASHBOARD_QUERY, root_value=root, variable_values=variables
        )
        assert not result.errors, result.errors
        return result.data

    expected, baseline = await patientgraph(memory_services), await bare()
    seconds = await time_interleaved(
        {
            "sqlite": lambda: patientgraph(sqlite_services),
            "memory": lambda: patientgraph(memory_services),
            "graphql-core": bare,
        },
        iterations,
    )
    await engine.dispose()
    return Overhead(count_fields(expected), seconds, expected == baseline)


# --- report -------------------------------------------------------------------------------------


def print_machine() -> None:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"machine: {platform.machine()} {platform.system()} {platform.release()}, "
        f"nproc {cpus}, load average {load}"
    )
    print(
        f"python {platform.python_version()} ({platform.python_implementation()}), "
        f"strawberry {version('strawberry-graphql')}, graphql-core {graphql.__version__}"
    )


def print_counts(counts: Mapping[int, Mapping[str, RequestCount]]) -> None:
    print("\n1. Upstream requests per dashboard query (from the upstreams' own request logs)")
    print(f"   {'patients':>8}  {'upstream':<9} {'total':>5} {'first':>5} {'next':>5}  by type")
    for first, per_upstream in counts.items():
        for name, count in per_upstream.items():
            kinds = sorted(set(count.first_pages) | set(count.follow_ups))
            detail = ", ".join(
                f"{k} {count.first_pages[k]}"
                + (f"+{count.follow_ups[k]}" if count.follow_ups[k] else "")
                for k in kinds
            )
            print(
                f"   {first:>8}  {name:<9} {count.total:>5} "
                f"{sum(count.first_pages.values()):>5} {sum(count.follow_ups.values()):>5}  "
                f"{detail}"
            )
    print(
        "   first = searches without a paging offset; next = follow-up `Bundle.link[next]`"
        " pages (+n in the detail)"
    )


def print_latency(runs: Sequence[LatencyRun], latency: float, first: int) -> None:
    wall = Stats.of([r.wall for r in runs])
    slowest = Stats.of([r.slowest for r in runs])
    by_slowest = Stats.of([r.wall / r.slowest for r in runs])
    rounds = Counter(r.rounds for r in runs)
    print(
        f"\n2. Latency with {latency * 1000:.0f} ms injected per upstream request "
        f"({first} patients, {len(runs)} queries)"
    )
    print(
        f"   query wall time             p50 {wall.p50 * 1000:7.1f} ms   p90 "
        f"{wall.p90 * 1000:7.1f} ms"
    )
    print(
        f"   slowest upstream request    p50 {slowest.p50 * 1000:7.1f} ms   p90 "
        f"{slowest.p90 * 1000:7.1f} ms  (as the API's client saw it, same query)"
    )
    print(
        f"   wall ÷ slowest request      p50 {by_slowest.p50:7.2f}      p90 {by_slowest.p90:7.2f}"
    )
    print(
        f"   wall ÷ injected latency     p50 {wall.p50 / latency:7.2f}      p90 "
        f"{wall.p90 / latency:7.2f}"
    )
    print(
        "   sequential upstream round trips on the critical path: "
        + ", ".join(f"{k} in {v} queries" for k, v in sorted(rounds.items()))
    )


def print_overhead(
    overhead: Overhead, e2e: Sequence[float], cpu: float, first: int
) -> dict[str, float]:
    fields = overhead.fields
    us = {name: statistics.median(s) / fields * 1e6 for name, s in overhead.seconds.items()}
    us["http"] = statistics.median(e2e) / fields * 1e6
    print(
        f"\n3. Server overhead: dashboard for {first} patients = {fields} resolved fields "
        f"(every key of every object in `data`, list items included)"
    )
    same = "identical" if overhead.same_data else "DIFFERENT (the comparison is not like for like)"
    print(f"   PatientGraph and graphql-core returned {same} `data`")
    rows = [
        ("graphql-core", "bare graphql-core (same SDL, dicts)", overhead.seconds["graphql-core"]),
        ("memory", "PatientGraph, in-memory sources + index", overhead.seconds["memory"]),
        ("sqlite", "PatientGraph, in-memory sources, SQLite index", overhead.seconds["sqlite"]),
        ("http", "HTTP end to end, 0 ms injected", e2e),
    ]
    print(f"   {'':<46} {'p50 ms':>8} {'p90 ms':>8} {'min ms':>8} {'µs/field (p50)':>15}")
    for name, label, seconds in rows:
        stats = Stats.of(seconds)
        print(
            f"   {label:<46} {stats.p50 * 1000:8.2f} {stats.p90 * 1000:8.2f} "
            f"{stats.best * 1000:8.2f} {us[name]:15.1f}"
        )
    print(
        f"   CPU of this process per HTTP query (API + its client): {cpu * 1000:.1f} ms; the "
        "rest of the wall time is waiting (upstream processes, a busy machine's scheduler)"
    )
    return us


def print_ratios(
    counts: Mapping[int, Mapping[str, RequestCount]],
    runs: Sequence[LatencyRun],
    latency: float,
    us: Mapping[str, float],
) -> None:
    print("\nRatios measured in this run")
    totals = {n: sum(c.total for c in per.values()) for n, per in counts.items()}
    firsts = {
        n: sum(sum(c.first_pages.values()) for c in per.values()) for n, per in counts.items()
    }
    low, high = min(totals), max(totals)
    if low != high:
        label = f"upstream requests, {high} ÷ {low} patients"
        print(
            f"   {label:<39}{totals[high] / totals[low]:6.2f}"
            f"   (first pages only: {firsts[high] / firsts[low]:.2f})"
        )
    wall = statistics.median(r.wall for r in runs)
    print(
        f"   wall ÷ slowest upstream request (p50)  "
        f"{statistics.median(r.wall / r.slowest for r in runs):6.2f}"
    )
    print(f"   wall ÷ injected latency (p50)          {wall / latency:6.2f}")
    base = us["graphql-core"]
    print(
        f"   PatientGraph ÷ graphql-core per field  {us['memory'] / base:6.2f}"
        f"   (with SQLite index {us['sqlite'] / base:.2f};"
        f" HTTP end to end {us['http'] / base:.2f})"
    )


# --- orchestration ------------------------------------------------------------------------------


async def benchmark(args: argparse.Namespace) -> None:
    print_machine()
    latency = args.latency_ms / 1000
    population = max(DEMO_POPULATION, args.patients, args.compare_patients)
    print(
        f"demo population {population} patients in {len(UPSTREAMS)} upstream processes; "
        f"dashboard first={args.patients}; {args.iterations} timed iterations after {WARMUP} "
        "warm-up"
    )
    async with contextlib.AsyncExitStack() as stack:
        control = await stack.enter_async_context(httpx.AsyncClient(timeout=30))
        upstreams = [
            await stack.enter_async_context(upstream_process(n, population, control))
            for n in UPSTREAMS
        ]
        api = await stack.enter_async_context(running_api(upstreams))
        await api.dashboard(population)  # links every patient in the index, fills the pools
        counts = {
            n: await count_requests(api, upstreams, n)
            for n in sorted({args.compare_patients, args.patients})
        }
        for upstream in upstreams:
            await upstream.set_delay(latency)
        runs = await latency_runs(api, args.patients, args.iterations)
        for upstream in upstreams:
            await upstream.set_delay(0.0)
        e2e, cpu = await http_runs(api, args.patients, args.iterations)
        overhead = await measure_overhead(api.settings, api.workdir, args.patients, args.iterations)
    print_counts(counts)
    print_latency(runs, latency, args.patients)
    us = print_overhead(overhead, e2e, cpu, args.patients)
    print_ratios(counts, runs, latency, us)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=50.0,
        help="latency injected before every upstream answer (default 50)",
    )
    parser.add_argument(
        "--iterations", type=int, default=40, help="timed queries per measurement (default 40)"
    )
    parser.add_argument("--patients", type=int, default=20, help="dashboard page size")
    parser.add_argument(
        "--compare-patients",
        type=int,
        default=5,
        help="second page size for the request count (default 5)",
    )
    parser.add_argument("--serve-upstream", choices=UPSTREAMS, help=argparse.SUPPRESS)
    parser.add_argument("--population", type=int, default=DEMO_POPULATION, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not (1 <= args.patients <= 100 and 1 <= args.compare_patients <= 100):
        parser.error("page sizes must be between 1 and 100 (the API's max_page_size)")
    if args.latency_ms <= 0 or args.iterations < 1:
        parser.error("--latency-ms must be positive and --iterations at least 1")
    return args


def main() -> None:
    args = parse_args()
    if args.serve_upstream:
        asyncio.run(serve_upstream(args.serve_upstream, args.population))
    else:
        asyncio.run(benchmark(args))


if __name__ == "__main__":
    main()
