"""verify_access_token: the checks issue 2 asks for (the full attack suite is issue 4's)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from jose import jwt

from app.auth.jwks import KeySet
from app.auth.signing import issue_token, key_id, public_jwk
from app.auth.tokens import AuthenticationError, verify_access_token

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KID = key_id(KEY)


@pytest.fixture
def keyset(tmp_path: Path) -> KeySet:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [public_jwk(KEY, KID)]}))
    return KeySet(path=path)


async def verify(token: str, keyset: KeySet) -> Any:
    return await verify_access_token(
        token,
        keyset=keyset,
        issuer="https://i/",
        audience="pg",
        algorithms=["RS256"],
        leeway_seconds=30,
    )


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def good(**overrides: Any) -> str:
    args: dict[str, Any] = {"issuer": "https://i/", "audience": "pg", "subject": "s", "kid": KID}
    args.update(overrides)
    return issue_token(KEY, **args)


async def test_valid_token(keyset: KeySet) -> None:
    principal = await verify(good(roles=["clinician"], scope="user/*.rs"), keyset)
    assert principal.subject == "s"
    assert principal.roles == {"clinician"}


async def test_display_claims_are_kept_for_the_audit_trail_when_short_printable_text(
    keyset: KeySet,
) -> None:
    shown = {"name": "Dr. Ada Quinn", "client_id": "ward-dashboard", "organization": "Northside"}
    principal = await verify(good(**shown), keyset)
    kept = (principal.name, principal.client_id, principal.organization)
    assert kept == ("Dr. Ada Quinn", "ward-dashboard", "Northside")
    for bad in ("x" * 201, "line\nbreak", ""):
        dropped = await verify(good(name=bad, client_id=bad, organization=bad), keyset)
        assert (dropped.name, dropped.client_id, dropped.organization) == (None, None, None)


def forged(header: dict[str, Any], claims: dict[str, Any] | None = None, sig: str = "x") -> str:
    now = int(time.time())
    body = claims or {"iss": "https://i/", "aud": "pg", "sub": "s", "exp": now + 60}
    return f"{b64(header)}.{b64(body)}.{sig}"


def public_pem() -> bytes:
    return KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def hmac_signed_with_public_key() -> str:
    """The RS/HS confusion attack: an HS256 token whose secret is the RSA public key."""
    unsigned = forged({"alg": "HS256", "kid": KID}).rsplit(".", 1)[0]
    mac = hmac.new(public_pem(), unsigned.encode(), hashlib.sha256).digest()
    return f"{unsigned}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


@pytest.mark.parametrize(
    "token_factory",
    [
        lambda: forged({"alg": "none", "kid": KID}, sig=""),
        lambda: forged({"alg": "HS256", "kid": KID}),
        lambda: hmac_signed_with_public_key(),
        lambda: good(kid="another-key"),
        lambda: good(issuer="https://other/"),
        lambda: good(audience="other"),
        lambda: good(ttl_seconds=-3600),
        lambda: forged({"alg": "RS256", "kid": KID, "jku": "https://evil/jwks"}),
        lambda: forged({"alg": "RS256", "kid": KID, "crit": ["exp"]}),
        lambda: "a.b.c.d.e",  # JWE compact form
        lambda: "x" * 20_000,
        lambda: "not-a-token",
    ],
    ids=[
        "alg-none",
        "hs256-forged",
        "hs256-public-key",
        "unknown-kid",
        "issuer",
        "audience",
        "expired",
        "jku",
        "crit",
        "jwe",
        "oversized",
        "garbage",
    ],
)
async def test_rejected(keyset: KeySet, token_factory: Any) -> None:
    with pytest.raises(AuthenticationError):
        await verify(token_factory(), keyset)


async def test_missing_exp_is_rejected(keyset: KeySet) -> None:
    token = jwt.encode(
        {"iss": "https://i/", "aud": "pg", "sub": "s"},
        KEY.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        algorithm="RS256",
        headers={"kid": KID},
    )
    with pytest.raises(AuthenticationError):
        await verify(token, keyset)


async def test_issued_in_the_future_is_rejected(keyset: KeySet) -> None:
    now = int(time.time())
    pem = KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    token = jwt.encode(
        {"iss": "https://i/", "aud": "pg", "sub": "s", "iat": now + 600, "exp": now + 1200},
        pem,
        algorithm="RS256",
        headers={"kid": KID},
    )
    with pytest.raises(AuthenticationError, match="future"):
        await verify(token, keyset)


async def test_messages_never_echo_the_token(keyset: KeySet) -> None:
    token = good(audience="other")
    with pytest.raises(AuthenticationError) as raised:
        await verify(token, keyset)
    assert token not in str(raised.value)
    assert token.split(".")[1] not in str(raised.value)


def signed(**claims: Any) -> str:
    """A validly signed token with extra claims of any JSON type."""
    now = int(time.time())
    body = {"iss": "https://i/", "aud": "pg", "sub": "s", "exp": now + 60, **claims}
    return str(jwt.encode(body, _pem(), algorithm="RS256", headers={"kid": KID}))


def _pem() -> bytes:
    return KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


async def test_purpose_of_use_and_practitioner_claims(keyset: KeySet) -> None:
    one = await verify(signed(purpose_of_use="TREAT"), keyset)
    many = await verify(
        good(purposes=["TREAT", "ETREAT"], practitioner="http://hl7.org/fhir/sid/us-npi|9990001"),
        keyset,
    )
    none = await verify(good(), keyset)
    assert one.purposes == {"TREAT"}
    assert many.purposes == {"TREAT", "ETREAT"}
    assert many.practitioner == "http://hl7.org/fhir/sid/us-npi|9990001"
    assert none.purposes == frozenset()
    assert none.practitioner is None


@pytest.mark.parametrize(
    "claims",
    [
        {"purpose_of_use": []},
        {"purpose_of_use": "treat"},
        {"purpose_of_use": ["TREAT", 3]},
        {"purpose_of_use": {"code": "TREAT"}},
        {"purpose_of_use": "TREAT ETREAT"},
        {"practitioner": "9990001"},  # no system
        {"practitioner": "a|b|c"},
        {"practitioner": ["http://hl7.org/fhir/sid/us-npi|9990001"]},
        {"practitioner": "sys|" + "9" * 300},
    ],
    ids=lambda c: json.dumps(c)[:40],
)
async def test_malformed_purpose_or_practitioner_is_refused(
    keyset: KeySet, claims: dict[str, Any]
) -> None:
    """Fail closed: a claim the policy depends on that cannot be read refuses the token."""
    with pytest.raises(AuthenticationError):
        await verify(signed(**claims), keyset)


def signed_with_header(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """RS256 over exactly this header (python-jose always adds `typ`)."""
    unsigned = f"{b64(header)}.{b64(claims)}"
    signature = KEY.sign(unsigned.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{unsigned}.{base64.urlsafe_b64encode(signature).decode().rstrip('=')}"


def fresh_claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": "https://i/", "aud": "pg", "sub": "s", "iat": now, "exp": now + 60, **changes}


@pytest.mark.parametrize(
    ("typ", "accepted"),
    [
        (None, True),  # no `typ` at all
        ("JWT", True),
        ("at+jwt", True),
        ("application/at+jwt", True),
        ("AT+JWT", True),
        ("dpop+jwt", False),  # a DPoP proof (RFC 9449)
        ("logout+jwt", False),  # an OIDC back-channel logout token
        ("secevent+jwt", False),
        ("refresh+jwt", False),
        (5, False),
    ],
)
async def test_only_access_token_types_are_accepted(
    keyset: KeySet, typ: Any, accepted: bool
) -> None:
    header: dict[str, Any] = {"alg": "RS256", "kid": KID}
    if typ is not None:
        header["typ"] = typ
    token = signed_with_header(header, fresh_claims())
    if accepted:
        assert (await verify(token, keyset)).subject == "s"
    else:
        with pytest.raises(AuthenticationError, match="type"):
            await verify(token, keyset)


async def test_iat_is_required_when_configured(keyset: KeySet) -> None:
    header = {"alg": "RS256", "kid": KID}
    without = signed_with_header(header, {k: v for k, v in fresh_claims().items() if k != "iat"})
    assert (await verify(without, keyset)).issued_at is None  # default: optional
    args: dict[str, Any] = {"issuer": "https://i/", "audience": "pg", "algorithms": ["RS256"]}
    strict = {**args, "leeway_seconds": 30, "require_iat": True, "keyset": keyset}
    with pytest.raises(AuthenticationError, match="iat"):
        await verify_access_token(without, **strict)
    assert (await verify_access_token(signed_with_header(header, fresh_claims()), **strict)).subject


async def test_a_token_valid_for_longer_than_the_maximum_is_refused(keyset: KeySet) -> None:
    hundred_years = 100 * 365 * 86_400
    with pytest.raises(AuthenticationError, match="lifetime"):
        await verify(good(ttl_seconds=hundred_years), keyset)
    assert (await verify(good(ttl_seconds=3600), keyset)).subject == "s"
    now = int(time.time())
    header = {"alg": "RS256", "kid": KID}
    long_without_iat = {"iss": "https://i/", "aud": "pg", "sub": "s", "exp": now + 2 * 86_400}
    with pytest.raises(AuthenticationError, match="lifetime"):
        await verify(signed_with_header(header, long_without_iat), keyset)


async def test_a_withdrawn_key_stops_verifying_once_the_jwks_is_refetched(tmp_path: Path) -> None:
    """The bound the README states: new tokens signed by a withdrawn key verify until the
    cached JWKS is older than `jwks_cache_seconds`, and not after."""
    now = [1000.0]
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [public_jwk(KEY, KID)]}))
    keys = KeySet(path=path, cache_seconds=300, clock=lambda: now[0])
    assert (await verify(good(), keys)).subject == "s"
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_text(json.dumps({"keys": [public_jwk(other, key_id(other))]}))  # KEY withdrawn
    now[0] += 299
    assert (await verify(good(), keys)).subject == "s"  # the cached JWKS still has it
    now[0] += 2
    with pytest.raises(AuthenticationError):
        await verify(good(), keys)
