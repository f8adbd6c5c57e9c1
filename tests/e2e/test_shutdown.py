"""Graceful shutdown is bounded: a request stuck on a hung upstream does not hold the server."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx

from tests.conftest import Signer, Upstream
from tests.e2e.test_lab_crash import auth_section, free_port, server

SHUTDOWN_SECONDS = 1


async def test_sigterm_with_a_request_on_a_hung_upstream_exits_within_the_bound(
    tmp_path: Path, signer: Signer, upstreams: dict[str, Upstream]
) -> None:
    clinic = upstreams["clinic"]
    clinic.faults.mode = "hang"
    port = free_port()
    config = tmp_path / "patientgraph.toml"
    config.write_text(f"""
[server]
port = {port}
shutdown_seconds = {SHUTDOWN_SECONDS}
[graphql]
deadline_seconds = 60
{auth_section(signer)}[store]
url = "sqlite:///{tmp_path / "store.db"}"
[[sources]]
id = "clinic"
kind = "fhir"
base_url = "{clinic.base_url}"
timeout_seconds = 60
""")
    async with server(config, port) as proc, httpx.AsyncClient() as client:
        query = asyncio.create_task(
            client.post(
                f"http://127.0.0.1:{port}/graphql",
                json={"query": "{ patients(first: 5) { totalCount } }"},
                headers=signer.headers(),
                timeout=60,
            )
        )
        for _ in range(200):  # until the query is waiting on the clinic
            if clinic.faults.faulted:
                break
            await asyncio.sleep(0.05)
        assert clinic.faults.faulted == 1
        started = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
        elapsed = time.perf_counter() - started
        assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once drained
        assert elapsed < SHUTDOWN_SECONDS + 1.5, elapsed  # not the 60 s the upstream could take
        outcome = await asyncio.gather(query, return_exceptions=True)
        assert not isinstance(outcome[0], httpx.Response) or outcome[0].status_code != 200
