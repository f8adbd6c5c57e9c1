"""Does a change alter what the demo prints or answers? Run `patientgraph demo` from two
checkouts, one after the other, ask each the same queries with every demo token, and compare.

    .venv/bin/python benchmarks/demo_diff.py --base-dir /path/to/earlier/checkout

Each checkout runs with its own virtualenv (`.venv`), on a free loopback port. What differs
between two runs of the same code is taken out before comparing: ports, tokens, log
timestamps and PatientGraph ids (random when a patient is first linked; replaced by their
order of first appearance). Everything else must be identical: the printed output, the
tokens file's patients, and every answer (status and body, `extensions` aside: they hold fetch
times). Prints a summary and exits 1 when anything differs. Not a test: it starts two demos.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
COLLECTIONS = """
  observations(first: 100) { totalCount withheld nodes { id code { text coding { system code } }
    effective valueQuantity { value unit } valueString status notes sources { sourceId localId } } }
  labResults(first: 100) { totalCount nodes { id effective valueQuantity { value unit } status
    sources { sourceId localId } } }
  conditions(first: 100) { totalCount withheld nodes { id code { text } clinicalStatus onset
    notes } }
  allergies(first: 100) { totalCount nodes { id code { text } criticality reactions { text } } }
  medications(first: 100) { totalCount nodes { id kind medication { text } status authoredOn
    dosage notes sources { sourceId } fills { lastFillDate quantity { value unit } daysSupply
    pharmacy } } }
  unmerged: medications(first: 100, merged: false) { totalCount nodes { id kind } }
  immunizations(first: 100) { totalCount nodes { id vaccine { text } occurrence } }
  encounters(first: 100) { totalCount nodes { id class start type { text } } }
  procedures(first: 100) { totalCount nodes { id code { text } performed } }
  diagnosticReports(first: 100) { totalCount nodes { id code { text } effective } }
  careTeams(first: 100) { totalCount nodes { id name status participants } }
"""
QUERIES = {
    "dashboard": "{ patients(first: 100) { totalCount nodes { id name { text } birthDate gender "
    "identifiers { system value } address { lines city postalCode } telecom { system value } "
    "sources { sourceId localId resourceType } " + COLLECTIONS + " } } }",
    "me": "{ me { id name { text } " + COLLECTIONS + " } }",
}
STARTUP_SECONDS = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_demo(checkout: Path) -> dict[str, Any]:
    """The demo's printed lines, its patients and every answer, from `checkout`."""
    with tempfile.TemporaryDirectory() as tmp:
        tokens_file = Path(tmp) / "tokens.json"
        command = [str(checkout / ".venv" / "bin" / "patientgraph"), "demo"]
        command += ["--port", str(free_port()), "--tokens-file", str(tokens_file)]
        demo = subprocess.Popen(  # noqa: S603  # our own command, no shell
            command, cwd=checkout, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            while not tokens_file.exists():
                if time.monotonic() > deadline or demo.poll() is not None:
                    raise SystemExit(f"the demo in {checkout} did not start")
                time.sleep(0.2)
            written = json.loads(tokens_file.read_text())
            answers = ask(written["graphql_url"], written["tokens"])
        finally:
            demo.send_signal(signal.SIGINT)
            printed, _ = demo.communicate(timeout=60)
    return {"printed": printed.splitlines(), "patients": written["patients"], "answers": answers}


def ask(url: str, tokens: dict[str, str]) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    with httpx.Client(timeout=120) as client:
        for role, token in sorted(tokens.items()):
            for name, query in QUERIES.items():
                headers = {"Authorization": f"Bearer {token}"}
                response = client.post(url, json={"query": query}, headers=headers)
                body = response.json()
                body.pop("extensions", None)  # fetch times
                answers[f"{role}: {name}"] = {"status": response.status_code, "body": body}
    return answers


def normalized(run: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(run, sort_keys=True)
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+", "<time>", text)
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", text)
    text = re.sub(r"eyJ[\w-]+\.[\w-]+\.[\w-]+", "<token>", text)
    ids: dict[str, str] = {}
    text = re.sub(r"pg-[0-9a-f]{24}", lambda m: ids.setdefault(m[0], f"pg-<{len(ids)}>"), text)
    result: dict[str, Any] = json.loads(text)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-dir", type=Path, required=True, help="the earlier checkout")
    parser.add_argument("--a-dir", type=Path, default=ROOT, help="the checkout under test")
    args = parser.parse_args()
    a, b = normalized(run_demo(args.a_dir)), normalized(run_demo(args.base_dir))
    differing = [k for k in sorted(a["answers"]) if a["answers"][k] != b["answers"].get(k)]
    size = sum(len(json.dumps(v)) for v in a["answers"].values())
    print(f"answers compared: {len(a['answers'])} ({size:,} bytes of JSON)")
    print(f"answers differing: {', '.join(differing) or 'none'}")
    print(f"printed output identical: {a['printed'] == b['printed']}")
    print(f"patients identical: {a['patients'] == b['patients']}")
    for line in difflib.unified_diff(b["printed"], a["printed"], "base", "this", lineterm=""):
        print(line)
    same = not differing and a["printed"] == b["printed"] and a["patients"] == b["patients"]
    same = same and set(a["answers"]) == set(b["answers"])
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
