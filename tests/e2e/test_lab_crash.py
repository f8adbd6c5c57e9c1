"""Durability: a result acknowledged with AA survives the server being killed right after."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from app.sources.hl7v2.mllp import MllpClient
from tests.conftest import AUDIENCE, ISSUER, Signer
from tests.integration.test_lab_ingest import LAB_QUERY, SSN, msa, oru

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def auth_section(signer: Signer) -> str:
    """The [auth] table of every e2e config: the test signer's issuer, audience and keys."""
    return (
        f'[auth]\nissuer = "{ISSUER}"\naudience = "{AUDIENCE}"\njwks_file = "{signer.jwks_path}"\n'
    )


def write_config(tmp_path: Path, signer: Signer, api_port: int, lab_port: int) -> Path:
    config = tmp_path / "patientgraph.toml"
    config.write_text(f"""
[server]
port = {api_port}
{auth_section(signer)}[store]
url = "sqlite:///{tmp_path / "store.db"}"
[[sources]]
id = "citylab"
kind = "hl7v2"
listen = "127.0.0.1:{lab_port}"
""")
    return config


@asynccontextmanager
async def server(
    config: Path, api_port: int, *options: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`patientgraph serve --config config *options`, once its /healthz answers."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        "serve",
        "--config",
        str(config),
        *options,
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(200):
                try:
                    if (
                        await client.get(f"http://127.0.0.1:{api_port}/healthz")
                    ).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("server did not become ready")
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_acknowledged_result_survives_a_kill(tmp_path: Path, signer: Signer) -> None:
    api_port, lab_port = free_port(), free_port()
    config = write_config(tmp_path, signer, api_port, lab_port)
    async with server(config, api_port) as proc:
        async with MllpClient("127.0.0.1", lab_port) as client:
            ack = await client.send(oru("CRASH-1", "211"))
        os.kill(proc.pid, signal.SIGKILL)  # no shutdown, no flush: only what was committed
        await proc.wait()
    assert msa(ack)[1] == "AA"
    async with server(config, api_port), httpx.AsyncClient() as client:
        response = await client.post(
            f"http://127.0.0.1:{api_port}/graphql",
            json={"query": LAB_QUERY, "variables": {"i": SSN}},
            headers=signer.headers(),
        )
    nodes = response.json()["data"]["patients"]["nodes"]
    assert [r["valueQuantity"]["value"] for r in nodes[0]["labResults"]["nodes"]] == [211.0]
