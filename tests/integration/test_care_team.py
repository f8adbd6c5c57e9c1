"""The optional care-team rule (issue 4): a clinician bound to its care team sees only patients
whose encounters or care teams (FHIR CareTeam) list its practitioner identifier, through every
entry point."""

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
    "encounters(first: 100) { nodes { participants } } "
    "careTeams(first: 100) { nodes { participants } } } } }"
)
ONE = "query($id: ID!) { patient(id: $id) { id encounters { totalCount } } }"
MEMBERSHIP = ("/Encounter", "/CareTeam")


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


async def memberships(
    api: Api,
) -> tuple[dict[str, set[str]], dict[str, set[str]], dict[str, str]]:
    """Per clinician name, the patients it met (encounters) and the patients whose care teams
    it is on; and each patient's family name (as admin)."""
    body = (await api.query(EVERYONE, role="admin", scope="user/*.rs")).json()
    met: dict[str, set[str]] = {}
    teams: dict[str, set[str]] = {}
    families = {}
    for patient in body["data"]["patients"]["nodes"]:
        families[patient["id"]] = patient["name"]["family"]
        for found, collection in ((met, "encounters"), (teams, "careTeams")):
            for record in patient[collection]["nodes"]:
                for name in record["participants"]:
                    found.setdefault(name, set()).add(patient["id"])
    return met, teams, families


async def care_teams(api: Api) -> tuple[dict[str, set[str]], dict[str, str]]:
    """Per clinician name, the patients on its care team: met, or on the patient's CareTeam."""
    met, teams, families = await memberships(api)
    return {n: met.get(n, set()) | teams.get(n, set()) for n in met.keys() | teams}, families


async def test_a_bound_clinician_sees_only_its_care_teams_patients(
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


async def test_a_care_team_member_who_never_met_the_patient_is_admitted(
    bound_api: Api, population: DemoPopulation
) -> None:
    met, teams, families = await memberships(bound_api)
    name, patient_id = next(
        (n, p) for n, ids in sorted(teams.items()) for p in sorted(ids - met.get(n, set()))
    )
    token: dict[str, Any] = {"practitioner": practitioner_identifier(name)}
    own = (await bound_api.query(ONE, {"id": patient_id}, **token)).json()
    assert own["data"]["patient"]["id"] == patient_id
    assert "errors" not in own
    listed = (await bound_api.query("{ patients(first: 100) { nodes { id } } }", **token)).json()
    seen = {n["id"] for n in listed["data"]["patients"]["nodes"]}
    assert seen == met.get(name, set()) | teams[name]
    assert patient_id in seen
    assert len(seen) < len(families)


async def test_the_check_reuses_the_requests_batches(
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
        for kind in MEMBERSHIP:
            # Encounters: the care-team check and the field share the search; care teams: the
            # check's own, one per source.
            assert len([r for r in upstream.requests if kind in r]) == 1, (upstream.name, kind)
    # A whole page of patients is checked in one search per source and kind.
    for upstream in upstreams.values():
        upstream.requests.clear()
    listed = (await bound_api.query("{ patients(first: 100) { nodes { id } } }", **token)).json()
    assert len(listed["data"]["patients"]["nodes"]) > 1
    for upstream in upstreams.values():
        for kind in MEMBERSHIP:
            assert len([r for r in upstream.requests if kind in r]) == 1, (upstream.name, kind)


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
