"""One demo person's clinical facts: a profile of traits and the observations, conditions,
allergies, medications, immunizations, encounters and procedures drawn for it, and their care
team.

A fact is a FHIR resource body without id, meta or patient reference, so the same fact can be
rendered into either upstream (`generator.py` decides where). All randomness comes from the
profile's `random.Random` and all times from `ANCHOR`, in a fixed order: changing the order of
draws here changes the whole population. Notes on some facts and the care team are the
exceptions: derived by hashing (`_note`, `care_team_fact`), they never draw from the rng, so
they changed nothing else.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from app.demo.catalog import (
    ACT_CODE,
    ALLERGIES,
    ALLERGY_CLINICAL,
    ALLERGY_VERIFICATION,
    ANCHOR,
    CARE_TEAM_CATEGORY,
    CARE_TEAM_ROLES,
    CLINICIANS,
    CONDITION_CATEGORY,
    CONDITION_CLINICAL,
    CONDITION_NOTES,
    CONDITION_VERIFICATION,
    CONDITIONS,
    CVX,
    ENCOUNTER_TYPES,
    INTERPRETATION,
    LABS,
    LOINC,
    LOINC_DISPLAY,
    MEDICATION_NOTES,
    MEDICATIONS,
    OBS_CATEGORY,
    OBSERVATION_NOTES,
    PARTICIPATION,
    PENICILLINS,
    PROCEDURES,
    PROVIDERS,
    RXNORM,
    SNOMED,
    TREATS,
    UCUM,
    UPSTREAMS,
    VACCINES,
    VITALS,
)
from app.demo.contacts import practitioner_reference

# --- small FHIR builders -------------------------------------------------------------------------


def _coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def concept(system: str, code: str, display: str, text: str | None = None) -> dict[str, Any]:
    return {"coding": [_coding(system, code, display)], "text": text or display}


def _quantity(value: float, unit: str, code: str | None = None) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": code or unit}


def instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def loinc(code: str) -> dict[str, Any]:
    return concept(LOINC, code, LOINC_DISPLAY[code])


def _note(options: Sequence[str], *identity: str, one_in: int = 3) -> list[dict[str, str]]:
    """`note` for about one fact in `one_in`: chosen by hashing the fact's identity, so adding
    notes drew nothing from the profile's rng. An empty list means no note."""
    digest = int.from_bytes(hashlib.sha256("|".join(identity).encode()).digest()[:8], "big")
    if digest % one_in:
        return []
    return [{"text": options[digest // one_in % len(options)]}]


# --- the person and the facts about them ---------------------------------------------------------


@dataclass(frozen=True)
class Fact:
    """One clinical statement, independent of which upstream records it."""

    resource_type: str
    body: Mapping[str, Any]  # content without id/meta/patient reference (identical on both sides)
    when: datetime  # drives meta.lastUpdated
    subject_field: str = "subject"


@dataclass
class Profile:
    """Per-person traits that keep the facts mutually plausible (a diabetic's HbA1c is high)."""

    rng: random.Random
    gender: str
    birth: date
    chronic: tuple[str, ...]
    weight_kg: float
    height_cm: float

    def has(self, condition_code: str) -> bool:
        return condition_code in self.chronic

    def moment(self, max_days_ago: int, min_days_ago: int = 1) -> datetime:
        """A weekday-ish office-hours time between the bounds, before the anchor."""
        days = self.rng.randint(min_days_ago, max_days_ago)
        minutes = self.rng.randrange(8 * 60, 17 * 60, 5)
        day = (ANCHOR - timedelta(days=days)).replace(hour=0, minute=0, second=0)
        return day + timedelta(minutes=minutes)


def new_profile(rng: random.Random, gender: str, birth: date) -> Profile:
    chronic_pool = [code for code, _, chronic in CONDITIONS if chronic]
    chronic = tuple(rng.sample(chronic_pool, rng.choice((0, 1, 1, 2))))
    height = rng.uniform(158, 176) if gender == "female" else rng.uniform(168, 190)
    weight = rng.uniform(55, 95) + (12 if "44054006" in chronic else 0)
    return Profile(rng, gender, birth, chronic, round(weight, 1), round(height, 1))


# --- observations ---------------------------------------------------------------------------------


def _interpretation(value: float, low: float | None, high: float | None) -> dict[str, Any]:
    if high is not None and value > high:
        return concept(INTERPRETATION, "H", "High")
    if low is not None and value < low:
        return concept(INTERPRETATION, "L", "Low")
    return concept(INTERPRETATION, "N", "Normal")


def _category(code: str, display: str) -> list[dict[str, Any]]:
    return [concept(OBS_CATEGORY, code, display)]


def _vital_body(p: Profile, code: str) -> dict[str, Any]:
    rng = p.rng
    if code == "85354-6":
        high_bp = 20 if p.has("38341003") else 0
        systolic, diastolic = rng.randint(105, 135) + high_bp, rng.randint(65, 85) + high_bp // 2
        return {
            "component": [
                {"code": loinc("8480-6"), "valueQuantity": _quantity(systolic, "mm[Hg]")},
                {"code": loinc("8462-4"), "valueQuantity": _quantity(diastolic, "mm[Hg]")},
            ]
        }
    if code == "8867-4":
        return {"valueQuantity": _quantity(rng.randint(56, 98), "/min")}
    if code == "29463-7":
        return {"valueQuantity": _quantity(round(p.weight_kg + rng.uniform(-2.5, 2.5), 1), "kg")}
    return {"valueQuantity": _quantity(p.height_cm, "cm")}


def _lab_value(p: Profile, code: str) -> tuple[float, str, float | None, float | None]:
    """(value, UCUM unit, reference low, reference high)."""
    rng, diabetic, lipids_high = p.rng, p.has("44054006"), p.has("55822004")
    if code == "2339-0":
        glucose = rng.randint(120, 210) if diabetic else rng.randint(72, 108)
        return glucose, "mg/dL", 70, 99
    if code == "4548-4":
        a1c = rng.uniform(6.6, 9.2) if diabetic else rng.uniform(4.6, 5.9)
        return round(a1c, 1), "%", 4.0, 5.6
    if code == "2093-3":
        cholesterol = rng.randint(215, 280) if lipids_high else rng.randint(150, 215)
        return cholesterol, "mg/dL", None, 200
    low, high = (12.0, 15.5) if p.gender == "female" else (13.5, 17.5)
    return round(rng.uniform(low - 1.0, high), 1), "g/dL", low, high


def _lab_body(p: Profile, code: str) -> dict[str, Any]:
    value, unit, low, high = _lab_value(p, code)
    ref: dict[str, Any] = {}
    if low is not None:
        ref["low"] = _quantity(low, unit)
    if high is not None:
        ref["high"] = _quantity(high, unit)
    return {
        "valueQuantity": _quantity(value, unit),
        "interpretation": [_interpretation(value, low, high)],
        "referenceRange": [ref],
    }


def observation_facts(p: Profile, count: int) -> list[Fact]:
    """`count` distinct (code, time) observations spread over vital-sign visits and lab draws."""
    rng = p.rng
    visits = sorted({p.moment(3 * 365) for _ in range(rng.randint(5, 8))})
    draws = sorted({p.moment(3 * 365) for _ in range(rng.randint(3, 5))})
    slots = [(c, t, True) for t in visits for c in VITALS] + [
        (c, t, False) for t in draws for c in LABS
    ]
    rng.shuffle(slots)
    facts = []
    for code, when, vital in slots[:count]:
        category = (
            _category("vital-signs", "Vital Signs")
            if vital
            else _category("laboratory", "Laboratory")
        )
        detail = _vital_body(p, code) if vital else _lab_body(p, code)
        body: dict[str, Any] = {
            "status": "final",
            "category": category,
            "code": loinc(code),
            "effectiveDateTime": instant(when),
            **detail,
        }
        if not vital:
            body["issued"] = instant(when + timedelta(hours=rng.randint(2, 30)))
        kind = "vital-signs" if vital else "laboratory"
        if note := _note(OBSERVATION_NOTES[kind], "Observation", code, instant(when)):
            body["note"] = note
        facts.append(Fact("Observation", body, when))
    return facts


# --- other clinical facts -------------------------------------------------------------------------


def _ordered_pool(rng: random.Random, codes: list[str], first: tuple[str, ...]) -> list[str]:
    """`first` (the ones the profile implies) then the rest shuffled."""
    rest = [c for c in codes if c not in first]
    rng.shuffle(rest)
    return [c for c in first if c in codes] + rest


def condition_facts(p: Profile, count: int) -> list[Fact]:
    known = {code: (display, chronic) for code, display, chronic in CONDITIONS}
    facts = []
    for code in _ordered_pool(p.rng, list(known), p.chronic)[:count]:
        display, chronic = known[code]
        onset = p.moment(8 * 365 if chronic else 3 * 365, 30)
        body: dict[str, Any] = {
            "clinicalStatus": concept(
                CONDITION_CLINICAL, *(("active", "Active") if chronic else ("resolved", "Resolved"))
            ),
            "verificationStatus": concept(CONDITION_VERIFICATION, "confirmed", "Confirmed"),
            "category": [
                concept(
                    CONDITION_CATEGORY,
                    *(
                        ("problem-list-item", "Problem List Item")
                        if chronic
                        else ("encounter-diagnosis", "Encounter Diagnosis")
                    ),
                )
            ],
            "code": concept(SNOMED, code, display),
            "onsetDateTime": instant(onset),
            "recordedDate": instant(onset + timedelta(hours=2)),
        }
        if not chronic:
            body["abatementDateTime"] = instant(onset + timedelta(days=p.rng.randint(7, 21)))
        if note := _note(CONDITION_NOTES, "Condition", code, instant(onset)):
            body["note"] = note
        facts.append(Fact("Condition", body, onset))
    return facts


def allergy_facts(p: Profile, count: int) -> list[Fact]:
    facts = []
    for code, display, category, criticality, sign, sign_display in p.rng.sample(ALLERGIES, count):
        recorded = p.moment(10 * 365, 30)
        body = {
            "clinicalStatus": concept(ALLERGY_CLINICAL, "active", "Active"),
            "verificationStatus": concept(ALLERGY_VERIFICATION, "confirmed", "Confirmed"),
            "type": "allergy",
            "category": [category],
            "criticality": criticality,
            "code": concept(SNOMED, code, display),
            "recordedDate": instant(recorded),
            "reaction": [
                {
                    "manifestation": [concept(SNOMED, sign, sign_display)],
                    "severity": "severe" if criticality == "high" else "mild",
                }
            ],
        }
        facts.append(Fact("AllergyIntolerance", body, recorded, "patient"))
    return facts


def _medication_body(
    p: Profile, code: str, display: str, dosage: str, when: datetime
) -> tuple[str, dict[str, Any]]:
    """Mostly MedicationRequest with an RxNorm concept; some statements, some contained refs."""
    drug = concept(RXNORM, code, display)
    chronic = code not in PENICILLINS | {"313782"}
    status = "active" if chronic else "completed"
    style = p.rng.choices(("concept", "contained", "statement"), weights=(6, 2, 2))[0]
    if style == "statement":
        return "MedicationStatement", {
            "status": status,
            "medicationCodeableConcept": drug,
            "effectivePeriod": {"start": instant(when)},
            "dateAsserted": instant(when),
            "dosage": [{"text": dosage}],
        }
    body: dict[str, Any] = {"status": status, "intent": "order"}
    if style == "contained":
        body["contained"] = [{"resourceType": "Medication", "id": "med1", "code": drug}]
        body["medicationReference"] = {"reference": "#med1", "display": display}
    else:
        body["medicationCodeableConcept"] = drug
    body |= {
        "authoredOn": instant(when),
        "requester": {"display": p.rng.choice(CLINICIANS)},
        "dosageInstruction": [{"sequence": 1, "text": dosage}],
    }
    if note := _note(MEDICATION_NOTES, "MedicationRequest", code, instant(when)):
        body["note"] = note
    return "MedicationRequest", body


def medication_facts(p: Profile, count: int, allergies: list[Fact]) -> list[Fact]:
    allergic_to_penicillin = any(
        f.body["code"]["coding"][0]["code"] == "764146007" for f in allergies
    )
    known = {
        code: (display, dosage)
        for code, display, dosage in MEDICATIONS
        if not (allergic_to_penicillin and code in PENICILLINS)
    }
    indicated = tuple(m for c in p.chronic for m in TREATS.get(c, ()))
    facts = []
    for code in _ordered_pool(p.rng, list(known), indicated)[:count]:
        when = p.moment(3 * 365, 7)
        resource_type, body = _medication_body(p, code, *known[code], when)
        facts.append(Fact(resource_type, body, when))
    return facts


def immunization_facts(p: Profile, count: int) -> list[Fact]:
    seen: set[tuple[str, datetime]] = set()
    while len(seen) < count:
        seen.add((p.rng.choice(VACCINES)[0], p.moment(5 * 365, 14)))
    names = dict(VACCINES)
    facts = []
    for cvx, when in sorted(seen, key=lambda s: s[1]):
        body = {
            "status": "completed",
            "vaccineCode": concept(CVX, cvx, names[cvx]),
            "occurrenceDateTime": instant(when),
            "primarySource": True,
            "lotNumber": f"LOT{p.rng.randint(10000, 99999)}",
        }
        facts.append(Fact("Immunization", body, when, "patient"))
    return facts


def encounter_facts(p: Profile, count: int) -> list[Fact]:
    facts = []
    for _ in range(count):
        klass, klass_display, code, display = p.rng.choice(ENCOUNTER_TYPES)
        start = p.moment(3 * 365, 2)
        length = (
            timedelta(days=p.rng.randint(1, 5))
            if klass == "IMP"
            else timedelta(minutes=p.rng.choice((15, 20, 30, 45, 90)))
        )
        provider = PROVIDERS["hospital" if klass != "AMB" else p.rng.choice(UPSTREAMS)]
        body = {
            "status": "finished",
            "class": {"system": ACT_CODE, "code": klass, "display": klass_display},
            "type": [concept(SNOMED, code, display)],
            "participant": [
                {
                    "type": [concept(PARTICIPATION, "PPRF", "primary performer")],
                    "individual": practitioner_reference(p.rng.choice(CLINICIANS)),
                }
            ],
            "period": {"start": instant(start), "end": instant(start + length)},
            "serviceProvider": {"display": provider},
        }
        facts.append(Fact("Encounter", body, start))
    return facts


def procedure_facts(p: Profile, count: int) -> list[Fact]:
    facts = []
    for code, display, lasting in p.rng.sample(PROCEDURES, count):
        start = p.moment(5 * 365, 7)
        body: dict[str, Any] = {"status": "completed", "code": concept(SNOMED, code, display)}
        if lasting:
            end = start + timedelta(minutes=p.rng.choice((35, 50, 75)))
            body["performedPeriod"] = {"start": instant(start), "end": instant(end)}
        else:
            body["performedDateTime"] = instant(start)
        facts.append(Fact("Procedure", body, start))
    return facts


def care_team_fact(person_key: str) -> tuple[str, Fact]:
    """A person's care team and the upstream that records it: one or two demo clinicians,
    chosen by a generator seeded from the person's key (never the profile's rng)."""
    rng = random.Random(f"care-team|{person_key}")  # its own generator, by design
    upstream = rng.choice(UPSTREAMS)
    members = rng.sample(CLINICIANS, rng.choice((1, 2)))
    start = ANCHOR - timedelta(days=rng.randint(30, 3 * 365))
    body = {
        "status": "active",
        "name": f"{PROVIDERS[upstream]} care team",
        "category": [concept(LOINC, *CARE_TEAM_CATEGORY)],
        "period": {"start": instant(start)},
        "participant": [
            {"role": [concept(SNOMED, *role)], "member": practitioner_reference(name)}
            for name, role in zip(members, CARE_TEAM_ROLES, strict=False)
        ],
    }
    return upstream, Fact("CareTeam", body, start)
