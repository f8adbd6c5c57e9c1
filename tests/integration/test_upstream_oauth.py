"""OAuth 2.0 client-credentials tokens for upstreams, over real sockets: a token endpoint on
loopback, and FHIR and NCPDP upstreams that refuse any request without one of its tokens."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from app.demo.fhir_server import create_fhir_app
from app.demo.generator import DemoPopulation
from app.demo.pharmacy_data import pharmacy_fills
from app.demo.pharmacy_server import create_pharmacy_app
from app.demo.serving import serving
from app.domain.records import DISPENSES, PersonQuery
from app.settings import ConfigError, FhirSourceSettings, NcpdpSourceSettings, settings_from_mapping
from app.sources.fhir.source import FhirSource
from app.sources.ncpdp.source import NcpdpSource
from tests.conftest import ApiFactory, Upstream, fhir_source

CLIENT_ID, SECRET, SCOPE = "patientgraph", "s3cret-value", "system/*.read"
QUERY = """{ patients(first: 50) { totalCount nodes { sources { sourceId } } } }"""
NO_CACHE = {"response_ttl_seconds": 0, "source_ttl_seconds": 0}
AUTH = {"issuer": "https://issuer.test/", "audience": "a", "jwks_file": "k.json"}


@dataclass
class TokenEndpoint:
    url: str = ""
    lifetime: Any = 3600  # expires_in sent; None: left out
    failure: int | None = None  # answer every token request with this status
    issued: list[str] = field(default_factory=list)
    valid: set[str] = field(default_factory=set)
    forms: list[dict[str, list[str]]] = field(default_factory=list)
    delay: float = 0.0

    def app(self) -> Starlette:
        async def token(request: Request) -> Response:
            expected = base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
            if request.headers.get("authorization") != f"Basic {expected}":
                return JSONResponse({"error": "invalid_client"}, 401)
            self.forms.append(parse_qs((await request.body()).decode()))
            await asyncio.sleep(self.delay)
            if self.failure is not None:
                return JSONResponse({"error": "temporarily_unavailable"}, self.failure)
            issued = f"tok-{len(self.issued) + 1}"
            self.issued.append(issued)
            self.valid.add(issued)
            answer: dict[str, Any] = {"access_token": issued, "token_type": "bearer"}
            if self.lifetime is not None:
                answer["expires_in"] = self.lifetime
            return JSONResponse(answer)

        return Starlette(routes=[Route("/oauth/token", token, methods=["POST"])])


class RequiresToken:
    """ASGI wrapper: 401 unless the request bears one of the endpoint's valid tokens."""

    def __init__(self, app: ASGIApp, endpoint: TokenEndpoint) -> None:
        self.app, self.endpoint = app, endpoint
        self.bearers: list[str | None] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = dict(scope["headers"]).get(b"authorization", b"").decode()
            token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else None
            self.bearers.append(token)
            if token not in self.endpoint.valid:
                await JSONResponse({"resourceType": "OperationOutcome"}, 401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


@dataclass
class Protected:
    endpoint: TokenEndpoint
    upstream: RequiresToken
    base_url: str

    def source(self, **options: Any) -> dict[str, Any]:
        oauth = {"token_url": self.endpoint.url, "client_id": CLIENT_ID, "client_secret": SECRET}
        return {
            "id": "clinic",
            "kind": "fhir",
            "base_url": self.base_url,
            "timeout_seconds": 2,
            "oauth": oauth | {"scope": SCOPE} | options.pop("oauth", {}),
            **options,
        }


@pytest.fixture
async def protected(population: DemoPopulation) -> AsyncIterator[Protected]:
    endpoint = TokenEndpoint()
    upstream = RequiresToken(
        create_fhir_app(population.upstreams["clinic"], max_count=1000), endpoint
    )
    async with serving(endpoint.app()) as token_base, serving(upstream) as base:
        endpoint.url = f"{token_base}/oauth/token"
        yield Protected(endpoint, upstream, f"{base}/fhir/R4")


@contextlib.asynccontextmanager
async def fhir(settings: dict[str, Any]) -> AsyncIterator[FhirSource]:
    source = FhirSource(FhirSourceSettings.model_validate(settings))
    try:
        yield source
    finally:
        await source.aclose()


async def test_one_token_serves_every_request_and_carries_the_scope(
    api_factory: ApiFactory, upstreams: dict[str, Upstream], protected: Protected
) -> None:
    sources = [fhir_source(upstreams["hospital"]), protected.source()]
    async with api_factory(sources, cache=NO_CACHE) as api:
        first = (await api.query(QUERY)).json()
        second = (await api.query(QUERY)).json()
    for body in (first, second):
        assert "errors" not in body, body["errors"]
        seen = {s["sourceId"] for p in body["data"]["patients"]["nodes"] for s in p["sources"]}
        assert seen == {"hospital", "clinic"}
    assert protected.endpoint.issued == ["tok-1"]
    assert protected.endpoint.forms == [{"grant_type": ["client_credentials"], "scope": [SCOPE]}]
    assert len(protected.upstream.bearers) >= 2
    assert set(protected.upstream.bearers) == {"tok-1"}


async def test_concurrent_requests_share_one_token_fetch(protected: Protected) -> None:
    protected.endpoint.delay = 0.2
    async with fhir(protected.source()) as source:
        healths = await asyncio.gather(*(source.health() for _ in range(20)))
    assert all(h.ok for h in healths), healths
    assert protected.endpoint.issued == ["tok-1"]


async def test_a_token_is_renewed_before_it_expires(protected: Protected) -> None:
    protected.endpoint.lifetime = 1  # renewed at 0.9 s
    async with fhir(protected.source()) as source:
        assert (await source.health()).ok
        assert (await source.health()).ok
        await asyncio.sleep(1.0)
        assert (await source.health()).ok
    assert protected.endpoint.issued == ["tok-1", "tok-2"]
    assert protected.upstream.bearers == ["tok-1", "tok-1", "tok-2"]


async def test_a_revoked_token_is_replaced_once_and_the_request_sent_again(
    protected: Protected,
) -> None:
    async with fhir(protected.source()) as source:
        assert (await source.health()).ok
        protected.endpoint.valid.clear()  # the upstream forgets every token it knew
        assert (await source.health()).ok
    assert protected.endpoint.issued == ["tok-1", "tok-2"]
    assert protected.upstream.bearers == ["tok-1", "tok-1", "tok-2"]


async def test_a_token_still_refused_after_renewal_is_a_rejection(protected: Protected) -> None:
    upstream = protected.upstream
    upstream.endpoint = TokenEndpoint()  # knows none of the tokens actually issued
    async with fhir(protected.source()) as source:
        health = await source.health()
    assert (health.ok, health.detail) == (False, "rejected")
    assert protected.endpoint.issued == ["tok-1", "tok-2"]  # one renewal, no loop


@pytest.mark.parametrize(
    ("failure", "lifetime", "state"),
    [
        (500, 3600, "unavailable"),
        (400, 3600, "rejected"),  # invalid_client, invalid_scope: our configuration
        (None, "soon", "unreadable"),
        (None, -5, "unreadable"),
    ],
)
async def test_a_failing_token_endpoint_is_the_sources_failure(
    protected: Protected, failure: int | None, lifetime: Any, state: str
) -> None:
    protected.endpoint.failure, protected.endpoint.lifetime = failure, lifetime
    async with fhir(protected.source()) as source:
        health = await source.health()
    assert (health.ok, health.detail) == (False, state)
    assert protected.upstream.bearers == []  # nothing was sent without a token


async def test_a_wrong_secret_leaves_the_other_sources_answering_and_leaks_nothing(
    api_factory: ApiFactory, upstreams: dict[str, Upstream], protected: Protected
) -> None:
    wrong = protected.source(oauth={"client_secret": "not-the-secret"})
    async with api_factory([fhir_source(upstreams["hospital"]), wrong], cache=NO_CACHE) as api:
        response = await api.query(QUERY)
    body = response.json()
    assert response.status_code == 200
    assert body["data"]["patients"]["totalCount"] > 0
    assert [e["extensions"] for e in body["errors"]] == [
        {"code": "SOURCE_UNAVAILABLE", "source": "clinic"}
    ]
    assert "not-the-secret" not in response.text
    assert protected.upstream.bearers == []


async def test_a_missing_expires_in_means_a_short_default_lifetime(protected: Protected) -> None:
    protected.endpoint.lifetime = None
    async with fhir(protected.source()) as source:
        assert (await source.health()).ok
        assert (await source.health()).ok
    assert protected.endpoint.issued == ["tok-1"]


def test_a_static_bearer_token_and_oauth_exclude_each_other(protected: Protected) -> None:
    with pytest.raises(ConfigError, match="bearer_token"):
        settings_from_mapping(
            {"auth": AUTH, "sources": [protected.source(bearer_token="static")]}, environ={}
        )


def test_the_client_secret_can_come_from_the_environment_and_is_never_shown(
    protected: Protected,
) -> None:
    settings = protected.source()
    del settings["oauth"]["client_secret"]
    loaded = settings_from_mapping(
        {"auth": AUTH, "sources": [settings]},
        environ={"PATIENTGRAPH_SOURCES__CLINIC__OAUTH__CLIENT_SECRET": "from-env"},
    )
    oauth = loaded.sources[0].oauth  # type: ignore[union-attr]
    assert oauth is not None
    assert oauth.client_secret.get_secret_value() == "from-env"
    assert "from-env" not in repr(loaded)


async def test_a_pharmacy_gets_the_same_tokens(population: DemoPopulation) -> None:
    endpoint = TokenEndpoint()
    pharmacy = RequiresToken(create_pharmacy_app(pharmacy_fills(population)), endpoint)
    person = population.people[0]
    asked = PersonQuery(
        f"pg-{person.key}", person.family, person.given, person.birth_date, person.gender
    )
    async with serving(endpoint.app()) as token_base, serving(pharmacy) as base:
        endpoint.url = f"{token_base}/oauth/token"
        oauth = {"token_url": endpoint.url, "client_id": CLIENT_ID, "client_secret": SECRET}
        settings = {"id": "pharmacy", "kind": "ncpdp", "base_url": f"{base}/script"}
        source = NcpdpSource(NcpdpSourceSettings.model_validate(settings | {"oauth": oauth}))
        try:
            found = await source.records_for_people(DISPENSES, [asked])
        finally:
            await source.aclose()
    assert len(found[asked]) > 0
    assert pharmacy.bearers == ["tok-1"]
