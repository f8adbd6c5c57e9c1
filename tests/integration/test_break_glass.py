"""Break-the-glass: an emergency assertion with a reason lifts the sensitivity rules, for roles
the policy names, on a recent sign-in, and is always recorded."""

from __future__ import annotations

import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from jose import jwt

from app.demo.generator import DemoPopulation
from tests.conftest import AUDIENCE, ISSUER, Api, ApiFactory, Signer, running_upstream
from tests.integration.test_sensitive_data import QUERY, labelled

REASON = "Unconscious patient in the emergency department"


async def post(api: Api, ssn: str, headers: dict[str, str]) -> Any:
    return await api.client.post(
        f"{api.url}/graphql", json={"query": QUERY, "variables": {"i": ssn}}, headers=headers
    )


def old_token(signer: Signer, minutes_ago: int, role: str = "clinician") -> str:
    now = int(time.time())
    pem = signer.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "dr-late",
        "roles": [role],
        "scope": "user/*.rs",
        "iat": now - minutes_ago * 60,
        "exp": now + 3600,
    }
    return str(jwt.encode(claims, pem, algorithm="RS256", headers={"kid": signer.kid}))


@pytest.fixture
def world(population: DemoPopulation) -> tuple[list[dict[str, Any]], str]:
    return labelled(population)


async def test_break_the_glass_shows_withheld_records_and_is_recorded(
    api_factory: ApiFactory, world: tuple[list[dict[str, Any]], str], signer: Signer
) -> None:
    resources, ssn = world
    async with running_upstream("hospital", resources) as hospital:
        source = {"id": "hospital", "kind": "fhir", "base_url": hospital.base_url}
        async with api_factory([source]) as api:
            normal = (await post(api, ssn, signer.headers())).json()
            emergency = await post(api, ssn, {**signer.headers(), "X-Break-The-Glass": REASON})
            log = api.runtime.break_glass_log.entries
    before = normal["data"]["patients"]["nodes"][0]
    after = emergency.json()["data"]["patients"]["nodes"][0]
    assert before["conditions"]["withheld"] == 2
    assert after["conditions"]["withheld"] == 0
    assert after["conditions"]["totalCount"] == before["conditions"]["totalCount"] + 2
    assert after["observations"]["withheld"] == 0
    assert emergency.headers["cache-control"] == "no-store"
    assert [(e.subject, e.reason) for e in log] == [("test-clinician", REASON)]
    assert log[0].token_id


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"X-Break-The-Glass": ""}, 400, "BAD_USER_INPUT"),
        ({"X-Break-The-Glass": "no"}, 400, "BAD_USER_INPUT"),
        ({"X-Break-The-Glass": "x" * 501}, 400, "BAD_USER_INPUT"),
        ({"X-Break-The-Glass": "tab\there is a control"}, 400, "BAD_USER_INPUT"),
    ],
)
async def test_a_reason_is_mandatory(
    api: Api,
    population: DemoPopulation,
    signer: Signer,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    response = await post(api, population.people[0].ssn, {**signer.headers(), **headers})
    assert response.status_code == status
    assert response.json()["errors"][0]["extensions"]["code"] == code
    assert api.runtime.break_glass_log.entries == []


@pytest.mark.parametrize("role", ["care-coordinator", "billing", "patient", "auditor"])
async def test_only_roles_the_policy_names(
    api: Api, population: DemoPopulation, signer: Signer, role: str
) -> None:
    response = await post(
        api, population.people[0].ssn, {**signer.headers(role), "X-Break-The-Glass": REASON}
    )
    assert response.status_code == 403
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert api.runtime.break_glass_log.entries == []


async def test_it_expires_with_the_sign_in(
    api: Api, population: DemoPopulation, signer: Signer
) -> None:
    fresh = old_token(signer, minutes_ago=5)
    stale = old_token(signer, minutes_ago=61)
    ok = await post(
        api,
        population.people[0].ssn,
        {"Authorization": f"Bearer {fresh}", "X-Break-The-Glass": REASON},
    )
    late = await post(
        api,
        population.people[0].ssn,
        {"Authorization": f"Bearer {stale}", "X-Break-The-Glass": REASON},
    )
    assert ok.status_code == 200
    assert late.status_code == 403
    assert "60 minutes" in late.json()["errors"][0]["message"]
    assert len(api.runtime.break_glass_log.entries) == 1


async def test_it_never_lifts_patient_confinement(
    api: Api, population: DemoPopulation, signer: Signer
) -> None:
    ids = (await api.query("{ patients(first: 2) { nodes { id } } }", role="admin")).json()
    mine, other = (n["id"] for n in ids["data"]["patients"]["nodes"])
    headers = {
        **signer.headers("clinician", scope="patient/*.rs", patient=mine),
        "X-Break-The-Glass": REASON,
    }
    response = await api.client.post(
        f"{api.url}/graphql",
        headers=headers,
        json={"query": "query($id: ID!) { patient(id: $id) { id } }", "variables": {"id": other}},
    )
    body = response.json()
    assert body["data"] == {"patient": None}
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
