"""The demo's fixed content: its upstreams and clock, code systems, and the catalogues that
`facts.py` draws clinical facts from.

Names of people and places are invented from small lists; the codes are real LOINC / SNOMED CT /
RxNorm / CVX codes with their display names.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Final

UPSTREAMS: Final = ("hospital", "clinic")
ANCHOR: Final = datetime(2026, 1, 1, tzinfo=UTC)  # "now" for the demo; never today()

# --- code systems ---------------------------------------------------------------------------------

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
# Care-team member roles (SNOMED CT), in member order: the first member is the primary care
# provider. The team's category (LOINC answer, US Core care team categories).
CARE_TEAM_ROLES: Final = (
    ("453231000124104", "Primary care provider"),
    ("158965000", "Medical practitioner"),
)
CARE_TEAM_CATEGORY: Final = ("LA28865-6", "Longitudinal care-coordination focused care team")
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

# --- contact details and notes (invented; see contacts.py and facts.py) ---------------------------

NPI_SYSTEM: Final = "http://hl7.org/fhir/sid/us-npi"
# Street and town names are invented; the demo region is one (real) state, so ZIP codes, area
# code and state agree. Phone numbers use 555-0100..0199, the range reserved for fiction.
STREETS: Final = (
    "Alder Row",
    "Bellflower Lane",
    "Copperleaf Drive",
    "Driftwood Court",
    "Elderberry Way",
    "Foxglove Street",
    "Glenmoor Avenue",
    "Heronsgate Road",
    "Ironbark Place",
    "Juniper Hollow",
    "Kestrel Terrace",
    "Larkspur Loop",
)
# (town, ZIP prefix): every ZIP is the prefix plus two digits
TOWNS: Final = (
    ("Riverbend", "974"),
    ("Aldermere", "973"),
    ("Quillfield", "975"),
    ("Thistledown", "977"),
)
DEMO_STATE: Final = "OR"
DEMO_AREA_CODE: Final = "541"
EMAIL_DOMAIN: Final = "example.org"  # reserved for documentation (RFC 2606)
# Short notes, attached to some facts by hashing the fact (never by the profile's rng).
OBSERVATION_NOTES: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "vital-signs": (
            "Measured seated after five minutes of rest.",
            "Repeat measurement; the first reading was discarded.",
            "Patient reports feeling well today.",
        ),
        "laboratory": (
            "Fasting specimen.",
            "Specimen drawn two hours after a meal.",
            "Slight hemolysis; interpret with caution.",
        ),
    }
)
CONDITION_NOTES: Final = (
    "Discussed lifestyle changes with the patient.",
    "Patient reports symptoms are improving.",
    "Review at the next scheduled visit.",
    "Family history of the same condition.",
)
MEDICATION_NOTES: Final = (
    "Take with food.",
    "Patient counselled on common side effects.",
    "Review the dose at the next visit.",
    "Patient prefers a morning dose.",
)
