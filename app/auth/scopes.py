"""SMART App Launch scopes, parsed strictly: anything not understood grants nothing.

Grammar (SMART App Launch 2.2, "Scopes and Launch Context", "Clinical Scope Syntax"; v1 forms
from SMART App Launch 1.0, still accepted per "Scope Equivalence")::

    scope       = context "/" type "." permissions [ "?" query ]
    context     = "patient" / "user" / "system"
    type        = "*" / %x41-5A 1*63ALPHA               ; FHIR resource type name shape
    permissions = "read" / "write" / "*"                ; v1 (no query allowed)
                / ["c"] ["r"] ["u"] ["d"] ["s"]         ; v2, non-empty, canonical order
    query       = pair *( "&" pair )                    ; v2 only
    pair        = ( "category" / "code" ) "=" token     ; the keys this API evaluates

Fail closed (SMART 2.2 "Scopes and Launch Context": a server must not grant what it does not
understand): a scope with any unknown or malformed part lands in `ScopeSet.rejected` whole; no
part of it is kept. `parse_scopes` never raises.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import unquote

MAX_CLAIM_CHARS = 4096
MAX_SCOPES = 100
TOO_MANY = "(too many)"
NOT_A_STRING = "(not a string)"

PERMISSION_ORDER = "cruds"  # SMART 2.2 "Clinical Scope Syntax": c r u d s, in this order
ALL_PERMISSIONS = frozenset(PERMISSION_ORDER)
# SMART 2.2 "Scope Equivalence": .read == .rs, .write == .cud, .* == .cruds
V1_PERMISSIONS = {
    "read": frozenset("rs"),
    "write": frozenset("cud"),
    "*": ALL_PERMISSIONS,
}
# SMART 2.2 "Scopes for requesting context data", "... identity data", "... a refresh token".
OTHER_SCOPES = frozenset(
    {"openid", "fhirUser", "profile", "launch", "launch/patient", "online_access", "offline_access"}
)
# PatientGraph's own scopes (not SMART): each administrative mutation needs its own, besides
# the role, so a token issued for reading can never run one.
CACHE_PURGE_SCOPE = "patientgraph/cache.purge"  # `purgePatientCache`
IDENTITY_READ_SCOPE = "patientgraph/identity.read"  # `Patient.links`, `identityReviews`, ...
IDENTITY_WRITE_SCOPE = "patientgraph/identity.write"  # link, unlink, dismiss
OPERATION_SCOPES = frozenset({CACHE_PURGE_SCOPE, IDENTITY_READ_SCOPE, IDENTITY_WRITE_SCOPE})
# SMART 2.2 "Finer-grained resource constraints using search parameters": the server decides
# which search parameters it supports; these are the two this API can evaluate (token params).
CONSTRAINT_KEYS = frozenset({"category", "code"})

# RFC 6749 section 3.3 scope-token: printable ASCII except space, `"` and `\`.
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
_CLAIM_SEPARATOR = re.compile(r"[ \t\n\r\f\v]+")  # ASCII whitespace only
_RESOURCE_SCOPE = re.compile(
    r"(?P<context>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]{1,63})"
    r"\.(?P<permissions>[^?]+)(?:\?(?P<query>.*))?",
    re.DOTALL,
)
_RESOURCE_TYPE = re.compile(r"\*|[A-Z][A-Za-z]{1,63}")
_V2_PERMISSIONS = re.compile(r"c?r?u?d?s?")
_PERCENT_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")  # a `%` not followed by two hex digits
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")  # RFC 3986 section 3.1 scheme
# FHIR search escapes `,` `$` `|` `\` in token values (FHIR R4 search, "Escaping Search
# Parameters"); `,` means OR. None of that is evaluated here, so none of it is accepted.
_TOKEN_SPECIALS = frozenset(",$|\\")


class Context(StrEnum):
    """SMART 2.2 "Patient-specific", "User-level" and "System-level" scopes."""

    PATIENT = "patient"
    USER = "user"
    SYSTEM = "system"


ALL_CONTEXTS: tuple[Context, ...] = tuple(Context)


@dataclass(frozen=True, slots=True)
class Scope:
    context: Context
    resource_type: str  # a FHIR resource type name ("Observation") or "*"
    permissions: frozenset[str]  # subset of {"c", "r", "u", "d", "s"}
    constraints: tuple[tuple[str, str], ...]  # (key, decoded token value), in query order
    raw: str

    def allows(self, resource_type: str, permission: str = "r") -> bool:
        """Type and permission only; `constraints` are for the caller to evaluate.

        A wildcard scope covers every type (SMART 2.2 "Wildcard scopes"); asking about "*"
        itself is granted only by a wildcard scope.
        """
        if not _RESOURCE_TYPE.fullmatch(resource_type):
            return False
        type_ok = self.resource_type in ("*", resource_type)
        return type_ok and permission in self.permissions


@dataclass(frozen=True, slots=True)
class ScopeSet:
    scopes: tuple[Scope, ...]
    rejected: tuple[str, ...]  # not understood: grants nothing
    other: frozenset[str]  # well-known non-resource scopes (OTHER_SCOPES, OPERATION_SCOPES)

    def grants(
        self,
        resource_type: str,
        permission: str = "r",
        *,
        contexts: Collection[Context] = ALL_CONTEXTS,
    ) -> list[Scope]:
        """The scopes granting `permission` on `resource_type` in one of `contexts`.

        An empty list means not granted. Constrained scopes are included: the caller must
        apply their `constraints` (a scope with several constraints means all of them).
        """
        return [
            scope
            for scope in self.scopes
            if scope.context in contexts and scope.allows(resource_type, permission)
        ]


def parse_scopes(scope_claim: str) -> ScopeSet:
    """Parse an OAuth `scope` claim (space separated, RFC 6749 section 3.3). Never raises."""
    if not isinstance(scope_claim, str):
        return ScopeSet(scopes=(), rejected=(NOT_A_STRING,), other=frozenset())
    if len(scope_claim) > MAX_CLAIM_CHARS:
        return ScopeSet(scopes=(), rejected=(TOO_MANY,), other=frozenset())
    tokens = [token for token in _CLAIM_SEPARATOR.split(scope_claim) if token]
    if len(tokens) > MAX_SCOPES:
        return ScopeSet(scopes=(), rejected=(TOO_MANY,), other=frozenset())
    return _collect(dict.fromkeys(tokens))  # duplicates kept once, claim order kept


def _collect(tokens: Iterable[str]) -> ScopeSet:
    scopes: list[Scope] = []
    rejected: list[str] = []
    other: set[str] = set()
    for token in tokens:
        if token in OTHER_SCOPES or token in OPERATION_SCOPES:
            other.add(token)
        elif (scope := parse_scope(token)) is not None:
            scopes.append(scope)
        else:
            rejected.append(token)
    return ScopeSet(scopes=tuple(scopes), rejected=tuple(rejected), other=frozenset(other))


def parse_scope(text: str) -> Scope | None:
    """One resource scope, or None when any part of it is not understood."""
    if not _SCOPE_TOKEN.fullmatch(text):
        return None  # RFC 6749 scope-token characters only (no unicode lookalikes)
    match = _RESOURCE_SCOPE.fullmatch(text)
    if match is None:
        return None
    query = match["query"]
    permissions = _permissions(match["permissions"], with_query=query is not None)
    if permissions is None:
        return None
    constraints = () if query is None else _constraints(query)
    if constraints is None:
        return None
    return Scope(
        context=Context(match["context"]),
        resource_type=match["type"],
        permissions=permissions,
        constraints=constraints,
        raw=text,
    )


def _permissions(text: str, *, with_query: bool) -> frozenset[str] | None:
    """v1 `read`/`write`/`*` (never with a query) or v2 `cruds` letters in canonical order."""
    if text in V1_PERMISSIONS:
        # SMART 2.2 "Finer-grained resource constraints": queries are a v2 feature.
        return None if with_query else V1_PERMISSIONS[text]
    if text and _V2_PERMISSIONS.fullmatch(text):
        return frozenset(text)
    return None


def _constraints(query: str) -> tuple[tuple[str, str], ...] | None:
    """`category`/`code` token constraints; None if anything in the query is not understood.

    Split on `&` and `=` first, then percent-decode each part exactly once, so an encoded `&`
    or `=` stays data. `+` is refused rather than guessed (RFC 3986 keeps it literal, HTML form
    encoding makes it a space).
    """
    if "+" in query or _PERCENT_ESCAPE.search(query):
        return None
    pairs: list[tuple[str, str]] = []
    for part in query.split("&"):
        pair = _pair(part)
        if pair is None or any(pair[0] == key for key, _ in pairs):
            return None  # malformed, unknown key, or repeated key
        pairs.append(pair)
    return tuple(pairs)


def _pair(part: str) -> tuple[str, str] | None:
    key_text, sep, value_text = part.partition("=")
    if not sep or "=" in value_text:
        return None  # `category` alone, `category==x`: malformed
    key, value = _decode(key_text), _decode(value_text)
    if key not in CONSTRAINT_KEYS or value is None or not _is_token(value):
        return None
    return key, value


def _decode(text: str) -> str | None:
    try:
        return unquote(text, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        return None


def _is_token(value: str) -> bool:
    """FHIR token search value `system|code` or `code`, both parts non-empty.

    `|code` (explicitly no system) and `system|` (any code of the system) are refused: the
    first is rarely meant, the second would widen the grant to a whole code system.
    """
    system, sep, code = value.partition("|")
    if not sep:
        return _is_code(value)
    return bool(_URI_SCHEME.fullmatch(system)) and _is_clean(system) and _is_code(code)


def _is_code(text: str) -> bool:
    """FHIR R4 `code` datatype shape: no leading, trailing or doubled spaces; printable."""
    return bool(text) and text == text.strip(" ") and "  " not in text and _is_clean(text)


def _is_clean(text: str) -> bool:
    return text.isprintable() and not _TOKEN_SPECIALS.intersection(text)
