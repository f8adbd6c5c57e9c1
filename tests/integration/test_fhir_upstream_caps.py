"""A FHIR upstream that answers too much, or points its paging elsewhere, costs a bounded
amount and gets a coded error: real loopback HTTP, the hostile answer streamed as a real
server would send it."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from app.demo.serving import serving
from app.domain.patients import PatientCriteria
from app.domain.records import OBSERVATIONS, RecordQuery
from app.settings import FhirSourceSettings
from app.sources.errors import SourceDataError, SourceTooLarge
from app.sources.fhir.source import FhirSource

MiB = 1024 * 1024
Answer = Callable[[Request, str], Response]


def bundle(base: str, entries: int = 1, next_url: str | None = None, **extra: Any) -> bytes:
    patients = [
        {
            "resource": {
                "resourceType": "Patient",
                "id": f"p{i}",
                "name": [{"family": "Doe"}],
                **extra,
            }
        }
        for i in range(entries)
    ]
    links = [{"relation": "next", "url": next_url}] if next_url else []
    return orjson.dumps(
        {"resourceType": "Bundle", "type": "searchset", "entry": patients, "link": links}
    )


class Upstream:
    """Serves `answer` for every path and records the raw paths asked for."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.base = ""
        self.answer: Answer = lambda _request, base: Response(bundle(base))

    async def handle(self, request: Request) -> Response:
        self.paths.append(request.scope["raw_path"].decode())
        return self.answer(request, self.base)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    fake = Upstream()
    app = Starlette(routes=[Route("/{path:path}", fake.handle)])
    async with serving(app) as base:
        fake.base = f"{base}/fhir/R4"
        yield fake


async def search(upstream: Upstream, **options: Any) -> list[str]:
    settings = FhirSourceSettings(
        id="ehr", kind="fhir", base_url=upstream.base, timeout_seconds=5, **options
    )
    source = FhirSource(settings)
    try:
        found = await source.search_patients(PatientCriteria(family="Doe"))
    finally:
        await source.aclose()
    return [p.link.local_id for p in found]


def origin(base: str) -> str:
    return base.removesuffix("/fhir/R4")


ESCAPES = [
    lambda base: f"{base}-evil/Patient?page=2",  # shares the string prefix, not the path
    lambda base: f"{base}/../../secret/Patient",  # dot segments normalised away by httpx
    lambda base: f"{base}/%2e%2e/%2e%2e/secret/Patient",  # dot segments a server may decode
    lambda base: f"{base}/..%2F..%2Fsecret/Patient",
    lambda base: f"{base}\\..\\..\\secret",
    lambda base: f"{origin(base)}/fhir/Patient?page=2",
    lambda base: base.replace("http://", "http://someone@") + "/Patient?page=2",
    lambda base: base.replace("http://", "https://") + "/Patient?page=2",
    lambda base: base.replace("127.0.0.1", "localhost") + "/Patient?page=2",
    lambda base: base.rsplit(":", 1)[0] + ":1/fhir/R4/Patient?page=2",  # another port
    lambda base: "/fhir/R4/Patient?page=2",  # relative: FHIR paging links are absolute
]


@pytest.mark.parametrize("escape", ESCAPES)
async def test_next_links_that_leave_the_base_url_are_never_fetched(
    upstream: Upstream, escape: Callable[[str], str]
) -> None:
    upstream.answer = lambda _request, base: Response(bundle(base, next_url=escape(base)))
    with pytest.raises(SourceDataError) as raised:
        await search(upstream)
    assert raised.value.detail in {
        "next link leaves the source base URL",
        "next link is not a URL",
    }
    assert len(upstream.paths) == 1  # only the first page: nothing else was asked for


async def test_next_links_under_the_base_url_are_followed(upstream: Upstream) -> None:
    def paged(request: Request, base: str) -> Response:
        page = int(request.query_params.get("page", "1"))
        following = {1: f"{base}/./Patient?page=2", 2: f"{base}/Patient/../Patient?page=3"}
        return Response(bundle(base, next_url=following.get(page), id=f"x{page}"))

    upstream.answer = paged
    assert len(await search(upstream)) == 3
    assert [p.split("?")[0] for p in upstream.paths] == ["/fhir/R4/Patient"] * 3


