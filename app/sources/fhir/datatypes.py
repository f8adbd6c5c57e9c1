"""FHIR R4 datatypes -> domain values: primitives, Coding, CodeableConcept, Quantity, Meta,
choice-type times (`effective[x]`, `onset[x]`, ...), references kept as text, HumanName,
Identifier, Address, ContactPoint, and the `SourceLink` every record starts from.

Tolerant of real-world data: every optional element may be missing, unknown codes pass through
as data, extensions are ignored. A resource whose shape is wrong (not an object, no id) raises
`MappingError`; the source counts and reports it. A primitive of the wrong JSON type or format
(`"birthDate": 12`, `"gender": 5`, a date of `"yesterday"`) is read as absent and counted
(`counting_wrong_values`): never stringified, so it cannot outrank another source's valid value.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
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


# FHIR R4 primitive formats (https://hl7.org/fhir/R4/datatypes.html#primitive).
_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_MONTH, _DAY = r"(0[1-9]|1[0-2])", r"(0[1-9]|[1-2][0-9]|3[0-1])"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
_ZONE = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
DATE = re.compile(rf"{_YEAR}(-{_MONTH}(-{_DAY})?)?")
DATE_TIME = re.compile(rf"{_YEAR}(-{_MONTH}(-{_DAY}(T{_TIME}{_ZONE})?)?)?")
INSTANT = re.compile(rf"{_YEAR}-{_MONTH}-{_DAY}T{_TIME}{_ZONE}")
TIME = re.compile(_TIME)
GENDERS = frozenset({"male", "female", "other", "unknown"})  # AdministrativeGender (required)

# Wrong values met while mapping, for the source's `unmapped` count. A context variable keeps
# the mappers plain functions of a resource; outside `counting_wrong_values` nothing is counted.
_WRONG: ContextVar[list[int] | None] = ContextVar("fhir_wrong_values", default=None)


@contextlib.contextmanager
def counting_wrong_values() -> Iterator[list[int]]:
    """Counts the wrong primitives mapped inside the block: `[n]` once it exits."""
    tally = [0]
    token = _WRONG.set(tally)
    try:
        yield tally
    finally:
        _WRONG.reset(token)


def _wrong() -> None:
    tally = _WRONG.get()
    if tally is not None:
        tally[0] += 1


def string(value: Any) -> str | None:
    """A FHIR string (or code, uri, id): a JSON string; anything else is wrong, not text."""
    if isinstance(value, str):
        return value or None
    if value is not None:
        _wrong()
    return None


def _formatted(value: Any, pattern: re.Pattern[str]) -> str | None:
    text = string(value)
    if text is None:
        return None
    if pattern.fullmatch(text) is None or not _real_day(text):
        _wrong()
        return None
    return text


def _real_day(text: str) -> bool:
    """The FHIR patterns allow 2023-02-31; the calendar does not."""
    if len(text) < 10:
        return True
    try:
        dt.date.fromisoformat(text[:10])
    except ValueError:
        return False
    return True


def date(value: Any) -> str | None:
    """A FHIR `date` (YYYY, YYYY-MM or YYYY-MM-DD) as given, or None when malformed."""
    return _formatted(value, DATE)


def date_time(value: Any) -> str | None:
    """A FHIR `dateTime` (a date, or a time with seconds and an offset) as given."""
    return _formatted(value, DATE_TIME)


def instant(value: Any) -> str | None:
    """A FHIR `instant`: a full date and time with an offset."""
    return _formatted(value, INSTANT)


def time(value: Any) -> str | None:
    return _formatted(value, TIME)


def boolean(value: Any) -> str | None:
    """A FHIR boolean as text (`valueBoolean`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is not None:
        _wrong()
    return None


def gender(value: Any) -> str | None:
    code = string(value)
    if code is not None and code not in GENDERS:
        _wrong()
        return None
    return code


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
        instant(data.get("lastUpdated")),
        string(data.get("versionId")),
        tuple(coding(c) for c in security if isinstance(c, dict))
        if isinstance(security, list)
        else (),
    )


def period_start(data: Any) -> str | None:
    data = obj(data)
    return date_time(data.get("start")) or date_time(data.get("end"))


def choice_time(resource: Json, prefix: str) -> str | None:
    """A `prefix[x]` time as one ISO 8601 string: DateTime/Instant as is, Period by its start,
    Timing by its first event, Age/String/Range as text."""
    keys = _CHOICE_KEYS.get(prefix) or _choice_keys(prefix)
    for key, read in zip(keys.instants, _INSTANT_READERS, strict=True):
        value = read(resource.get(key))
        if value:
            return value
    if (period := resource.get(keys.period)) is not None:
        return period_start(period)
    if (timing := resource.get(keys.timing)) is not None:
        events = obj(timing).get("event")
        return date_time(events[0]) if isinstance(events, list) and events else None
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
_INSTANT_READERS = (date_time, instant, string, date)  # in the order of `_ChoiceKeys.instants`


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
