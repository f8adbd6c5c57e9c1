"""Issue tokens for demos and tests (`patientgraph token`, the demo's per-role tokens)."""

from __future__ import annotations

import functools
import hashlib
import time
import uuid
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwk, jwt

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def load_private_key(pem: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, PrivateKey):
        raise ValueError("key must be an RSA or EC private key")
    return key


def algorithm_for(key: PrivateKey) -> str:
    return "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"


def private_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_jwk(key: PrivateKey, kid: str) -> dict[str, Any]:
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    alg = algorithm_for(key)
    data: dict[str, Any] = jwk.construct(public, alg).to_dict()
    return {**data, "kid": kid, "alg": alg, "use": "sig"}


def issue_token(
    key: PrivateKey,
    *,
    issuer: str,
    audience: str,
    subject: str,
    roles: Sequence[str] = (),
    scope: str | None = None,
    patient: str | None = None,
    ttl_seconds: int = 3600,
    kid: str | None = None,
    purposes: Sequence[str] = (),
    practitioner: str | None = None,
    name: str | None = None,
    client_id: str | None = None,
    organization: str | None = None,
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
        "roles": list(roles),
    }
    if scope:
        claims["scope"] = scope
    if patient:
        claims["patient"] = patient
    if purposes:
        claims["purpose_of_use"] = list(purposes)
    if practitioner:
        claims["practitioner"] = practitioner
    if name:
        claims["name"] = name
    if client_id:
        claims["client_id"] = client_id
    if organization:
        claims["organization"] = organization
    headers = {"kid": kid} if kid else None
    return str(jwt.encode(claims, _jose_key(key), algorithm=algorithm_for(key), headers=headers))


@functools.lru_cache(maxsize=8)
def _jose_key(key: PrivateKey) -> Any:
    """python-jose re-parses a PEM on every call (tens of ms for RSA); parse once per key."""
    return jwk.construct(private_pem(key).decode(), algorithm_for(key))


def key_id(key: PrivateKey) -> str:
    """A stable id for the key: a thumbprint of its public part."""
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(public).hexdigest()[:16]
