"""MLLP over TLS, over real sockets against the running API: the listener's certificate,
and client certificates from one CA required of every sender when configured."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest

from app.settings import ConfigError, settings_from_mapping
from app.sources.hl7v2.mllp import MllpClient
from tests.conftest import Api, ApiFactory
from tests.fakes.pki import Pki, make_pki
from tests.integration.test_lab_ingest import msa, oru
from tests.integration.test_lab_senders import lab, stored_messages


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Another CA, and a client certificate it issued."""
    return make_pki(tmp_path_factory.mktemp("stranger"))


def tls_lab(pki: Pki, *, require_clients: bool) -> dict[str, Any]:
    options = {"tls_cert_file": str(pki.server_cert), "tls_key_file": str(pki.server_key)}
    if require_clients:
        options["tls_client_ca_file"] = str(pki.ca)
    return lab(**options)


def sender_context(pki: Pki, client: Pki | None = None) -> ssl.SSLContext:
    """Trusts `pki`'s CA; presents `client`'s client certificate when given."""
    context = ssl.create_default_context(cafile=str(pki.ca))
    if client is not None:
        context.load_cert_chain(client.client_cert, client.client_key)
    return context


async def send(api: Api, context: ssl.SSLContext | None, control_id: str) -> list[str]:
    async with MllpClient("127.0.0.1", api.lab_port(), timeout=5, tls=context) as client:
        return msa(await client.send(oru(control_id)))


async def test_a_sender_speaks_tls_to_the_listener(api_factory: ApiFactory, pki: Pki) -> None:
    async with api_factory([tls_lab(pki, require_clients=False)]) as api:
        assert (await send(api, sender_context(pki), "TLS-1"))[1] == "AA"
        assert await stored_messages(api) == 1


async def test_plain_mllp_to_a_tls_listener_stores_nothing(
    api_factory: ApiFactory, pki: Pki
) -> None:
    async with api_factory([tls_lab(pki, require_clients=False)]) as api:
        with pytest.raises((OSError, asyncio.IncompleteReadError, TimeoutError)):
            await send(api, None, "PLAIN-1")
        assert await stored_messages(api) == 0


async def test_required_client_certificates_admit_only_the_cas_senders(
    api_factory: ApiFactory, pki: Pki, stranger: Pki
) -> None:
    async with api_factory([tls_lab(pki, require_clients=True)]) as api:
        for refused in (sender_context(pki), sender_context(pki, stranger)):
            with pytest.raises((OSError, asyncio.IncompleteReadError, TimeoutError)):
                await send(api, refused, "NO-CERT")
        assert await stored_messages(api) == 0
        assert (await send(api, sender_context(pki, pki), "MTLS-1"))[1] == "AA"
        assert await stored_messages(api) == 1


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"tls_cert_file": "CERT"}, "tls_key_file"),
        ({"tls_client_ca_file": "CA"}, "tls_cert_file"),
    ],
)
def test_tls_settings_that_cannot_work_are_refused(
    pki: Pki, options: dict[str, str], key: str
) -> None:
    paths = {"CERT": str(pki.server_cert), "CA": str(pki.ca)}
    source = lab(**{k: paths[v] for k, v in options.items()})
    auth = {"issuer": "https://issuer.test/", "audience": "a", "jwks_file": "k.json"}
    with pytest.raises(ConfigError, match=key):
        settings_from_mapping({"auth": auth, "sources": [source]}, environ={})
