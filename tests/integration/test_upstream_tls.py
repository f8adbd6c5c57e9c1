"""TLS to FHIR upstreams over real sockets: a private CA bundle, and client certificates for an
upstream that requires them (mTLS). Certificates are made here, for 127.0.0.1, by a test CA."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.demo.fhir_server import create_fhir_app
from app.demo.generator import DemoPopulation
from app.demo.serving import serving
from tests.conftest import ApiFactory
from tests.fakes.pki import Pki, make_pki

QUERY = "{ patients(first: 50) { totalCount } }"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@contextlib.asynccontextmanager
async def tls_upstream(
    population: DemoPopulation, pki: Pki, *, require_client: bool
) -> AsyncIterator[str]:
    tls: dict[str, Any] = {"ssl_certfile": str(pki.server_cert), "ssl_keyfile": str(pki.server_key)}
    if require_client:
        tls |= {"ssl_ca_certs": str(pki.ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    app = create_fhir_app(population.upstreams["hospital"], max_count=1000)
    async with serving(app, **tls) as base:
        yield f"{base}/fhir/R4"


def source(base_url: str, **options: Any) -> dict[str, Any]:
    return {"id": "hospital", "kind": "fhir", "base_url": base_url, "timeout_seconds": 5, **options}


async def total(api_factory: ApiFactory, settings: dict[str, Any]) -> dict[str, Any]:
    async with api_factory([settings], cache={"response_ttl_seconds": 0}) as api:
        body: dict[str, Any] = (await api.query(QUERY)).json()
        return body


async def test_a_private_ca_is_trusted_only_when_given(
    api_factory: ApiFactory, population: DemoPopulation, pki: Pki
) -> None:
    async with tls_upstream(population, pki, require_client=False) as base:
        assert base.startswith("https://127.0.0.1:")
        untrusted = await total(api_factory, source(base))
        assert untrusted["data"]["patients"]["totalCount"] == 0
        assert [e["extensions"]["code"] for e in untrusted["errors"]] == ["SOURCE_UNAVAILABLE"]
        trusted = await total(api_factory, source(base, ca_file=str(pki.ca)))
        assert "errors" not in trusted, trusted["errors"]
        assert trusted["data"]["patients"]["totalCount"] > 0


async def test_an_upstream_requiring_a_client_certificate_gets_ours(
    api_factory: ApiFactory, population: DemoPopulation, pki: Pki
) -> None:
    async with tls_upstream(population, pki, require_client=True) as base:
        without = await total(api_factory, source(base, ca_file=str(pki.ca)))
        assert [e["extensions"]["code"] for e in without["errors"]] == ["SOURCE_UNAVAILABLE"]
        mutual = source(
            base,
            ca_file=str(pki.ca),
            client_cert_file=str(pki.client_cert),
            client_key_file=str(pki.client_key),
        )
        with_cert = await total(api_factory, mutual)
        assert "errors" not in with_cert, with_cert["errors"]
        assert with_cert["data"]["patients"]["totalCount"] > 0
