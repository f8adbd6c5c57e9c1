"""Deterministic synthetic patients for the demo: two FHIR upstreams that overlap but disagree.

Every person is registered in both upstreams under different local ids and MRNs; the SSN (in the
never-issued 999 area) is the only shared identifier, which is what the identity layer links on.
Clinical facts are drawn once per person and then placed in both upstreams (the same fact twice,
as in real life when a clinic and a hospital both record a visit) or in only one, so an aggregated
view has duplicates to merge and records only one side knows.

Only `random.Random(seed)` drives the choices and all dates hang off a fixed anchor, so the same
seed always yields byte-identical resources (demo screenshots and benchmarks stay comparable).
Names and people are invented from small lists; the codes are real LOINC/SNOMED/RxNorm/CVX codes.
Addresses, phone numbers, e-mail addresses and clinicians' NPIs (`contacts.py`), notes on
some facts and each person's care team (`facts.care_team_fact`) are derived by hashing, not
drawn from the seeded generator.

`catalog.py` holds the vocabularies, code systems, `UPSTREAMS` and `ANCHOR`; `facts.py` draws one
person's clinical facts. This module places the facts in the upstreams, renders them as FHIR
resources with per-upstream ids, adds Patients and lab reports, and assembles the population.
"""

from __future__ import annotations

import copy
import hashlib
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Final

from app.demo.catalog import ANCHOR as ANCHOR
from app.demo.catalog import FAMILY_NAMES, GIVEN_NAMES, PANEL_OF, V2_0074, V2_0203
from app.demo.catalog import RXNORM as RXNORM
from app.demo.catalog import UPSTREAMS as UPSTREAMS
from app.demo.contacts import contact_of
from app.demo.facts import (
    Fact,
    Profile,
    allergy_facts,
    care_team_fact,
    concept,
    condition_facts,
    encounter_facts,
    immunization_facts,
    instant,
    loinc,
    medication_facts,
    new_profile,
    observation_facts,
    procedure_facts,
)

# ANCHOR and UPSTREAMS are part of this module's API; RXNORM is re-exported for tests.
from app.domain.patients import SSN_SYSTEM

MRN_SYSTEMS: Final[Mapping[str, str]] = MappingProxyType(
    {"hospital": "urn:demo:hospital:mrn", "clinic": "urn:demo:clinic:mrn"}
)

Resource = dict[str, Any]


@dataclass(frozen=True)
class DemoPerson:
    key: str
    ssn: str
    family: str
    given: tuple[str, ...]
    birth_date: str
    gender: str
    local_ids: Mapping[str, str] = field(hash=False)  # upstream name -> that upstream's Patient.id


@dataclass(frozen=True)
class DemoPopulation:
    people: tuple[DemoPerson, ...]
    upstreams: Mapping[str, tuple[dict[str, Any], ...]] = field(hash=False)


ID_PREFIX: Final[Mapping[str, str]] = MappingProxyType(
    {
        "Observation": "obs",
        "Condition": "cond",
        "AllergyIntolerance": "alg",
        "MedicationRequest": "mrx",
        "MedicationStatement": "mst",
        "Immunization": "imm",
        "Encounter": "enc",
        "Procedure": "proc",
        "DiagnosticReport": "dr",
        "CareTeam": "ct",
    }
)

# Per person per upstream: inclusive count range, minimum number of facts in both upstreams
COUNTS: Final[Mapping[str, tuple[int, int]]] = MappingProxyType(
    {
        "observations": (6, 15),
        "conditions": (1, 4),
        "allergies": (0, 2),
        "medications": (1, 4),
        "immunizations": (1, 3),
        "encounters": (1, 4),
        "procedures": (0, 2),
    }
)


# --- placing facts in the upstreams ---------------------------------------------------------------


