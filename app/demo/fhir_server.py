"""A small FHIR R4 server over a fixed list of resources: the demo's upstreams and the test double.

It implements the part of FHIR REST a read-only connector meets: `metadata`, read, and type-level
search with the common parameter kinds (token, string, date, reference), comma-OR, repeated-AND,
`\\,` escaping, `_count`/`_offset` paging with absolute `next` links, and OperationOutcome errors.
Unknown parameters are ignored as FHIR's lenient handling allows (and left out of the `self`
link so a client can tell), unless the client sends `Prefer: handling=strict`.

`app.state.requests` (every request's path and raw query string, on arrival) and
`app.state.delay_seconds` (awaited before every answer) let tests and benchmarks count upstream
round trips and inject latency.

Reads and searches carry an `ETag` (the resource's `W/"versionId"`, or a hash of the body) and
`Cache-Control` (`app.state.cache_control`, default `max-age=30`; None sends none); a request
whose `If-None-Match` matches gets a bodiless 304 and is also logged in `app.state.not_modified`.
`app.state.etags = False` stops sending ETags (an upstream that cannot revalidate).

Search itself lives in `fhir_search.py` (parsing and matching) and `fhir_search_params.py` (which
parameters each type supports); this module holds the indexed store and the HTTP layer.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from app.demo.fhir_search import BadRequest, Clause, Query, parse_query, referenced_ids
from app.demo.fhir_search_params import EXTRA_TYPES, SEARCH_PARAMS, Resource, params_for

FHIR_JSON: Final = "application/fhir+json"


class FhirResponse(JSONResponse):
    media_type = FHIR_JSON


def _outcome(status: int, code: str, message: str) -> FhirResponse:
    issue = {"severity": "error", "code": code, "diagnostics": message}
    return FhirResponse({"resourceType": "OperationOutcome", "issue": [issue]}, status)


# --- the indexed store ----------------------------------------------------------------------------


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
        for subject in referenced_ids(resource):
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
                {"name": name, "type": param.kind} for name, param in params_for(kind).items()
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


def _conditional(request: Request, response: Response, etag: str | None = None) -> Response:
    """`response` with its validators, or a 304 when the client already holds this version."""
    state = request.app.state
    etag = etag or 'W/"' + hashlib.sha256(response.body).hexdigest()[:32] + '"'
    headers = {"ETag": etag} if state.etags else {}
    if state.cache_control:
        headers["Cache-Control"] = state.cache_control
    if state.etags and _matches(request.headers.get("if-none-match"), etag):
        query = request.url.query
        state.not_modified.append(request.url.path + (f"?{query}" if query else ""))
        return Response(status_code=304, headers=headers)
    response.headers.update(headers)
    return response


def _matches(if_none_match: str | None, etag: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 §13.1.2): `W/` is ignored."""
    if if_none_match is None:
        return False
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in tags or etag.removeprefix("W/") in tags


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
        etag = f'W/"{version}"' if version else None
        return _conditional(request, FhirResponse(dict(resource)), etag)

    async def search(request: Request) -> Response:
        kind = request.path_params["resource_type"]
        if kind not in searchable:
            return _outcome(404, "not-supported", f"resource type {kind!r} is not supported")
        strict = "handling=strict" in request.headers.get("prefer", "")
        try:
            query = parse_query(kind, request.query_params.multi_items(), strict=strict)
        except BadRequest as exc:
            return _outcome(400, "invalid", str(exc))
        bundle = _bundle(request, settings, query, store.search(kind, query.clauses))
        return _conditional(request, FhirResponse(bundle))

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
    cache_control: str | None = "max-age=30",
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
    app.state.not_modified = []
    app.state.cache_control = cache_control
    app.state.etags = True
    app.state.store = store
    app.add_middleware(_Instrumentation, state=app.state)
    return app
