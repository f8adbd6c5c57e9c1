"""The graphql-http server audits (npm `graphql-http`, the GraphQL over HTTP spec's own test
kit) run by Node against a real server on loopback: no audit may fail, and every warning is
one the README lists and justifies under "GraphQL over HTTP conformance".

The Node side lives in tests/http_audit (`make test` installs it with `npm ci`). Without node
or those modules the test skips, except under CI=true, where it fails: CI must not pass without
having run it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import Api

AUDIT_DIR = Path(__file__).resolve().parents[1] / "http_audit"
README = Path(__file__).resolve().parents[2] / "README.md"


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (AUDIT_DIR / "node_modules" / "graphql-http").is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail("node and tests/http_audit/node_modules are required under CI")
        pytest.skip("node or tests/http_audit/node_modules missing (run `make test`)")
    return node


def _documented_warnings() -> set[str]:
    """Audit ids in the README's conformance table, which says why each is a warning."""
    text = README.read_text(encoding="utf-8")
    section = text.split("### GraphQL over HTTP conformance", 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^\| `([0-9A-Z]{4})` \|", section, flags=re.MULTILINE))


async def test_the_graphql_http_audits_pass_with_only_documented_warnings(api: Api) -> None:
    node = _node()
    process = await asyncio.create_subprocess_exec(
        node,
        str(AUDIT_DIR / "audit.mjs"),
        cwd=AUDIT_DIR,
        env={
            "PATH": os.environ.get("PATH", ""),
            "SERVER_URL": f"{api.url}/graphql",
            "AUTHORIZATION": api.signer.headers()["Authorization"],
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, stderr.decode()
    results = json.loads(stdout)
    assert len(results) > 50  # the whole audit list ran, not a truncated one
    errors = [r for r in results if r["status"] == "error"]
    assert errors == []
    warnings = {r["id"]: r for r in results if r["status"] in ("warn", "notice")}
    assert set(warnings) == _documented_warnings(), json.dumps(list(warnings.values()), indent=1)
