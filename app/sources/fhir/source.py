"""FhirSource: the ports of `app.sources.base` over one FHIR R4 server.

One search per (resource type, filter group, chunk of patients): `Observation?patient=a,b,c`,
never one request per patient. Results are split back per patient by their subject reference.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar, cast

import httpx

from app.domain.patients import PatientCriteria, SourcePatient
from app.domain.records import RecordKind, RecordQuery
from app.settings import FhirSourceSettings
from app.sources import errors
from app.sources.base import SourceHealth
from app.sources.fetching import Fetcher
from app.sources.fhir.client import FhirClient, Json
from app.sources.fhir.datatypes import MappingError, counting_wrong_values
from app.sources.fhir.resources import RECORD_RESOURCES
from app.sources.fhir.resources import patient as map_patient
from app.sources.fhir.search import chunks, id_list, is_fhir_id, patient_search_params, token
from app.sources.oauth import upstream_auth
from app.sources.tls import client_context

log = logging.getLogger(__name__)
R = TypeVar("R")

FilterKey = tuple[str | None, str | None, str | None]


class FhirSource:
    kind = "fhir"
    record_kinds = frozenset(kind.name for kind in RECORD_RESOURCES)

    def __init__(
        self,
        settings: FhirSourceSettings,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        fetcher: Fetcher | None = None,
    ) -> None:
        """`fetcher`: this source's way to its upstream (default: `Direct`, no cache)."""
        self._settings = settings
        tls = client_context(settings)
        self._auth = upstream_auth(settings, tls, transport)
        self._client = FhirClient(
            settings.id,
            settings.base_url,
            timeout_seconds=settings.timeout_seconds,
            search_timeout_seconds=settings.search_timeout_seconds or 2 * settings.timeout_seconds,
            max_pages=settings.max_pages,
            max_connections=settings.max_in_flight,
            failover_base_urls=settings.failover_base_urls,
            tls=tls,
            auth=self._auth,
            max_records=settings.max_records,
            max_response_bytes=settings.max_response_bytes,
            bearer_token=settings.bearer_token,
            transport=transport,
            fetcher=fetcher,
        )
        self.unmapped = 0  # resources skipped as malformed (counted, reported in logs)

    @property
    def id(self) -> str:
        return self._settings.id

    async def aclose(self) -> None:
        await self._client.aclose()
        if self._auth is not None:
            await self._auth.aclose()

    async def health(self) -> SourceHealth:
        try:
            await self._client.get_json(f"{self._client.base_url}/Patient", {"_count": "1"})
        except errors.SourceError as exc:
            return SourceHealth(self.id, self.kind, False, exc.state)
        return SourceHealth(self.id, self.kind, True, "ok")

    async def patients_by_id(self, local_ids: Sequence[str]) -> Mapping[str, SourcePatient]:
        ids = [i for i in dict.fromkeys(local_ids) if is_fhir_id(i)]  # invalid: unknown here
        batches = chunks(ids, self._settings.max_batch_size)
        pages = await asyncio.gather(
            *(self._search("Patient", {"_id": id_list(batch)}, batch) for batch in batches)
        )
        found = self._map_all("Patient", map_patient, [r for page in pages for r in page])
        return {p.link.local_id: p for p in found if p.link.local_id in ids}

    async def search_patients(self, criteria: PatientCriteria) -> Sequence[SourcePatient]:
        resources = await self._search("Patient", patient_search_params(criteria))
        return self._map_all("Patient", map_patient, resources)

    async def records_for(
        self, kind: RecordKind[R], queries: Sequence[RecordQuery]
    ) -> Mapping[RecordQuery, Sequence[R]]:
        groups: dict[FilterKey, list[RecordQuery]] = defaultdict(list)
        for query in queries:
            if is_fhir_id(query.patient):
                groups[(query.category, query.code, query.since)].append(query)
        searches = [
            (resource_type, mapper, filters, batch)
            for resource_type, mapper in RECORD_RESOURCES[kind]
            for filters, group in groups.items()
            for batch in chunks(sorted({q.patient for q in group}), self._settings.max_batch_size)
        ]
        pages = await asyncio.gather(
            *(self._search(t, self._record_params(f, b), b) for t, _, f, b in searches)
        )
        by_patient: dict[tuple[FilterKey, str], list[R]] = defaultdict(list)
        for (resource_type, mapper, filters, _), resources in zip(searches, pages, strict=True):
            for resource in resources:
                patient = self._patient_of(resource)
                record = self._map_one(resource_type, mapper, resource)
                if patient is not None and record is not None:
                    by_patient[(filters, patient)].append(cast(R, record))
        return {
            q: by_patient.get(((q.category, q.code, q.since), q.patient), [])
            for group in groups.values()
            for q in group
        }

    def _record_params(self, filters: FilterKey, patients: list[str]) -> dict[str, str]:
        category, code, since = filters
        params = {"patient": id_list(patients)}
        if category:
            params["category"] = token(category)
        if code:
            params["code"] = token(code)
        if since:
            params["date"] = f"ge{since}"
        return params

    async def _search(
        self, resource_type: str, params: dict[str, str], patients: Sequence[str] = ()
    ) -> list[Json]:
        """`patients`: the local ids the search is about (tags its cached pages for purging)."""
        return await self._client.search(
            resource_type, {**params, "_count": str(self._settings.page_size)}, patients=patients
        )

    def _patient_of(self, resource: Json) -> str | None:
        """The local patient id a record belongs to: `subject` (or `patient`) when it is a
        relative `Patient/id` or an absolute URL on this same server; anything else is not
        this server's patient and is never dereferenced."""
        ref = resource.get("subject") or resource.get("patient")
        target = ref.get("reference") if isinstance(ref, dict) else None
        if not isinstance(target, str):
            return None
        if "://" in target:
            local = self._client.under_base(target)
            if local is None:
                return None
            target = local
        parts = target.split("/")
        if len(parts) >= 2 and parts[0] == "Patient" and is_fhir_id(parts[1]):
            return parts[1]
        return None

    def _map_all(
        self, resource_type: str, mapper: Callable[[str, Json], R], rs: list[Json]
    ) -> list[R]:
        with counting_wrong_values() as wrong:
            mapped = [m for r in rs if (m := self._map_one(resource_type, mapper, r)) is not None]
        if wrong[0]:
            self.unmapped += wrong[0]
            # Counts only: the values themselves may be PHI.
            log.warning(
                "source %s: read %d malformed %s values as absent", self.id, wrong[0], resource_type
            )
        return mapped

    def _map_one(
        self, resource_type: str, mapper: Callable[[str, Json], R], resource: Json
    ) -> R | None:
        try:
            return mapper(self.id, resource)
        except (MappingError, TypeError, ValueError, AttributeError, KeyError) as exc:
            self.unmapped += 1
            # Resource type and exception class only: the resource itself may hold PHI.
            log.warning(
                "source %s: skipped a malformed %s (%s)",
                self.id,
                resource_type,
                exc.__class__.__name__,
            )
            return None
