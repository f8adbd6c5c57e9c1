"""Signing keys from a JWKS URL: rotation without a restart, no refresh storms, failures answered
with 401 (never 500) and recovered from, redirects never followed.

The issuer is a tiny Starlette app on loopback whose behaviour each test switches at run time;
it counts the fetches it serves. Time is a fake clock handed to KeySet, so "within the refresh
interval" and "after the cache interval" are exact rather than raced against sleeps. Through the
API the KeySet's intervals are tuned by patching the factory app.bootstrap calls (the settings do
not expose `min_refresh_seconds`, `timeout_seconds` or a clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwk
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

import app.bootstrap
from app.auth.jwks import MAX_JWKS_BYTES, KeySet, KeySetError
from app.auth.signing import issue_token, key_id, private_pem, public_jwk
from app.demo.serving import serving
from tests.conftest import AUDIENCE, ISSUER, Api, ApiFactory, Signer

Mode = Literal[
    "ok", "500", "garbage", "not-a-jwks", "private", "malformed-key", "hang", "drip", "huge",
    "redirect",
]  # fmt: skip
ME = {"query": "{ me { id } }"}
MIN_REFRESH = 60.0
CACHE = 300.0
TIMEOUT = 1.0  # a loaded 2-core CI machine once took over 0.5 s to deliver the fetch
BOUND = TIMEOUT + 1.5  # a JWKS failure must cost callers no more than about one timeout

ROTATED_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ROTATED_KID = key_id(ROTATED_KEY)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Issuer:
    """Serves /jwks.json as told by `mode`; `fetches` counts the requests it received."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.mode: Mode = "ok"
        self.fetches = 0
        self.redirect_to = ""
        self.url = ""
        self.release = asyncio.Event()  # ends `hang` and `drip` responses
        self.app = Starlette(routes=[Route("/jwks.json", self.serve)])

    async def serve(self, request: Request) -> Response:
        self.fetches += 1
        match self.mode:
            case "ok":
                return JSONResponse({"keys": self.keys})
            case "500":
                return Response("upstream broke", 500)
            case "garbage":
                return Response(b"<html>\x00\xff not json", 200, media_type="application/json")
            case "not-a-jwks":
                return JSONResponse({"keys": "none"})
            case "private":
                private = jwk.construct(private_pem(ROTATED_KEY).decode(), "RS256").to_dict()
                return JSONResponse({"keys": [*self.keys, {**private, "kid": ROTATED_KID}]})
            case "malformed-key":
                return JSONResponse({"keys": [{**k, "n": 123, "e": None} for k in self.keys]})
            case "hang":
                await self.release.wait()
                return JSONResponse({"keys": self.keys})
            case "drip":  # a byte at a time, each well within a per-read timeout
                return StreamingResponse(self._drip(), media_type="application/json")
            case "huge":
                return JSONResponse({"keys": self.keys, "pad": "x" * (2 * MAX_JWKS_BYTES)})
            case "redirect":
                return RedirectResponse(self.redirect_to, 302)

    async def _drip(self) -> AsyncIterator[bytes]:
        while not self.release.is_set():
            yield b" "
            await asyncio.sleep(0.05)
        yield b'{"keys": []}'


@contextlib.asynccontextmanager
async def running_issuer(signer: Signer, host: str = "127.0.0.1") -> AsyncIterator[Issuer]:
    issuer = Issuer([public_jwk(signer.key, signer.kid)])
    async with serving(issuer.app, host) as base:
        issuer.url = f"{base}/jwks.json"
        try:
            yield issuer
        finally:
            issuer.release.set()


@pytest.fixture
async def issuer(signer: Signer) -> AsyncIterator[Issuer]:
    async with running_issuer(signer) as running:
        yield running


@pytest.fixture
def clock() -> Clock:
    return Clock()


def keyset(issuer: Issuer, clock: Clock) -> KeySet:
    return KeySet(
        url=issuer.url,
        cache_seconds=CACHE,
        min_refresh_seconds=MIN_REFRESH,
        timeout_seconds=TIMEOUT,
        clock=clock,
    )


def kids(keys: tuple[Any, ...]) -> set[str]:
    return {k["kid"] for k in keys}


def rotate(issuer: Issuer) -> None:
    issuer.keys = [*issuer.keys, public_jwk(ROTATED_KEY, ROTATED_KID)]


# ---- KeySet directly ---------------------------------------------------------------------------


async def test_keys_are_fetched_once_then_cached(
    issuer: Issuer, clock: Clock, signer: Signer
) -> None:
    keys = keyset(issuer, clock)
    results = await asyncio.gather(*(keys.keys() for _ in range(20)))
    assert issuer.fetches == 1
    assert all(kids(r) == {signer.kid} for r in results)
    clock.advance(CACHE - 1)
    await keys.keys()
    assert issuer.fetches == 1
    clock.advance(2)
    await keys.keys()
    assert issuer.fetches == 2