def _split_counts(
    rng: random.Random, lo: int, hi: int, min_shared: int = 0, min_own: int = 0
) -> tuple[int, int, int]:
    """(in both, hospital only, clinic only) so that each upstream holds lo..hi facts."""
    in_hospital, in_clinic = rng.randint(lo, hi), rng.randint(lo, hi)
    most_shared = min(in_hospital, in_clinic) - min_own
    shared = rng.randint(min(min_shared, most_shared), most_shared)
    return shared, in_hospital - shared, in_clinic - shared


def _place(facts: list[Fact], split: tuple[int, int, int]) -> dict[str, list[Fact]]:
    shared, hospital_only, _ = split
    return {
        "hospital": facts[: shared + hospital_only],
        "clinic": facts[:shared] + facts[shared + hospital_only :],
    }


# --- rendering facts into each upstream's resources ----------------------------------------------


class _Ids:
    """Resource ids per upstream: readable counters at the hospital, random hex at the clinic."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._counters: dict[str, int] = {}
        self._seen: set[str] = set()

    def patient(self, upstream: str, number: int) -> str:
        if upstream == "hospital":
            return self._claim(f"h-{number:04d}")
        return self._unique(lambda: f"c{self._rng.getrandbits(44):011x}")

    def resource(self, upstream: str, resource_type: str) -> str:
        if upstream == "hospital":
            n = self._counters[resource_type] = self._counters.get(resource_type, 0) + 1
            return self._claim(f"h-{ID_PREFIX[resource_type]}-{n:05d}")
        return self._unique(lambda: f"{self._rng.getrandbits(64):016x}")

    def derived(self, upstream: str, resource_type: str, key: str) -> str:
        """An id like `resource`'s that draws nothing from the rng: a counter at the hospital,
        hex from a hash of `key` at the clinic (with a non-hex letter, so it never collides
        with a random id)."""
        if upstream == "hospital":
            return self.resource(upstream, resource_type)
        digest = hashlib.sha256(f"{resource_type}|{key}".encode()).hexdigest()
        return self._claim(
            f"{ID_PREFIX[resource_type]}{digest[: 16 - len(ID_PREFIX[resource_type])]}"
        )

    def _unique(self, make: Callable[[], str]) -> str:
        return _unique(make, self._seen)  # ids must stay unique per upstream

    def _claim(self, value: str) -> str:
        self._seen.add(value)
        return value


def _render(fact: Fact, resource_id: str, patient_id: str, lag: timedelta) -> Resource:
    updated = min(fact.when + lag, ANCHOR)
    return {
        "resourceType": fact.resource_type,
        "id": resource_id,
        "meta": {"versionId": "1", "lastUpdated": instant(updated)},
        **copy.deepcopy(dict(fact.body)),  # no shared nested dicts between the two upstreams
        fact.subject_field: {"reference": f"Patient/{patient_id}"},
    }


def _report(
    upstream_obs: list[tuple[Fact, Resource]], patient_id: str, resource_id: str, lag: timedelta
) -> Resource:
    first_fact = upstream_obs[0][0]
    panel = PANEL_OF[first_fact.body["code"]["coding"][0]["code"]]
    flagged = any(o["interpretation"][0]["coding"][0]["code"] != "N" for _, o in upstream_obs)
    body = {
        "status": "final",
        "category": [concept(V2_0074, "LAB", "Laboratory")],
        "code": loinc(panel),
        "effectiveDateTime": first_fact.body["effectiveDateTime"],
        "issued": first_fact.body["issued"],
        "result": [{"reference": f"Observation/{o['id']}"} for _, o in upstream_obs],
        "conclusion": "Abnormal result; see flagged values."
        if flagged
        else "Within normal limits.",
    }
    return _render(Fact("DiagnosticReport", body, first_fact.when), resource_id, patient_id, lag)


def _lab_groups(
    rendered: list[tuple[Fact, Resource]],
) -> dict[tuple[str, datetime], list[tuple[Fact, Resource]]]:
    groups: dict[tuple[str, datetime], list[tuple[Fact, Resource]]] = {}
    for fact, resource in rendered:
        if fact.resource_type != "Observation":
            continue
        code = fact.body["code"]["coding"][0]["code"]
        if code in PANEL_OF:
            groups.setdefault((PANEL_OF[code], fact.when), []).append((fact, resource))
    return groups


def _choose_reports(
    rng: random.Random, groups: Mapping[str, Mapping[tuple[str, datetime], Any]]
) -> dict[str, list[tuple[str, datetime]]]:
    """0-2 reports per upstream; a lab panel both sides hold is sometimes reported by both."""
    hospital, clinic = (sorted(groups[u]) for u in UPSTREAMS)
    common = [key for key in hospital if key in clinic]
    wanted = {u: min(rng.randint(0, 2), len(groups[u])) for u in UPSTREAMS}
    shared = rng.sample(common, rng.randint(0, min(len(common), *wanted.values())))
    chosen: dict[str, list[tuple[str, datetime]]] = {}
    for upstream, keys in zip(UPSTREAMS, (hospital, clinic), strict=True):
        rest = [k for k in keys if k not in shared]
        chosen[upstream] = shared + rng.sample(rest, wanted[upstream] - len(shared))
    return chosen


# --- people ---------------------------------------------------------------------------------------


def _unique(make: Callable[[], str], taken: set[str]) -> str:
    while (value := make()) in taken:
        pass  # collisions are rare, but SSNs and MRNs must identify exactly one person
    taken.add(value)
    return value


def _new_ssn(rng: random.Random, taken: set[str]) -> str:
    """Area 999 is never issued, so these can never be a real person's number."""
    return _unique(lambda: f"999-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}", taken)


