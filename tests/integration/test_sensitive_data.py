"""Sensitive records (restricted labels, sensitive codes) are held back unless the caller's role
may see them; the client learns how many were withheld, never which."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from app.demo.generator import DemoPopulation
from tests.conftest import AUDIENCE, ISSUER, ApiFactory, Signer, running_upstream

RESTRICTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
HIV = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HIV"}
DEPRESSION = {
    "system": "http://snomed.info/sct",
    "code": "35489007",
    "display": "Depressive disorder",
}
DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "app/auth/default_policy.toml"
QUERY = """query($i: String) { patients(identifier: $i) { nodes {
  conditions(first: 100) { totalCount withheld nodes { code { text coding { code } } } }
  observations(first: 100) { totalCount withheld } } } }"""


def labelled(population: DemoPopulation) -> tuple[list[dict[str, Any]], str]:
    """The hospital's resources, with some of the first person's records made sensitive."""
    person = population.people[0]
    resources = copy.deepcopy(list(population.upstreams["hospital"]))
    mine = f"Patient/{person.local_ids['hospital']}"
    conditions = [
        r
        for r in resources
        if r["resourceType"] == "Condition" and r["subject"]["reference"] == mine
    ]
    observations = [
        r
        for r in resources
        if r["resourceType"] == "Observation" and r["subject"]["reference"] == mine
    ]
    conditions[0].setdefault("meta", {})["security"] = [RESTRICTED]
    observations[0].setdefault("meta", {})["security"] = [HIV]
    resources.append(
        {
            "resourceType": "Condition",
            "id": "h-sensitive-1",
            "subject": {"reference": mine},
            "code": {"coding": [DEPRESSION], "text": "Depressive disorder"},
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "onsetDateTime": "2024-01-01",
        }
    )
    return resources, person.ssn


async def ask(
    api_factory: ApiFactory, resources: list[dict[str, Any]], ssn: str, **sections: Any
) -> dict[str, Any]:
    async with running_upstream("hospital", resources) as hospital:
        source = {"id": "hospital", "kind": "fhir", "base_url": hospital.base_url}
        async with api_factory([source], **sections) as api:
            body: dict[str, Any] = (await api.query(QUERY, {"i": ssn})).json()
    return body


async def test_sensitive_records_are_withheld_and_counted(
    api_factory: ApiFactory, population: DemoPopulation
) -> None:
    resources, ssn = labelled(population)
    plain = copy.deepcopy(list(population.upstreams["hospital"]))
    baseline = (await ask(api_factory, plain, ssn))["data"]["patients"]["nodes"][0]
    body = await ask(api_factory, resources, ssn)
    (patient,) = body["data"]["patients"]["nodes"]
    conditions, observations = patient["conditions"], patient["observations"]
    # Two of the conditions (one labelled R, one with a sensitive code) and one observation
    # (labelled HIV) are held back; the rest is all there.
    assert conditions["withheld"] == 2
    assert conditions["totalCount"] == baseline["conditions"]["totalCount"] - 1  # +1 added, -2
    assert observations["withheld"] == 1
    assert observations["totalCount"] == baseline["observations"]["totalCount"] - 1
    assert "Depressive" not in str(body)
    assert baseline["conditions"]["withheld"] == 0
    assert "errors" not in body


async def test_a_role_the_policy_allows_sees_them(
    api_factory: ApiFactory, population: DemoPopulation, signer: Signer, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    default = DEFAULT_POLICY.read_text()
    policy.write_text(
        default.replace("[roles.clinician]\n", "[roles.clinician]\nsensitive = true\n")
    )
    resources, ssn = labelled(population)
    auth = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks_file": str(signer.jwks_path),
        "policy_file": str(policy),
    }
    body = await ask(api_factory, resources, ssn, auth=auth)
    (patient,) = body["data"]["patients"]["nodes"]
    assert patient["conditions"]["withheld"] == 0
    assert patient["observations"]["withheld"] == 0
    assert "Depressive disorder" in {n["code"]["text"] for n in patient["conditions"]["nodes"]}