async def test_rotation_needs_exactly_one_refresh(
    issuer: Issuer, clock: Clock, signer: Signer
) -> None:
    keys = keyset(issuer, clock)
    await keys.keys()
    rotate(issuer)
    assert kids(await keys.refresh_for_unknown_kid()) == {signer.kid}  # too soon: no fetch
    assert issuer.fetches == 1
    clock.advance(MIN_REFRESH)
    assert kids(await keys.refresh_for_unknown_kid()) == {signer.kid, ROTATED_KID}
    assert issuer.fetches == 2
    assert kids(await keys.keys()) == {signer.kid, ROTATED_KID}
    assert issuer.fetches == 2


async def test_refresh_storm_makes_at_most_one_fetch(issuer: Issuer, clock: Clock) -> None:
    keys = keyset(issuer, clock)
    await keys.keys()
    clock.advance(MIN_REFRESH)  # a refresh is due: the first unknown kid gets one, no more
    await asyncio.gather(*(keys.refresh_for_unknown_kid() for _ in range(50)))
    assert issuer.fetches == 2


FAILURES: list[Mode] = ["500", "garbage", "not-a-jwks", "private", "hang", "drip", "huge"]


@pytest.mark.parametrize("mode", FAILURES)
async def test_failed_fetch_backs_off_then_recovers(
    issuer: Issuer, clock: Clock, signer: Signer, mode: Mode
) -> None:
    keys = keyset(issuer, clock)
    issuer.mode = mode
    with pytest.raises(KeySetError) as raised:
        await asyncio.wait_for(keys.keys(), BOUND)  # a total deadline, not per read
    assert issuer.url not in str(raised.value)
    # While the issuer is down, callers are refused at once instead of each fetching again.
    for _ in range(10):
        with pytest.raises(KeySetError):
            await keys.keys()
    assert kids(await keys.refresh_for_unknown_kid()) == set()
    assert issuer.fetches == 1
    issuer.mode = "ok"
    clock.advance(MIN_REFRESH)
    assert kids(await keys.keys()) == {signer.kid}
    assert issuer.fetches == 2


async def test_expired_cache_with_issuer_down_is_refused_without_a_fetch_storm(
    issuer: Issuer, clock: Clock
) -> None:
    keys = keyset(issuer, clock)
    await keys.keys()
    issuer.mode = "500"
    clock.advance(CACHE + 1)
    for _ in range(10):
        with pytest.raises(KeySetError):
            await keys.keys()
    assert issuer.fetches == 2


async def test_private_key_material_is_never_held(issuer: Issuer, clock: Clock) -> None:
    keys = keyset(issuer, clock)
    await keys.keys()
    issuer.mode = "private"
    clock.advance(CACHE + 1)
    with pytest.raises(KeySetError, match="private key material"):
        await keys.keys()
    assert all("d" not in k for k in keys._keys)


@contextlib.asynccontextmanager
async def redirecting_issuer(
    signer: Signer, target_host: str
) -> AsyncIterator[tuple[Issuer, Issuer]]:
    """An issuer answering 302 to another host that serves a perfectly good JWKS."""
    async with running_issuer(signer) as first, running_issuer(signer, target_host) as target:
        first.mode, first.redirect_to = "redirect", target.url
        yield first, target


REDIRECT_TARGETS = [
    pytest.param("127.0.0.2", id="other-host"),
    pytest.param("127.0.0.1", id="same-host-other-port"),
]


@pytest.mark.parametrize("target_host", REDIRECT_TARGETS)
async def test_redirects_are_not_followed(signer: Signer, clock: Clock, target_host: str) -> None:
    async with redirecting_issuer(signer, target_host) as (first, target):
        with pytest.raises(KeySetError, match="HTTP 302"):
            await keyset(first, clock).keys()
        assert first.fetches == 1
        assert target.fetches == 0
        assert await keyset(target, clock).keys()  # the target itself was reachable


# ---- through the API ---------------------------------------------------------------------------


@pytest.fixture
def tuned_keysets(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> None:
    """The KeySet app.bootstrap builds gets short timeouts and the fake clock."""

    def factory(**kwargs: Any) -> KeySet:
        return KeySet(
            **{**kwargs, "min_refresh_seconds": MIN_REFRESH, "timeout_seconds": TIMEOUT},
            clock=clock,
        )

    monkeypatch.setattr(app.bootstrap, "KeySet", factory)


def url_api(api_factory: ApiFactory, issuer: Issuer) -> contextlib.AbstractAsyncContextManager[Api]:
    auth = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks_url": issuer.url,
        "jwks_cache_seconds": int(CACHE),
    }
    return api_factory([], auth=auth)