def _new_mrn(rng: random.Random, upstream: str, taken: set[str]) -> str:
    if upstream == "hospital":
        return _unique(lambda: f"H{rng.randint(1_000_000, 9_999_999)}", taken)
    return _unique(lambda: f"MSC-{rng.randint(10_000, 99_999)}", taken)


def _patient(person: DemoPerson, upstream: str, mrn: str, updated: datetime) -> Resource:
    contact = contact_of(person)  # the same address and telecom in every upstream
    return {
        "resourceType": "Patient",
        "id": person.local_ids[upstream],
        "meta": {"versionId": "1", "lastUpdated": instant(updated)},
        "identifier": [
            {
                "use": "usual",
                "type": concept(V2_0203, "MR", "Medical record number", "MRN"),
                "system": MRN_SYSTEMS[upstream],
                "value": mrn,
            },
            {
                "use": "official",
                "type": concept(V2_0203, "SS", "Social Security number", "SSN"),
                "system": SSN_SYSTEM,
                "value": person.ssn,
            },
        ],
        "active": True,
        "name": [
            {
                "use": "official",
                "family": person.family,
                "given": list(person.given),
                "text": " ".join((*person.given, person.family)),
            }
        ],
        "telecom": contact.fhir_telecom(),
        "gender": person.gender,
        "birthDate": person.birth_date,
        "address": [contact.fhir_address()],
    }


def _facts_by_upstream(p: Profile) -> dict[str, list[Fact]]:
    """Draw each kind's facts once, then place them in both upstreams or only one."""
    rng = p.rng
    placed: dict[str, list[Fact]] = {u: [] for u in UPSTREAMS}
    allergies: list[Fact] = []
    makers: dict[str, Callable[[int], list[Fact]]] = {
        "observations": lambda n: observation_facts(p, n),
        "conditions": lambda n: condition_facts(p, n),
        "allergies": lambda n: allergy_facts(p, n),
        "medications": lambda n: medication_facts(p, n, allergies),
        "immunizations": lambda n: immunization_facts(p, n),
        "encounters": lambda n: encounter_facts(p, n),
        "procedures": lambda n: procedure_facts(p, n),
    }
    for kind, make in makers.items():
        lo, hi = COUNTS[kind]
        # Observations always overlap and always differ a little, so every person shows both.
        split = _split_counts(rng, lo, hi, *((2, 1) if kind == "observations" else (0, 0)))
        facts = make(sum(split))
        if kind == "allergies":
            allergies = facts
        for upstream, chosen in _place(facts, split).items():
            placed[upstream].extend(chosen)
    return placed


