"""HTTP for one FHIR server: one pooled httpx.AsyncClient, searches with paging, and every
transport, status and decoding failure translated into the SourceError tree.

Search pages go through the source's fetcher (`app.sources.fetching`; the server gives it the
source cache), each keyed by its full URL and revalidated with `If-None-Match` when the server
sent an `ETag`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from app.sources.errors import SourceDataError, http_exchange, raise_for_status
from app.sources.fetching import Direct, Fetched, Fetcher, NotModified

Json = dict[str, Any]
FHIR_JSON = "application/fhir+json"


class FhirClient:
    def __init__(
        self,
        source_id: str,
        base_url: str,
        *,
        timeout_seconds: float,
        max_pages: int,
        bearer_token: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        fetcher: Fetcher | None = None,
    ) -> None:
        self.source_id = source_id
        self._fetcher: Fetcher = fetcher or Direct(source_id)
        self.base_url = base_url.rstrip("/")
        self._origin = urlsplit(self.base_url)
        self._timeout = timeout_seconds
        self._max_pages = max_pages
        headers = {"Accept": FHIR_JSON}
        if bearer_token:
            headers["Authorization"] = f"Bearer {bearer_token}"
        self._http = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(timeout_seconds),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
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
        origin and base path; a next link elsewhere is an error, not a silent truncation.
        """
        first = httpx.URL(f"{self.base_url}/{resource_type}").copy_merge_params(params)
        bundle = await self._page(first, patients)
        resources = _matches(bundle, resource_type)
        for _ in range(self._max_pages - 1):
            next_url = _next_link(bundle)
            if next_url is None:
                return resources
            if not self.is_same_origin(next_url):
                raise SourceDataError(self.source_id, "next link leaves the source origin")
            bundle = await self._page(httpx.URL(next_url), patients)
            resources.extend(_matches(bundle, resource_type))
        if _next_link(bundle) is not None:
            raise SourceDataError(self.source_id, f"more than {self._max_pages} pages")
        return resources

    def is_same_origin(self, url: str) -> bool:
        parts = urlsplit(url)
        return (
            parts.scheme == self._origin.scheme
            and parts.netloc == self._origin.netloc
            and parts.path.startswith(self._origin.path)
        )

    async def get_json(self, url: str, params: Mapping[str, str] | None = None) -> Json:
        """One Bundle straight from the server, never from the cache (health checks)."""
        response = await self._get(httpx.URL(url).copy_merge_params(params or {}))
        raise_for_status(self.source_id, response.status_code)
        return self._bundle(response.content)

    async def _page(self, url: httpx.URL, patients: Sequence[str]) -> Json:
        async def fetch(etag: str | None) -> Fetched[Json] | NotModified:
            return await self._fetch(url, etag)

        return await self._fetcher.get(str(url), fetch, self._bundle, patients=patients)

    async def _fetch(self, url: httpx.URL, etag: str | None) -> Fetched[Json] | NotModified:
        response = await self._get(url, {"If-None-Match": etag} if etag else {})
        headers = response.headers
        if response.status_code == 304 and etag:
            return NotModified(headers.get("ETag"), headers.get("Cache-Control"))
        raise_for_status(self.source_id, response.status_code)
        bundle = self._bundle(response.content)
        return Fetched(
            response.content,
            bundle,
            etag=headers.get("ETag"),
            cache_control=headers.get("Cache-Control"),
            subjects=_patient_ids(bundle),
        )

    async def _get(
        self, url: httpx.URL, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        async with http_exchange(self.source_id, self._timeout):
            return await self._http.get(url, headers=headers)

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
