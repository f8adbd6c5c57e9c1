"""Who may read what: one declarative policy (roles -> resource types) combined with the
caller's SMART scopes and patient context into an `Access` decision per request.

Decided here: which record types a caller reads, whether it is confined to one patient,
whether it sees SSNs in full, and whether sensitive records are held back from it.
An accepted break-the-glass assertion (`app.auth.break_glass`) lifts the sensitivity rules.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from app.auth.principal import Principal
from app.auth.scopes import Context, parse_scopes

EVERY_TYPE = "*"
# The attribute holding a record's main code, in the order records use them.
CODED_ATTRIBUTES = ("code", "medication", "vaccine")
ROLE_KEYS = frozenset({"read", "own_record_only", "ssn", "sensitive", "break_glass"})
DEFAULT_BREAK_GLASS_MINUTES = 60


class PolicyError(Exception):
    """The policy file is unusable (the message names the problem, never a token)."""


@dataclass(frozen=True, slots=True)
class RoleRule:
    read: frozenset[str]
    own_record_only: bool = False
    ssn_in_full: bool = False  # else an SSN is shown as its last four digits
    sensitive: bool = False  # may see records the sensitivity rules hold back
    break_glass: bool = False  # may lift the sensitivity rules in an emergency, with a reason


@dataclass(frozen=True, slots=True)
class Sensitivity:
    """What makes a record sensitive: a security label (meta.security code: confidentiality
    R/V, or an ActCode sensitivity such as HIV, ETH, PSY) or one of the listed codes."""

    labels: frozenset[str] = frozenset()
    codes: frozenset[tuple[str, str]] = frozenset()  # (system, code)

    def applies_to(self, record: Any) -> bool:
        meta = getattr(record, "meta", None)
        if meta is not None and any(c.code in self.labels for c in meta.security):
            return True
        concept = next((getattr(record, a) for a in CODED_ATTRIBUTES if hasattr(record, a)), None)
        return concept is not None and any(
            (c.system or "", c.code or "") in self.codes for c in concept.coding
        )


@dataclass(frozen=True, slots=True)
class Policy:
    roles: Mapping[str, RoleRule]
    sensitivity: Sensitivity = Sensitivity()
    break_glass_minutes: int = DEFAULT_BREAK_GLASS_MINUTES

    def may_break_glass(self, principal: Principal) -> bool:
        return any(self.roles[r].break_glass for r in principal.roles if r in self.roles)

    def decide(self, principal: Principal, *, break_glass: bool = False) -> Access:
        """`break_glass`: an accepted emergency assertion lifts the sensitivity rules only."""
        rules = [self.roles[r] for r in principal.roles if r in self.roles]
        by_roles = frozenset().union(*(rule.read for rule in rules)) if rules else frozenset()
        scopes = parse_scopes(" ".join(principal.scopes))
        usable = [s for s in scopes.scopes if "r" in s.permissions]
        by_scopes = frozenset(s.resource_type for s in usable if not s.constraints)
        constrained: dict[str, list[tuple[tuple[str, str], ...]]] = {}
        for s in usable:
            if s.constraints:
                constrained.setdefault(s.resource_type, []).append(s.constraints)
        patient_scoped = bool(usable) and all(s.context is Context.PATIENT for s in usable)
        confined = patient_scoped or any(rule.own_record_only for rule in rules)
        return Access(
            roles_read=by_roles,
            scopes_read=by_scopes,
            scopes_read_if={t: tuple(c) for t, c in constrained.items()},
            confined_to=(principal.patient or "") if confined else None,
            ssn_in_full=any(rule.ssn_in_full for rule in rules),
            sensitivity=None
            if break_glass or any(rule.sensitive for rule in rules)
            else self.sensitivity,
        )


@dataclass(frozen=True, slots=True)
class Access:
    """One caller's read rights for one request."""

    roles_read: frozenset[str]
    scopes_read: frozenset[str]  # types granted by scopes without constraints
    # SMART v2 granular scopes: type -> alternatives, each a set of (category|code, token)
    # constraints a record must all meet (e.g. `user/Observation.rs?category=laboratory`).
    scopes_read_if: Mapping[str, tuple[tuple[tuple[str, str], ...], ...]]
    # PatientGraph id the caller is limited to; "" = limited but no patient context (nothing);
    # None = not limited to one patient.
    confined_to: str | None
    ssn_in_full: bool = False
    # Rules for records to hold back from this caller; None when its role may see them.
    sensitivity: Sensitivity | None = None

    def withholds(self, record: Any) -> bool:
        return self.sensitivity is not None and self.sensitivity.applies_to(record)

    def can_read(self, resource_type: str) -> bool:
        """Some records of this type may be read (granular scopes: `allows_record` decides)."""
        return self._role_ok(resource_type) and (
            self._fully_scoped(resource_type) or bool(self._conditions(resource_type))
        )

    def allows_record(self, record: Any) -> bool:
        """Whether this record (typed by its first source link) is within the caller's rights,
        granular scopes evaluated."""
        resource_type: str = record.sources[0].resource_type
        if not self._role_ok(resource_type):
            return False
        if self._fully_scoped(resource_type):
            return True
        return any(
            all(_meets(record, key, token) for key, token in alternative)
            for alternative in self._conditions(resource_type)
        )

    def _role_ok(self, resource_type: str) -> bool:
        return EVERY_TYPE in self.roles_read or resource_type in self.roles_read

    def _fully_scoped(self, resource_type: str) -> bool:
        return EVERY_TYPE in self.scopes_read or resource_type in self.scopes_read

    def _conditions(self, resource_type: str) -> tuple[tuple[tuple[str, str], ...], ...]:
        return self.scopes_read_if.get(resource_type, ()) + self.scopes_read_if.get(EVERY_TYPE, ())

    def can_see_patient(self, patient_id: str) -> bool:
        return self.confined_to is None or (
            bool(self.confined_to) and patient_id == self.confined_to
        )


