"""Identifier values as the index compares them: one spelling per value, so the same number
written two ways links, and a value that cannot be a real identifier links nothing.

US SSN (`http://hl7.org/fhir/sid/us-ssn`): the nine digits, whatever separates them, in the
dashed form `ddd-dd-dddd` (the form the index has always hashed, so existing links keep
matching). Never a link, as no person has it: area 000 or 666, one digit repeated
(`999-99-9999`) and `123-45-6789`, the placeholders forms are filled with. Area 900-999,
group 00 and serial 0000 are never issued either but are accepted: synthetic data (Synthea,
the demo) uses them. Other systems: the value with surrounding spaces removed, unless
`identity.identifier_normalisers` names another normaliser for the system ("digits" keeps only
the digits, "casefold" also ignores case, "ssn" is the SSN rule).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from app.domain.patients import SSN_SYSTEM

_NOT_DIGIT = re.compile(r"[\s.\-/]")


def ssn(value: str) -> str | None:
    digits = _NOT_DIGIT.sub("", value)
    if len(digits) != 9 or not digits.isascii() or not digits.isdigit():
        return None
    if digits[:3] in {"000", "666"} or len(set(digits)) == 1 or digits == "123456789":
        return None
    return f"{digits[:3]}-{digits[3:5]}-{digits[5:]}"


def _trimmed(value: str) -> str | None:
    return value.strip() or None


def _digits(value: str) -> str | None:
    digits = "".join(c for c in value if c.isascii() and c.isdigit())
    return digits or None


def _casefold(value: str) -> str | None:
    return value.strip().casefold() or None


Normaliser = Callable[[str], str | None]
# By the name `identity.identifier_normalisers` gives them.
NORMALISERS: Mapping[str, Normaliser] = {
    "ssn": ssn,
    "digits": _digits,
    "trimmed": _trimmed,
    "casefold": _casefold,
}
DEFAULTS: Mapping[str, str] = {SSN_SYSTEM: "ssn"}


def normalisers(configured: Mapping[str, str]) -> dict[str, Normaliser]:
    """System -> normaliser: the defaults, overridden by `configured` (names from NORMALISERS)."""
    return {system: NORMALISERS[name] for system, name in {**DEFAULTS, **configured}.items()}


def normalised(
    system: str, value: str, by_system: Mapping[str, Normaliser] | None = None
) -> str | None:
    """`value` of `system` as the index compares it; None when it must not link anything."""
    chosen = (by_system if by_system is not None else normalisers({})).get(system, _trimmed)
    return chosen(value)
