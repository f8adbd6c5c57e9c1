"""No PHI in the operator log (issue 13): `patientgraph demo` as a real process is sent what the
e2e suite sends, and worse (names in GET query strings, in bad input, in unknown paths and in
a break-the-glass reason; lab messages over MLLP), then every line it wrote is searched for
the demo patients' names, SSNs and birth dates."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import httpx

from app.demo.generator import DemoPopulation
from app.domain.patients import SSN_SYSTEM
from tests.e2e.test_demo_command import STOP_TIMEOUT, _read_tokens_file

FULL = """query($id: ID!) { patient(id: $id) { id name { family given } birthDate gender
  identifiers { system value } address { city postalCode } telecom { value }
  observations(first: 100) { nodes { code { text } valueQuantity { value } effective } }
  conditions { nodes { code { text } } } medications { nodes { medication { text } } }
  allergies { nodes { code { text } } } encounters { nodes { id } } } }"""
SEARCH = "query($f: String, $g: String, $b: Date) { patients(family: $f, given: $g, birthDate: $b) { nodes { id name { family } } } }"  # noqa: E501


def phi_of(population: DemoPopulation) -> dict[str, re.Pattern[str]]:
    """Each patient's family name, given names, SSN and birth date (ISO and HL7 forms)."""
    found: dict[str, re.Pattern[str]] = {}
    for person in population.people:
        words = [person.family, *person.given]
        for word in words:
            found[word] = re.compile(rf"\b{re.escape(word)}\b")
        for value in (person.ssn, person.birth_date, person.birth_date.replace("-", "")):
            found[value] = re.compile(re.escape(value))
    return found


def test_the_operator_log_never_holds_a_patients_name_ssn_or_birth_date(
    demo_process: subprocess.Popen[bytes],
    api_port: int,
    tmp_path: Path,
    population: DemoPopulation,
) -> None:
    demo = _read_tokens_file(tmp_path / "tokens.json", demo_process, tmp_path / "stderr.txt")
    tokens = demo["tokens"]
    base = f"http://127.0.0.1:{api_port}"
    statuses: set[int] = set()
    with httpx.Client(base_url=base, timeout=30) as client:

        def post(role: str, query: str, variables: dict[str, object], **headers: str) -> None:
            auth = {"Authorization": f"Bearer {tokens[role]}", **headers}
            answer = client.post(
                "/graphql", json={"query": query, "variables": variables}, headers=auth
            )
            statuses.add(answer.status_code)

        for person in population.people[:6]:
            for role in ("clinician", "billing", "care-coordinator", "admin", "auditor"):
                post(
                    role, SEARCH, {"f": person.family, "g": person.given[0], "b": person.birth_date}
                )
                post(
                    role,
                    "query($i: String) { patients(identifier: $i) { nodes { id } } }",
                    {"i": f"{SSN_SYSTEM}|{person.ssn}"},
                )
            for pid in demo["patients"][:3]:
                post("clinician", FULL, {"id": pid})
                post(
                    "clinician",
                    FULL,
                    {"id": pid},
                    **{"X-Break-The-Glass": f"{person.family} collapsed"},
                )
            # A query string with names (GraphQL over GET), bad input carrying them, and a
            # path that is not a route.
            get = client.get(
                "/graphql",
                params={"query": SEARCH, "variables": json.dumps({"f": person.family})},
                headers={"Authorization": f"Bearer {tokens['clinician']}"},
            )
            statuses.add(get.status_code)
            post("clinician", SEARCH, {"b": f"{person.family}-{person.birth_date}"})
            post("clinician", f'{{ patients(family: "{person.family}") {{ nodes {{ id }} }} }}', {})
            post("clinician", f'{{ patients(family: "{person.family}" {{ nodes }} }}', {})
            statuses.add(client.get(f"/patients/{person.family}/{person.ssn}").status_code)
            statuses.add(
                client.post(
                    "/graphql",
                    content=person.family.encode(),
                    headers={
                        "Authorization": f"Bearer {tokens['clinician']}",
                        "Content-Type": "application/json",
                    },
                ).status_code
            )
        post("patient", "{ me { id name { family } accessLog { nodes { who kinds } } } }", {})
        post("auditor", "{ auditEvents(first: 50) { nodes { id subject patientId } } }", {})
        post(
            "admin",
            "mutation($id: ID!) { purgePatientCache(patientId: $id) { responses } }",
            {"id": demo["patients"][0]},
        )
    assert {200, 400, 404}.issubset(statuses)
    demo_process.send_signal(signal.SIGTERM)
    demo_process.wait(timeout=STOP_TIMEOUT)
    logged = (tmp_path / "stderr.txt").read_text(errors="replace")
    lines = logged.splitlines()
    assert len(lines) > 100  # the access log: one line per request, and more
    assert all(json.loads(line)["request_id"] for line in lines if line.startswith("{"))
    leaks = {value for value, pattern in phi_of(population).items() if pattern.search(logged)}
    assert leaks == set()
