"""PID fields as domain values: identifiers (PID-3 CX), the name (PID-5 XPN), the birth date
(PID-7) and administrative sex (PID-8). `mapping._patient` assembles them into a
`SourcePatient`.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import quote

from app.domain.common import HumanName, Identifier
from app.domain.patients import SSN_SYSTEM
from app.sources.hl7v2.syntax import Reader, Repetition, Segment, timestamp

AUTHORITY_SYSTEM: Final = "urn:hl7v2:authority:"


# PID-8 administrative sex (table 0001) -> FHIR administrative-gender, per the HL7
# v2-to-FHIR ConceptMap "AdministrativeSex"; an unrecognised code is "unknown".
GENDER: Final = {
    "M": "male",
    "F": "female",
    "O": "other",
    "U": "unknown",
    "A": "other",
    "N": "other",
}
_SSN_AUTHORITIES: Final = frozenset({"USSSA", "SSA"})


def birth_date(value: str) -> str | None:
    """A birth date (PID-7, TS in v2.3-2.5): its date part only."""
    iso = timestamp(value)
    return iso.split("T", 1)[0] if iso else None


def identifier(r: Reader, rep: Repetition) -> Identifier | None:
    """PID-3 CX: ID^check digit^scheme^assigning authority (HD)^identifier type code."""
    value = r.comp(rep, 1)
    if not value:
        return None
    namespace, universal, universal_type = (r.comp(rep, 4, s) for s in (1, 2, 3))
    type_code = r.comp(rep, 5)
    system: str | None
    if type_code.upper() == "SS" or namespace.upper() in _SSN_AUTHORITIES:
        system = SSN_SYSTEM
    elif universal and universal_type.upper() == "ISO":  # HD.2 an OID (table 0301 "ISO")
        system = f"urn:oid:{universal}"
    elif universal and universal_type.upper() == "UUID":
        system = f"urn:uuid:{universal.lower()}"
    elif namespace:  # HD.1 namespace id only: a local authority name
        system = AUTHORITY_SYSTEM + quote(namespace, safe="")
    else:
        system = None
    return Identifier(system, value, type_code or None)


def patient_name(r: Reader, seg: Segment) -> HumanName | None:
    """PID-5 XPN (repeating): the legal name (XPN-7 = L) else the first one. Family is FN.1
    (the surname), given are XPN-2 and XPN-3 (given name, further given names or initials)."""
    reps = [rep for rep in r.reps(seg, 5) if r.comp(rep, 1) or r.comp(rep, 2)]
    if not reps:
        return None
    rep = next((x for x in reps if r.comp(x, 7).upper() == "L"), reps[0])
    family = r.comp(rep, 1) or None
    given = tuple(g for g in (r.comp(rep, 2), r.comp(rep, 3)) if g)
    text = " ".join((*given, family or "")).strip() or None
    return HumanName(family, given, text)
