"""kill -9 of the server under load loses no audit event whose response was delivered
(issue 13): events are committed before the response leaves."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx
import pytest

from app.audit.trail import AuditTrail
from app.audit.trail import metadata as audit_metadata
from app.identity.tables import metadata as identity_metadata
from app.sources.hl7v2.mllp import MllpClient
from app.sources.hl7v2.store import metadata as lab_metadata
from app.store import create_engine
from tests.conftest import Signer
from tests.e2e.test_lab_crash import free_port, server, write_config
from tests.integration.conftest import store_url_for
from tests.integration.test_lab_ingest import LAB_QUERY, SSN, msa, oru

KEY = "audit-crash-key-0123456789"
CONCURRENCY = 8
ENOUGH = 150  # delivered disclosures before the kill


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_no_delivered_disclosure_is_lost_to_a_kill(
    tmp_path: Path, signer: Signer, backend: str
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"  # what write_config names
    if backend == "postgresql":  # the test database, without an earlier test's tables
        for metadata in (audit_metadata, identity_metadata, lab_metadata):
            url = await store_url_for(backend, tmp_path, metadata)
    api_port, lab_port = free_port(), free_port()
    config = write_config(tmp_path, signer, api_port, lab_port)
    text = config.read_text().replace(f"sqlite:///{tmp_path / 'store.db'}", url)
    config.write_text(text + f'[audit]\nhash_key = "{KEY}"\n')
    delivered: list[tuple[str, str]] = []  # (request id, patient id) of each answered request
    async with server(config, api_port) as proc:
        async with MllpClient("127.0.0.1", lab_port) as lab:
            assert msa(await lab.send(oru("AUDIT-1", "120")))[1] == "AA"
        stop, enough = asyncio.Event(), asyncio.Event()

        async def client(n: int) -> None:
            async with httpx.AsyncClient(timeout=10) as http:
                for i in range(10_000):
                    if stop.is_set():
                        return
                    request_id = f"load-{n}-{i}"
                    try:
                        response = await http.post(
                            f"http://127.0.0.1:{api_port}/graphql",
                            json={"query": LAB_QUERY, "variables": {"i": SSN}},
                            headers={**signer.headers(), "X-Request-Id": request_id},
                        )
                    except httpx.TransportError:
                        return  # the server is gone
                    nodes = response.json()["data"]["patients"]["nodes"]
                    delivered.extend((request_id, node["id"]) for node in nodes)
                    if len(delivered) >= ENOUGH:
                        enough.set()

        clients = [asyncio.create_task(client(n)) for n in range(CONCURRENCY)]
        await asyncio.wait_for(enough.wait(), timeout=60)
        os.kill(proc.pid, signal.SIGKILL)  # mid-load: no shutdown, no flush
        await proc.wait()
        stop.set()
        await asyncio.gather(*clients)
    engine = create_engine(url)
    try:
        trail = AuditTrail(engine, KEY)
        rows = [record async for record in trail.since()]
        verified = await trail.verify()
    finally:
        await engine.dispose()
    recorded = {(r.event["where"]["request_id"], r.patient_id) for r in rows}
    assert len(delivered) >= ENOUGH
    assert set(delivered) <= recorded  # every delivered disclosure is on the trail
    assert verified.ok
