"""The optional care-team rule (issue 4): a clinician bound to its care team sees only patients
whose encounters list its practitioner identifier, through every entry point."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.demo.contacts import practitioner_identifier
from app.demo.generator import DemoPopulation
from tests.conftest import Api, ApiFactory, Signer, Upstream, fhir_source
from tests.integration.test_authorization import forbidden_paths
from tests.integration.test_field_rules import with_policy
from tests.integration.test_sensitive_data import DEFAULT_POLICY

EVERYONE = (
    "{ patients(first: 100) { nodes { id name { family } "
    "encounters(first: 100) { nodes { participants } } } } }"
)
ONE = "query($id: ID!) { patient(id: $id) { id encounters { totalCount } } }"


@pytest.fixture
async def bound_api(
    upstreams: dict[str, Upstream], api_factory: ApiFactory, signer: Signer, tmp_path: Path
) -> AsyncIterator[Api]:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        DEFAULT_POLICY.read_text().replace("care_team_only = false", "care_team_only = true")
    )
    sources = [fhir_source(u) for u in upstreams.values()]
    # No source cache: one test counts the upstream searches a request makes.
    cache = {"source_ttl_seconds": 0}
    async with api_factory(sources, auth=with_policy(signer, policy), cache=cache) as api:
        yield api


async def care_teams(api: Api) -> tuple[dict[str, set[str]], dict[str, str]]:
    """Per clinician name, the patients it met; and each patient's family name (as admin)."""
    body = (await api.query(EVERYONE, role="admin", scope="user/*.rs")).json()
    met: dict[str, set[str]] = {}
    families = {}
    for patient in body["data"]["patients"]["nodes"]:
        families[patient["id"]] = patient["name"]["family"]
        for encounter in patient["encounters"]["nodes"]:
            for name in encounter["participants"]:
                met.setdefault(name, set()).add(patient["id"])
    return met, families


async def test_a_bound_clinician_sees_only_the_patients_it_met(
    bound_api: Api, population: DemoPopulation
) -> None:
    met, families = await care_teams(bound_api)
    name, mine = next((n, ids) for n, ids in sorted(met.items()) if 0 < len(ids) < len(families))
    others = set(families) - mine
    token: dict[str, Any] = {"practitioner": practitioner_identifier(name)}
    listed = (await bound_api.query("{ patients(first: 100) { nodes { id } } }", **token)).json()
    assert {n["id"] for n in listed["data"]["patients"]["nodes"]} == mine
    for patient_id in sorted(mine)[:2]:
        own = (await bound_api.query(ONE, {"id": patient_id}, **token)).json()
        assert own["data"]["patient"]["id"] == patient_id
        assert own["data"]["patient"]["encounters"]["totalCount"] > 0
    other = sorted(others)[0]
    theirs = (await bound_api.query(ONE, {"id": other}, **token)).json()
    assert theirs["data"] == {"patient": None}
    assert forbidden_paths(theirs) == [["patient"]]
    assert families[other] not in str(listed) + str(theirs)


async def test_a_bound_clinician_without_an_identifier_sees_no_patient(
    bound_api: Api, population: DemoPopulation
) -> None:
    _met, families = await care_teams(bound_api)
    some_id = sorted(families)[0]
    listed = (await bound_api.query("{ patients(first: 100) { totalCount } }")).json()
    one = (await bound_api.query(ONE, {"id": some_id})).json()
    stranger = (
        await bound_api.query(
            ONE, {"id": some_id}, practitioner="http://hl7.org/fhir/sid/us-npi|9999999999"
        )
    ).json()
    assert listed["data"]["patients"]["totalCount"] == 0
    for body in (one, stranger):
        assert body["data"] == {"patient": None}
        assert forbidden_paths(body) == [["patient"]]


async def test_the_check_reuses_the_requests_encounter_batch(
    bound_api: Api, upstreams: dict[str, Upstream]
) -> None:
    met, _ = await care_teams(bound_api)
    name, mine = sorted(met.items())[0]
    token: dict[str, Any] = {"practitioner": practitioner_identifier(name)}
    for upstream in upstreams.values():
        upstream.requests.clear()
    body = (await bound_api.query(ONE, {"id": sorted(mine)[0]}, **token)).json()
    assert body["data"]["patient"]["encounters"]["totalCount"] > 0
    for upstream in upstreams.values():
        encounter_searches = [r for r in upstream.requests if "/Encounter" in r]
        assert len(encounter_searches) == 1  # the care-team check and the field share it


async def test_an_unbound_role_is_not_restricted(bound_api: Api) -> None:
    _met, families = await care_teams(bound_api)
    listed = (
        await bound_api.query(
            "{ patients(first: 100) { totalCount } }",
            roles=["clinician", "care-coordinator"],
            practitioner="http://hl7.org/fhir/sid/us-npi|9999999999",
        )
    ).json()
    assert listed["data"]["patients"]["totalCount"] == len(families)
