"""Trusted documents on a real server: in enforce mode only the manifest's documents run (by
text or by `documentId`), anything else is refused before any upstream call; log mode runs
everything and logs an untrusted document by its hash only."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from app.web.examples import DASHBOARD_QUERY, PORTAL_QUERY
from app.web.trusted_documents import document_id
from tests.conftest import ApiFactory, Upstream, fhir_source

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "examples" / "trusted-documents.json"
UNTRUSTED = "{ patients(first: 1) { totalCount } }"


def calls(upstreams: dict[str, Upstream]) -> int:
    return sum(len(u.requests) for u in upstreams.values())


async def test_enforce_runs_only_the_manifest(
    api_factory: ApiFactory, upstreams: dict[str, Upstream]
) -> None:
    sources = [fhir_source(u) for u in upstreams.values()]
    graphql = {"trusted_documents": "enforce", "trusted_documents_file": str(MANIFEST)}
    async with api_factory(sources, graphql=graphql) as api:
        by_text = await api.query(DASHBOARD_QUERY, {"first": 2})
        by_id = await api.client.post(
            f"{api.url}/graphql",
            json={"documentId": document_id(DASHBOARD_QUERY), "variables": {"first": 2}},
            headers=api.signer.headers(),
        )
        over_get = await api.client.get(
            f"{api.url}/graphql",
            params={"documentId": document_id(PORTAL_QUERY)},
            headers=api.signer.headers("patient", patient=None),
        )
        before = calls(upstreams)
        untrusted = await api.query(UNTRUSTED)
        unknown = await api.client.post(
            f"{api.url}/graphql",
            json={"documentId": "sha256:" + "0" * 64},
            headers=api.signer.headers(),
        )
        mismatched = await api.client.post(
            f"{api.url}/graphql",
            json={"documentId": document_id(DASHBOARD_QUERY), "query": UNTRUSTED},
            headers=api.signer.headers(),
        )
        after = calls(upstreams)
    assert by_text.status_code == by_id.status_code == 200
    assert by_id.json()["data"] == by_text.json()["data"]
    assert len(by_id.json()["data"]["patients"]["nodes"]) == 2
    assert over_get.status_code == 200
    assert untrusted.status_code == 400
    assert untrusted.json()["errors"][0]["extensions"]["code"] == "QUERY_REJECTED"
    assert unknown.status_code == mismatched.status_code == 400
    assert unknown.json()["errors"][0]["message"] == "Unknown documentId"
    assert after == before


async def test_log_mode_runs_everything_and_logs_the_hash_only(
    api_factory: ApiFactory, upstreams: dict[str, Upstream], caplog: pytest.LogCaptureFixture
) -> None:
    sources = [fhir_source(u) for u in upstreams.values()]
    graphql = {"trusted_documents": "log", "trusted_documents_file": str(MANIFEST)}
    with caplog.at_level(logging.WARNING, logger="app.web.trusted_documents"):
        async with api_factory(sources, graphql=graphql) as api:
            trusted = await api.query(DASHBOARD_QUERY, {"first": 1})
            untrusted = await api.query(UNTRUSTED)
    assert trusted.status_code == untrusted.status_code == 200
    logged = [r.getMessage() for r in caplog.records if r.name == "app.web.trusted_documents"]
    assert logged == [f"untrusted document {document_id(UNTRUSTED)}"]
    assert all("patients" not in m for m in logged)
