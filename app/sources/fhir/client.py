"""HTTP for one FHIR server: one pooled httpx.AsyncClient, searches with paging, and every
transport, status and decoding failure translated into the SourceError tree.

Search pages go through the source's fetcher (`app.sources.fetching`; the server gives it the
source cache), each keyed by its full URL and revalidated with `If-None-Match` when the server
sent an `ETag`. Every page is bounded: its body is read as it streams, up to
`max_response_bytes`; its JSON nests at most orjson's fixed 1024 levels (deeper is refused by
the parser, and no mapping recurses); one search has at most `max_pages` pages and
`max_records` resources. Passing a cap is `SourceTooLarge`, never a silent cut."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from app.sources.bodies import read_capped
from app.sources.errors import (
    SourceDataError,
    SourceError,
    SourceTimeout,
    SourceTooLarge,
    SourceUnavailable,
    http_exchange,
    raise_for_status,
)
from app.sources.fetching import Direct, Fetched, Fetcher, NotModified

Json = dict[str, Any]
FHIR_JSON = "application/fhir+json"


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    headers: httpx.Headers
    body: bytes  # read (within the byte cap) for a 2xx only


class FhirClient:
    def __init__(
        self,
        source_id: str,
        base_url: str,
        *,
        timeout_seconds: float,
        max_pages: int,
        search_timeout_seconds: float | None = None,  # all pages of one search; None: unbounded
        max_records: int = 10_000,
        max_response_bytes: int = 8_388_608,
        bearer_token: str | None = None,
        max_connections: int = 32,  # as many as the source's bulkhead lets through
        failover_base_urls: Sequence[str] = (),  # replicas, tried in turn when one fails
        tls: ssl.SSLContext | None = None,  # `app.sources.tls`; None: the system's defaults
        auth: httpx.Auth | None = None,  # `app.sources.oauth`; instead of bearer_token
        transport: httpx.AsyncBaseTransport | None = None,
        fetcher: Fetcher | None = None,
    ) -> None:
        self.source_id = source_id
        self._fetcher: Fetcher = fetcher or Direct(source_id)
        self.base_url = base_url.rstrip("/")
        # parsed and normalised, as next links are; the first is the primary
        self._bases = [httpx.URL(u.rstrip("/")) for u in (base_url, *failover_base_urls)]
        self._current = 0  # the base that answered last: requests go there first
        self._timeout = timeout_seconds
        self._search_timeout = search_timeout_seconds
        self._max_pages, self._max_records = max_pages, max_records
        self._max_bytes = max_response_bytes
        headers = {"Accept": FHIR_JSON}
        if bearer_token:
            headers["Authorization"] = f"Bearer {bearer_token}"
        self._http = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(timeout_seconds),
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=min(16, max_connections),
            ),
            verify=True if tls is None else tls,
            auth=auth,
            follow_redirects=False,  # a redirect could leave the configured origin
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def search(
        self, resource_type: str, params: Mapping[str, str], *, patients: Sequence[str] = ()
    ) -> list[Json]:
        """Every matching resource of `resource_type` across all pages. `patients` are the
        local patient ids the search is about: its cached pages are purged with them.

        Pages are followed through `Bundle.link[next]` only while it stays on the configured
        origin and base path and leads to a page not yet read; a next link elsewhere or back
        is an error, not a silent truncation. The search as a whole is bounded by its
        search timeout (SourceTimeout).
        """
        first = httpx.URL(f"{self.base_url}/{resource_type}").copy_merge_params(params)
        try:
            async with asyncio.timeout(self._search_timeout):
                return await self._pages(first, resource_type, patients)
        except TimeoutError as exc:
            raise SourceTimeout(self.source_id, "search timeout") from exc

    async def _pages(
        self, first: httpx.URL, resource_type: str, patients: Sequence[str]
    ) -> list[Json]:
        bundle = await self._page(first, patients)
        resources = _matches(bundle, resource_type)
        seen = {first}
        for _ in range(self._max_pages - 1):
            self._check_records(resources)
            next_url = self._next_url(bundle)
            if next_url is None:
                return resources
            if next_url in seen:  # a loop would repeat pages until the page cap
                raise SourceDataError(self.source_id, "next links loop")
            seen.add(next_url)
            bundle = await self._page(next_url, patients)
            resources.extend(_matches(bundle, resource_type))
        self._check_records(resources)
        if self._next_url(bundle) is not None:
            raise SourceTooLarge(self.source_id, f"more than {self._max_pages} pages")
        return resources

    def _check_records(self, resources: list[Json]) -> None:
        if len(resources) > self._max_records:
            raise SourceTooLarge(self.source_id, f"more than {self._max_records} records")

    def _next_url(self, bundle: Json) -> httpx.URL | None:
        """The page's `next` link, parsed and normalised; an error when it leaves the base."""
        link = _next_link(bundle)
        if link is None:
            return None
        try:
            url = httpx.URL(link)
        except httpx.InvalidURL as exc:
            raise SourceDataError(self.source_id, "next link is not a URL") from exc
        if not self.is_within_base(url):
            raise SourceDataError(self.source_id, "next link leaves the source base URL")
        return url

    def under_base(self, absolute: str) -> str | None:
        """`Patient/1` for an absolute reference under the base URL; None for one elsewhere
        (or not a URL): a reference to another server is never this server's record."""
        try:
            url = httpx.URL(absolute)
        except httpx.InvalidURL:
            return None
        base = self._base_of(url)
        if base is None:
            return None
        return url.path[len(base.path.rstrip("/")) + 1 :]

    def is_within_base(self, url: httpx.URL) -> bool:
        return self._base_of(url) is not None

    def _base_of(self, url: httpx.URL) -> httpx.URL | None:
        """The base URL `url` is under: same scheme, host and port (httpx normalises case,
        default ports and dot segments), no user info, and a path on or under the base path
        segment by segment: `/fhir/R4-evil` is not under `/fhir/R4`. Dot segments that
        survive parsing percent-encoded (`%2e%2e`, `..%2F`) would be resolved by many
        servers: refused. None when under none of the source's base URLs."""
        if url.userinfo or url.fragment:
            return None
        segments = url.path.replace("\\", "/").split("/")  # decoded: %2F is a slash here
        if any(segment in {".", ".."} for segment in segments):
            return None
        for base in self._bases:
            if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
                continue
            root = base.path.rstrip("/")
            if url.path == root or url.path.startswith(root + "/"):
                return base
        return None

    async def get_json(self, url: str, params: Mapping[str, str] | None = None) -> Json:
        """One Bundle straight from the server, never from the cache (health checks)."""
        answer = await self._get(httpx.URL(url).copy_merge_params(params or {}))
        raise_for_status(self.source_id, answer.status)
        return self._bundle(answer.body)

    async def _page(self, url: httpx.URL, patients: Sequence[str]) -> Json:
        async def fetch(etag: str | None) -> Fetched[Json] | NotModified:
            return await self._fetch(url, etag)

        return await self._fetcher.get(str(url), fetch, self._bundle, patients=patients)

    async def _fetch(self, url: httpx.URL, etag: str | None) -> Fetched[Json] | NotModified:
        answer = await self._get(url, {"If-None-Match": etag} if etag else {})
        headers = answer.headers
        if answer.status == 304 and etag:
            return NotModified(headers.get("ETag"), headers.get("Cache-Control"))
        raise_for_status(self.source_id, answer.status, headers.get("Retry-After"))
        bundle = self._bundle(answer.body)
        return Fetched(
            answer.body,
            bundle,
            etag=headers.get("ETag"),
            cache_control=headers.get("Cache-Control"),
            subjects=_patient_ids(bundle),
        )

    async def _get(self, url: httpx.URL, headers: Mapping[str, str] | None = None) -> _Answer:
        """The request at the base that answered last; when that base is unreachable, times
        out or answers 5xx, the same request at the next one (failover), in turn. Answers
        that arrive but cannot be read are not retried elsewhere: a replica would not fix them.
        """
        base = self._base_of(url) if len(self._bases) > 1 else None
        if base is None:  # one base: no failover
            return await self._exchange(url, headers)
        suffix = str(url)[len(str(base)) :]
        outcome: _Answer | SourceError | None = None
        for step in range(len(self._bases)):
            n = (self._current + step) % len(self._bases)
            try:
                outcome = await self._exchange(httpx.URL(f"{self._bases[n]}{suffix}"), headers)
            except (SourceUnavailable, SourceTimeout) as exc:
                outcome = exc
                continue
            if outcome.status < 500:
                self._current = n
                return outcome
        if isinstance(outcome, SourceError):
            raise outcome
        assert outcome is not None
        return outcome

    async def _exchange(self, url: httpx.URL, headers: Mapping[str, str] | None = None) -> _Answer:
        """One exchange; a 2xx body streamed in within the byte cap, any other left unread."""
        async with (
            http_exchange(self.source_id, self._timeout),
            self._http.stream("GET", url, headers=headers) as response,
        ):
            ok = 200 <= response.status_code < 300
            body = await read_capped(self.source_id, response, self._max_bytes) if ok else b""
            return _Answer(response.status_code, response.headers, body)

    def _bundle(self, body: bytes) -> Json:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise SourceDataError(self.source_id, "response is not JSON") from exc
        if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
            raise SourceDataError(self.source_id, "response is not a Bundle")
        return data


def _matches(bundle: Json, resource_type: str) -> list[Json]:
    """Search results only: `include` entries and OperationOutcome warnings are not matches."""
    out: list[Json] = []
    entries = bundle.get("entry")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        resource = entry.get("resource")
        mode = (
            entry.get("search", {}).get("mode", "match")
            if isinstance(entry.get("search"), dict)
            else "match"
        )
        if (
            isinstance(resource, dict)
            and resource.get("resourceType") == resource_type
            and mode == "match"
        ):
            out.append(resource)
    return out


def _patient_ids(bundle: Json) -> tuple[str, ...]:
    """Ids of the Patient resources in a page (a demographic search is about them too)."""
    return tuple(str(r["id"]) for r in _matches(bundle, "Patient") if isinstance(r.get("id"), str))


def _next_link(bundle: Json) -> str | None:
    links = bundle.get("link")
    for item in links if isinstance(links, list) else []:
        if (
            isinstance(item, dict)
            and item.get("relation") == "next"
            and isinstance(item.get("url"), str)
        ):
            return str(item["url"])
    return None
