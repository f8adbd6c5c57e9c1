"""How alike two records' demographics are: a Fellegi-Sunter style score, field by field.

Each field that both records have adds its agreement weight (about log2(m/u): how much likelier
the value agrees for one person than for two) or subtracts its disagreement weight; a field
either lacks adds nothing. Partial agreements (a typo, a nickname, a swapped day and month)
earn part of the weight. Some disagreements are contradictions: different sexes, birth dates
no typo explains, first names no nickname or typo explains. A contradiction vetoes every
automatic link, whatever the score, and turns a shared identifier into a conflict; a changed
surname never contradicts (people marry).

`RULE_VERSION` is recorded with each link the rules make; change it with the weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rapidfuzz.distance import JaroWinkler

from app.identity.demographics import Demographics, swapped_date
from app.identity.nicknames import equivalent

RULE_VERSION = 2  # 1: the identifier-only index that preceded this matcher

# Two first names no nickname or typo explains have Jaro-Winkler similarity below this.
GIVEN_CONTRADICTS_BELOW = 0.85


@dataclass(frozen=True, slots=True)
class Comparison:
    score: float
    contributions: dict[str, float] = field(default_factory=dict)
    contradiction: str | None = None  # the first field that contradicts, if any


def _similar(a: str, b: str) -> float:
    return float(JaroWinkler.similarity(a, b))


def _given(a: str, b: str) -> tuple[float, bool]:
    if a == b:
        return 6.0, False
    if equivalent(a, b):
        return 5.0, False
    if len(a) == 1 or len(b) == 1:  # an initial
        return (2.0, False) if a[0] == b[0] else (-5.0, True)
    similarity = _similar(a, b)
    if similarity >= 0.92:
        return 4.0, False
    if similarity >= GIVEN_CONTRADICTS_BELOW:
        return 2.0, False
    return -5.0, True


def _family(a: str, b: str) -> float:
    if a == b or not set(a.split()).isdisjoint(b.split()):  # "garcia lopez" ~ "garcia"
        return 7.0
    similarity = _similar(a.replace(" ", ""), b.replace(" ", ""))
    if similarity >= 0.92:
        return 5.0
    if similarity >= 0.85:
        return 2.5
    return -3.0


def _one_digit_apart(a: str, b: str) -> bool:
    return len(a) == len(b) and sum(x != y for x, y in zip(a, b, strict=True)) == 1


def _birth_date(a: str, b: str) -> tuple[float, bool]:
    if a == b:
        return 12.0, False
    if swapped_date(a) == b:
        return 6.0, False
    if _one_digit_apart(a, b):
        return 5.0, False
    return -8.0, True


def compare(a: Demographics, b: Demographics) -> Comparison:
    parts: dict[str, float] = {}
    contradiction: str | None = None
    if a.sex and b.sex:
        parts["sex"] = 1.0 if a.sex == b.sex else -10.0
        if a.sex != b.sex:
            contradiction = "sex"
    if a.birth_date and b.birth_date:
        parts["birthDate"], contradicts = _birth_date(a.birth_date, b.birth_date)
        if contradicts and contradiction is None:
            contradiction = "birthDate"
    if a.given and b.given:
        parts["given"], contradicts = _given(a.given, b.given)
        if contradicts and contradiction is None:
            contradiction = "given"
    if a.family and b.family:
        parts["family"] = _family(a.family, b.family)
    if a.postal_code and b.postal_code:
        parts["postalCode"] = 2.5 if a.postal_code == b.postal_code else -1.0
    if a.address_line and b.address_line:
        agree = _similar(a.address_line, b.address_line) >= 0.9
        parts["address"] = 4.0 if agree else -1.5
    if a.phone and b.phone:
        parts["phone"] = 5.0 if a.phone == b.phone else -1.5
    if a.email and b.email:
        parts["email"] = 5.0 if a.email == b.email else -1.0
    if a.ssn_hash and b.ssn_hash:
        parts["ssn"] = 10.0 if a.ssn_hash == b.ssn_hash else -12.0
    return Comparison(round(sum(parts.values()), 2), parts, contradiction)
