"""Liveness and readiness: no PHI, honest about sources."""

from __future__ import annotations

from tests.conftest import Api, ApiFactory, Upstream, closed_port_url, fhir_source


async def test_healthz(api: Api) -> None:
    response = await api.client.get(f"{api.url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_readyz_all_sources_up(api: Api) -> None:
    response = await api.client.get(f"{api.url}/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["store"] == "ok"
    assert {(s["id"], s["state"]) for s in body["sources"]} == {
        ("hospital", "ok"),
        ("clinic", "ok"),
    }


async def test_readyz_degraded_and_unavailable(
    api_factory: ApiFactory, upstreams: dict[str, Upstream]
) -> None:
    dead = {"id": "clinic", "kind": "fhir", "base_url": closed_port_url(), "timeout_seconds": 1}
    lab = {"id": "citylab", "kind": "hl7v2", "listen": "127.0.0.1:0"}
    async with api_factory([fhir_source(upstreams["hospital"]), dead, lab]) as api:
        degraded = await api.client.get(f"{api.url}/readyz")
    assert degraded.status_code == 200
    body = degraded.json()
    assert body["status"] == "degraded"
    states = {s["id"]: s["state"] for s in body["sources"]}
    assert states == {"hospital": "ok", "clinic": "unavailable", "citylab": "ok"}
    assert "127.0.0.1" not in degraded.text

    async with api_factory([dead]) as api:
        down = await api.client.get(f"{api.url}/readyz")
    assert down.status_code == 503
    assert down.json()["status"] == "unavailable"
