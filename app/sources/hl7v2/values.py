"""OBX-5 observation values read by their value type (OBX-2), with units and reference ranges.

NM and SN become quantities (with a comparator when one is sent), ST / TX / FT (and ID, IS,
TM) text, CE / CWE / CNE / CF coded concepts, DT / TS / DTM ISO 8601 text; a value that cannot
be represented (ED, RP, an unknown or missing type) is flagged `lost` so the mapping can count
it. Units come from OBX-6 (UCUM when so named), reference ranges from OBX-7.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from app.domain.common import CodeableConcept, Coding, Quantity
from app.domain.observations import ReferenceRange
from app.sources.hl7v2.syntax import UCUM, Reader, Repetition, Segment, coding_system, timestamp

# ---- numbers ------------------------------------------------------------------------------

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_NUM = re.compile(_NUMBER)
_COMPARED = re.compile(r"(<=|>=|<|>)\s*(" + _NUMBER + r")")
_RANGE = re.compile(r"(" + _NUMBER + r")\s*(?:-|_|to|\u2013)\s*(" + _NUMBER + r")", re.IGNORECASE)
_BOUND = re.compile(r"(<=|>=|<|>|\u2264|\u2265)\s*(" + _NUMBER + r")")


def _number(text: str) -> float | None:
    """A decimal as HL7 NM allows it (no exponent, no NaN/inf)."""
    text = text.strip()
    return float(text) if _NUM.fullmatch(text) else None


# ---- coded values (CE / CWE / CNE) --------------------------------------------------------


def concept(r: Reader, rep: Repetition) -> CodeableConcept | None:
    """CE/CWE: identifier^text^system, alternate triplet in components 4-6, CWE-9 original
    text. Text is component 2 (else the original text, else the alternate text)."""
    codings = []
    for code_c, text_c, system_c in ((1, 2, 3), (4, 5, 6)):
        code = r.comp(rep, code_c)
        if code:
            system = coding_system(r.comp(rep, system_c))
            codings.append(Coding(system, code, r.comp(rep, text_c) or None))
    text = r.comp(rep, 2) or r.comp(rep, 9) or r.comp(rep, 5) or None
    if not codings and text is None:
        return None
    return CodeableConcept(text, tuple(codings))


def first_concept(r: Reader, seg: Segment, n: int) -> CodeableConcept | None:
    reps = r.reps(seg, n)
    return concept(r, reps[0]) if reps else None


# ---- OBX values ---------------------------------------------------------------------------

_TEXT_TYPES: Final = frozenset({"ST", "TX", "FT", "ID", "IS", "TM"})
_CODED_TYPES: Final = frozenset({"CE", "CWE", "CNE", "CF"})
_TIME_TYPES: Final = frozenset({"DT", "TS", "DTM"})
_COMPARATORS: Final = frozenset({"<", "<=", ">", ">="})  # FHIR Quantity.comparator


@dataclass(frozen=True, slots=True)
class ObxValue:
    quantity: Quantity | None = None
    concept: CodeableConcept | None = None
    text: str | None = None
    lost: bool = False  # the value exists but could not be represented


def obx_units(r: Reader, seg: Segment) -> tuple[str | None, str | None, str | None]:
    """OBX-6 (CE): (unit, system, code). The unit is the identifier (else the text); UCUM
    when the coding system is "UCUM" (first or alternate triplet)."""
    reps = r.reps(seg, 6)
    if not reps:
        return None, None, None
    rep = reps[0]
    unit = r.comp(rep, 1) or r.comp(rep, 2) or None
    if r.comp(rep, 3).upper() == "UCUM" and r.comp(rep, 1):
        return unit, UCUM, r.comp(rep, 1)
    if r.comp(rep, 6).upper() == "UCUM" and r.comp(rep, 4):
        return unit or r.comp(rep, 4), UCUM, r.comp(rep, 4)
    return unit, None, None


def _quantity(
    value: float, units: tuple[str | None, ...], comparator: str | None = None
) -> Quantity:
    unit, system, code = units
    return Quantity(value, unit, system, code, comparator)


def _numeric(text: str, units: tuple[str | None, ...]) -> ObxValue:
    """NM (OBX-2): a decimal. Tolerates a comparator written into the value (`<5`), and keeps
    anything else as text rather than dropping it."""
    if (number := _number(text)) is not None:
        return ObxValue(quantity=_quantity(number, units))
    if match := _COMPARED.fullmatch(text.strip()):
        return ObxValue(quantity=_quantity(float(match[2]), units, match[1]))
    return ObxValue(text=text)


def _structured(r: Reader, rep: Repetition, units: tuple[str | None, ...]) -> ObxValue:
    """SN (OBX-2): comparator^num1^separator/suffix^num2. `^182` and `>^10` are quantities;
    ratios, ranges and categorical forms (`^1^:^2`, `^10^-^20`, `^2^+`) are kept as text."""
    comparator, num1, separator, num2 = (r.comp(rep, c) for c in (1, 2, 3, 4))
    first = _number(num1)
    if first is not None and not separator and not num2:
        if comparator in ("", "="):
            return ObxValue(quantity=_quantity(first, units))
        if comparator in _COMPARATORS:
            return ObxValue(quantity=_quantity(first, units, comparator))
    text = "" if comparator == "=" else comparator
    text += num1 + separator + num2
    return ObxValue(text=text) if text else ObxValue()


def obx_value(r: Reader, obx: Segment) -> ObxValue:
    """OBX-5 read by its type OBX-2; repetitions of a text value join with new lines."""
    value_type = r.get(obx, 2).upper()
    reps = [rep for rep in r.reps(obx, 5) if r.text(rep)]
    if not reps:
        return ObxValue()
    units = obx_units(r, obx)
    if value_type in _TEXT_TYPES:
        return ObxValue(text="\n".join(r.text(rep) for rep in reps))
    if value_type in _CODED_TYPES:
        concepts = [c for rep in reps if (c := concept(r, rep)) is not None]
        if not concepts:
            return ObxValue(text="\n".join(r.text(rep) for rep in reps))
        texts = [c.text or next((x.code for x in c.coding if x.code), "") for c in concepts]
        return ObxValue(concept=concepts[0], text="\n".join(t for t in texts if t) or None)
    if value_type in _TIME_TYPES:
        return ObxValue(text="\n".join(timestamp(r.comp(rep)) or r.text(rep) for rep in reps))
    if value_type in ("NM", "SN"):
        values = [
            _numeric(r.text(rep), units) if value_type == "NM" else _structured(r, rep, units)
            for rep in reps
        ]
        if len(values) == 1:
            return values[0]
        # Several numbers in one OBX-5: no single quantity, so all of them as text.
        return ObxValue(text="\n".join(_value_text(v) for v in values))
    return ObxValue(lost=True)  # ED, RP, NA, MA, unknown or missing type: not representable


def _value_text(value: ObxValue) -> str:
    q = value.quantity
    if q is None or q.value is None:
        return value.text or ""
    return f"{q.comparator or ''}{q.value:g}"


def reference_range(
    r: Reader, obx: Segment, units: tuple[str | None, ...]
) -> ReferenceRange | None:
    """OBX-7: "70-105", "70_105", "4.3 to 6.2", "<5", ">60"; the raw text is always kept."""
    reps = r.reps(obx, 7)
    text = r.text(reps[0]) if reps else ""
    if not text:
        return None
    low = high = None
    if match := _RANGE.fullmatch(text.strip()):
        low, high = _quantity(float(match[1]), units), _quantity(float(match[2]), units)
    elif match := _BOUND.fullmatch(text.strip()):
        bound = _quantity(float(match[2]), units)
        if match[1] in ("<", "<=", "\u2264"):
            high = bound
        else:
            low = bound
    return ReferenceRange(low, high, text)
