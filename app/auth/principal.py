"""Who is calling: what a verified token says, and nothing more."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    roles: frozenset[str]
    scopes: tuple[str, ...]
    patient: str | None  # PatientGraph id of a patient-context token
    token_id: str | None  # `jti`, for the audit trail; never the token itself
    issuer: str
    issued_at: float | None = None  # `iat`: break-the-glass needs a recent sign-in
