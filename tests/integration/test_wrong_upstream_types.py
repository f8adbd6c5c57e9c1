"""A value of the wrong JSON type or format from one FHIR source is read as absent and
counted, so the other source's valid value shows: two real loopback FHIR servers."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from app.demo.generator import DemoPopulation
from app.domain.patients import SSN_SYSTEM
from tests.conftest import ApiFactory, fhir_source, running_upstream


def corrupted(resources: Sequence[dict[str, Any]], local_id: str) -> list[dict[str, Any]]:
    changed = copy.deepcopy(list(resources))
    for resource in changed:
        if resource["resourceType"] == "Patient" and resource["id"] == local_id:
            resource["birthDate"], resource["gender"] = 12, 5
    return changed


async def test_a_wrongly_typed_value_never_outranks_a_valid_one(
    population: DemoPopulation, api_factory: ApiFactory
) -> None:
    person = population.people[0]
    hospital = corrupted(population.upstreams["hospital"], person.local_ids["hospital"])
    async with (
        running_upstream("hospital", hospital, max_count=1000) as first,  # the priority source
        running_upstream("clinic", population.upstreams["clinic"], max_count=1000) as second,
        api_factory([fhir_source(first), fhir_source(second)]) as api,
    ):
        body = (
            await api.query(
                "query($i: String) { patients(identifier: $i) { nodes { birthDate gender"
                " sources { sourceId } } } }",
                {"i": f"{SSN_SYSTEM}|{person.ssn}"},
            )
        ).json()
        ready = (await api.client.get(f"{api.url}/readyz")).json()
    assert "errors" not in body
    (patient,) = body["data"]["patients"]["nodes"]
    assert {s["sourceId"] for s in patient["sources"]} == {"hospital", "clinic"}
    assert patient["birthDate"] == person.birth_date  # not "12"
    assert patient["gender"] == person.gender  # not "5"
    unmapped = {s["id"]: s["unmapped"] for s in ready["sources"]}
    assert unmapped["hospital"] >= 2  # birthDate and gender, perhaps read more than once
    assert unmapped["clinic"] == 0
