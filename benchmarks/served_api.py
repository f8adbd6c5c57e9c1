"""The API under test, served in this process with a transport under each source that times
every upstream round trip, and the measurements taken through it over HTTP (figures 1 and 2, and
the end-to-end row of figure 3)."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter, process_time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from app.auth.signing import issue_token, key_id, public_jwk
from app.demo.runner import AUDIENCE, ISSUER, ROLE_SCOPES, demo_settings
from app.demo.serving import serving
from app.main import create_app
from app.settings import Settings
from app.web.examples import DASHBOARD_QUERY
from benchmarks.timing import WARMUP, settle, time_interleaved
from benchmarks.upstreams import Upstream

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

    async def dashboard(self, first: int) -> dict[str, Any]:
        response = await self.client.post(
            "/graphql", json={"query": DASHBOARD_QUERY, "variables": {"first": first}}
        )
        body = response.json()
        if response.status_code != 200 or body.get("errors"):
            raise RuntimeError(f"dashboard query failed: {response.status_code} {body}")
        data: dict[str, Any] = body["data"]
        return data


def uncached(settings: Settings) -> Settings:
    """Every figure measures computing an answer: no response cache, no upstream cache (the
    cache benchmarks measure those)."""
    off = settings.cache.model_copy(update={"response_ttl_seconds": 0, "source_ttl_seconds": 0})
    return settings.model_copy(update={"cache": off})


def clinician_token(workdir: Path) -> str:
    """A clinician token signed by a fresh key, whose JWKS `demo_settings` reads from
    `workdir/jwks.json`."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = key_id(key)
    (workdir / "jwks.json").write_text(json.dumps({"keys": [public_jwk(key, kid)]}))
    return issue_token(
        key,
        issuer=ISSUER,
        audience=AUDIENCE,
        subject="bench-clinician",
        roles=["clinician"],
        scope=ROLE_SCOPES["clinician"],
        kid=kid,
    )


@contextlib.asynccontextmanager
async def running_api(upstreams: Sequence[Upstream]) -> AsyncIterator[Api]:
    """The API in this process, configured as the demo configures it (`demo_settings`)."""
    timer = RequestTimer()
    with tempfile.TemporaryDirectory(prefix="patientgraph-bench-") as tmp:
        workdir = Path(tmp)
        token = clinician_token(workdir)
        urls = {u.name: u.fhir_url for u in upstreams}
        settings = uncached(demo_settings(workdir, "127.0.0.1", 8000, urls, token))
        transports = {name: TimingTransport(name, timer) for name in urls}
        app = create_app(settings, transports=transports)
        async with (
            serving(app) as base,
            httpx.AsyncClient(
                base_url=base, timeout=60, headers={"Authorization": f"Bearer {token}"}
            ) as client,
        ):
            yield Api(client, settings, workdir, timer)


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


def sequential_rounds(spans: Sequence[tuple[str, float, float]]) -> int:
    """Longest chain of upstream requests each starting after the previous one ended: the
    round trips on the critical path, whatever ran in parallel beside them."""
    ordered = sorted(spans, key=lambda s: s[1])
    depth: list[int] = []
    for i, (_, start, _end) in enumerate(ordered):
        before = [depth[j] for j in range(i) if ordered[j][2] <= start]
        depth.append(1 + max(before, default=0))
    return max(depth, default=0)


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


# --- 3. (end-to-end row) the full API over HTTP at zero injected latency -------------------------


async def http_runs(api: Api, first: int, iterations: int) -> tuple[list[float], float]:
    """Wall seconds per HTTP query at zero injected latency, and this process's CPU seconds per
    query (the API plus the client driving it; warm-up queries included in that average)."""
    cpu = process_time()
    seconds = await time_interleaved({"http": lambda: api.dashboard(first)}, iterations)
    return seconds["http"], (process_time() - cpu) / (WARMUP + iterations)
