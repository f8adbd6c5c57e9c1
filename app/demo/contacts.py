"""Synthetic contact details for the demo: each person's home address, phone number and e-mail
address, and each clinician's NPI (National Provider Identifier).

Everything here is derived by hashing stable inputs (a person's key and SSN, a clinician's
name), never drawn from the population's `random.Random`, so adding it left every other
generated value as it was. All of it is visibly fictional: street and town names are invented,
phone numbers are in the 555-0100..0199 range reserved for fiction, e-mail addresses are at
example.org, and NPIs start with 999 (real ones start with 1 or 2).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from app.demo.catalog import (
    CLINICIANS,
    DEMO_AREA_CODE,
    DEMO_STATE,
    EMAIL_DOMAIN,
    NPI_SYSTEM,
    STREETS,
    TOWNS,
)

if TYPE_CHECKING:
    from app.demo.generator import DemoPerson

# The clinician the demo signs in as (its clinician token's `practitioner` claim).
DEMO_CLINICIAN: Final = CLINICIANS[0]


# --- clinicians -----------------------------------------------------------------------------------


def _luhn_digit(payload: str) -> str:
    """The Luhn check digit to append to `payload`."""
    total = 0
    for position, char in enumerate(reversed(payload)):
        digit = int(char) * (2 if position % 2 == 0 else 1)
        total += digit - 9 if digit > 9 else digit
    return str(-total % 10)


def clinician_npi(name: str) -> str:
    """A stable, clearly fake NPI for a clinician's name: 10 digits, `999` + six digits from a
    hash of the name + the check digit NPIs use (Luhn over `80840` + the first nine digits), so
    it passes NPI validation while no real NPI starts with 9."""
    digest = hashlib.sha256(f"demo-npi|{name}".encode()).digest()
    base = f"999{int.from_bytes(digest[:8], 'big') % 1_000_000:06d}"
    return base + _luhn_digit("80840" + base)


def practitioner_identifier(name: str) -> str:
    """`system|value` of a clinician's NPI (the form of a token's `practitioner` claim)."""
    return f"{NPI_SYSTEM}|{clinician_npi(name)}"


def practitioner_reference(name: str) -> dict[str, str]:
    """A FHIR Reference to a clinician: conditional, by NPI (the demo serves no Practitioner
    resources), with the name as display."""
    return {
        "reference": f"Practitioner?identifier={practitioner_identifier(name)}",
        "display": name,
    }


# --- patients -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Contact:
    """One person's home address, phone number and e-mail address."""

    street: str
    unit: str | None  # a second address line, for some
    city: str
    state: str
    postal_code: str  # 5-digit ZIP
    area_code: str
    local_number: str  # 7 digits, 555-01xx
    email: str
    country: str = "US"

    @property
    def phone(self) -> str:
        return f"({self.area_code}) {self.local_number[:3]}-{self.local_number[3:]}"

    def fhir_address(self) -> dict[str, Any]:
        lines = [self.street] + ([self.unit] if self.unit else [])
        return {
            "use": "home",
            "type": "both",
            "line": lines,
            "city": self.city,
            "state": self.state,
            "postalCode": self.postal_code,
            "country": self.country,
        }

    def fhir_telecom(self) -> list[dict[str, Any]]:
        return [
            {"system": "phone", "value": self.phone, "use": "home"},
            {"system": "email", "value": self.email, "use": "home"},
        ]


def contact_of(person: DemoPerson) -> Contact:
    """The same details for the same person wherever they are rendered (both EHRs, the lab)."""
    rng = random.Random(f"contact|{person.key}|{person.ssn}")  # its own generator, by design
    town, zip_prefix = rng.choice(TOWNS)
    street = f"{rng.randint(12, 4980)} {rng.choice(STREETS)}"
    unit = f"Apt {rng.randint(1, 24)}{rng.choice('ABCD')}" if rng.random() < 0.3 else None
    local = f"55501{rng.randint(0, 99):02d}"
    given = person.given[0] if person.given else "patient"
    mailbox = f"{given}.{person.family}{rng.randint(1, 99)}".lower()
    return Contact(
        street=street,
        unit=unit,
        city=town,
        state=DEMO_STATE,
        postal_code=f"{zip_prefix}{rng.randint(0, 99):02d}",
        area_code=DEMO_AREA_CODE,
        local_number=local,
        email=f"{mailbox}@{EMAIL_DOMAIN}",
    )
