"""A source patient's demographics as the matcher compares them: one spelling per value.

Names lose case, accents, punctuation and titles; a hyphenated family name keeps its parts;
the birth date is the full date only (a partial date compares as unknown); sex is male or
female (anything else is unknown); the phone is its last ten digits; the SSN is only its keyed
hash (the index never holds one in clear). `blocking_keys` are the values a candidate must
share with a record before the two are compared at all, so a match reads a few index entries
and never scans.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass
from datetime import date

import jellyfish
import orjson

from app.domain.patients import SourcePatient
from app.identity.nicknames import formal_names

_NOT_LETTER = re.compile(r"[^a-z ]+")
_NOT_DIGIT = re.compile(r"\D+")
_SPACES = re.compile(r"\s+")
_TITLES = frozenset({"mr", "mrs", "ms", "miss", "dr", "jr", "sr", "ii", "iii", "iv"})
_FULL_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def name_key(value: str | None) -> str | None:
    """Casefolded ASCII letters and single spaces ("Zoë O'Brien-Núñez" -> "zoe obrien nunez")."""
    if not value:
        return None
    ascii_form = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    text = ascii_form.casefold().replace("-", " ")
    words = [w for w in _NOT_LETTER.sub("", text).split() if w not in _TITLES]
    return " ".join(words) or None


def _birth_date(value: str | None) -> str | None:
    if value is None or not _FULL_DATE.fullmatch(value):
        return None
    try:
        date.fromisoformat(value)
    except ValueError:
        return None
    return value


def _sex(value: str | None) -> str | None:
    return value if value in ("male", "female") else None


def _phone(values: list[str]) -> str | None:
    for value in values:
        digits = _NOT_DIGIT.sub("", value)
        if len(digits) >= 10:
            return digits[-10:]
    return None


@dataclass(frozen=True, slots=True)
class Demographics:
    given: str | None  # first given name
    family: str | None
    birth_date: str | None
    sex: str | None
    postal_code: str | None  # first five characters
    address_line: str | None
    phone: str | None
    email: str | None
    ssn_hash: str | None

    @classmethod
    def of(cls, patient: SourcePatient, ssn_hash: str | None) -> Demographics:
        name = patient.name
        given = [g for g in (name_key(g) for g in (name.given if name else ())) if g]
        address = patient.addresses[0] if patient.addresses else None
        line = address.lines[0] if address and address.lines else None
        postal = address.postal_code.strip()[:5] if address and address.postal_code else None
        emails = [t.value.strip().casefold() for t in patient.telecom if t.system == "email"]
        phones = [t.value for t in patient.telecom if t.system in ("phone", "sms", None)]
        return cls(
            given=given[0].split()[0] if given else None,
            family=name_key(name.family) if name else None,
            birth_date=_birth_date(patient.birth_date),
            sex=_sex(patient.gender),
            postal_code=postal or None,
            address_line=_SPACES.sub(" ", line.casefold()).strip() or None if line else None,
            phone=_phone(phones),
            email=emails[0] if emails and "@" in emails[0] else None,
            ssn_hash=ssn_hash,
        )

    def to_json(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_json(cls, text: str) -> Demographics:
        return cls(**orjson.loads(text))

    def blocking_keys(self) -> set[str]:
        """The keys this record is filed under: each selective enough that a block stays
        small at a million records (birth date; first name, surname and birth year, the first
        name by each formal name it may stand for; phone; e-mail)."""
        keys = set()
        family = phonetic(self.family)
        if self.birth_date:
            keys.add("d|" + self.birth_date)
            if self.given and family:
                year = self.birth_date[:4]
                for formal in formal_names(self.given):
                    keys.add(f"n|{phonetic(formal)}|{family}|{year}")
        if self.phone:
            keys.add("p|" + self.phone)
        if self.email:
            keys.add("e|" + self.email)
        return keys

    def search_keys(self) -> set[str]:
        """The keys to look a candidate up by: its own, and its birth date with day and month
        swapped (the commonest date error)."""
        keys = self.blocking_keys()
        swapped = swapped_date(self.birth_date)
        if swapped is not None:
            keys.add("d|" + swapped)
        return keys


def phonetic(name: str | None) -> str | None:
    """NYSIIS code of the name's first word: spelling variants share it."""
    if not name:
        return None
    return jellyfish.nysiis(name.split()[0]) or None


def swapped_date(value: str | None) -> str | None:
    if value is None:
        return None
    year, month, day = value.split("-")
    if month == day:
        return None
    return _birth_date(f"{year}-{day}-{month}")
