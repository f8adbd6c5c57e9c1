"""FHIR search on the demo server: parameter values parsed and compiled into `Clause`s that
test a resource, and `parse_query` for the query string of a type-level search.

Comma-separated values are ORed and repeated parameters ANDed; `\\,` and `\\|` escape the
separators. Tokens match `code`, `system|code`, `|code` and `system|` (modifier `:not`); strings
match a case- and accent-insensitive prefix (`:exact`, `:contains`); dates compare the ranges
implied by each value's precision under the eq/ne/gt/lt/ge/le/sa/eb prefixes; references match
`id`, `Type/id` or an absolute URL (a `:Type` modifier narrows a bare id). `_count`, `_offset` and
`_summary=count` page; unknown parameters are dropped unless the search is strict.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from app.demo.fhir_search_params import REFERENCE, Param, Resource, params_for


class BadRequest(ValueError):
    """A malformed search: answered with 400 and an OperationOutcome."""


# --- FHIR search value syntax ---------------------------------------------------------------------


def split_unescaped(value: str, separator: str) -> list[str]:
    """Split on `separator` unless escaped with a backslash; escapes stay for the next split."""
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for char in value:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def _fold(text: str) -> str:
    """FHIR string search ignores case and accents."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


# --- dates as half-open intervals (FHIR compares the ranges implied by each value's precision) ----

_DATE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?"
)
DATE_PREFIXES: Final = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"})


@dataclass(frozen=True, slots=True)
class Span:
    lo: datetime
    hi: datetime  # exclusive


def parse_span(text: str) -> Span:
    """`2025`, `2025-03`, `2025-03-14`, `2025-03-14T09:30[:00[.5]][Z|+01:00]` -> its range."""
    found = _DATE.fullmatch(text.replace(" ", "+"))  # an unencoded `+` arrives as a space
    if not found:
        raise BadRequest(f"invalid date {text!r}")
    year, month, day, hour, minute, second, fraction, zone = found.groups()
    try:
        if hour is None:
            return _calendar_span(int(year), month, day)
        start = datetime.fromisoformat(
            f"{year}-{month}-{day}T{hour}:{minute}:{second or '00'}{fraction or ''}"
            f"{'+00:00' if zone in (None, 'Z') else zone}"
        )
    except ValueError as exc:
        raise BadRequest(f"invalid date {text!r}") from exc
    width = timedelta(microseconds=1) if fraction else timedelta(seconds=1 if second else 60)
    return Span(start, start + width)


def _calendar_span(year: int, month: str | None, day: str | None) -> Span:
    if month is None:
        return Span(datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC))
    start = datetime(year, int(month), int(day or 1), tzinfo=UTC)
    if day is not None:
        return Span(start, start + timedelta(days=1))
    rollover = (year + 1, 1) if start.month == 12 else (year, start.month + 1)
    return Span(start, datetime(*rollover, 1, tzinfo=UTC))


def _date_matches(prefix: str, wanted: Span, target: Span) -> bool:
    inside = wanted.lo <= target.lo and target.hi <= wanted.hi
    return {
        "eq": inside,
        "ne": not inside,
        "gt": target.hi > wanted.hi,
        "lt": target.lo < wanted.lo,
        "ge": target.hi > wanted.lo,
        "le": target.lo < wanted.hi,
        "sa": target.lo >= wanted.hi,
        "eb": target.hi <= wanted.lo,
    }[prefix]


def _parse_date_value(value: str) -> tuple[str, Span]:
    prefix = value[:2] if value[:2].isalpha() else "eq"
    if prefix not in DATE_PREFIXES:
        raise BadRequest(f"unsupported date prefix in {value!r}")
    return prefix, parse_span(value[2:] if value[:2].isalpha() else value)


def _target_span(value: Any) -> Span | None:
    return _stored_span(value) if isinstance(value, str) else None


@functools.lru_cache(maxsize=8192)
def _stored_span(value: str) -> Span | None:
    """A resource's own date (cached: the data never changes); a malformed one never matches."""
    try:
        return parse_span(value)
    except BadRequest:
        return None


_PAGING: Final = frozenset({"_count", "_offset", "_summary"})
_HARMLESS: Final = frozenset({"_format", "_pretty"})  # ignored even under handling=strict


# --- compiling a query into clauses ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Clause:
    """One parameter occurrence: its comma-separated alternatives ORed, clauses ANDed."""

    test: Callable[[Resource], bool]
    index_key: str | None = None  # "_id" or "reference": the values can narrow via an index
    index_values: frozenset[str] = frozenset()


_IMPLICIT: Final = "\0implicit"  # the system of a plain `code` element: implied, matches any


def _token_pairs(item: Any) -> Iterator[tuple[str | None, str | None]]:
    if isinstance(item, str):
        yield _IMPLICIT, item
    elif isinstance(item, Mapping):
        if "coding" in item:
            for coding in item["coding"]:
                yield coding.get("system"), coding.get("code")
        elif "value" in item:
            yield item.get("system"), item.get("value")
        elif "code" in item:
            yield item.get("system"), item.get("code")


def _token_matches(wanted: tuple[str | None, str], system: str | None, code: str | None) -> bool:
    """`code` any system, `system|code`, `|code` no system, `system|` any code in system."""
    want_system, want_code = wanted
    if want_code and code != want_code:
        return False
    if want_system is None or system == _IMPLICIT:
        return True
    return (system or "") == want_system


