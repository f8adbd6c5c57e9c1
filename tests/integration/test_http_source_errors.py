"""One error rule for every HTTP source: FHIR and NCPDP give the same SourceError for the same
upstream failure, against a real loopback server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.demo.serving import serving
from app.domain.patients import PatientCriteria
from app.domain.records import DISPENSES, PersonQuery
from app.settings import FhirSourceSettings, NcpdpSourceSettings
from app.sources import errors
from app.sources.fhir.source import FhirSource
from app.sources.ncpdp.source import NcpdpSource

PERSON = PersonQuery("pg-000000000000000000000001", "Doe", ("Jane",), "1970-01-01", "female")


async def corrupt_gzip(_request: Request) -> Response:
    """A 200 that claims gzip and is not: the client cannot decode it."""
    return Response(b"this is not gzip at all", headers={"Content-Encoding": "gzip"})


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    routes = [Route("/{path:path}", corrupt_gzip, methods=["GET", "POST"])]
    async with serving(Starlette(routes=routes)) as base:
        yield base


async def fhir_error(base: str) -> errors.SourceError:
    settings = FhirSourceSettings(id="ehr", kind="fhir", base_url=f"{base}/fhir/R4")
    source = FhirSource(settings)
    try:
        with pytest.raises(errors.SourceError) as caught:
            await source.search_patients(PatientCriteria(family="Doe"))
    finally:
        await source.aclose()
    return caught.value


async def ncpdp_error(base: str) -> errors.SourceError:
    settings = NcpdpSourceSettings(id="rx", kind="ncpdp", base_url=f"{base}/script")
    source = NcpdpSource(settings)
    try:
        with pytest.raises(errors.SourceError) as caught:
            await source.records_for_people(DISPENSES, [PERSON])
    finally:
        await source.aclose()
    return caught.value


async def test_a_corrupt_gzip_body_is_unreadable_data_for_fhir_and_ncpdp(upstream: str) -> None:
    fhir, ncpdp = await fhir_error(upstream), await ncpdp_error(upstream)
    assert type(fhir) is type(ncpdp) is errors.SourceDataError
    assert fhir.state == ncpdp.state == "unreadable"
    assert isinstance(fhir.__cause__, httpx.DecodingError)
    assert isinstance(ncpdp.__cause__, httpx.DecodingError)


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (httpx.ReadTimeout("slow"), errors.SourceTimeout),
        (httpx.DecodingError("bad gzip"), errors.SourceDataError),
        (httpx.ConnectError("refused"), errors.SourceUnavailable),
        (httpx.RemoteProtocolError("reset"), errors.SourceUnavailable),
    ],
)
async def test_the_shared_exchange_maps_httpx_failures(
    raised: Exception, expected: type[errors.SourceError]
) -> None:
    with pytest.raises(errors.SourceError) as caught:
        async with errors.http_exchange("ehr", 5):
            raise raised
    assert type(caught.value) is expected
    assert caught.value.source_id == "ehr"
    assert caught.value.__cause__ is raised
    assert caught.value.detail == raised.__class__.__name__  # never the message


async def test_the_shared_exchange_bounds_the_exchange() -> None:
    with pytest.raises(errors.SourceTimeout):
        async with errors.http_exchange("ehr", 0.01):
            await asyncio.sleep(1)
