"""verify_access_token: the one place a bearer JWT is checked (python-jose inside, hardened).

The algorithm comes from the configured allowlist, never from the token alone (blocks `none`
and RSA/HMAC key confusion); `kid` must name exactly one key; `jku`/`x5u`/`jwk`/`x5c`/`crit`
headers are refused; JWE and oversized tokens are refused before any parsing.
"""

from __future__ import annotations

import base64
import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from jose import jwk, jwt
from jose.exceptions import JOSEError, JWTClaimsError

from app.auth.jwks import Jwk, KeySet, KeySetError
from app.auth.principal import PURPOSE_CODE, Principal

log = logging.getLogger(__name__)
MAX_TOKEN_BYTES = 8192
# Characters of a `name`, `client_id` or `organization` claim kept for the audit trail.
MAX_DISPLAY = 200
FORBIDDEN_HEADERS = ("jku", "x5u", "jwk", "x5c", "crit")
REQUIRED_CLAIMS = ("iss", "aud", "sub", "exp")
KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC"}
IDENTIFIER_TOKEN = re.compile(r"[^|\s]{1,256}\|[^|\s]{1,256}")  # system|value


class AuthenticationError(Exception):
    """The token is not acceptable. The message is safe for clients: it never echoes the token."""


ACCESS_TOKEN_TYPES = ("jwt", "at+jwt")  # lower case; the first is what an absent `typ` means
DEFAULT_MAX_LIFETIME_SECONDS = 24 * 3600


async def verify_access_token(
    token: str,
    *,
    keyset: KeySet,
    issuer: str,
    audience: str,
    algorithms: Sequence[str],
    leeway_seconds: int,
    require_iat: bool = False,
    max_lifetime_seconds: int = DEFAULT_MAX_LIFETIME_SECONDS,
) -> Principal:
    """`require_iat`: refuse tokens that do not say when they were issued (break-the-glass
    always needs it); `max_lifetime_seconds`: refuse tokens valid for longer (from `iat`, else
    from now)."""
    header = _header(token)
    if not _access_token_type(header.get("typ", ACCESS_TOKEN_TYPES[0])):
        raise AuthenticationError("Token type not accepted")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise AuthenticationError("Token algorithm not accepted")
    if any(name in header for name in FORBIDDEN_HEADERS):
        raise AuthenticationError("Token header not accepted")
    key = _verifier(await _select_key(keyset, header.get("kid"), alg), alg)
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=audience,
            issuer=issuer,
            # Time claims are checked by _check_times: python-jose calls int() on them, so a null,
            # list or overflowing value raised TypeError/OverflowError (a 500) and a numeric
            # string passed. Its `require_*` options would re-enable those checks, so presence
            # is checked below instead (which also keeps "missing claim" apart from "bad
            # signature").
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
        )
    except JWTClaimsError as exc:
        raise AuthenticationError("Token claims not accepted") from exc
    except JOSEError as exc:
        raise AuthenticationError("Token signature not valid") from exc
    except RecursionError:
        # A correctly signed payload nested too deeply for the JSON parser (an issuer's bug or
        # a hostile issuer): unusable claims, never a 500.
        raise AuthenticationError("Token claims not accepted") from None
    missing = [name for name in REQUIRED_CLAIMS if name not in claims]
    if missing:
        raise AuthenticationError(f"Token lacks required claims: {', '.join(missing)}")
    _check_times(claims, leeway_seconds)
    _check_lifetime(claims, require_iat, max_lifetime_seconds)
    return _principal(claims)


def _access_token_type(typ: Any) -> bool:
    """RFC 9068 section 4: an access token's `typ` is `at+jwt` (`application/` may prefix it,
    RFC 7515 section 4.1.9); plain `JWT` or none is still what most issuers send. Refresh,
    DPoP proof, logout and ID token types are not access tokens."""
    if not isinstance(typ, str):
        return False
    name = typ.lower().removeprefix("application/")
    return name in ACCESS_TOKEN_TYPES


