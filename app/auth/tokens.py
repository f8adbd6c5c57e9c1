"""verify_access_token: the one place a bearer JWT is checked (python-jose inside, hardened).

The algorithm comes from the configured allowlist, never from the token alone (blocks `none`
and RSA/HMAC key confusion); `kid` must name exactly one key; `jku`/`x5u`/`jwk`/`x5c`/`crit`
headers are refused; JWE and oversized tokens are refused before any parsing.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from jose import jwt
from jose.exceptions import ExpiredSignatureError, JOSEError, JWTClaimsError

from app.auth.jwks import Jwk, KeySet, KeySetError
from app.auth.principal import Principal

MAX_TOKEN_BYTES = 8192
FORBIDDEN_HEADERS = ("jku", "x5u", "jwk", "x5c", "crit")
KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC"}


class AuthenticationError(Exception):
    """The token is not acceptable. The message is safe for clients: it never echoes the token."""


async def verify_access_token(
    token: str,
    *,
    keyset: KeySet,
    issuer: str,
    audience: str,
    algorithms: Sequence[str],
    leeway_seconds: int,
) -> Principal:
    header = _header(token)
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise AuthenticationError("Token algorithm not accepted")
    if any(name in header for name in FORBIDDEN_HEADERS):
        raise AuthenticationError("Token header not accepted")
    key = await _select_key(keyset, header.get("kid"), alg)
    try:
        claims = jwt.decode(
            token,
            dict(key),
            algorithms=[alg],
            audience=audience,
            issuer=issuer,
            options={
                "require_exp": True,
                "require_iss": True,
                "require_aud": True,
                "require_sub": True,
                "leeway": leeway_seconds,
            },
        )
    except ExpiredSignatureError as exc:
        raise AuthenticationError("Token expired") from exc
    except JWTClaimsError as exc:
        raise AuthenticationError("Token claims not accepted") from exc
    except JOSEError as exc:
        raise AuthenticationError("Token signature not valid") from exc
    _check_times(claims, leeway_seconds)
    return _principal(claims)


def _header(token: str) -> Mapping[str, Any]:
    if len(token) > MAX_TOKEN_BYTES:
        raise AuthenticationError("Token too large")
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise AuthenticationError("Token is not a signed JWT")  # JWE has five parts
    try:
        header = orjson.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise AuthenticationError("Token header unreadable") from exc
    if not isinstance(header, dict):
        raise AuthenticationError("Token header unreadable")
    return header


async def _select_key(keyset: KeySet, kid: Any, alg: str) -> Jwk:
    try:
        keys = await keyset.keys()
        matches = _matching(keys, kid, alg)
        if not matches and kid is not None:
            matches = _matching(await keyset.refresh_for_unknown_kid(), kid, alg)
    except KeySetError as exc:
        raise AuthenticationError("Signing keys unavailable") from exc
    if len(matches) != 1:
        raise AuthenticationError("Token signing key not trusted")
    return matches[0]


def _matching(keys: Sequence[Jwk], kid: Any, alg: str) -> list[Jwk]:
    if kid is not None and not isinstance(kid, str):
        return []
    wanted_kty = KEY_TYPES.get(alg[:2])
    candidates = [
        k
        for k in keys
        if k.get("kty") == wanted_kty and k.get("alg", alg) == alg and k.get("use", "sig") == "sig"
    ]
    if kid is None:
        return candidates if len(keys) == 1 else []  # without kid only a one-key set is usable
    return [k for k in candidates if k.get("kid") == kid]


def _check_times(claims: Mapping[str, Any], leeway: int) -> None:
    now = time.time()
    iat = claims.get("iat")
    if iat is not None and (not isinstance(iat, int | float) or iat > now + leeway):
        raise AuthenticationError("Token issued in the future")


def _principal(claims: Mapping[str, Any]) -> Principal:
    roles = claims.get("roles", [])
    scope = claims.get("scope", "")
    patient = claims.get("patient")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise AuthenticationError("Token roles claim not accepted")
    if not isinstance(scope, str) or (patient is not None and not isinstance(patient, str)):
        raise AuthenticationError("Token claims not accepted")
    jti = claims.get("jti")
    return Principal(
        subject=str(claims["sub"]),
        roles=frozenset(roles),
        scopes=tuple(scope.split()),
        patient=patient,
        token_id=jti if isinstance(jti, str) else None,
        issuer=str(claims["iss"]),
    )