def _token_clause(param: Param, values: list[str], modifier: str) -> Clause:
    if modifier not in ("", "not"):
        raise BadRequest(f"unsupported token modifier :{modifier}")
    wanted: list[tuple[str | None, str]] = []
    for value in values:
        parts = [unescape(p) for p in split_unescaped(value, "|")]
        if len(parts) > 2:
            raise BadRequest(f"invalid token {value!r}")
        wanted.append((None, parts[0]) if len(parts) == 1 else (parts[0], parts[1]))

    def test(resource: Resource) -> bool:
        found = any(
            _token_matches(w, s, c)
            for item in param.extract(resource)
            for s, c in _token_pairs(item)
            for w in wanted
        )
        return found != (modifier == "not")

    return Clause(test)


def _string_clause(param: Param, values: list[str], modifier: str) -> Clause:
    if modifier not in ("", "exact", "contains"):
        raise BadRequest(f"unsupported string modifier :{modifier}")
    wanted = [unescape(v) if modifier == "exact" else _fold(unescape(v)) for v in values]

    def hit(text: str, want: str) -> bool:
        if modifier == "exact":
            return text == want
        return want in _fold(text) if modifier == "contains" else _fold(text).startswith(want)

    def test(resource: Resource) -> bool:
        return any(
            hit(text, want)
            for text in param.extract(resource)
            if isinstance(text, str)
            for want in wanted
        )

    return Clause(test)


def _date_clause(param: Param, values: list[str], modifier: str) -> Clause:
    if modifier:
        raise BadRequest(f"unsupported date modifier :{modifier}")
    wanted = [_parse_date_value(unescape(v)) for v in values]

    def test(resource: Resource) -> bool:
        spans = [s for s in map(_target_span, param.extract(resource)) if s is not None]
        return any(_date_matches(prefix, want, span) for span in spans for prefix, want in wanted)

    return Clause(test)


def _reference_target(value: str) -> tuple[str | None, str]:
    """`123`, `Patient/123` or `https://host/fhir/Patient/123` -> (type or None, id)."""
    parts = value.rstrip("/").split("/")
    if len(parts) == 1:
        return None, parts[0]
    return parts[-2], parts[-1]


def _reference_hit(reference: str, wanted: set[tuple[str | None, str]], modifier: str) -> bool:
    kind, local = _reference_target(reference)
    if (kind, local) in wanted:
        return True
    # A bare id matches a reference of any type, unless a modifier names one (subject:Patient=1).
    return (None, local) in wanted and (not modifier or kind == modifier)


def _reference_clause(param: Param, values: list[str], modifier: str) -> Clause:
    if modifier and not modifier[:1].isupper():
        raise BadRequest(f"unsupported reference modifier :{modifier}")
    wanted = {_reference_target(unescape(v)) for v in values}

    def test(resource: Resource) -> bool:
        return any(_reference_hit(str(r), wanted, modifier) for r in param.extract(resource))

    return Clause(test, "reference", frozenset(local for _, local in wanted))


def referenced_ids(resource: Resource) -> set[str]:
    """Ids in subject/patient, whatever their type: a superset the clause then filters."""
    references = REFERENCE.extract(resource)
    return {_reference_target(r)[1] for r in references if isinstance(r, str)}


_BUILDERS: Final[Mapping[str, Callable[[Param, list[str], str], Clause]]] = {
    "token": _token_clause,
    "string": _string_clause,
    "date": _date_clause,
    "reference": _reference_clause,
}


def compile_clause(name: str, param: Param, value: str, modifier: str) -> Clause:
    values = [v for v in split_unescaped(value, ",") if v]
    clause = _BUILDERS[param.kind](param, values, modifier)
    if name == "_id":
        if modifier:
            raise BadRequest("_id takes no modifier")
        return Clause(clause.test, "_id", frozenset(unescape(v) for v in values))
    return clause


@dataclass(frozen=True, slots=True)
class Query:
    clauses: tuple[Clause, ...]
    used: tuple[tuple[str, str], ...]  # the parameters honoured, for self/next links
    count: int | None
    offset: int
    summary_count: bool


def _non_negative(name: str, value: str) -> int:
    if not re.fullmatch(r"[0-9]{1,9}", value):  # str.isdigit() would let "²" through to int()
        raise BadRequest(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def parse_query(
    resource_type: str, items: Iterable[tuple[str, str]], *, strict: bool = False
) -> Query:
    known = params_for(resource_type)
    clauses: list[Clause] = []
    used: list[tuple[str, str]] = []
    paging: dict[str, str] = {}
    for key, value in items:
        name, _, modifier = key.partition(":")
        if name in _PAGING:
            paging[name] = value
        elif name in known and value:
            clauses.append(compile_clause(name, known[name], value, modifier))
            used.append((key, value))
        elif strict and name not in known and name not in _HARMLESS:
            raise BadRequest(f"unknown search parameter {key!r} for {resource_type}")
    count = _non_negative("_count", paging["_count"]) if "_count" in paging else None
    offset = _non_negative("_offset", paging.get("_offset", "0"))
    return Query(tuple(clauses), tuple(used), count, offset, paging.get("_summary") == "count")
