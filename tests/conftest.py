"""Shared fixtures: signing keys and tokens, demo FHIR upstreams over real loopback HTTP, and
the API itself served by uvicorn."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette

from app.auth.signing import issue_token, key_id, public_jwk
from app.demo.fhir_server import create_fhir_app
from app.demo.generator import DemoPopulation, generate_population
from app.demo.serving import child_server, serving
from app.main import create_app
from app.settings import Settings, settings_from_mapping
from app.web.state import Runtime
from tests.fakes.faults import FaultInjector

ISSUER = "https://issuer.test/"
AUDIENCE = "patientgraph"


@dataclass
class Signer:
    key: rsa.RSAPrivateKey
    kid: str
    jwks_path: Path

    def token(self, role: str = "clinician", **overrides: Any) -> str:
        args: dict[str, Any] = {
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "subject": f"test-{role}",
            "roles": [role],
            "scope": "user/*.rs",
            "kid": self.kid,
        }
        args.update(overrides)
        return issue_token(self.key, **args)

    def headers(self, role: str = "clinician", **overrides: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, **overrides)}"}


_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    kid = key_id(_KEY)
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [public_jwk(_KEY, kid)]}))
    return Signer(_KEY, kid, path)


@pytest.fixture(scope="session")
def population() -> DemoPopulation:
    return generate_population()


@dataclass
class Upstream:
    name: str
    base_url: str
    faults: FaultInjector

    @property
    def requests(self) -> list[str]:
        log: list[str] = self.faults.state.requests  # type: ignore[union-attr]
        return log

    def set_delay(self, seconds: float) -> None:
        self.faults.state.delay_seconds = seconds  # type: ignore[union-attr]


@contextlib.asynccontextmanager
async def running_upstream(name: str, resources: Any, **options: Any) -> AsyncIterator[Upstream]:
    faults = FaultInjector(create_fhir_app(resources, **options))
    async with serving(faults) as base:
        yield Upstream(name, f"{base}/fhir/R4", faults)


@pytest.fixture
async def upstreams(population: DemoPopulation) -> AsyncIterator[dict[str, Upstream]]:
    async with (
        running_upstream("hospital", population.upstreams["hospital"], max_count=1000) as h,
        running_upstream("clinic", population.upstreams["clinic"], max_count=1000) as c,
    ):
        yield {"hospital": h, "clinic": c}


@contextlib.asynccontextmanager
async def upstream_process(name: str, delay: float = 0.0) -> AsyncIterator[str]:
    """A demo upstream in a child process; yields its FHIR base URL."""
    args = ("-m", "tests.fakes.upstream_process", "--name", name, "--delay", str(delay))
    async with child_server(*args) as base:
        yield f"{base}/fhir/R4"


def lab_source(source_id: str = "citylab") -> dict[str, Any]:
    return {"id": source_id, "kind": "hl7v2", "listen": "127.0.0.1:0"}


def closed_port_url() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/fhir/R4"


def make_settings(
    tmp_path: Path, signer: Signer, sources: list[dict[str, Any]], **sections: dict[str, Any]
) -> Settings:
    data: dict[str, Any] = {
        "auth": {"issuer": ISSUER, "audience": AUDIENCE, "jwks_file": str(signer.jwks_path)},
        "store": {"url": f"sqlite:///{tmp_path / 'index.db'}"},
        "sources": sources,
        **sections,
    }
    return settings_from_mapping(data, environ={})


def fhir_source(upstream: Upstream, **options: Any) -> dict[str, Any]:
    return {
        "id": upstream.name,
        "kind": "fhir",
        "base_url": upstream.base_url,
        "timeout_seconds": 2,
        "page_size": 500,
        **options,
    }


@dataclass
class Api:
    url: str
    client: httpx.AsyncClient
    signer: Signer
    app: Starlette

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    def lab_port(self, source_id: str = "citylab") -> int:
        (lab,) = [s for s in self.runtime.registry.lab_sources if s.id == source_id]
        return lab.port

    async def query(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        role: str = "clinician",
        **token: Any,
    ) -> httpx.Response:
        return await self.client.post(
            f"{self.url}/graphql",
            json={"query": query, "variables": variables},
            headers=self.signer.headers(role, **token),
        )


@contextlib.asynccontextmanager
async def running_api(settings: Settings, signer: Signer) -> AsyncIterator[Api]:
    app = create_app(settings)
    async with serving(app) as base, httpx.AsyncClient(timeout=30) as client:
        yield Api(base, client, signer, app)


ApiFactory = Callable[..., contextlib.AbstractAsyncContextManager[Api]]


@pytest.fixture
def api_factory(tmp_path: Path, signer: Signer) -> ApiFactory:
    def factory(
        sources: list[dict[str, Any]], **sections: dict[str, Any]
    ) -> contextlib.AbstractAsyncContextManager[Api]:
        return running_api(make_settings(tmp_path, signer, sources, **sections), signer)

    return factory


@pytest.fixture
async def api(upstreams: dict[str, Upstream], api_factory: ApiFactory) -> AsyncIterator[Api]:
    async with api_factory([fhir_source(u) for u in upstreams.values()]) as running:
        yield running
