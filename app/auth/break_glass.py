"""Break-the-glass: a clinician asserts an emergency, with a reason, to see records the
sensitivity rules hold back.

The request shape is one header, `X-Break-The-Glass: <reason>` (5 to 500 printable
characters), on each request that needs it, so every elevated disclosure carries its reason.
It lifts sensitivity restrictions only (never patient confinement or record-type rules), only
for roles whose policy says `break_glass = true`, and only while the token is fresh: its `iat`
must be within the policy's `[break_glass] minutes` (default 60), which limits an emergency to
one recent sign-in without server-side state shared between workers. Every use is recorded in
`BreakGlassLog` (the audit issue persists it). Responses to such requests must never be cached.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from app.auth.principal import Principal

HEADER = "x-break-the-glass"
MIN_REASON, MAX_REASON = 5, 500
LOG_SIZE = 10_000


class BreakGlassRefused(Exception):
    """The assertion cannot be honoured; `code` and `status` say how to answer."""

    def __init__(self, message: str, code: str, status: int) -> None:
        super().__init__(message)
        self.code, self.status = code, status


@dataclass(frozen=True, slots=True)
class BreakGlass:
    subject: str
    token_id: str | None
    reason: str  # free text written by the clinician: may hold PHI, never logged
    declared_at: float


def break_glass_from(
    values: list[str], principal: Principal, *, allowed: bool, minutes: int
) -> BreakGlass | None:
    """The caller's assertion, None without the header; raises BreakGlassRefused."""
    if not values:
        return None
    if len(values) > 1:
        raise BreakGlassRefused("Send one X-Break-The-Glass header", "BAD_USER_INPUT", 400)
    reason = values[0].strip()
    if not MIN_REASON <= len(reason) <= MAX_REASON or not reason.isprintable():
        raise BreakGlassRefused(
            f"Break-the-glass needs a reason of {MIN_REASON} to {MAX_REASON} characters",
            "BAD_USER_INPUT",
            400,
        )
    if not allowed:
        raise BreakGlassRefused("Break-the-glass is not available to this role", "FORBIDDEN", 403)
    now = time.time()
    if principal.issued_at is None or now - principal.issued_at > minutes * 60:
        raise BreakGlassRefused(
            f"Break-the-glass needs a token issued in the last {minutes} minutes",
            "FORBIDDEN",
            403,
        )
    return BreakGlass(principal.subject, principal.token_id, reason, now)


class BreakGlassLog:
    """Every break-the-glass request, newest last (bounded; the audit trail will persist it)."""

    def __init__(self, size: int = LOG_SIZE) -> None:
        self._entries: deque[BreakGlass] = deque(maxlen=size)

    def record(self, entry: BreakGlass) -> None:
        self._entries.append(entry)

    @property
    def entries(self) -> list[BreakGlass]:
        return list(self._entries)