def _meets(record: Any, key: str, token: str) -> bool:
    """A SMART granular constraint: `category` against the record's category codes (the
    domain keeps codes only, so the system part is not compared), `code` as a FHIR token
    against its code. A record without that element does not meet it (fail closed)."""
    if key == "category":
        return token.rpartition("|")[2] in getattr(record, "category", ())
    concept = getattr(record, "code", None)
    return key == "code" and concept is not None and bool(concept.has_code(token))


def load_policy(path: Path | None = None) -> Policy:
    """The policy at `path`, or the shipped default."""
    try:
        text = (
            path.read_text(encoding="utf-8")
            if path is not None
            else resources.files("app.auth").joinpath("default_policy.toml").read_text("utf-8")
        )
        data = tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"policy file unreadable: {exc.__class__.__name__}") from None
    return Policy(_roles(data), _sensitivity(data), _break_glass_minutes(data))


def _roles(data: Mapping[str, Any]) -> dict[str, RoleRule]:
    roles = data.get("roles")
    if not isinstance(roles, dict) or not roles:
        raise PolicyError("policy: [roles.<name>] tables are required")
    out = {}
    for name, rule in roles.items():
        if not isinstance(rule, dict) or set(rule) - ROLE_KEYS:
            raise PolicyError(f"policy: roles.{name} may only set {', '.join(sorted(ROLE_KEYS))}")
        read = rule.get("read", [])
        own = rule.get("own_record_only", False)
        ssn = rule.get("ssn", "last4")
        sensitive = rule.get("sensitive", False)
        break_glass = rule.get("break_glass", False)
        for key, flag in (
            ("own_record_only", own),
            ("sensitive", sensitive),
            ("break_glass", break_glass),
        ):
            if not isinstance(flag, bool):
                raise PolicyError(f"policy: roles.{name}.{key} must be true or false")
        if ssn not in ("full", "last4"):
            raise PolicyError(f'policy: roles.{name}.ssn must be "full" or "last4"')
        if not isinstance(read, list) or not all(isinstance(t, str) for t in read):
            raise PolicyError(f"policy: roles.{name}.read must be a list of resource types")
        out[name] = RoleRule(frozenset(read), own, ssn == "full", sensitive, break_glass)
    return out


def _sensitivity(data: Mapping[str, Any]) -> Sensitivity:
    section = data.get("sensitive", {})
    if not isinstance(section, dict) or set(section) - {"labels", "codes"}:
        raise PolicyError("policy: [sensitive] may only set labels and codes")
    labels, codes = section.get("labels", []), section.get("codes", [])
    if not all(isinstance(x, list) for x in (labels, codes)) or not all(
        isinstance(x, str) for x in [*labels, *codes]
    ):
        raise PolicyError("policy: sensitive.labels and sensitive.codes must be lists of strings")
    if any("|" not in c for c in codes):
        raise PolicyError("policy: sensitive.codes entries must be system|code")
    pairs = frozenset((system, code) for system, _, code in (c.rpartition("|") for c in codes))
    return Sensitivity(frozenset(labels), pairs)


def _break_glass_minutes(data: Mapping[str, Any]) -> int:
    section = data.get("break_glass", {})
    minutes = (
        section.get("minutes", DEFAULT_BREAK_GLASS_MINUTES) if isinstance(section, dict) else None
    )
    if not isinstance(minutes, int) or isinstance(minutes, bool) or not 1 <= minutes <= 24 * 60:
        raise PolicyError("policy: break_glass.minutes must be a whole number from 1 to 1440")
    return minutes
