"""Property: whoever calls and whatever they ask, no response carries data of a patient outside
the caller's grant (ids, SSNs, source record ids). Random principals x random queries over the
demo data, with hypothesis."""

from __future__ import annotations

import re
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.demo.generator import DemoPopulation
from tests.conftest import Api

ROLES = ["patient", "clinician", "care-coordinator", "billing", "auditor", "admin", "intern"]
SCOPES = [
    "patient/*.rs",
    "user/*.rs",
    "user/Patient.rs user/Observation.rs",
    "patient/Patient.read patient/Observation.read",
    "openid fhirUser",
    "user/*.read",
]
FIELDS = (
    "id identifiers { value } name { family } sources { localId } "
    "observations(first: 100) { nodes { sources { localId } } } "
    "medications(first: 100) { nodes { sources { localId } } } "
    "conditions(first: 100) { nodes { sources { localId } } }"
)


@dataclass(frozen=True)
class World:
    ids: list[str]  # PatientGraph id of each demo person, in population order
    owner: dict[str, int]  # source local id (patient or record) -> person index
    ssns: list[str]


async def build_world(api: Api, population: DemoPopulation) -> World:
    body = (
        await api.query(
            "{ patients(first: 100) { nodes { id identifiers { value } } } }", role="admin"
        )
    ).json()
    by_ssn = {
        v["value"]: n["id"] for n in body["data"]["patients"]["nodes"] for v in n["identifiers"]
    }
    owner: dict[str, int] = {}
    for index, person in enumerate(population.people):
        for name, local in person.local_ids.items():
            owner[local] = index
            for resource in population.upstreams[name]:
                ref = (resource.get("subject") or resource.get("patient") or {}).get("reference")
                if ref == f"Patient/{local}":
                    owner[resource["id"]] = index
    return World(
        [by_ssn[p.ssn] for p in population.people], owner, [p.ssn for p in population.people]
    )


principals = st.fixed_dictionaries(
    {
        "role": st.sampled_from(ROLES),
        "scope": st.sampled_from(SCOPES),
        "patient": st.one_of(st.none(), st.integers(0, 23), st.just("pg-000000000000000000000000")),
    }
)
queries = st.one_of(
    st.just(("me", None)),
    st.tuples(st.just("patient"), st.integers(0, 23)),
    st.tuples(
        st.just("patients"), st.sampled_from(["", "(first: 5)", '(family: "a")', '(given: "e")'])
    ),
)


def text_of(kind: str, arg: object, world: World) -> str:
    if kind == "me":
        return f"{{ me {{ {FIELDS} }} }}"
    if kind == "patient":
        return f'{{ patient(id: "{world.ids[int(arg)]}") {{ {FIELDS} }} }}'  # type: ignore[call-overload]
    return f"{{ patients{arg} {{ nodes {{ {FIELDS} }} }} }}"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(principal=principals, query=queries)
async def test_no_response_leaks_another_patients_data(
    api: Api, population: DemoPopulation, principal: dict[str, object], query: tuple[str, object]
) -> None:
    world = await build_world(api, population)
    claim = principal["patient"]
    patient = world.ids[claim] if isinstance(claim, int) else claim
    token = {"role": principal["role"], "scope": principal["scope"], "patient": patient}
    response = await api.query(text_of(*query, world), **token)  # type: ignore[arg-type]
    assert response.status_code == 200
    text = response.text
    confined = principal["role"] == "patient" or str(principal["scope"]).startswith("patient/")
    allowed = (
        {i for i, pid in enumerate(world.ids) if pid == patient}
        if confined
        else set(range(len(world.ids)))
    )
    for index, pid in enumerate(world.ids):
        if index not in allowed:
            assert pid not in text
            assert world.ssns[index] not in text
    local_ids = re.findall(r'"localId":"([^"]+)"', text)
    assert {world.owner[lid] for lid in local_ids if lid in world.owner} <= allowed
