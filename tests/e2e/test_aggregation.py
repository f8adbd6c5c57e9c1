"""The whole graph: a demo patient's observations and medications from the EHRs, the lab feed
and the pharmacy in one query, de-duplicated with provenance; and what happens when the lab or
the pharmacy is down."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from app.demo.generator import DemoPopulation
from app.demo.runner import demo_settings, demo_upstreams, send_lab_feed
from app.demo.serving import serving
from app.domain.patients import SSN_SYSTEM
from app.main import create_app
from app.settings import settings_from_mapping
from tests.conftest import Signer, closed_port_url

QUERY = """query($i: String) { patients(identifier: $i) { nodes { id sources { sourceId }
  observations(first: 100, merged: %s) { totalCount nodes { code { text } effective
    valueQuantity { value unit } sources { sourceId localId } } }
  medications(first: 100, merged: %s) { totalCount nodes { kind medication { text }
    sources { sourceId } fills { lastFillDate pharmacy sources { sourceId } } } } } } }"""


@contextlib.asynccontextmanager
async def demo_api(
    tmp_path: Path, signer: Signer, population: DemoPopulation, pharmacy_down: bool = False
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    async with demo_upstreams(population) as upstreams:
        settings = demo_settings(
            tmp_path,
            "127.0.0.1",
            0,
            upstreams.fhir,
            "unused",
            pharmacy_url=upstreams.pharmacy,
            lab=True,
        )
        data = settings.model_dump(mode="json")
        data["auth"] = {
            "issuer": "https://issuer.test/",
            "audience": "patientgraph",
            "jwks_file": str(signer.jwks_path),
        }
        if pharmacy_down:
            data["sources"][-1]["base_url"] = closed_port_url()
        app = create_app(settings_from_mapping(data, environ={}))
        async with (
            serving(app) as base,
            httpx.AsyncClient(base_url=base, headers=signer.headers(), timeout=30) as client,
        ):
            await send_lab_feed(app, population)
            yield client, app


async def ask(client: httpx.AsyncClient, ssn: str, merged: bool = True) -> dict[str, Any]:
    flag = "true" if merged else "false"
    response = await client.post(
        "/graphql", json={"query": QUERY % (flag, flag), "variables": {"i": f"{SSN_SYSTEM}|{ssn}"}}
    )
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def sources_of(node: dict[str, Any]) -> set[str]:
    return {s["sourceId"] for s in node["sources"]}


async def test_one_query_brings_ehr_lab_and_pharmacy_together(
    tmp_path: Path, signer: Signer, population: DemoPopulation
) -> None:
    person = population.people[0]
    async with demo_api(tmp_path, signer, population) as (client, _app):
        merged = await ask(client, person.ssn)
        unmerged = await ask(client, person.ssn, merged=False)
    assert "errors" not in merged, merged.get("errors")
    (patient,) = merged["data"]["patients"]["nodes"]
    assert sources_of(patient) == {"hospital", "clinic", "citylab"}

    observations = patient["observations"]["nodes"]
    assert set().union(*(sources_of(o) for o in observations)) == {"hospital", "clinic", "citylab"}
    shared = [o for o in observations if {"hospital", "citylab"} <= sources_of(o)]
    assert shared, "the demo lab repeats some EHR results: they must appear once"
    ids = [(s["sourceId"], s["localId"]) for o in observations for s in o["sources"]]
    assert len(ids) == len(set(ids))  # no upstream record shown twice
    raw = unmerged["data"]["patients"]["nodes"][0]["observations"]
    assert raw["totalCount"] == len(ids) > patient["observations"]["totalCount"]

    medications = patient["medications"]["nodes"]
    fills = [f for m in medications for f in m["fills"]]
    assert fills
    assert {s["sourceId"] for f in fills for s in f["sources"]} == {"pharmacy"}
    ordered_and_filled = [m for m in medications if m["kind"] == "ORDER" and m["fills"]]
    assert ordered_and_filled, "demo fills match some EHR orders"
    assert any(m["kind"] == "DISPENSE" for m in medications), "and one drug is pharmacy-only"
    raw_meds = unmerged["data"]["patients"]["nodes"][0]["medications"]["nodes"]
    assert sum(m["kind"] == "DISPENSE" for m in raw_meds) == len(fills)


async def test_pharmacy_down_the_rest_still_arrives(
    tmp_path: Path, signer: Signer, population: DemoPopulation
) -> None:
    person = population.people[1]
    async with demo_api(tmp_path, signer, population, pharmacy_down=True) as (client, _app):
        body = await ask(client, person.ssn)
    (patient,) = body["data"]["patients"]["nodes"]
    assert patient["observations"]["totalCount"] > 0
    assert patient["medications"]["totalCount"] > 0
    assert all(not m["fills"] for m in patient["medications"]["nodes"])
    assert [e["extensions"] for e in body["errors"]] == [
        {"code": "SOURCE_UNAVAILABLE", "source": "pharmacy"}
    ]


async def test_lab_store_down_the_rest_still_arrives(
    tmp_path: Path, signer: Signer, population: DemoPopulation
) -> None:
    person = population.people[2]
    async with demo_api(tmp_path, signer, population) as (client, app):
        async with app.state.runtime.engine.begin() as conn:
            await conn.execute(sa.text("DROP TABLE lab_results"))
        body = await ask(client, person.ssn)
    (patient,) = body["data"]["patients"]["nodes"]
    observations = patient["observations"]["nodes"]
    assert observations
    assert "citylab" not in set().union(*(sources_of(o) for o in observations))
    assert any(m["fills"] for m in patient["medications"]["nodes"])
    assert [e["extensions"] for e in body["errors"]] == [
        {"code": "SOURCE_UNAVAILABLE", "source": "citylab"}
    ]
