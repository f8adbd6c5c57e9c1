"""Token attacks over real HTTP: every forged, tampered, misplaced or otherwise unacceptable
credential gets 401 UNAUTHENTICATED with `WWW-Authenticate: Bearer`, and nothing else runs (no
upstream sees a request). Tokens are built by hand (base64url JSON + signatures) so the attacks do
not depend on what a JWT library is willing to produce."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from app.auth.signing import issue_token, public_jwk
from tests.conftest import AUDIENCE, ISSUER, Api, Signer, Upstream

# Reaches both upstreams if (and only if) the caller gets past authentication.
QUERY = {"query": "{ patients(first: 1) { totalCount } }"}
LEEWAY = 30  # AuthSettings.leeway_seconds default
BEYOND = LEEWAY + 600

ATTACKER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ATTACKER_EC = ec.generate_private_key(ec.SECP256R1())
DROP = object()  # claims(sub=DROP) removes the claim


@dataclass
class Attempt:
    """What the attacker sends: header pairs (repeats allowed) and query parameters."""

    headers: list[tuple[str, str]] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)


# ---- hand-made JWS -----------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def segment(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "attacker",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "roles": ["admin"],
        "scope": "user/*.rs",
    }
    for name, value in changes.items():
        if value is DROP:
            body.pop(name, None)
        else:
            body[name] = value
    return body


Sign = Callable[[bytes], bytes]


def jws(header: Any, payload: Any = None, sign: Sign | None = None) -> str:
    """`header.payload.signature`; header and payload are any JSON (attacks need non-objects)."""
    unsigned = f"{segment(header)}.{segment(claims() if payload is None else payload)}"
    signature = sign(unsigned.encode()) if sign else b""
    return f"{unsigned}.{b64url(signature)}"


def rs(key: rsa.RSAPrivateKey, digest: hashes.HashAlgorithm | None = None) -> Sign:
    return lambda data: key.sign(data, padding.PKCS1v15(), digest or hashes.SHA256())


def es256(key: ec.EllipticCurvePrivateKey) -> Sign:
    def sign(data: bytes) -> bytes:  # JWS wants raw r || s, not DER
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return sign


def hs(secret: bytes, digest: Callable[..., Any] = hashlib.sha256) -> Sign:
    return lambda data: hmac.new(secret, data, digest).digest()


def public_bytes(key: rsa.RSAPrivateKey, encoding: str, form: str) -> bytes:
    return key.public_key().public_bytes(
        getattr(serialization.Encoding, encoding), getattr(serialization.PublicFormat, form)
    )


def signed(s: Signer, header: dict[str, Any] | None = None, **changes: Any) -> str:
    """A token signed by the trusted key (so only the named change can make it unacceptable)."""
    return jws(
        {"alg": "RS256", "typ": "JWT", "kid": s.kid, **(header or {})}, claims(**changes), rs(s.key)
    )


def relabelled_rs512(s: Signer) -> str:
    """An RS256 signature under a header that now claims RS512."""
    genuine = signed(s)
    _, payload, signature = genuine.split(".")
    return f"{segment({'alg': 'RS512', 'typ': 'JWT', 'kid': s.kid})}.{payload}.{signature}"


def self_signed_certificate(key: rsa.RSAPrivateKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def attacker_signed(header: dict[str, Any]) -> str:
    return jws({"alg": "RS256", "typ": "JWT", **header}, sign=rs(ATTACKER_RSA))


def bearer(token: str, scheme: str = "Bearer") -> Attempt:
    return Attempt(headers=[("Authorization", f"{scheme} {token}")])


def valid_header(s: Signer) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {s.token()}")]


# ---- the table -------------------------------------------------------------------------------

Case = Callable[[Signer], Attempt]

CASES: list[tuple[str, Case]] = [
    # `none` and algorithm confusion
    ("alg-none-trailing-dot", lambda s: bearer(jws({"alg": "none", "kid": s.kid}))),
    ("alg-none-no-dot", lambda s: bearer(jws({"alg": "none", "kid": s.kid}).rstrip("."))),
    (
        "alg-none-with-signature",
        lambda s: bearer(jws({"alg": "none", "kid": s.kid}, sign=rs(s.key))),
    ),
    ("alg-None-capitalised", lambda s: bearer(jws({"alg": "None", "kid": s.kid}))),
    ("alg-missing", lambda s: bearer(jws({"kid": s.kid}, sign=rs(s.key)))),
    *[
        (
            f"hs256-public-key-{encoding.lower()}-{form.lower()}",
            lambda s, e=encoding, f=form: bearer(
                jws({"alg": "HS256", "kid": s.kid}, sign=hs(public_bytes(s.key, e, f)))
            ),
        )
        for encoding, form in [
            ("PEM", "SubjectPublicKeyInfo"),
            ("PEM", "PKCS1"),
            ("DER", "SubjectPublicKeyInfo"),
            ("DER", "PKCS1"),
        ]
    ],
    (
        "hs256-random-secret",
        lambda s: bearer(jws({"alg": "HS256", "kid": s.kid}, sign=hs(os.urandom(32)))),
    ),
    (
        "hs512-random-secret",
        lambda s: bearer(
            jws({"alg": "HS512", "kid": s.kid}, sign=hs(os.urandom(64), hashlib.sha512))
        ),
    ),
    ("rs256-relabelled-rs512", lambda s: bearer(relabelled_rs512(s))),
    (
        "rs512-not-allowed",
        lambda s: bearer(jws({"alg": "RS512", "kid": s.kid}, sign=rs(s.key, hashes.SHA512()))),
    ),
    # time claims
    ("expired-beyond-leeway", lambda s: bearer(signed(s, exp=int(time.time()) - BEYOND))),
    ("nbf-future-beyond-leeway", lambda s: bearer(signed(s, nbf=int(time.time()) + BEYOND))),
    ("iat-future-beyond-leeway", lambda s: bearer(signed(s, iat=int(time.time()) + BEYOND))),
    ("exp-missing", lambda s: bearer(signed(s, exp=DROP))),
    ("exp-null", lambda s: bearer(signed(s, exp=None))),
    ("exp-list", lambda s: bearer(signed(s, exp=[int(time.time()) + 300]))),
    ("exp-string", lambda s: bearer(signed(s, exp=str(int(time.time()) + 300)))),
    ("exp-boolean", lambda s: bearer(signed(s, exp=True))),
    ("exp-overflowing-float", lambda s: bearer(signed(s, exp=1e308 * 10))),  # JSON `Infinity`
    ("exp-huge-integer", lambda s: bearer(signed(s, exp=10**400))),
    ("iat-huge-negative-integer", lambda s: bearer(signed(s, iat=-(10**400)))),
    ("nbf-object", lambda s: bearer(signed(s, nbf={"t": 0}))),
    ("iat-string", lambda s: bearer(signed(s, iat="yesterday"))),
    # issuer, audience, subject
    ("wrong-iss", lambda s: bearer(signed(s, iss="https://evil.test/"))),
    ("missing-iss", lambda s: bearer(signed(s, iss=DROP))),
    ("wrong-aud", lambda s: bearer(signed(s, aud="another-api"))),
    ("missing-aud", lambda s: bearer(signed(s, aud=DROP))),
    ("aud-list-without-ours", lambda s: bearer(signed(s, aud=["another-api", "yet-another"]))),
    ("missing-sub", lambda s: bearer(signed(s, sub=DROP))),
    ("empty-sub", lambda s: bearer(signed(s, sub=""))),
    ("sub-not-a-string", lambda s: bearer(signed(s, sub=42))),
    ("roles-not-a-list", lambda s: bearer(signed(s, roles="admin"))),
    # key selection
    ("unknown-kid", lambda s: bearer(signed(s, {"kid": "no-such-key"}))),
    ("kid-path-traversal", lambda s: bearer(signed(s, {"kid": "../../etc/passwd"}))),
    ("kid-sql-injection", lambda s: bearer(signed(s, {"kid": "' OR '1'='1"}))),
    ("kid-very-long", lambda s: bearer(signed(s, {"kid": "k" * 4000}))),
    ("kid-not-a-string", lambda s: bearer(signed(s, {"kid": {"$ne": ""}}))),
    (
        "right-kid-other-key",
        lambda s: bearer(jws({"alg": "RS256", "kid": s.kid}, sign=rs(ATTACKER_RSA))),
    ),
    (
        "untrusted-key-same-kid",
        lambda s: bearer(
            issue_token(
                ATTACKER_RSA,
                issuer=ISSUER,
                audience=AUDIENCE,
                subject="x",
                roles=["admin"],
                kid=s.kid,
            )
        ),
    ),
    (
        "es256-with-rsa-only-jwks",
        lambda s: bearer(jws({"alg": "ES256", "kid": s.kid}, sign=es256(ATTACKER_EC))),
    ),
    (
        "es256-own-kid",
        lambda s: bearer(jws({"alg": "ES256", "kid": "attacker-ec"}, sign=es256(ATTACKER_EC))),
    ),
    # headers that point at (or carry) the attacker's key
    (
        "jku-header",
        lambda s: bearer(attacker_signed({"kid": s.kid, "jku": "https://evil.test/jwks.json"})),
    ),
    (
        "x5u-header",
        lambda s: bearer(attacker_signed({"kid": s.kid, "x5u": "https://evil.test/cert.pem"})),
    ),
    (
        "jwk-embedded",
        lambda s: bearer(attacker_signed({"kid": s.kid, "jwk": public_jwk(ATTACKER_RSA, s.kid)})),
    ),
    (
        "x5c-embedded",
        lambda s: bearer(
            attacker_signed({"kid": s.kid, "x5c": [self_signed_certificate(ATTACKER_RSA)]})
        ),
    ),
    ("crit-header", lambda s: bearer(signed(s, {"crit": ["exp"]}))),
    # structure
    (
        "jwe-five-parts",
        lambda s: bearer(
            ".".join(
                [segment({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": s.kid})]
                + [b64url(os.urandom(n)) for n in (256, 12, 64, 16)]
            )
        ),
    ),
    ("two-parts", lambda s: bearer(".".join(s.token().split(".")[:2]))),
    ("four-parts", lambda s: bearer(s.token() + "." + b64url(b"extra"))),
    ("over-app-size-limit", lambda s: bearer(signed(s, pad="p" * 12_000))),
    ("garbage-base64-header", lambda s: bearer("!!~~**." + s.token().split(".", 1)[1])),
    ("header-not-json", lambda s: bearer(b64url(b"alg=RS256") + "." + s.token().split(".", 1)[1])),
    (
        "header-json-array",
        lambda s: bearer(segment(["RS256", s.kid]) + "." + s.token().split(".", 1)[1]),
    ),
    ("header-json-string", lambda s: bearer(segment("RS256") + "." + s.token().split(".", 1)[1])),
    (
        "payload-json-array",
        lambda s: bearer(jws({"alg": "RS256", "kid": s.kid}, ["not", "claims"], rs(s.key))),
    ),
    ("signature-not-base64", lambda s: bearer(s.token().rsplit(".", 1)[0] + ".***")),
    ("not-a-jwt", lambda s: bearer("opaque-session-id")),
    # transport: where and how the token is sent
    ("no-authorization", lambda s: Attempt()),
    ("token-in-query-string", lambda s: Attempt(params={"access_token": s.token()})),
    (
        "token-in-query-string-and-header",
        lambda s: Attempt(valid_header(s), {"access_token": s.token()}),
    ),
    ("bearer-without-token", lambda s: Attempt(headers=[("Authorization", "Bearer")])),
    ("bare-token-no-scheme", lambda s: Attempt(headers=[("Authorization", s.token())])),
    (
        "basic-credentials",
        lambda s: bearer(base64.b64encode(b"admin:admin").decode(), scheme="Basic"),
    ),
    ("basic-carrying-a-valid-token", lambda s: bearer(s.token(), scheme="Basic")),
    ("token-scheme", lambda s: bearer(s.token(), scheme="Token")),
    (
        "two-authorization-values-bad-first",
        lambda s: Attempt(headers=[("Authorization", "Bearer junk"), *valid_header(s)]),
    ),
    (
        "two-authorization-values-good-first",
        lambda s: Attempt(headers=[*valid_header(s), ("Authorization", "Bearer junk")]),
    ),
]


def table() -> list[Any]:
    return [pytest.param(case, id=name) for name, case in CASES]


async def send(api: Api, attempt: Attempt) -> httpx.Response:
    return await api.client.post(
        f"{api.url}/graphql", json=QUERY, headers=attempt.headers, params=attempt.params
    )


def assert_unauthenticated(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    assert set(body) == {"errors"}, body  # no `data` key at all
    [error] = body["errors"]
    assert set(error) == {"message", "extensions"}
    assert isinstance(error["message"], str)
    assert error["message"]
    assert error["extensions"] == {"code": "UNAUTHENTICATED"}


def assert_nothing_ran(upstreams: dict[str, Upstream]) -> None:
    assert upstreams["hospital"].requests == []
    assert upstreams["clinic"].requests == []


@pytest.mark.parametrize("case", table())
async def test_attack_is_refused(api: Api, upstreams: dict[str, Upstream], case: Case) -> None:
    response = await send(api, case(api.signer))
    assert_unauthenticated(response)
    assert_nothing_ran(upstreams)


async def test_control_valid_token_reaches_the_upstreams(
    api: Api, upstreams: dict[str, Upstream]
) -> None:
    """The attacks above send the very query this one does: 401 there is authentication's doing."""
    response = await send(api, Attempt(valid_header(api.signer)))
    assert response.status_code == 200, response.text
    assert response.json()["data"]["patients"]["totalCount"] > 0
    assert upstreams["hospital"].requests
    assert upstreams["clinic"].requests


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
async def test_bearer_scheme_is_case_insensitive(
    api: Api, upstreams: dict[str, Upstream], scheme: str
) -> None:
    """RFC 6750 / RFC 9110: the auth scheme is case-insensitive."""
    response = await send(api, bearer(api.signer.token(), scheme=scheme))
    assert response.status_code == 200, response.text
    assert "errors" not in response.json()


