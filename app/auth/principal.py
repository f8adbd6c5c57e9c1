"""Who is calling: what a verified token says, and nothing more."""

from __future__ import annotations

import re
from dataclasses import dataclass

# v3-ActReason purpose of use codes (TREAT, ETREAT, HPAYMT, ...), as tokens and policy state them.
PURPOSE_CODE = re.compile(r"[A-Z][A-Z0-9]{1,31}")


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    roles: frozenset[str]
    scopes: tuple[str, ...]
    patient: str | None  # PatientGraph id of a patient-context token
    token_id: str | None  # `jti`, for the audit trail; never the token itself
    issuer: str
    issued_at: float | None = None  # `iat`: break-the-glass needs a recent sign-in
    # `purpose_of_use`: v3-ActReason codes (TREAT, HPAYMT, ...) the caller states it acts for.
    purposes: frozenset[str] = frozenset()
    # `practitioner`: the user's practitioner identifier as `system|value` (e.g. an NPI), for
    # the care-team rule.
    practitioner: str | None = None
    expires_at: float | None = None  # `exp`: how long a verification may be remembered
    name: str | None = None  # `name`: how the audit trail shows the user to a patient
    client_id: str | None = None  # `client_id` (or `azp`): the app the token was issued to
    organization: str | None = None  # `organization`: whom the user acts for (access logs)