async def test_an_endless_body_is_refused_near_the_byte_cap(upstream: Upstream) -> None:
    sent = 0

    def endless(_request: Request, _base: str) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            nonlocal sent
            yield b'{"resourceType": "Bundle", "entry": ['
            while True:
                sent += 64 * 1024
                yield b'{"resource": {}},' * (64 * 1024 // 17)
                await asyncio.sleep(0)  # same event loop as the client: let it read

        return StreamingResponse(chunks(), media_type="application/fhir+json")

    upstream.answer = endless
    with pytest.raises(SourceTooLarge) as raised:
        await search(upstream, max_response_bytes=1 * MiB)
    assert raised.value.detail == "response exceeds the size limit"
    assert raised.value.cause == "size_limit"
    assert sent < 4 * MiB  # stopped near the cap, not at the end of an endless body


async def test_a_declared_length_over_the_cap_is_refused_before_reading(upstream: Upstream) -> None:
    body = bundle("", entries=2000)
    upstream.answer = lambda _request, _base: Response(body, media_type="application/fhir+json")
    assert len(await search(upstream, max_response_bytes=len(body))) == 2000
    with pytest.raises(SourceTooLarge):
        await search(upstream, max_response_bytes=len(body) - 1)


async def test_the_cap_counts_decoded_bytes_so_a_gzip_bomb_is_refused(upstream: Upstream) -> None:
    bomb = gzip.compress(b'{"resourceType": "Bundle", "entry": [' + b" " * (64 * MiB) + b"]}")
    assert len(bomb) < 100 * 1024
    upstream.answer = lambda _request, _base: Response(
        bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/fhir+json"}
    )
    with pytest.raises(SourceTooLarge):
        await search(upstream, max_response_bytes=1 * MiB)


async def test_json_nested_past_the_parser_limit_is_unreadable(upstream: Upstream) -> None:
    deep = b'{"resourceType": "Bundle", "entry": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    upstream.answer = lambda _request, _base: Response(deep)
    with pytest.raises(SourceDataError) as raised:
        await search(upstream)
    assert raised.value.detail == "response is not JSON"


async def test_deep_nesting_within_the_parser_limit_is_read_without_recursion(
    upstream: Upstream,
) -> None:
    levels = 450  # a dict and a list each: about 900 deep, under orjson's 1024
    nested = b'{"url": "x", "extension": [' * levels + b'{"url": "x"}' + b"]}" * levels
    body = bundle("", extension=[{"url": "marker"}]).replace(b'{"url":"marker"}', nested)
    assert orjson.loads(body)  # really as deep as claimed, and valid
    upstream.answer = lambda _request, _base: Response(body)  # no mapping walks extensions
    assert await search(upstream) == ["p0"]


async def test_records_past_the_cap_are_a_coded_error_not_a_cut(upstream: Upstream) -> None:
    def paged(request: Request, base: str) -> Response:
        page = int(request.query_params.get("page", "1"))
        following = f"{base}/Patient?page={page + 1}" if page < 3 else None
        return Response(bundle(base, entries=4, next_url=following))

    upstream.answer = paged
    assert len(await search(upstream, max_records=12)) == 12
    with pytest.raises(SourceTooLarge) as raised:
        await search(upstream, max_records=11)
    assert raised.value.detail == "more than 11 records"
    with pytest.raises(SourceTooLarge) as raised:
        await search(upstream, max_pages=2)
    assert raised.value.detail == "more than 2 pages"


async def test_absolute_patient_references_count_only_under_the_base_url(
    upstream: Upstream,
) -> None:
    def observations(_request: Request, base: str) -> Response:
        subjects = [
            f"{base}/Patient/p1",
            f"{base}-evil/Patient/p1",
            f"{base}/%2e%2e/R4/Patient/p1",
            base.replace("127.0.0.1", "localhost") + "/Patient/p1",
        ]
        entries = [
            {
                "resource": {
                    "resourceType": "Observation",
                    "id": f"o{i}",
                    "status": "final",
                    "code": {"text": "x"},
                    "subject": {"reference": subject},
                }
            }
            for i, subject in enumerate(subjects)
        ]
        return Response(orjson.dumps({"resourceType": "Bundle", "entry": entries}))

    upstream.answer = observations
    settings = FhirSourceSettings(id="ehr", kind="fhir", base_url=upstream.base)
    source = FhirSource(settings)
    try:
        found = await source.records_for(OBSERVATIONS, [RecordQuery("p1")])
    finally:
        await source.aclose()
    assert [o.sources[0].local_id for o in found[RecordQuery("p1")]] == ["o0"]
