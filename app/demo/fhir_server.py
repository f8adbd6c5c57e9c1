"""A small FHIR R4 server over a fixed list of resources: the demo's upstreams and the test double.

It implements the part of FHIR REST a read-only connector meets: `metadata`, read, and type-level
search with the common parameter kinds (token, string, date, reference), comma-OR, repeated-AND,
`\\,` escaping, `_count`/`_offset` paging with absolute `next` links, and OperationOutcome errors.
Unknown parameters are ignored as FHIR's lenient handling allows (and left out of the `self`
link so a client can tell), unless the client sends `Prefer: handling=strict`.

`app.state.requests` (every request's path and raw query string, on arrival) and
`app.state.delay_seconds` (awaited before every answer) let tests and benchmarks count upstream
round trips and inject latency.
"""

from __future__ import annotations

import asyncio
import functools
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

FHIR_JSON: Final = "application/fhir+json"
Resource = Mapping[str, Any]
Extractor = Callable[[Resource], Iterator[Any]]


class FhirResponse(JSONResponse):
    media_type = FHIR_JSON


class BadRequest(ValueError):
    """A malformed search: answered with 400 and an OperationOutcome."""


def _outcome(status: int, code: str, message: str) -> FhirResponse:
    issue = {"severity": "error", "code": code, "diagnostics": message}
    return FhirResponse({"resourceType": "OperationOutcome", "issue": [issue]}, status)


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


# --- where each search parameter looks in a resource ----------------------------------------------


def _walk(node: Any, keys: Sequence[str]) -> Iterator[Any]:
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, keys)
    elif not keys:
        if node is not None:
            yield node
    elif isinstance(node, Mapping) and keys[0] in node:
        yield from _walk(node[keys[0]], keys[1:])


def _at(*paths: str) -> Extractor:
    split = [path.split(".") for path in paths]

    def extract(resource: Resource) -> Iterator[Any]:
        for keys in split:
            yield from _walk(resource, keys)

    return extract


def _medication_code(resource: Resource) -> Iterator[Any]:
    """medicationCodeableConcept, or the code of a contained Medication (`#med1`)."""
    yield from _walk(resource, ["medicationCodeableConcept"])
    reference = resource.get("medicationReference", {}).get("reference", "")
    if reference.startswith("#"):
        for contained in resource.get("contained", []):
            if contained.get("id") == reference[1:]:
                yield from _walk(contained, ["code"])


@dataclass(frozen=True, slots=True)
class Param:
    kind: str  # token | string | date | reference
    extract: Extractor


def _token(*paths: str) -> Param:
    return Param("token", _at(*paths))


def _date(*paths: str) -> Param:
    return Param("date", _at(*paths))


_REFERENCE = Param("reference", _at("subject.reference", "patient.reference"))
_COMMON: Final = {"_id": _token("id"), "identifier": _token("identifier")}
_CLINICAL: Final = {
    **_COMMON,
    "patient": _REFERENCE,
    "subject": _REFERENCE,
    "status": _token("status"),
}
_OBSERVED = _date("effectiveDateTime", "effectivePeriod.start", "effectiveInstant")
_MEDICATION_CODE = Param("token", _medication_code)

