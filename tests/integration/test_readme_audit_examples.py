"""The README's audit-trail example queries run as written, with the role each names."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from app.demo.generator import DemoPopulation
from tests.conftest import Api
from tests.integration.test_authorization import a_patient_id

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"```graphql\n(.*?)```", re.S)
ROLE = re.compile(r"^\s*# role: (\S+)", re.M)


def audit_examples() -> list[tuple[str, str]]:
    text = README.read_text()
    section = text[text.index("## Audit trail") : text.index("## Development")]
    found = []
    for block in BLOCK.findall(section):
        query = "\n".join(line.strip() for line in block.splitlines())
        role = ROLE.search(query)
        assert role is not None, f"an example without '# role:': {query}"
        found.append((role.group(1), query))
    return found


async def test_the_audit_examples_run(api: Api, population: DemoPopulation) -> None:
    examples = audit_examples()
    assert {role for role, _ in examples} == {"auditor", "patient"}
    pid = await a_patient_id(api, population)
    await api.query("query($id: ID!) { patient(id: $id) { id } }", {"id": pid}, name="Dr. Ada")
    for role, query in examples:
        context: dict[str, Any] = {"patient": pid} if role == "patient" else {}
        body = (await api.query(query, role=role, **context)).json()
        assert "errors" not in body, (query, body)
        nodes = next(iter(body["data"].values()))
        assert "Dr. Ada" in str(nodes), (query, body)