async def test_one_megabyte_token_never_reaches_the_app(
    api: Api, upstreams: dict[str, Upstream]
) -> None:
    """uvicorn (h11) caps a request head at 16 KiB, so a 1 MB header is dropped before the app
    sees it: refused with 4xx or a closed connection, never accepted, and the server lives on.
    (verify_access_token's own limit is exercised by `over-app-size-limit` above and in
    tests/unit/test_tokens.py.)"""
    token = signed(api.signer, pad="p" * 1_000_000)
    try:
        response = await send(api, bearer(token))
    except httpx.TransportError:
        pass
    else:
        assert 400 <= response.status_code < 500
        assert token[:64] not in response.text
    assert_nothing_ran(upstreams)
    assert (await send(api, Attempt(valid_header(api.signer)))).status_code == 200


LEAK_SAMPLE = [
    "alg-none-trailing-dot",
    "hs256-public-key-pem-subjectpublickeyinfo",
    "rs256-relabelled-rs512",
    "expired-beyond-leeway",
    "wrong-aud",
    "exp-overflowing-float",
    "kid-sql-injection",
    "jwk-embedded",
    "garbage-base64-header",
    "header-json-array",
    "four-parts",
    "basic-carrying-a-valid-token",
    "token-in-query-string-and-header",
]
CLIENT_LOGGERS = ("httpx", "httpcore")  # the test's own client logs the URL it requests


@pytest.mark.parametrize("name", LEAK_SAMPLE)
async def test_tokens_never_echoed_in_responses_or_logs(
    api: Api, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    attempt = dict(CASES)[name](api.signer)
    secrets = {
        piece
        for value in [*(v for _, v in attempt.headers), *attempt.params.values()]
        for credential in [value.split(" ", 1)[-1]]
        for piece in [credential, *credential.split(".")]
        if len(piece) >= 8
    }
    assert secrets
    with caplog.at_level(logging.DEBUG):
        response = await send(api, attempt)
    assert_unauthenticated(response)
    server_side = [r for r in caplog.records if not r.name.startswith(CLIENT_LOGGERS)]
    logged = "\n".join(
        f"{r.getMessage()} {r.exc_text or ''} {r.stack_info or ''}" for r in server_side
    )
    headers = " ".join(response.headers.values())
    for secret in secrets:
        assert secret not in response.text
        assert secret not in headers
        assert secret not in logged