SEARCH_PARAMS: Final[Mapping[str, Mapping[str, Param]]] = {
    "Patient": {
        **_COMMON,
        "name": Param(
            "string", _at("name.family", "name.given", "name.text", "name.prefix", "name.suffix")
        ),
        "family": Param("string", _at("name.family")),
        "given": Param("string", _at("name.given")),
        "birthdate": _date("birthDate"),
        "gender": _token("gender"),
    },
    "Observation": {
        **_CLINICAL,
        "category": _token("category"),
        "code": _token("code"),
        "date": _OBSERVED,
    },
    "Condition": {
        **_CLINICAL,
        "category": _token("category"),
        "code": _token("code"),
        "clinical-status": _token("clinicalStatus"),
        "date": _date("onsetDateTime", "onsetPeriod.start"),
        "onset-date": _date("onsetDateTime", "onsetPeriod.start"),
    },
    "AllergyIntolerance": {
        **_CLINICAL,
        "category": _token("category"),
        "code": _token("code"),
        "clinical-status": _token("clinicalStatus"),
        "date": _date("recordedDate"),
    },
    "MedicationRequest": {
        **_CLINICAL,
        "code": _MEDICATION_CODE,
        "intent": _token("intent"),
        "category": _token("category"),
        "date": _date("authoredOn"),
        "authoredon": _date("authoredOn"),
    },
    "MedicationStatement": {
        **_CLINICAL,
        "code": _MEDICATION_CODE,
        "category": _token("category"),
        "date": _date("effectiveDateTime", "effectivePeriod.start"),
        "effective": _date("effectiveDateTime", "effectivePeriod.start"),
    },
    "Immunization": {
        **_CLINICAL,
        "code": _token("vaccineCode"),
        "vaccine-code": _token("vaccineCode"),
        "date": _date("occurrenceDateTime"),
    },
    "Encounter": {
        **_CLINICAL,
        "class": _token("class"),
        "type": _token("type"),
        "date": _date("period.start"),
    },
    "Procedure": {
        **_CLINICAL,
        "code": _token("code"),
        "date": _date("performedDateTime", "performedPeriod.start"),
    },
    "DiagnosticReport": {
        **_CLINICAL,
        "category": _token("category"),
        "code": _token("code"),
        "date": _OBSERVED,
    },
}
# Searchable (empty) even when the data holds none, like a real server that supports the type.
EXTRA_TYPES: Final = frozenset(
    {
        "DocumentReference",
        "Coverage",
        "CareTeam",
        "Goal",
        "CarePlan",
        "Practitioner",
        "Organization",
        "Location",
        "Medication",
        "Provenance",
        "Device",
        "ServiceRequest",
    }
)
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
    known = SEARCH_PARAMS.get(resource_type, _CLINICAL)
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


# --- the indexed store ----------------------------------------------------------------------------


def _referenced_ids(resource: Resource) -> set[str]:
    """Ids in subject/patient, whatever their type: a superset the clause then filters."""
    references = _REFERENCE.extract(resource)
    return {_reference_target(r)[1] for r in references if isinstance(r, str)}


class Store:
    """Resources by type, with positions by id and by subject so searches skip full scans."""

    def __init__(self, resources: Sequence[Resource]) -> None:
        self.by_type: dict[str, list[Resource]] = {}
        self._by_id: dict[tuple[str, str], int] = {}
        self._by_subject: dict[tuple[str, str], list[int]] = {}
        for resource in resources:
            self._add(resource)

    def _add(self, resource: Resource) -> None:
        kind, local = resource.get("resourceType"), resource.get("id")
        if not isinstance(kind, str) or not isinstance(local, str):
            raise ValueError("every resource needs a resourceType and an id")
        if (kind, local) in self._by_id:
            raise ValueError(f"duplicate resource {kind}/{local}")
        rows = self.by_type.setdefault(kind, [])
        self._by_id[kind, local] = len(rows)
        for subject in _referenced_ids(resource):
            self._by_subject.setdefault((kind, subject), []).append(len(rows))
        rows.append(resource)

    def read(self, kind: str, local: str) -> Resource | None:
        position = self._by_id.get((kind, local))
        return None if position is None else self.by_type[kind][position]

    def search(self, kind: str, clauses: Sequence[Clause]) -> list[Resource]:
        rows = self.by_type.get(kind, [])
        return [
            rows[i]
            for i in self._candidates(kind, clauses)
            if all(c.test(rows[i]) for c in clauses)
        ]

    def _candidates(self, kind: str, clauses: Sequence[Clause]) -> Iterable[int]:
        """Positions the indexed clauses allow, in storage order (stable paging)."""
        allowed: set[int] | None = None
        for clause in clauses:
            if clause.index_key is None:
                continue
            positions = set(self._positions(kind, clause.index_key, clause.index_values))
            allowed = positions if allowed is None else allowed & positions
        return range(len(self.by_type.get(kind, []))) if allowed is None else sorted(allowed)

    def _positions(self, kind: str, key: str, values: frozenset[str]) -> Iterator[int]:
        for value in values:
            if key == "_id":
                if (position := self._by_id.get((kind, value))) is not None:
                    yield position
            else:
                yield from self._by_subject.get((kind, value), [])


# --- HTTP ---------------------------------------------------------------------------------------