def token(signer: Signer, key: rsa.RSAPrivateKey | None = None, kid: str | None = None) -> str:
    if key is None:
        return signer.token(kid=kid or signer.kid)
    return issue_token(
        key, issuer=ISSUER, audience=AUDIENCE, subject="rotated", roles=["clinician"], kid=kid
    )


async def ask(api: Api, bearer: str) -> httpx.Response:
    return await api.client.post(
        f"{api.url}/graphql", json=ME, headers={"Authorization": f"Bearer {bearer}"}
    )


def assert_unauthenticated(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    assert set(body) == {"errors"}
    assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"]


tuned = pytest.mark.usefixtures("tuned_keysets")


@tuned
async def test_api_accepts_a_rotated_key_without_restart(
    api_factory: ApiFactory, issuer: Issuer, clock: Clock, signer: Signer
) -> None:
    rotated = token(signer, ROTATED_KEY, ROTATED_KID)
    async with url_api(api_factory, issuer) as api:
        assert (await ask(api, token(signer))).status_code == 200
        assert issuer.fetches == 1
        assert_unauthenticated(await ask(api, rotated))  # not published yet
        rotate(issuer)
        clock.advance(MIN_REFRESH)
        response = await ask(api, rotated)
        assert response.status_code == 200, response.text
        assert issuer.fetches == 2  # exactly one extra fetch
        for bearer in (rotated, token(signer), rotated):
            assert (await ask(api, bearer)).status_code == 200
        assert issuer.fetches == 2


@tuned
async def test_api_refresh_storm_of_unknown_kids(
    api_factory: ApiFactory, issuer: Issuer, clock: Clock, signer: Signer
) -> None:
    async with url_api(api_factory, issuer) as api:
        assert (await ask(api, token(signer))).status_code == 200
        clock.advance(MIN_REFRESH)  # a refresh is due when the storm starts
        before = issuer.fetches
        forged = [token(signer, kid=f"kid-{uuid.uuid4().hex}") for _ in range(50)]
        responses = await asyncio.gather(*(ask(api, bearer) for bearer in forged))
        for response in responses:
            assert_unauthenticated(response)
        assert issuer.fetches - before <= 1
        assert (await ask(api, token(signer))).status_code == 200


@tuned
@pytest.mark.parametrize("mode", FAILURES)
async def test_api_answers_401_while_the_jwks_is_broken_then_recovers(
    api_factory: ApiFactory, issuer: Issuer, clock: Clock, signer: Signer, mode: Mode
) -> None:
    issuer.mode = mode
    async with url_api(api_factory, issuer) as api:
        # One fetch (one timeout at most) for the lot, not one each.
        responses = await asyncio.wait_for(
            asyncio.gather(*(ask(api, token(signer)) for _ in range(5))), BOUND
        )
        for response in responses:
            assert_unauthenticated(response)
            assert issuer.url not in response.text
        assert issuer.fetches == 1
        assert (await api.client.get(f"{api.url}/healthz")).status_code == 200
        assert_unauthenticated(await ask(api, token(signer)))
        issuer.mode = "ok"
        assert_unauthenticated(await ask(api, token(signer)))  # still inside the back-off
        clock.advance(MIN_REFRESH)
        response = await ask(api, token(signer))
        assert response.status_code == 200, response.text
        assert issuer.fetches == 2


@tuned
async def test_api_malformed_key_is_401_until_the_cache_interval_passes(
    api_factory: ApiFactory, issuer: Issuer, clock: Clock, signer: Signer
) -> None:
    """A JWKS entry python-jose cannot build a key from (`"n": 123`) is the issuer's mistake,
    not a server error."""
    issuer.mode = "malformed-key"
    async with url_api(api_factory, issuer) as api:
        for _ in range(3):
            assert_unauthenticated(await ask(api, token(signer)))
        assert (await api.client.get(f"{api.url}/healthz")).status_code == 200
        issuer.mode = "ok"
        clock.advance(CACHE + 1)
        response = await ask(api, token(signer))
        assert response.status_code == 200, response.text


@tuned
@pytest.mark.parametrize("target_host", REDIRECT_TARGETS)
async def test_api_never_follows_a_jwks_redirect(
    api_factory: ApiFactory, signer: Signer, target_host: str
) -> None:
    async with (
        redirecting_issuer(signer, target_host) as (first, target),
        url_api(api_factory, first) as api,
    ):
        assert_unauthenticated(await ask(api, token(signer)))
        assert first.fetches == 1
        assert target.fetches == 0
