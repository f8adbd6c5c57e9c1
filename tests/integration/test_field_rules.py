"""Field-level rules (issue 4): denied fields answer null with FORBIDDEN at their path,
addresses are minimum-necessary, and the token's purpose of use selects the roles that apply.
The readable role x field table is FIELD_MATRIX in test_authorization.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.demo.generator import DemoPopulation
from tests.conftest import AUDIENCE, ISSUER, Api, ApiFactory, Signer, Upstream, fhir_source
from tests.integration.test_authorization import a_patient_id, forbidden_paths
from tests.integration.test_sensitive_data import DEFAULT_POLICY

MEDICATION_NOTES = (
    "query($id: ID!) { patient(id: $id) { medications(first: 100) { nodes { id notes } } } }"
)
CONTACT = "query($id: ID!) { patient(id: $id) { id telecom { system value } address { city } } }"


def with_policy(signer: Signer, policy: Path) -> dict[str, Any]:
    return {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks_file": str(signer.jwks_path),
        "policy_file": str(policy),
    }


async def test_a_denied_field_is_null_with_forbidden_at_each_path(
    api: Api, population: DemoPopulation
) -> None:
    patient_id = await a_patient_id(api, population)
    denied = (await api.query(MEDICATION_NOTES, {"id": patient_id}, role="care-coordinator")).json()
    allowed = (await api.query(MEDICATION_NOTES, {"id": patient_id}, role="clinician")).json()
    nodes = denied["data"]["patient"]["medications"]["nodes"]
    assert nodes
    assert all(n["notes"] is None for n in nodes)
    assert all(n["id"] for n in nodes)  # the rest of each record stays
    assert forbidden_paths(denied) == [
        ["patient", "medications", "nodes", i, "notes"] for i in range(len(nodes))
    ]
    assert {e["message"] for e in denied["errors"]} == {"Not allowed to read Medication.notes"}
    assert "errors" not in allowed
    written = [n for n in allowed["data"]["patient"]["medications"]["nodes"] if n["notes"]]
    assert written  # the demo writes notes on some orders: the coordinator saw none of them
    assert not any(note in str(denied) for n in written for note in n["notes"])


async def test_a_policy_can_deny_any_nullable_field(
    upstreams: dict[str, Upstream],
    api_factory: ApiFactory,
    population: DemoPopulation,
    signer: Signer,
    tmp_path: Path,
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        DEFAULT_POLICY.read_text().replace(
            "[roles.clinician]\n", '[roles.clinician]\ndeny_fields = ["Patient.telecom"]\n'
        )
    )
    sources = [fhir_source(u) for u in upstreams.values()]
    async with api_factory(sources, auth=with_policy(signer, policy)) as api:
        patient_id = await a_patient_id(api, population)
        clinician = (await api.query(CONTACT, {"id": patient_id})).json()
        admin = (await api.query(CONTACT, {"id": patient_id}, role="admin")).json()
    assert clinician["data"]["patient"]["telecom"] is None
    assert clinician["data"]["patient"]["address"]  # only the named field is denied
    assert forbidden_paths(clinician) == [["patient", "telecom"]]
    assert admin["data"]["patient"]["telecom"]
    assert "errors" not in admin


async def test_addresses_are_minimum_necessary(api: Api, population: DemoPopulation) -> None:
    person = population.people[0]
    patient_id = await a_patient_id(api, population)
    query = "query($id: ID!) { patient(id: $id) { address { lines city state postalCode text } } }"
    region = (await api.query(query, {"id": patient_id}, role="clinician")).json()
    full = (await api.query(query, {"id": patient_id}, role="care-coordinator")).json()
    (masked,) = region["data"]["patient"]["address"]
    (whole,) = full["data"]["patient"]["address"]
    assert whole["lines"]
    assert whole["postalCode"]
    assert len(whole["postalCode"]) == 5
    assert masked == {
        "lines": [],
        "city": whole["city"],
        "state": whole["state"],
        "postalCode": whole["postalCode"][:3] + "**",
        "text": None,
    }
    assert not any(line in str(region) for line in whole["lines"])
    assert person.family not in str(region)


async def test_a_purpose_of_use_no_role_permits_is_refused(
    api: Api, population: DemoPopulation
) -> None:
    patient_id = await a_patient_id(api, population)
    response = await api.query(
        "query($id: ID!) { patient(id: $id) { id } }",
        {"id": patient_id},
        role="billing",
        purposes=["TREAT"],
    )
    assert response.status_code == 403
    assert response.json() == {
        "errors": [
            {
                "message": "The token's purpose of use is not permitted for its roles",
                "extensions": {"code": "FORBIDDEN"},
            }
        ]
    }


async def test_the_purpose_of_use_selects_the_roles_that_apply(
    api: Api, population: DemoPopulation
) -> None:
    person = population.people[0]
    query = (
        "query($i: String) { patients(identifier: $i) { nodes { identifiers { value } "
        "observations { totalCount } } } }"
    )
    both: dict[str, Any] = {"roles": ["clinician", "billing"]}
    treating = (await api.query(query, {"i": person.ssn}, purposes=["TREAT"], **both)).json()
    paying = (await api.query(query, {"i": person.ssn}, purposes=["HPAYMT"], **both)).json()
    (as_clinician,) = treating["data"]["patients"]["nodes"]
    (as_billing,) = paying["data"]["patients"]["nodes"]
    assert as_clinician["observations"]["totalCount"] > 0
    assert person.ssn not in str(treating)  # the clinician role sees the last four only
    assert as_billing["observations"]["totalCount"] == 0
    assert forbidden_paths(paying) == [["patients", "nodes", 0, "observations"]]
    assert person.ssn in {i["value"] for i in as_billing["identifiers"]}