def _person_resources(p: Profile, person: DemoPerson, ids: _Ids) -> dict[str, list[Resource]]:
    # Recorded after the lab is issued (up to 30 h after the draw); the clinic syncs days later.
    lags = {"hospital": timedelta(hours=32), "clinic": timedelta(days=p.rng.randint(2, 4))}
    rendered: dict[str, list[tuple[Fact, Resource]]] = {u: [] for u in UPSTREAMS}
    for upstream, facts in _facts_by_upstream(p).items():
        local = person.local_ids[upstream]
        for fact in facts:
            resource_id = ids.resource(upstream, fact.resource_type)
            rendered[upstream].append((fact, _render(fact, resource_id, local, lags[upstream])))
    groups = {u: _lab_groups(rendered[u]) for u in UPSTREAMS}
    out: dict[str, list[Resource]] = {u: [r for _, r in rendered[u]] for u in UPSTREAMS}
    for upstream, keys in _choose_reports(p.rng, groups).items():
        for key in keys:
            rid = ids.resource(upstream, "DiagnosticReport")
            out[upstream].append(
                _report(groups[upstream][key], person.local_ids[upstream], rid, lags[upstream])
            )
    # The care team is derived by hashing, not drawn: adding it left every other value as it was.
    upstream, team = care_team_fact(person.key)
    rid = ids.derived(upstream, team.resource_type, person.key)
    out[upstream].append(_render(team, rid, person.local_ids[upstream], lags[upstream]))
    return out


def _iter_people(rng: random.Random, count: int, ids: _Ids) -> Iterator[tuple[DemoPerson, Profile]]:
    ssns: set[str] = set()
    for number in range(1, count + 1):
        gender = rng.choice(("female", "male"))
        birth = (ANCHOR - timedelta(days=rng.randint(19 * 365, 88 * 365))).date()
        given = tuple(rng.sample(GIVEN_NAMES[gender], rng.choice((1, 1, 2))))
        person = DemoPerson(
            key=f"demo-{number:03d}",
            ssn=_new_ssn(rng, ssns),
            family=rng.choice(FAMILY_NAMES),
            given=given,
            birth_date=birth.isoformat(),
            gender=gender,
            local_ids=MappingProxyType({u: ids.patient(u, number) for u in UPSTREAMS}),
        )
        yield person, new_profile(rng, gender, birth)


def generate_population(seed: int = 2026, patients: int = 24) -> DemoPopulation:
    """`patients` synthetic people, each registered in every upstream, with their records."""
    if patients < 1:
        raise ValueError("patients must be at least 1")
    rng = random.Random(seed)
    ids = _Ids(rng)
    people: list[DemoPerson] = []
    upstreams: dict[str, list[Resource]] = {u: [] for u in UPSTREAMS}
    mrns: set[str] = set()
    for person, profile in _iter_people(rng, patients, ids):
        people.append(person)
        for upstream in UPSTREAMS:
            updated = ANCHOR - timedelta(days=rng.randint(1, 60), minutes=rng.randint(0, 600))
            mrn = _new_mrn(rng, upstream, mrns)
            upstreams[upstream].append(_patient(person, upstream, mrn, updated))
        for upstream, resources in _person_resources(profile, person, ids).items():
            upstreams[upstream].extend(resources)
    return DemoPopulation(
        people=tuple(people),
        upstreams=MappingProxyType({u: tuple(rs) for u, rs in upstreams.items()}),
    )
