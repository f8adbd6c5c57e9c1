"""Bearer tokens for an upstream from its OAuth 2.0 token endpoint: the client credentials
grant (RFC 6749 section 4.4), the client authenticated with HTTP Basic (section 2.3.1).

One token serves every request of the source until shortly before it expires (at most one
fetch at a time, however many requests wait). An upstream that answers 401 gets one fresh
token and the request once more: a token revoked early costs one round trip, not an outage.
A failing token endpoint is the source's failure (SourceUnavailable, SourceRejected for a
4xx such as `invalid_client`), with no secret in the error.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncGenerator, Generator

import httpx
import orjson

from app.settings import FhirSourceSettings, NcpdpSourceSettings, OAuthClient
from app.sources.bodies import read_capped
from app.sources.errors import SourceDataError, http_exchange, raise_for_status

MAX_TOKEN_RESPONSE_BYTES = 65_536
DEFAULT_LIFETIME_SECONDS = 60.0  # when the endpoint does not say (expires_in is optional)
RENEW_MARGIN_SECONDS = 30.0  # renewed this long before expiry (or at 90 % of a short life)


def upstream_auth(
    settings: FhirSourceSettings | NcpdpSourceSettings,
    tls: ssl.SSLContext,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ClientCredentials | None:
    """The source's token flow, when it has an `oauth` table (the token endpoint gets the same
    TLS settings as the upstream)."""
    if settings.oauth is None:
        return None
    return ClientCredentials(settings.id, settings.oauth, tls, transport)


class ClientCredentials(httpx.Auth):
    def __init__(
        self,
        source_id: str,
        client: OAuthClient,
        tls: ssl.SSLContext,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._source_id = source_id
        self._client = client
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(client.timeout_seconds),
            verify=tls,
            follow_redirects=False,  # a redirect could send the secret elsewhere
            transport=transport,
        )
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._renew_at = 0.0  # event-loop time
        self.fetches = 0  # tokens fetched (for tests and operators)

    async def aclose(self) -> None:
        await self._http.aclose()

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        raise RuntimeError("ClientCredentials is for async clients only")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self._current()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:  # revoked or expired early: once more, fresh
            request.headers["Authorization"] = f"Bearer {await self._current(rejected=token)}"
            yield request

    async def _current(self, rejected: str | None = None) -> str:
        async with self._lock:
            loop = asyncio.get_running_loop()
            token = self._token
            if token is None or token == rejected or loop.time() >= self._renew_at:
                token, lifetime = await self._fetch()
                self._token = token
                self._renew_at = loop.time() + lifetime - min(RENEW_MARGIN_SECONDS, lifetime / 10)
            return token

    async def _fetch(self) -> tuple[str, float]:
        client = self._client
        form = {"grant_type": "client_credentials"}
        if client.scope:
            form["scope"] = client.scope
        basic = (client.client_id, client.client_secret.get_secret_value())
        self.fetches += 1
        async with (
            http_exchange(self._source_id, client.timeout_seconds),
            self._http.stream("POST", client.token_url, data=form, auth=basic) as response,
        ):
            raise_for_status(self._source_id, response.status_code)
            body = await read_capped(self._source_id, response, MAX_TOKEN_RESPONSE_BYTES)
        return _token(self._source_id, body)


def _token(source_id: str, body: bytes) -> tuple[str, float]:
    """The access token and its lifetime in seconds, from a token response (section 5.1)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise SourceDataError(source_id, "token response is not JSON") from exc
    if not isinstance(data, dict):
        raise SourceDataError(source_id, "token response is not an object")
    token, kind, lifetime = data.get("access_token"), data.get("token_type"), data.get("expires_in")
    if not isinstance(token, str) or not token or not isinstance(kind, str):
        raise SourceDataError(source_id, "token response has no access_token or token_type")
    if kind.lower() != "bearer":
        raise SourceDataError(source_id, "token_type is not Bearer")
    if lifetime is None:
        return token, DEFAULT_LIFETIME_SECONDS
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
        raise SourceDataError(source_id, "expires_in is not a positive number")
    return token, float(lifetime)
