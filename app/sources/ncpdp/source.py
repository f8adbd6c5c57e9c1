"""NcpdpSource: a person's pharmacy fills through NCPDP SCRIPT medication history over HTTP.

SCRIPT has no batch form: one `RxHistoryRequest` per person, POSTed as `application/xml` to the
configured endpoint, concurrently over one pooled client of `max_concurrency` connections (the
registry's bulkhead, `app.sources.bulkhead`, keeps requests in flight to that many).
Every failure becomes a `SourceError` by the rules every HTTP source shares
(`app.sources.errors`): connection errors and 5xx `SourceUnavailable`, timeouts
`SourceTimeout`, 4xx `SourceRejected`, and anything unreadable (a broken gzip, oversized,
malformed, an XML bomb, the wrong root or transaction, an answer to another request)
`SourceDataError`. A `Denied` "patient not found" means no fills, not an error.

Answers go through the source's fetcher (the server gives it the source cache), keyed by the
person asked about and the history window (each request body carries a fresh message id, so
the body cannot be the key); only checked answers (approved, or not found) are stored, tagged
with the person's PatientGraph id.

Nothing here logs a message body or any patient data: counts, codes and exception classes only.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Final, TypeVar, cast

import httpx
import orjson

from app.domain.medications import MedicationDispense
from app.domain.records import DISPENSES, PersonQuery, RecordKind
from app.settings import NcpdpSourceSettings
from app.sources import errors
from app.sources.base import SourceHealth
from app.sources.bodies import read_capped
from app.sources.fetching import Direct, Fetched, Fetcher
from app.sources.ncpdp.mapping import map_dispensed
from app.sources.ncpdp.messages import (
    SERVICE_REQUESTER,
    Requester,
    RxHistory,
    ScriptError,
    build_rx_history_request,
    parse_rx_history_response,
)
from app.sources.ncpdp.xml import DEFAULT_MAX_BYTES
from app.sources.oauth import upstream_auth
from app.sources.tls import client_context

log = logging.getLogger(__name__)
R = TypeVar("R")
XML_MEDIA_TYPE: Final = "application/xml"
# Denial ReasonCode AA, "patient unknown to the provider" (SCRIPT ReasonCode list), is how a
# pharmacy says it has no such patient; some answer with only the text.
NOT_FOUND_CODES: Final = frozenset({"AA"})
NOT_FOUND_TEXT: Final = "patient not found"
# NCPDP Error codes 600 (communication problem, try later), 601 (receiver unable to process)
# and 602 (receiver system error) are the peer's trouble; 900 (transaction rejected) is ours.
UNAVAILABLE_ERROR_CODES: Final = frozenset({"600", "601", "602"})
_CODE: Final = re.compile(r"[A-Z0-9]{1,4}")


class NcpdpSource:
    kind = "ncpdp"
    record_kinds = frozenset({DISPENSES.name})

    def __init__(
        self,
        settings: NcpdpSourceSettings,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        max_concurrency: int = 8,
        max_response_bytes: int = DEFAULT_MAX_BYTES,
        history_days: int | None = None,
        sender_id: str = "PATIENTGRAPH",
        receiver_id: str | None = None,
        requester: Requester = SERVICE_REQUESTER,
        not_found_codes: Collection[str] = NOT_FOUND_CODES,
        fetcher: Fetcher | None = None,
    ) -> None:
        """`fetcher`: this source's way to its upstream (default: `Direct`, no cache)."""
        if max_concurrency < 1 or max_response_bytes < 1:
            raise ValueError("max_concurrency and max_response_bytes must be positive")
        self._settings = settings
        self._timeout = settings.timeout_seconds
        self._max_bytes = max_response_bytes
        self._history_days = history_days
        self._sender_id = sender_id
        self._receiver_id = receiver_id or settings.id
        self._requester = requester
        self._not_found_codes = frozenset(not_found_codes)
        self._fetcher: Fetcher = fetcher or Direct(settings.id)
        tls = client_context(settings)
        self._auth = upstream_auth(settings, tls, transport)
        self._http = httpx.AsyncClient(
            headers={"Accept": XML_MEDIA_TYPE},
            timeout=httpx.Timeout(settings.timeout_seconds),
            limits=httpx.Limits(
                max_connections=max_concurrency, max_keepalive_connections=max_concurrency
            ),
            verify=tls,
            auth=self._auth,
            follow_redirects=False,  # a redirect could leave the configured endpoint
            transport=transport,
        )
        self.unmapped = 0  # MedicationDispensed elements that could not be mapped
        self.unaskable = 0  # people we cannot describe (no first name, partial birth date)

    @property
    def id(self) -> str:
        return self._settings.id

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._auth is not None:
            await self._auth.aclose()

    async def health(self) -> SourceHealth:
        """Reachability: SCRIPT has no ping, so any answer below 500 to a GET of the endpoint
        (a POST-only endpoint answers 405) counts as up. No patient is ever asked about."""
        try:
            async with errors.http_exchange(self.id, self._timeout):
                response = await self._http.get(self._settings.base_url)
            if response.status_code >= 500:
                raise errors.SourceUnavailable(self.id, f"HTTP {response.status_code}")
        except errors.SourceError as exc:
            return SourceHealth(self.id, self.kind, False, exc.state)
        return SourceHealth(self.id, self.kind, True, "ok")

    async def records_for_people(
        self, kind: RecordKind[R], people: Sequence[PersonQuery]
    ) -> Mapping[PersonQuery, Sequence[R]]:
        """Fills per person; a person the pharmacy does not know (or we cannot describe) is
        left out. Any other failure fails the whole batch with a SourceError."""
        if kind.name not in self.record_kinds:
            return {}
        unique = list(dict.fromkeys(people))
        histories = await self._all(unique)
        found = {p: h for p, h in zip(unique, histories, strict=True) if h is not None}
        log.info(
            "source %s: medication history for %d people: %d known, %d fills, "
            "%d unmapped and %d unaskable so far",
            self.id,
            len(unique),
            len(found),
            sum(len(h) for h in found.values()),
            self.unmapped,
            self.unaskable,
        )
        return cast(Mapping[PersonQuery, Sequence[R]], found)

    async def _all(self, people: list[PersonQuery]) -> list[list[MedicationDispense] | None]:
        """Every person's history concurrently; the first failure cancels the rest."""
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._history(p)) for p in people]
        except ExceptionGroup as failed:
            first = failed.exceptions[0]
            if isinstance(first, errors.SourceError):
                raise first from first.__cause__
            raise
        return [task.result() for task in tasks]

    async def _history(self, person: PersonQuery) -> list[MedicationDispense] | None:
        since = self._since(datetime.now(UTC).date())
        # The request body holds a fresh message id each time: the cache keys on the question.
        question = orjson.dumps([person, since]).decode()

        async def fetch(_etag: str | None) -> Fetched[RxHistory]:
            return await self._ask(person, since)

        try:
            history = await self._fetcher.get(
                question, fetch, self._read_stored, person=person.patient_id
            )
        except _Unaskable:
            self.unaskable += 1
            return None
        if history.status == "denied":
            return None  # not found (any other denial was raised by `_ask`, never cached)
        mapped = map_dispensed(self.id, history.dispensed)
        if mapped.skipped:
            self.unmapped += mapped.skipped
            log.warning("source %s: skipped %d unmappable fills", self.id, mapped.skipped)
        return mapped.records

    async def _ask(self, person: PersonQuery, since: date | None) -> Fetched[RxHistory]:
        """One RxHistoryRequest, its answer checked: errors and refusals raise (uncached)."""
        message_id = uuid.uuid4().hex
        try:
            body = build_rx_history_request(
                person,
                message_id=message_id,
                sent_time=datetime.now(UTC),
                from_id=self._sender_id,
                to_id=self._receiver_id,
                since=since,
                requester=self._requester,
            )
        except ValueError:
            raise _Unaskable from None
        raw, cache_control = await self._post(body)
        history = self._read(raw, message_id)
        if history.status == "denied" and not self._is_not_found(history):
            raise errors.SourceRejected(self.id, f"denied ({_code(history.reason_code)})")
        return Fetched(raw, history, cache_control=cache_control)

    def _since(self, today: date) -> date | None:
        return None if self._history_days is None else today - timedelta(self._history_days)

    def _is_not_found(self, history: RxHistory) -> bool:
        return history.reason_code in self._not_found_codes or NOT_FOUND_TEXT in (
            (history.reason_text or "").casefold()
        )

    # --- HTTP -------------------------------------------------------------------------------------

    async def _post(self, body: bytes) -> tuple[bytes, str | None]:
        """The answer's body and its Cache-Control (SCRIPT sends no ETag: nothing to revalidate)."""
        async with (
            errors.http_exchange(self.id, self._timeout),
            self._http.stream(
                "POST",
                self._settings.base_url,
                content=body,
                headers={"Content-Type": XML_MEDIA_TYPE},
            ) as response,
        ):
            errors.raise_for_status(
                self.id, response.status_code, response.headers.get("Retry-After")
            )
            body = await read_capped(self.id, response, self._max_bytes)
            return body, response.headers.get("Cache-Control")

    def _read_stored(self, raw: bytes) -> RxHistory:
        """A cached answer: checked against its own request when it was fetched."""
        return parse_rx_history_response(raw, max_bytes=self._max_bytes)

    def _read(self, raw: bytes, message_id: str) -> RxHistory:
        try:
            history = parse_rx_history_response(raw, max_bytes=self._max_bytes)
        except ScriptError as exc:
            unavailable = exc.code in UNAVAILABLE_ERROR_CODES
            error = errors.SourceUnavailable if unavailable else errors.SourceRejected
            raise error(self.id, f"NCPDP Error {_code(exc.code)}") from exc
        except ValueError as exc:  # XmlError (unsafe, malformed, too big) or MessageError
            raise errors.SourceDataError(self.id, str(exc)) from exc
        if history.relates_to != message_id:
            # Possibly another patient's answer: never use it.
            raise errors.SourceDataError(self.id, "response does not relate to the request")
        return history


class _Unaskable(Exception):
    """The person cannot be described in a SCRIPT request (no first name, partial birth date)."""


def _code(value: str | None) -> str:
    """A peer's code as it may appear in an operator's log: a short code or nothing of it."""
    return value if value is not None and _CODE.fullmatch(value) else "no readable code"
