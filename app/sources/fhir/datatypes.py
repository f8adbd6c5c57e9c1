"""FHIR R4 datatypes -> domain values: primitives, Coding, CodeableConcept, Quantity, Meta,
choice-type times (`effective[x]`, `onset[x]`, ...), references kept as text, HumanName,
Identifier, Address, ContactPoint, and the `SourceLink` every record starts from.

Tolerant of real-world data: every optional element may be missing, unknown codes pass through
as data, extensions are ignored. A resource whose shape is wrong (not an object, no id) raises
`MappingError`; the source counts and reports it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.domain.common import (
    Address,
    CodeableConcept,
    Coding,
    ContactPoint,
    HumanName,
    Identifier,
    Quantity,
    RecordMeta,
    SourceLink,
)

Json = Mapping[str, Any]
EMPTY_CONCEPT = CodeableConcept(text=None)
NO_META = RecordMeta()


class MappingError(ValueError):
    """A resource too malformed to map (the message holds no data from it)."""


# ---- primitives ---------------------------------------------------------------------------


def obj(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def objs(value: Any) -> list[Json]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def string(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return None


def number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    return float(value) if isinstance(value, (int, float)) else None


def coding(data: Json) -> Coding:
    return _coding(
        string(data.get("system")), string(data.get("code")), string(data.get("display"))
    )


def concept(data: Any) -> CodeableConcept:
    if not isinstance(data, dict):
        return _concept(None, ())
    raw = data.get("coding")
    codes = (
        tuple(
            (string(c.get("system")), string(c.get("code")), string(c.get("display")))
            for c in raw
            if isinstance(c, dict)
        )
        if isinstance(raw, list)
        else ()
    )
    return _concept(string(data.get("text")), codes)


# The same few codes (LOINC, SNOMED, units) recur in every bundle: one immutable instance per
# distinct value saves most of the allocation in mapping. `_concept` is keyed by the strings
# (hashed in C), so a cache hit builds no Coding at all.
@functools.lru_cache(maxsize=8192)
def _coding(system: str | None, code: str | None, display: str | None) -> Coding:
    return Coding(system, code, display)


@functools.lru_cache(maxsize=8192)
def _concept(
    text: str | None, codes: tuple[tuple[str | None, str | None, str | None], ...]
) -> CodeableConcept:
    codings = tuple(_coding(*c) for c in codes)
    return CodeableConcept(text or next((c.display for c in codings if c.display), None), codings)


def concept_or_none(data: Any) -> CodeableConcept | None:
    return concept(data) if isinstance(data, dict) else None


def codes_of(data: Any) -> tuple[str, ...]:
    """The codes of a repeating CodeableConcept (e.g. `category`), for filtering and display."""
    if not isinstance(data, list):
        return ()
    return tuple(
        code for cc in data if isinstance(cc, dict) for c in concept(cc).coding if (code := c.code)
    )


def status_code(data: Any) -> str | None:
    """`clinicalStatus` and friends: a CodeableConcept whose first code is the status."""
    cc = concept(data)
    return next((c.code for c in cc.coding if c.code), cc.text)


def quantity(data: Any) -> Quantity | None:
    if not isinstance(data, dict):
        return None
    code = string(data.get("code"))
    return Quantity(
        number(data.get("value")),
        string(data.get("unit")) or code,
        string(data.get("system")),
        code,
        string(data.get("comparator")),
    )


def meta(resource: Json) -> RecordMeta:
    data = resource.get("meta")
    if not isinstance(data, dict):
        return NO_META
    security = data.get("security")
    return RecordMeta(
        string(data.get("lastUpdated")),
        string(data.get("versionId")),
        tuple(coding(c) for c in security if isinstance(c, dict))
        if isinstance(security, list)
        else (),
    )


def period_start(data: Any) -> str | None:
    data = obj(data)
    return string(data.get("start")) or string(data.get("end"))


def choice_time(resource: Json, prefix: str) -> str | None:
    """A `prefix[x]` time as one ISO 8601 string: DateTime/Instant as is, Period by its start,
    Timing by its first event, Age/String/Range as text."""
    keys = _CHOICE_KEYS.get(prefix) or _choice_keys(prefix)
    for key in keys.instants:
        value = string(resource.get(key))
        if value:
            return value
    if (period := resource.get(keys.period)) is not None:
        return period_start(period)
    if (timing := resource.get(keys.timing)) is not None:
        events = obj(timing).get("event")
        return string(events[0]) if isinstance(events, list) and events else None
    age = quantity(resource.get(keys.age))
    if age is not None and age.value is not None:
        return f"{age.value:g} {age.unit or ''}".strip()
    return range_text(resource.get(keys.range))


@dataclass(frozen=True, slots=True)
class _ChoiceKeys:
    instants: tuple[str, ...]  # DateTime, Instant, String, Date: the first non-empty wins
    period: str
    timing: str
    age: str
    range: str


def _choice_keys(prefix: str) -> _ChoiceKeys:
    keys = _ChoiceKeys(
        tuple(prefix + s for s in ("DateTime", "Instant", "String", "Date")),
        prefix + "Period",
        prefix + "Timing",
        prefix + "Age",
        prefix + "Range",
    )
    _CHOICE_KEYS[prefix] = keys
    return keys


_CHOICE_KEYS: dict[str, _ChoiceKeys] = {}


def reference_text(data: Any) -> str | None:
    data = obj(data)
    return string(data.get("display")) or string(data.get("reference"))


def annotation_texts(data: Any) -> tuple[str, ...]:
    """`note` (Annotation, repeating): the texts in order; author and time are not kept."""
    return tuple(t for n in objs(data) if (t := string(n.get("text"))) and not t.isspace())


def link(source_id: str, resource: Json) -> SourceLink:
    # Every mapper calls this first, so a non-object resource raises MappingError here
    # rather than an AttributeError from the first `.get`.
    if not isinstance(resource, dict):
        raise MappingError("resource is not a JSON object")
    resource_type, local_id = resource.get("resourceType"), resource.get("id")
    if not isinstance(resource_type, str) or not isinstance(local_id, str) or not local_id:
        raise MappingError("resource without resourceType or id")
    return SourceLink(source_id, local_id, resource_type)


# ---- patients -----------------------------------------------------------------------------


def _human_name(data: Json) -> HumanName:
    # A bare string would otherwise iterate as characters, and null would raise.
    given = tuple(g for g in _list(data.get("given")) if isinstance(g, str) and g)
    family = string(data.get("family"))
    text = string(data.get("text")) or " ".join([*given, family or ""]).strip() or None
    return HumanName(family, given, text)


def official_name(names: list[Json]) -> HumanName | None:
    """`official` (then `usual`, then the first current name) per FHIR guidance; a name with a
    `period.end` or `use: old` is no longer in use, taken only when there is nothing else."""
    current = [n for n in names if n.get("use") != "old" and "end" not in obj(n.get("period"))]
    for use in ("official", "usual", None):
        for name in current:
            if use is None or name.get("use") == use:
                return _human_name(name)
    return _human_name(names[0]) if names else None


def identifier(data: Json) -> Identifier | None:
    value = string(data.get("value"))
    if value is None:
        return None
    return Identifier(string(data.get("system")), value, concept(data.get("type")).text)


def address(data: Json) -> Address | None:
    """An Address with at least one part; `line` keeps only its non-empty strings. Every
    address is kept, with its `use` (`old` ones included: the domain has no period)."""
    lines = tuple(x for x in _list(data.get("line")) if isinstance(x, str) and x.strip())
    found = Address(
        use=string(data.get("use")),
        lines=lines,
        city=string(data.get("city")),
        state=string(data.get("state")),
        postal_code=string(data.get("postalCode")),
        country=string(data.get("country")),
        text=string(data.get("text")),
    )
    parts = (found.city, found.state, found.postal_code, found.country, found.text)
    return found if lines or any(parts) else None


def contact_point(data: Json) -> ContactPoint | None:
    """A ContactPoint with a string `value` (anything else reaches no one)."""
    value = data.get("value")
    if not isinstance(value, str) or not value.strip():
        return None
    return ContactPoint(string(data.get("system")), value, string(data.get("use")))


def range_text(rng: Any) -> str | None:
    """A Range as `low-high` (an open end left empty); None when neither end has a value."""
    if not isinstance(rng, dict):
        return None
    low, high = quantity_text(quantity(rng.get("low"))), quantity_text(quantity(rng.get("high")))
    return f"{low}-{high}" if low or high else None


def quantity_text(q: Quantity | None) -> str:
    if q is None or q.value is None:
        return ""
    return f"{q.value:g} {q.unit}" if q.unit else f"{q.value:g}"