class _Instrumentation:
    """Logs each request on arrival and waits `delay_seconds` before letting it through."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = scope.get("query_string", b"").decode("latin-1")
            self.state.requests.append(scope["path"] + (f"?{query}" if query else ""))
            await asyncio.sleep(self.state.delay_seconds)
        await self.app(scope, receive, send)


@dataclass(frozen=True)
class _Settings:
    base_path: str
    next_links: bool
    default_count: int
    max_count: int


def _capability(store: Store) -> dict[str, Any]:
    resources = [
        {
            "type": kind,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [
                {"name": name, "type": param.kind}
                for name, param in SEARCH_PARAMS.get(kind, _CLINICAL).items()
            ],
        }
        for kind in sorted(set(store.by_type) | set(SEARCH_PARAMS))
    ]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-01-01",
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "software": {"name": "PatientGraph demo FHIR server"},
        "rest": [{"mode": "server", "resource": resources}],
    }


def _page(settings: _Settings, query: Query, total: int) -> tuple[int, int]:
    """(offset, size) of the page to return."""
    if not settings.next_links:  # this upstream answers everything at once, ignoring _count
        return 0, total
    size = settings.default_count if query.count is None else query.count
    return query.offset, min(size, settings.max_count)


def _bundle(
    request: Request, settings: _Settings, query: Query, matches: list[Resource]
) -> dict[str, Any]:
    root = str(request.base_url).rstrip("/") + settings.base_path
    offset, size = _page(settings, query, len(matches))
    shown = [] if query.summary_count else matches[offset : offset + size]

    def link(at: int) -> str:
        paging = [("_count", str(size)), ("_offset", str(at))] if settings.next_links else []
        return str(request.url.replace(query=urlencode([*query.used, *paging])))

    links = [{"relation": "self", "url": link(offset)}]
    more = size > 0 and offset + size < len(matches)  # _count=0 must not loop a client forever
    if settings.next_links and not query.summary_count and more:
        links.append({"relation": "next", "url": link(offset + size)})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(matches),
        "link": links,
        "entry": [
            {
                "fullUrl": f"{root}/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in shown
        ],
    }


def _routes(store: Store, settings: _Settings) -> list[Route]:
    searchable = set(store.by_type) | set(SEARCH_PARAMS) | EXTRA_TYPES

    async def metadata(request: Request) -> Response:
        return FhirResponse(_capability(store))

    async def read(request: Request) -> Response:
        kind, local = request.path_params["resource_type"], request.path_params["resource_id"]
        resource = store.read(kind, local)
        if resource is None:
            return _outcome(404, "not-found", f"{kind}/{local} is not known")
        version = resource.get("meta", {}).get("versionId")
        headers = {"ETag": f'W/"{version}"'} if version else None
        return FhirResponse(dict(resource), headers=headers)

    async def search(request: Request) -> Response:
        kind = request.path_params["resource_type"]
        if kind not in searchable:
            return _outcome(404, "not-supported", f"resource type {kind!r} is not supported")
        strict = "handling=strict" in request.headers.get("prefer", "")
        try:
            query = parse_query(kind, request.query_params.multi_items(), strict=strict)
        except BadRequest as exc:
            return _outcome(400, "invalid", str(exc))
        return FhirResponse(_bundle(request, settings, query, store.search(kind, query.clauses)))

    base = settings.base_path
    return [
        Route(f"{base}/metadata", metadata, methods=["GET"]),
        Route(f"{base}/{{resource_type}}", search, methods=["GET"]),
        Route(f"{base}/{{resource_type}}/{{resource_id}}", read, methods=["GET"]),
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = {404: "not-found", 405: "not-supported"}.get(status, "exception")
    response = _outcome(status, code, str(getattr(exc, "detail", "error")))
    response.headers.update(getattr(exc, "headers", None) or {})  # e.g. Allow on a 405
    return response


def create_fhir_app(
    resources: Sequence[Mapping[str, Any]],
    *,
    base_path: str = "/fhir/R4",
    next_links: bool = True,
    default_count: int = 50,
    max_count: int = 200,
) -> Starlette:
    """A read-only FHIR R4 JSON server over `resources` (indexed once, never mutated)."""
    if default_count < 1 or max_count < 1:
        raise ValueError("page sizes must be positive")
    settings = _Settings(base_path.rstrip("/"), next_links, default_count, max_count)
    store = Store(resources)
    app = Starlette(
        routes=_routes(store, settings), exception_handlers={HTTPException: _http_error}
    )
    app.state.requests = []
    app.state.delay_seconds = 0.0
    app.state.store = store
    app.add_middleware(_Instrumentation, state=app.state)
    return app
