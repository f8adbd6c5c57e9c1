"""TLS to FHIR upstreams over real sockets: a private CA bundle, and client certificates for an
upstream that requires them (mTLS). Certificates are made here, for 127.0.0.1, by a test CA."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from app.demo.fhir_server import create_fhir_app
from app.demo.generator import DemoPopulation
from app.demo.serving import serving
from tests.conftest import ApiFactory

QUERY = "{ patients(first: 50) { totalCount } }"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Path:
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _issue(
    subject: str,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    usage: x509.ObjectIdentifier | None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_name, issuer_key = issuer or (_name(subject), key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        address = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
        builder = builder.add_extension(x509.SubjectAlternativeName([address]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca_cert, ca_key = _issue("Test CA", None, None)
    server = _issue("upstream", (ca_cert.subject, ca_key), ExtendedKeyUsageOID.SERVER_AUTH)
    client = _issue("patientgraph", (ca_cert.subject, ca_key), ExtendedKeyUsageOID.CLIENT_AUTH)
    return Pki(
        _write(folder / "ca.pem", ca_cert, ca_key),
        _write(folder / "server.pem", *server),
        folder / "server.key",
        _write(folder / "client.pem", *client),
        folder / "client.key",
    )


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
