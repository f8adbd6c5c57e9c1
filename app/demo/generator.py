"""Deterministic synthetic patients for the demo: two FHIR upstreams that overlap but disagree.

Every person is registered in both upstreams under different local ids and MRNs; the SSN (in the
never-issued 999 area) is the only shared identifier, which is what the identity layer links on.
Clinical facts are drawn once per person and then placed in both upstreams (the same fact twice,
as in real life when a clinic and a hospital both record a visit) or in only one, so an aggregated
view has duplicates to merge and records only one side knows.

Only `random.Random(seed)` drives the choices and all dates hang off a fixed anchor, so the same
seed always yields byte-identical resources (demo screenshots and benchmarks stay comparable).
Names and people are invented from small lists; the codes are real LOINC/SNOMED/RxNorm/CVX codes.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Any, Final

UPSTREAMS: Final = ("hospital", "clinic")
SSN_SYSTEM: Final = "http://hl7.org/fhir/sid/us-ssn"
MRN_SYSTEMS: Final[Mapping[str, str]] = MappingProxyType(
    {"hospital": "urn:demo:hospital:mrn", "clinic": "urn:demo:clinic:mrn"}
)
ANCHOR: Final = datetime(2026, 1, 1, tzinfo=UTC)  # "now" for the demo; never today()

LOINC: Final = "http://loinc.org"
SNOMED: Final = "http://snomed.info/sct"
RXNORM: Final = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX: Final = "http://hl7.org/fhir/sid/cvx"
UCUM: Final = "http://unitsofmeasure.org"
V2_0203: Final = "http://terminology.hl7.org/CodeSystem/v2-0203"
OBS_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION: Final = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
CONDITION_CLINICAL: Final = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION: Final = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/condition-category"
ALLERGY_CLINICAL: Final = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION: Final = (
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
)
ACT_CODE: Final = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PARTICIPATION: Final = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
V2_0074: Final = "http://terminology.hl7.org/CodeSystem/v2-0074"

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


# --- vocabularies (small and invented where they name people or places) -------------------------

FAMILY_NAMES: Final = (
    "Abernathy",
    "Brightwater",
    "Castellano",
    "Delacroix",
    "Eriksen",
    "Fairweather",
    "Galloway",
    "Halvorsen",
    "Ivanova",
    "Jablonski",
    "Kowalczyk",
    "Lindqvist",
    "Moreau",
    "Nakamura",
    "Okonkwo",
    "Pellegrini",
    "Quintero",
    "Rasmussen",
    "Sandoval",
    "Thibodeaux",
    "Underhill",
    "Vasquez",
    "Whitcombe",
    "Yamamoto",
    "Zeller",
)
GIVEN_NAMES: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "female": (
            "Amara",
            "Beatrix",
            "Celeste",
            "Delphine",
            "Elena",
            "Farida",
            "Greta",
            "Hana",
            "Imogen",
            "Juniper",
            "Kiri",
            "Lucia",
            "Mireille",
            "Noor",
            "Ottilie",
            "Priya",
        ),
        "male": (
            "Anders",
            "Bastian",
            "Cyrus",
            "Dmitri",
            "Emeka",
            "Florian",
            "Gideon",
            "Hamish",
            "Ignacio",
            "Jonas",
            "Kenji",
            "Lorcan",
            "Matteo",
            "Nikhil",
            "Oswin",
            "Rafferty",
        ),
    }
)
CLINICIANS: Final = (
    "Dr. Ada Quill",
    "Dr. Benedikt Marsh",
    "Dr. Chiara Okafor",
    "Dr. Desmond Farrow",
    "Dr. Esther Lindgren",
    "Dr. Felix Ambrose",
)
PROVIDERS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "hospital": "Riverbend General Hospital",
        "clinic": "Maple Street Family Clinic",
    }
)

# (code, display, chronic?)
CONDITIONS: Final = (
    ("44054006", "Diabetes mellitus type 2", True),
    ("38341003", "Hypertensive disorder, systemic arterial", True),
    ("55822004", "Hyperlipidemia", True),
    ("195967001", "Asthma", True),
    ("15777000", "Prediabetes", True),
    ("195662009", "Acute viral pharyngitis", False),
    ("10509002", "Acute bronchitis", False),
    ("444814009", "Viral sinusitis", False),
    ("233604007", "Pneumonia", False),
    ("271737000", "Anemia", False),
    ("40055000", "Chronic sinusitis", False),
    ("162864005", "Body mass index 30+ - obesity", False),
)
# (code, display, category, criticality, manifestation code, manifestation display)
ALLERGIES: Final = (
    ("91935009", "Allergy to peanuts", "food", "high", "39579001", "Anaphylaxis"),
    ("764146007", "Penicillin", "medication", "high", "126485001", "Urticaria"),
    ("300913006", "Shellfish allergy", "food", "low", "271807003", "Eruption of skin"),
    ("300916003", "Latex allergy", "environment", "low", "418290006", "Itching of skin"),
    ("418689008", "Allergy to grass pollen", "environment", "low", "76067001", "Sneezing"),
    ("91930004", "Allergy to eggs", "food", "low", "271807003", "Eruption of skin"),
)
# (code, display, dosage text); the dict below says which condition each treats
MEDICATIONS: Final = (
    (
        "860975",
        "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet",
        "Take 1 tablet by mouth once daily with the evening meal",
    ),
    ("314076", "lisinopril 10 MG Oral Tablet", "Take 1 tablet by mouth once daily"),
    ("197361", "amlodipine 5 MG Oral Tablet", "Take 1 tablet by mouth once daily"),
    ("310798", "Hydrochlorothiazide 25 MG Oral Tablet", "Take 1 tablet by mouth every morning"),
    ("259255", "atorvastatin 80 MG Oral Tablet", "Take 1 tablet by mouth at bedtime"),
    (
        "895994",
        "120 ACTUAT Fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler",
        "Inhale 2 puffs twice daily",
    ),
    (
        "745679",
        "200 ACTUAT Albuterol 0.09 MG/ACTUAT Metered Dose Inhaler",
        "Inhale 2 puffs every 4 to 6 hours as needed for wheezing",
    ),
    ("308182", "Amoxicillin 250 MG Oral Capsule", "Take 1 capsule by mouth 3 times daily"),
    (
        "834061",
        "Penicillin V Potassium 250 MG Oral Tablet",
        "Take 1 tablet by mouth 4 times daily for 10 days",
    ),
    (
        "313782",
        "Acetaminophen 325 MG Oral Tablet",
        "Take 2 tablets by mouth every 6 hours as needed for pain",
    ),
)
TREATS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "44054006": ("860975",),
        "38341003": ("314076", "197361", "310798"),
        "55822004": ("259255",),
        "195967001": ("895994", "745679"),
    }
)
PENICILLINS: Final = frozenset({"308182", "834061"})
VACCINES: Final = (
    ("140", "Influenza, seasonal, injectable, preservative free"),
    (
        "208",
        "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, "
        "30 mcg/0.3mL dose",
    ),
    ("115", "Tdap"),
    ("133", "Pneumococcal conjugate PCV 13"),
    ("43", "Hep B, adult"),
    ("187", "zoster vaccine recombinant"),
)
# (class code, class display, type code, type display)
ENCOUNTER_TYPES: Final = (
    ("AMB", "ambulatory", "185349003", "Encounter for check up (procedure)"),
    ("AMB", "ambulatory", "185345009", "Encounter for symptom (procedure)"),
    ("AMB", "ambulatory", "390906007", "Follow-up encounter (procedure)"),
    ("EMER", "emergency", "50849002", "Emergency room admission (procedure)"),
    ("IMP", "inpatient encounter", "32485007", "Hospital admission (procedure)"),
)
# (code, display, has a duration?)
PROCEDURES: Final = (
    ("430193006", "Medication Reconciliation (procedure)", False),
    ("171207006", "Depression screening (procedure)", False),
    ("117015009", "Throat culture (procedure)", False),
    ("710824005", "Assessment of health and social care needs (procedure)", False),
    ("73761001", "Colonoscopy (procedure)", True),
    ("80146002", "Excision of appendix (procedure)", True),
)
VITALS: Final = ("8867-4", "85354-6", "29463-7", "8302-2")
LABS: Final = ("2339-0", "4548-4", "2093-3", "718-7")
LOINC_DISPLAY: Final[Mapping[str, str]] = MappingProxyType(
    {
        "8867-4": "Heart rate",
        "85354-6": "Blood pressure panel with all children optional",
        "8480-6": "Systolic blood pressure",
        "8462-4": "Diastolic blood pressure",
        "29463-7": "Body weight",
        "8302-2": "Body height",
        "2339-0": "Glucose [Mass/volume] in Blood",
        "4548-4": "Hemoglobin A1c/Hemoglobin.total in Blood",
        "2093-3": "Cholesterol [Mass/volume] in Serum or Plasma",
        "718-7": "Hemoglobin [Mass/volume] in Blood",
        "51990-0": "Basic metabolic panel - Blood",
        "57698-3": "Lipid panel with direct LDL - Serum or Plasma",
        "58410-2": "CBC panel - Blood by Automated count",
    }
)
# Which panel a lab test is reported under (the DiagnosticReport.code)
PANEL_OF: Final[Mapping[str, str]] = MappingProxyType(
    {
        "2339-0": "51990-0",
        "4548-4": "4548-4",
        "2093-3": "57698-3",
        "718-7": "58410-2",
    }
)
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


# --- small FHIR builders -------------------------------------------------------------------------


def _coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def _concept(system: str, code: str, display: str, text: str | None = None) -> dict[str, Any]:
    return {"coding": [_coding(system, code, display)], "text": text or display}


def _quantity(value: float, unit: str, code: str | None = None) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": code or unit}


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _loinc(code: str) -> dict[str, Any]:
    return _concept(LOINC, code, LOINC_DISPLAY[code])


# --- the person and the facts about them ---------------------------------------------------------


@dataclass(frozen=True)
class _Fact:
    """One clinical statement, independent of which upstream records it."""

    resource_type: str
    body: Mapping[str, Any]  # content without id/meta/patient reference (identical on both sides)
    when: datetime  # drives meta.lastUpdated
    subject_field: str = "subject"


@dataclass
class _Profile:
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


def _new_profile(rng: random.Random, gender: str, birth: date) -> _Profile:
    chronic_pool = [code for code, _, chronic in CONDITIONS if chronic]
    chronic = tuple(rng.sample(chronic_pool, rng.choice((0, 1, 1, 2))))
    height = rng.uniform(158, 176) if gender == "female" else rng.uniform(168, 190)
    weight = rng.uniform(55, 95) + (12 if "44054006" in chronic else 0)
    return _Profile(rng, gender, birth, chronic, round(weight, 1), round(height, 1))


def _split_counts(
    rng: random.Random, lo: int, hi: int, min_shared: int = 0, min_own: int = 0
) -> tuple[int, int, int]:
    """(in both, hospital only, clinic only) so that each upstream holds lo..hi facts."""
    in_hospital, in_clinic = rng.randint(lo, hi), rng.randint(lo, hi)
    most_shared = min(in_hospital, in_clinic) - min_own
    shared = rng.randint(min(min_shared, most_shared), most_shared)
    return shared, in_hospital - shared, in_clinic - shared


def _place(facts: list[_Fact], split: tuple[int, int, int]) -> dict[str, list[_Fact]]:
    shared, hospital_only, _ = split
    return {
        "hospital": facts[: shared + hospital_only],
        "clinic": facts[:shared] + facts[shared + hospital_only :],
    }


# --- observations ---------------------------------------------------------------------------------


def _interpretation(value: float, low: float | None, high: float | None) -> dict[str, Any]:
    if high is not None and value > high:
        return _concept(INTERPRETATION, "H", "High")
    if low is not None and value < low:
        return _concept(INTERPRETATION, "L", "Low")
    return _concept(INTERPRETATION, "N", "Normal")


def _category(code: str, display: str) -> list[dict[str, Any]]:
    return [_concept(OBS_CATEGORY, code, display)]


def _vital_body(p: _Profile, code: str) -> dict[str, Any]:
    rng = p.rng
    if code == "85354-6":
        high_bp = 20 if p.has("38341003") else 0
        systolic, diastolic = rng.randint(105, 135) + high_bp, rng.randint(65, 85) + high_bp // 2
        return {
            "component": [
                {"code": _loinc("8480-6"), "valueQuantity": _quantity(systolic, "mm[Hg]")},
                {"code": _loinc("8462-4"), "valueQuantity": _quantity(diastolic, "mm[Hg]")},
            ]
        }
    if code == "8867-4":
        return {"valueQuantity": _quantity(rng.randint(56, 98), "/min")}
    if code == "29463-7":
        return {"valueQuantity": _quantity(round(p.weight_kg + rng.uniform(-2.5, 2.5), 1), "kg")}
    return {"valueQuantity": _quantity(p.height_cm, "cm")}


def _lab_value(p: _Profile, code: str) -> tuple[float, str, float | None, float | None]:
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


def _lab_body(p: _Profile, code: str) -> dict[str, Any]:
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


def _observation_facts(p: _Profile, count: int) -> list[_Fact]:
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
            "code": _loinc(code),
            "effectiveDateTime": _instant(when),
            **detail,
        }
        if not vital:
            body["issued"] = _instant(when + timedelta(hours=rng.randint(2, 30)))
        facts.append(_Fact("Observation", body, when))
    return facts


# --- other clinical facts -------------------------------------------------------------------------


def _ordered_pool(rng: random.Random, codes: list[str], first: tuple[str, ...]) -> list[str]:
    """`first` (the ones the profile implies) then the rest shuffled."""
    rest = [c for c in codes if c not in first]
    rng.shuffle(rest)
    return [c for c in first if c in codes] + rest


def _condition_facts(p: _Profile, count: int) -> list[_Fact]:
    known = {code: (display, chronic) for code, display, chronic in CONDITIONS}
    facts = []
    for code in _ordered_pool(p.rng, list(known), p.chronic)[:count]:
        display, chronic = known[code]
        onset = p.moment(8 * 365 if chronic else 3 * 365, 30)
        body: dict[str, Any] = {
            "clinicalStatus": _concept(
                CONDITION_CLINICAL, *(("active", "Active") if chronic else ("resolved", "Resolved"))
            ),
            "verificationStatus": _concept(CONDITION_VERIFICATION, "confirmed", "Confirmed"),
            "category": [
                _concept(
                    CONDITION_CATEGORY,
                    *(
                        ("problem-list-item", "Problem List Item")
                        if chronic
                        else ("encounter-diagnosis", "Encounter Diagnosis")
                    ),
                )
            ],
            "code": _concept(SNOMED, code, display),
            "onsetDateTime": _instant(onset),
            "recordedDate": _instant(onset + timedelta(hours=2)),
        }
        if not chronic:
            body["abatementDateTime"] = _instant(onset + timedelta(days=p.rng.randint(7, 21)))
        facts.append(_Fact("Condition", body, onset))
    return facts


def _allergy_facts(p: _Profile, count: int) -> list[_Fact]:
    facts = []
    for code, display, category, criticality, sign, sign_display in p.rng.sample(ALLERGIES, count):
        recorded = p.moment(10 * 365, 30)
        body = {
            "clinicalStatus": _concept(ALLERGY_CLINICAL, "active", "Active"),
            "verificationStatus": _concept(ALLERGY_VERIFICATION, "confirmed", "Confirmed"),
            "type": "allergy",
            "category": [category],
            "criticality": criticality,
            "code": _concept(SNOMED, code, display),
            "recordedDate": _instant(recorded),
            "reaction": [
                {
                    "manifestation": [_concept(SNOMED, sign, sign_display)],
                    "severity": "severe" if criticality == "high" else "mild",
                }
            ],
        }
        facts.append(_Fact("AllergyIntolerance", body, recorded, "patient"))
    return facts


def _medication_body(
    p: _Profile, code: str, display: str, dosage: str, when: datetime
) -> tuple[str, dict[str, Any]]:
    """Mostly MedicationRequest with an RxNorm concept; some statements, some contained refs."""
    concept = _concept(RXNORM, code, display)
    chronic = code not in PENICILLINS | {"313782"}
    status = "active" if chronic else "completed"
    style = p.rng.choices(("concept", "contained", "statement"), weights=(6, 2, 2))[0]
    if style == "statement":
        return "MedicationStatement", {
            "status": status,
            "medicationCodeableConcept": concept,
            "effectivePeriod": {"start": _instant(when)},
            "dateAsserted": _instant(when),
            "dosage": [{"text": dosage}],
        }
    body: dict[str, Any] = {"status": status, "intent": "order"}
    if style == "contained":
        body["contained"] = [{"resourceType": "Medication", "id": "med1", "code": concept}]
        body["medicationReference"] = {"reference": "#med1", "display": display}
    else:
        body["medicationCodeableConcept"] = concept
    body |= {
        "authoredOn": _instant(when),
        "requester": {"display": p.rng.choice(CLINICIANS)},
        "dosageInstruction": [{"sequence": 1, "text": dosage}],
    }
    return "MedicationRequest", body


def _medication_facts(p: _Profile, count: int, allergies: list[_Fact]) -> list[_Fact]:
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
        facts.append(_Fact(resource_type, body, when))
    return facts


def _immunization_facts(p: _Profile, count: int) -> list[_Fact]:
    seen: set[tuple[str, datetime]] = set()
    while len(seen) < count:
        seen.add((p.rng.choice(VACCINES)[0], p.moment(5 * 365, 14)))
    names = dict(VACCINES)
    facts = []
    for cvx, when in sorted(seen, key=lambda s: s[1]):
        body = {
            "status": "completed",
            "vaccineCode": _concept(CVX, cvx, names[cvx]),
            "occurrenceDateTime": _instant(when),
            "primarySource": True,
            "lotNumber": f"LOT{p.rng.randint(10000, 99999)}",
        }
        facts.append(_Fact("Immunization", body, when, "patient"))
    return facts


def _encounter_facts(p: _Profile, count: int) -> list[_Fact]:
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
            "type": [_concept(SNOMED, code, display)],
            "participant": [
                {
                    "type": [_concept(PARTICIPATION, "PPRF", "primary performer")],
                    "individual": {"display": p.rng.choice(CLINICIANS)},
                }
            ],
            "period": {"start": _instant(start), "end": _instant(start + length)},
            "serviceProvider": {"display": provider},
        }
        facts.append(_Fact("Encounter", body, start))
    return facts


def _procedure_facts(p: _Profile, count: int) -> list[_Fact]:
    facts = []
    for code, display, lasting in p.rng.sample(PROCEDURES, count):
        start = p.moment(5 * 365, 7)
        body: dict[str, Any] = {"status": "completed", "code": _concept(SNOMED, code, display)}
        if lasting:
            end = start + timedelta(minutes=p.rng.choice((35, 50, 75)))
            body["performedPeriod"] = {"start": _instant(start), "end": _instant(end)}
        else:
            body["performedDateTime"] = _instant(start)
        facts.append(_Fact("Procedure", body, start))
    return facts


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

    def _unique(self, make: Callable[[], str]) -> str:
        return _unique(make, self._seen)  # ids must stay unique per upstream

    def _claim(self, value: str) -> str:
        self._seen.add(value)
        return value


def _render(fact: _Fact, resource_id: str, patient_id: str, lag: timedelta) -> Resource:
    updated = min(fact.when + lag, ANCHOR)
    return {
        "resourceType": fact.resource_type,
        "id": resource_id,
        "meta": {"versionId": "1", "lastUpdated": _instant(updated)},
        **copy.deepcopy(dict(fact.body)),  # no shared nested dicts between the two upstreams
        fact.subject_field: {"reference": f"Patient/{patient_id}"},
    }


def _report(
    upstream_obs: list[tuple[_Fact, Resource]], patient_id: str, resource_id: str, lag: timedelta
) -> Resource:
    first_fact = upstream_obs[0][0]
    panel = PANEL_OF[first_fact.body["code"]["coding"][0]["code"]]
    flagged = any(o["interpretation"][0]["coding"][0]["code"] != "N" for _, o in upstream_obs)
    body = {
        "status": "final",
        "category": [_concept(V2_0074, "LAB", "Laboratory")],
        "code": _loinc(panel),
        "effectiveDateTime": first_fact.body["effectiveDateTime"],
        "issued": first_fact.body["issued"],
        "result": [{"reference": f"Observation/{o['id']}"} for _, o in upstream_obs],
        "conclusion": "Abnormal result; see flagged values."
        if flagged
        else "Within normal limits.",
    }
    return _render(_Fact("DiagnosticReport", body, first_fact.when), resource_id, patient_id, lag)


def _lab_groups(
    rendered: list[tuple[_Fact, Resource]],
) -> dict[tuple[str, datetime], list[tuple[_Fact, Resource]]]:
    groups: dict[tuple[str, datetime], list[tuple[_Fact, Resource]]] = {}
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
    return {
        "resourceType": "Patient",
        "id": person.local_ids[upstream],
        "meta": {"versionId": "1", "lastUpdated": _instant(updated)},
        "identifier": [
            {
                "use": "usual",
                "type": _concept(V2_0203, "MR", "Medical record number", "MRN"),
                "system": MRN_SYSTEMS[upstream],
                "value": mrn,
            },
            {
                "use": "official",
                "type": _concept(V2_0203, "SS", "Social Security number", "SSN"),
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
        "gender": person.gender,
        "birthDate": person.birth_date,
    }


def _facts_by_upstream(p: _Profile) -> dict[str, list[_Fact]]:
    """Draw each kind's facts once, then place them in both upstreams or only one."""
    rng = p.rng
    placed: dict[str, list[_Fact]] = {u: [] for u in UPSTREAMS}
    allergies: list[_Fact] = []
    makers: dict[str, Callable[[int], list[_Fact]]] = {
        "observations": lambda n: _observation_facts(p, n),
        "conditions": lambda n: _condition_facts(p, n),
        "allergies": lambda n: _allergy_facts(p, n),
        "medications": lambda n: _medication_facts(p, n, allergies),
        "immunizations": lambda n: _immunization_facts(p, n),
        "encounters": lambda n: _encounter_facts(p, n),
        "procedures": lambda n: _procedure_facts(p, n),
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


def _person_resources(p: _Profile, person: DemoPerson, ids: _Ids) -> dict[str, list[Resource]]:
    # Recorded after the lab is issued (up to 30 h after the draw); the clinic syncs days later.
    lags = {"hospital": timedelta(hours=32), "clinic": timedelta(days=p.rng.randint(2, 4))}
    rendered: dict[str, list[tuple[_Fact, Resource]]] = {u: [] for u in UPSTREAMS}
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
    return out


def _iter_people(
    rng: random.Random, count: int, ids: _Ids
) -> Iterator[tuple[DemoPerson, _Profile]]:
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
        yield person, _new_profile(rng, gender, birth)


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
