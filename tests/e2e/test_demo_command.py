"""`patientgraph demo` as a user runs it: a real process, real sockets, real signals.

Per contract section 2 the command prints the GraphiQL URL and one token per demo role,
writes the tokens file once everything is ready, serves the API and its FHIR upstreams on
loopback, and on SIGINT or SIGTERM stops everything it started and exits 0.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROLES = {"patient", "clinician", "care-coordinator", "billing", "auditor", "admin"}
REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
UPSTREAM_LINE = re.compile(
    r"^Demo (?:FHIR|pharmacy) upstream (\S+): (http://127\.0\.0\.1:(\d+)/\S*)", re.M
)
LAB_LINE = re.compile(
    r"^Demo lab \S+: sent (\d+) .* to 127\.0\.0\.1:(\d+), (\d+) acknowledged AA$", re.M
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:`port` (a restarted demo could bind it).

    SO_REUSEADDR, as the demo itself binds: it lets TIME_WAIT leftovers of closed
    connections pass but still refuses a port that some socket is listening on.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
    return True


def _read_tokens_file(path: Path, process: subprocess.Popen[bytes], logs: Path) -> Any:
    """Wait (bounded) until the demo has written its tokens file."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"demo exited with {process.returncode} before it was ready:\n"
                f"{logs.read_text(errors='replace')}"
            )
        if path.exists():
            # Written whole (write-then-rename), so it parses as soon as it exists.
            return json.loads(path.read_text())
        time.sleep(0.05)
    pytest.fail(f"no tokens file after {START_TIMEOUT:.0f} s:\n{logs.read_text(errors='replace')}")


@pytest.fixture
def api_port() -> int:
    return _free_port()


@pytest.fixture
def demo_process(tmp_path: Path, api_port: int) -> Iterator[subprocess.Popen[bytes]]:
    tokens_file = tmp_path / "tokens.json"
    with (tmp_path / "stdout.txt").open("wb") as out, (tmp_path / "stderr.txt").open("wb") as err:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app.cli",
                "demo",
                "--port",
                str(api_port),
                "--tokens-file",
                str(tokens_file),
            ],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_demo_serves_until_signalled_then_exits_cleanly(
    demo_process: subprocess.Popen[bytes],
    api_port: int,
    tmp_path: Path,
    stop_signal: signal.Signals,
) -> None:
    stderr_path = tmp_path / "stderr.txt"
    demo = _read_tokens_file(tmp_path / "tokens.json", demo_process, stderr_path)
    base = f"http://127.0.0.1:{api_port}"

    # The tokens file: {"graphql_url": str, "tokens": {role: jwt}, "patients": [id, ...]}.
    assert [p.name for p in tmp_path.iterdir() if "tokens" in p.name] == ["tokens.json"]
    assert set(demo) == {"graphql_url", "tokens", "patients"}
    assert demo["graphql_url"] == f"{base}/graphql"
    assert set(demo["tokens"]) == ROLES
    assert all(isinstance(t, str) and JWT.match(t) for t in demo["tokens"].values())
    patients = demo["patients"]
    assert isinstance(patients, list)
    assert len(patients) >= 20
    assert all(isinstance(p, str) and p for p in patients)
    assert len(set(patients)) == len(patients)

    # The API answers, as the tokens file promises; the patient token is patients[0].
    with httpx.Client(base_url=base, timeout=30) as client:
        response = client.post(
            "/graphql",
            json={"query": "{ me { id } }"},
            headers={"Authorization": f"Bearer {demo['tokens']['patient']}"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["data"] == {"me": {"id": patients[0]}}
        assert "errors" not in response.json()

        response = client.post(
            "/graphql",
            json={"query": "{ patients(first: 1) { totalCount } }"},
            headers={"Authorization": f"Bearer {demo['tokens']['clinician']}"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["data"] == {"patients": {"totalCount": len(patients)}}
        assert "errors" not in response.json()

        # The clinician token with limited scopes reads demographics and observations only.
        printed_so_far = (tmp_path / "stdout.txt").read_text()
        (limited,) = re.findall(r"^Clinician token limited to .*:\n  (\S+)$", printed_so_far, re.M)
        response = client.post(
            "/graphql",
            json={
                "query": "{ patients(first: 1) { nodes { observations { totalCount } "
                "conditions { totalCount } } } }"
            },
            headers={"Authorization": f"Bearer {limited}"},
        )
        body = response.json()
        assert body["data"]["patients"]["nodes"][0]["observations"]["totalCount"] > 0
        assert [e["path"][-1] for e in body["errors"]] == ["conditions"]
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"

        response = client.get("/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

        response = client.get("/readyz")
        assert response.status_code == 200, response.text
        sources = {s["id"]: s for s in response.json()["sources"]}
        fhir = {name: s["state"] for name, s in sources.items() if s["kind"] == "fhir"}
        assert len(fhir) >= 2, sources
        assert set(fhir.values()) == {"ok"}, sources

    # Stop it the way a terminal or a process manager would.
    demo_process.send_signal(stop_signal)
    started = time.monotonic()
    try:
        returncode = demo_process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"demo still running {STOP_TIMEOUT:.0f} s after {stop_signal.name}")
    stopped_after = time.monotonic() - started
    stdout = (tmp_path / "stdout.txt").read_text()
    stderr = stderr_path.read_text(errors="replace")
    assert returncode == 0, f"exit {returncode} after {stop_signal.name}; stderr:\n{stderr}"
    assert stopped_after < 5, f"took {stopped_after:.1f} s to stop"
    assert "Traceback" not in stderr, stderr

    # What it printed: the GraphiQL URL, then every role's token (the same as in the file).
    assert f"GraphiQL: {base}/graphql\n" in stdout
    printed = dict(re.findall(r"^  ([a-z-]+): (\S+)$", stdout, re.M))
    assert printed == demo["tokens"]
    upstreams = {name: (url, int(port)) for name, url, port in UPSTREAM_LINE.findall(stdout)}
    assert len(upstreams) >= 3, stdout  # two FHIR servers and a pharmacy
    ((sent, lab_port, accepted),) = LAB_LINE.findall(stdout)
    assert int(sent) == int(accepted) > 0

    # Everything it listened on is released: the API port, every upstream's, the MLLP listener.
    ports = [api_port, int(lab_port), *(port for _url, port in upstreams.values())]
    busy = [port for port in ports if not _port_is_free(port)]
    assert busy == [], f"ports still taken after exit: {busy}"
