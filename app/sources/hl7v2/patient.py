"""PID fields as domain values: identifiers (PID-3 CX), the name (PID-5 XPN), the birth date
(PID-7), administrative sex (PID-8), addresses (PID-11 XAD) and phone numbers and e-mail
addresses (PID-13 home, PID-14 business, XTN). `mapping._patient` assembles them into a
`SourcePatient`.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import quote

from app.domain.common import Address, ContactPoint, HumanName, Identifier
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


# ---- addresses (PID-11) -------------------------------------------------------------------

# XAD-7 address type (table 0190) -> FHIR Address.use, per the HL7 v2-to-FHIR ConceptMap
# "AddressType"; the others (M mailing, L legal, N birth, F country of origin, ...) say what
# the address is for, not whether it is current, and leave `use` empty.
ADDRESS_USE: Final = {
    "H": "home",
    "P": "home",
    "RH": "home",
    "B": "work",
    "O": "work",
    "C": "temp",
    "BA": "old",
    "BI": "billing",
}


def _street(r: Reader, rep: Repetition) -> str:
    """XAD-1 (SAD): the street address SAD.1; from v2.5 a sender may instead (or also) split
    it into street name SAD.2 and dwelling number SAD.3, which are then joined back."""
    street, name, number = (r.comp(rep, 1, s) for s in (1, 2, 3))
    if not street:
        return " ".join(p for p in (number, name) if p)
    if name and name.lower() not in street.lower():
        return f"{street} {name}"
    return street


def addresses(r: Reader, seg: Segment) -> tuple[Address, ...]:
    """PID-11 XAD (repeating): street^other designation^city^state^zip^country^type. An
    address with no part valued is skipped."""
    out: list[Address] = []
    for rep in r.reps(seg, 11):
        lines = tuple(line for line in (_street(r, rep), r.comp(rep, 2)) if line)
        city, state, postal, country = (r.comp(rep, c) or None for c in (3, 4, 5, 6))
        if lines or city or state or postal or country:
            use = ADDRESS_USE.get(r.comp(rep, 7).upper())
            out.append(Address(use, lines, city, state, postal, country))
    return tuple(out)


# ---- phone numbers and e-mail (PID-13, PID-14) --------------------------------------------

# XTN-2 telecommunication use (table 0201) -> ContactPoint.use; an unknown or absent code
# takes the field's own meaning (PID-13 home, PID-14 work).
TELECOM_USE: Final = {"PRN": "home", "ORN": "home", "VHN": "temp", "WPN": "work", "PRS": "mobile"}
# XTN-3 telecommunication equipment type (table 0202) -> ContactPoint.system; unknown or
# absent is a phone (both fields are phone-number fields). Internet / X.400 are e-mail.
TELECOM_SYSTEM: Final = {
    "PH": "phone",
    "CP": "phone",
    "SAT": "phone",
    "FX": "fax",
    "BP": "pager",
    "MD": "other",
    "TDD": "other",
    "TTY": "other",
}
_EMAIL_EQUIPMENT: Final = frozenset({"INTERNET", "X.400"})


def _phone_number(r: Reader, rep: Repetition) -> str:
    """XTN-1 as sent (the only form before v2.5), else the v2.5+ components: country code
    XTN-5, area code XTN-6, local number XTN-7 and extension XTN-8 (`(406) 555-7896 x12`),
    else the unformatted number XTN-12."""
    if text := r.comp(rep, 1):
        return text
    country, area, local, extension = (r.comp(rep, c) for c in (5, 6, 7, 8))
    if local:
        if len(local) == 7 and local.isdigit():
            local = f"{local[:3]}-{local[3:]}"
        parts = (f"+{country.lstrip('+')}" if country else "", f"({area})" if area else "", local)
        number = " ".join(p for p in parts if p)
        return f"{number} x{extension}" if extension else number
    return r.comp(rep, 12)


def _contact_points(r: Reader, rep: Repetition, field_use: str) -> list[ContactPoint]:
    use_code, equipment = r.comp(rep, 2).upper(), r.comp(rep, 3).upper()
    use = TELECOM_USE.get(use_code, field_use)
    email = r.comp(rep, 4)
    if use_code == "NET" or equipment in _EMAIL_EQUIPMENT:  # a network address, no phone
        address = email or r.comp(rep, 1)
        return [ContactPoint("email", address, use)] if address else []
    out: list[ContactPoint] = []
    if number := _phone_number(r, rep):
        system = TELECOM_SYSTEM.get(equipment, "phone")
        out.append(ContactPoint(system, number, "mobile" if equipment == "CP" else use))
    if "@" in email:  # XTN-4 beside a phone number; senders put junk there too
        out.append(ContactPoint("email", email, use))
    return out


def telecom(r: Reader, seg: Segment) -> tuple[ContactPoint, ...]:
    """PID-13 (home) and PID-14 (business) XTN, repeating, in that order, duplicates dropped.
    A cell phone (XTN-3 CP) is `mobile`, as the v2-to-FHIR mapping has it."""
    found: list[ContactPoint] = []
    for n, field_use in ((13, "home"), (14, "work")):
        for rep in r.reps(seg, n):
            found.extend(_contact_points(r, rep, field_use))
    return tuple(dict.fromkeys(found))