def _check_lifetime(claims: Mapping[str, Any], require_iat: bool, max_seconds: int) -> None:
    iat, exp = _numeric_date(claims, "iat"), _numeric_date(claims, "exp")
    if iat is None and require_iat:
        raise AuthenticationError("Token lacks required claims: iat")
    start = time.time() if iat is None else iat
    if exp is not None and exp - start > max_seconds:
        raise AuthenticationError("Token lifetime too long")


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


def _verifier(key: Jwk, alg: str) -> Any:
    """The JWK as a python-jose key. Built here, not inside jwt.decode: a malformed JWKS entry
    (say `"n": 123`) made python-jose raise ValueError/TypeError there, a 500 for every token."""
    try:
        return jwk.construct(dict(key), alg)
    except (JOSEError, ValueError, TypeError) as exc:
        log.warning("JWKS key %r unusable for %s (%s)", key.get("kid"), alg, type(exc).__name__)
        raise AuthenticationError("Token signing key unusable") from exc


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
    exp, nbf, iat = (_numeric_date(claims, name) for name in ("exp", "nbf", "iat"))
    if exp is None or exp <= now - leeway:
        raise AuthenticationError("Token expired")
    if nbf is not None and nbf > now + leeway:
        raise AuthenticationError("Token not yet valid")
    if iat is not None and iat > now + leeway:
        raise AuthenticationError("Token issued in the future")


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    """RFC 7519 NumericDate: a JSON number (not a string, boolean, null, infinity or an integer
    too large for a float)."""
    if name not in claims:
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthenticationError("Token time claims not accepted")
    try:
        number = float(value)
    except OverflowError:
        raise AuthenticationError("Token time claims not accepted") from None
    if not math.isfinite(number):
        raise AuthenticationError("Token time claims not accepted")
    return number


def _principal(claims: Mapping[str, Any]) -> Principal:
    roles = claims.get("roles", [])
    scope = claims.get("scope", "")
    patient = claims.get("patient")
    if not str(claims["sub"]).strip():
        raise AuthenticationError("Token subject not accepted")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise AuthenticationError("Token roles claim not accepted")
    if not isinstance(scope, str) or (patient is not None and not isinstance(patient, str)):
        raise AuthenticationError("Token claims not accepted")
    jti = claims.get("jti")
    practitioner = claims.get("practitioner")
    if practitioner is not None and not (
        isinstance(practitioner, str) and IDENTIFIER_TOKEN.fullmatch(practitioner)
    ):
        raise AuthenticationError("Token practitioner claim not accepted")
    return Principal(
        subject=str(claims["sub"]),
        roles=frozenset(roles),
        scopes=tuple(scope.split()),
        patient=patient,
        token_id=jti if isinstance(jti, str) else None,
        issuer=str(claims["iss"]),
        issued_at=float(iat) if isinstance((iat := claims.get("iat")), int | float) else None,
        purposes=_purposes(claims.get("purpose_of_use")),
        practitioner=practitioner,
        expires_at=float(claims["exp"]),
        name=_short_text(claims.get("name")),
        client_id=_short_text(claims.get("client_id", claims.get("azp"))),
        organization=_short_text(claims.get("organization")),
    )


def _short_text(value: Any) -> str | None:
    """A display claim for the audit trail: printable text of at most MAX_DISPLAY characters,
    else dropped (a claim is never a reason to refuse a token)."""
    if isinstance(value, str) and 0 < len(value) <= MAX_DISPLAY and value.isprintable():
        return value
    return None


def _purposes(value: Any) -> frozenset[str]:
    """`purpose_of_use`: one v3-ActReason code or a list of them."""
    if value is None:
        return frozenset()
    codes = [value] if isinstance(value, str) else value
    if (
        not isinstance(codes, list)
        or not codes
        or not all(isinstance(c, str) and PURPOSE_CODE.fullmatch(c) for c in codes)
    ):
        raise AuthenticationError("Token purpose_of_use claim not accepted")
    return frozenset(codes)
