"""Who may read what: one declarative policy (roles -> resource types) combined with the
caller's SMART scopes and patient context into an `Access` decision per request.

Decided here: which of the caller's roles apply to the purpose of use its token states,
which record types it reads, whether it is confined to one patient or to its care team,
which fields are denied to it, how identifiers and addresses are masked, and whether
sensitive records are held back. An accepted break-the-glass assertion
(`app.auth.break_glass`) lifts the sensitivity rules.

Roles add up: a caller with several roles reads what any of them reads. A field is denied
when every one of the caller's roles that reads its record type denies it, so a second role
cannot quietly undo a denial on data it does not cover.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from app.auth.principal import PURPOSE_CODE, Principal
from app.auth.scopes import OPERATION_SCOPES, Context, Scope, parse_scopes
from app.domain.records import Record, RecordKind

EVERY_TYPE = "*"
READ_OR_SEARCH = frozenset("rs")  # the SMART permissions this read-only API serves
ROLE_KEYS = frozenset(
    {
        "read",
        "own_record_only",
        "care_team_only",
        "ssn",
        "address",
        "deny_fields",
        "purposes",
        "sensitive",
        "break_glass",
    }
)
DEFAULT_BREAK_GLASS_MINUTES = 60
FIELD_COORDINATE = re.compile(r"[A-Z][A-Za-z0-9]*\.[a-z][A-Za-z0-9]*")  # GraphQL Type.field


class PolicyError(Exception):
    """The policy file is unusable (the message names the problem, never a token)."""


class PurposeRefused(Exception):
    """The token's purpose of use is not one its roles may act for (answered 403)."""


@dataclass(frozen=True, slots=True)
class RoleRule:
    read: frozenset[str]
    own_record_only: bool = False
    ssn_in_full: bool = False  # else an SSN is shown as its last four digits
    sensitive: bool = False  # may see records the sensitivity rules hold back
    break_glass: bool = False  # may lift the sensitivity rules in an emergency, with a reason
    # Only patients whose encounters or care teams list the caller's practitioner id.
    care_team_only: bool = False
    address_in_full: bool = False  # else city, state, country and the ZIP's first 3 digits
    deny_fields: frozenset[str] = frozenset()  # GraphQL `Type.field` coordinates
    purposes: frozenset[str] | None = None  # purposes of use it may act for; None: any

    def reads_any(self, resource_types: frozenset[str]) -> bool:
        return EVERY_TYPE in self.read or bool(self.read & resource_types)


@dataclass(frozen=True, slots=True)
class Sensitivity:
    """What makes a record sensitive: a security label (meta.security code: confidentiality
    R/V, or an ActCode sensitivity such as HIV, ETH, PSY) or one of the listed codes."""

    labels: frozenset[str] = frozenset()
    codes: frozenset[tuple[str, str]] = frozenset()  # (system, code)

    def applies_to(self, kind: RecordKind[Any], record: Record) -> bool:
        if any(c.code in self.labels for c in record.meta.security):
            return True
        concept = kind.concept(record)
        return concept is not None and any(
            (c.system or "", c.code or "") in self.codes for c in concept.coding
        )


@dataclass(frozen=True, slots=True)
class Policy:
    roles: Mapping[str, RoleRule]
    sensitivity: Sensitivity = Sensitivity()
    break_glass_minutes: int = DEFAULT_BREAK_GLASS_MINUTES
    purpose_required: bool = False  # refuse tokens that state no purpose of use
    # GraphQL type -> the resource types its records come from (`Medication` ->
    # MedicationRequest, ...), from the schema: decides which roles a field denial concerns.
    field_owners: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @property
    def denied_fields(self) -> frozenset[str]:
        """Every field some role denies: the ones the schema must guard."""
        return frozenset().union(*(rule.deny_fields for rule in self.roles.values()))

    def rules_for(self, principal: Principal) -> list[RoleRule]:
        """The caller's roles that apply to the purpose of use its token states (all of them
        when it states none); raises PurposeRefused when roles exist but none applies."""
        rules = [self.roles[r] for r in principal.roles if r in self.roles]
        if not principal.purposes:
            if self.purpose_required and rules:
                raise PurposeRefused("The token must state a purpose of use")
            return rules
        applicable = [r for r in rules if r.purposes is None or principal.purposes <= r.purposes]
        if rules and not applicable:
            raise PurposeRefused("The token's purpose of use is not permitted for its roles")
        return applicable

    def may_break_glass(self, principal: Principal) -> bool:
        return any(rule.break_glass for rule in self.rules_for(principal))

    def decide(self, principal: Principal, *, break_glass: bool = False) -> Access:
        """`break_glass`: an accepted emergency assertion lifts the sensitivity rules only.
        Raises PurposeRefused (see `rules_for`)."""
        rules = self.rules_for(principal)
        by_roles = frozenset().union(*(rule.read for rule in rules)) if rules else frozenset()
        scopes = parse_scopes(" ".join(principal.scopes))
        usable = [s for s in scopes.scopes if s.permissions & READ_OR_SEARCH]
        patient_scoped = bool(usable) and all(s.context is Context.PATIENT for s in usable)
        confined = patient_scoped or any(rule.own_record_only for rule in rules)
        # Limited to a care team only when every role that reads patients is.
        readers = [rule for rule in rules if rule.reads_any(frozenset({"Patient"}))]
        care_team_only = bool(readers) and all(rule.care_team_only for rule in readers)
        return Access(
            roles_read=by_roles,
            read=_grants(s for s in usable if "r" in s.permissions),
            search=_grants(s for s in usable if "s" in s.permissions),
            operations=scopes.other & OPERATION_SCOPES,
            confined_to=(principal.patient or "") if confined else None,
            ssn_in_full=any(rule.ssn_in_full for rule in rules),
            sensitivity=None
            if break_glass or any(rule.sensitive for rule in rules)
            else self.sensitivity,
            care_team=(principal.practitioner or "") if care_team_only else None,
            address_in_full=any(rule.address_in_full for rule in rules),
            denied_fields=self._denied_fields(rules),
        )

    def _denied_fields(self, rules: list[RoleRule]) -> frozenset[str]:
        """Fields denied by every role that reads their record type (all roles' when the
        type is not a record type)."""
        denied = set()
        for coordinate in frozenset().union(*(rule.deny_fields for rule in rules)):
            owner = self.field_owners.get(coordinate.partition(".")[0])
            concerned = [r for r in rules if owner is None or r.reads_any(owner)]
            if all(coordinate in r.deny_fields for r in concerned):
                denied.add(coordinate)
        return frozenset(denied)


Constraints = tuple[tuple[str, str], ...]  # (category|code, token) pairs, all to be met


@dataclass(frozen=True, slots=True)
class Grants:
    """What the token's scopes grant for one SMART permission (read or search)."""

    types: frozenset[str] = frozenset()  # resource types granted without constraints ("*")
    # SMART v2 granular scopes: type -> alternatives, each a set of (category|code, token)
    # constraints a record must all meet (e.g. `user/Observation.rs?category=laboratory`).
    conditional: Mapping[str, tuple[Constraints, ...]] = field(default_factory=dict)

    def full(self, resource_type: str) -> bool:
        return EVERY_TYPE in self.types or resource_type in self.types

    def conditions(self, resource_type: str) -> tuple[Constraints, ...]:
        return self.conditional.get(resource_type, ()) + self.conditional.get(EVERY_TYPE, ())

    def any(self, resource_type: str) -> bool:
        return self.full(resource_type) or bool(self.conditions(resource_type))


def _grants(scopes: Iterable[Scope]) -> Grants:
    types: set[str] = set()
    conditional: dict[str, list[Constraints]] = {}
    for s in scopes:
        if s.constraints:
            conditional.setdefault(s.resource_type, []).append(s.constraints)
        else:
            types.add(s.resource_type)
    return Grants(frozenset(types), {t: tuple(c) for t, c in conditional.items()})


@dataclass(frozen=True, slots=True)
class Access:
    """One caller's read rights for one request.

    SMART permissions (SMART App Launch 2.2, "Clinical Scope Syntax"): reading one record by id
    (`patient(id)`, `me`) needs `r` on its type; a search (`patients(...)`, and every collection,
    which is a search of its types for the patient) needs `s`. SMART v1 `read` means both."""

    roles_read: frozenset[str]
    read: Grants  # `r`: read by id
    search: Grants  # `s`: search (and read what the search finds)
    # PatientGraph id the caller is limited to; "" = limited but no patient context (nothing);
    # None = not limited to one patient.
    confined_to: str | None
    ssn_in_full: bool = False
    # Rules for records to hold back from this caller; None when its role may see them.
    sensitivity: Sensitivity | None = None
    # Practitioner identifier (`system|value`) whose care team bounds the patients seen;
    # "" = bound but no identifier in the token (no patient); None = not bound.
    care_team: str | None = None
    address_in_full: bool = False
    denied_fields: frozenset[str] = frozenset()  # GraphQL `Type.field` nulled with FORBIDDEN
    operations: frozenset[str] = frozenset()  # PatientGraph operation scopes the token holds

    def withholds(self, kind: RecordKind[Any], record: Record) -> bool:
        return self.sensitivity is not None and self.sensitivity.applies_to(kind, record)

    def can_read(self, resource_type: str) -> bool:
        """One record of this type may be read by id (scope `r`)."""
        return self._role_ok(resource_type) and self.read.any(resource_type)

    def can_search(self, resource_type: str) -> bool:
        """Records of this type may be searched for (scope `s`; granular scopes: some of them,
        `allows_record` decides which)."""
        return self._role_ok(resource_type) and self.search.any(resource_type)

    def allows_record(self, kind: RecordKind[Any], record: Record) -> bool:
        """Whether this record of `kind` (typed by its first source link), found by a search,
        is within the caller's rights, granular scopes evaluated."""
        resource_type: str = record.sources[0].resource_type
        if not self._role_ok(resource_type):
            return False
        if self.search.full(resource_type):
            return True
        return any(
            all(_meets(kind, record, key, token) for key, token in alternative)
            for alternative in self.search.conditions(resource_type)
        )

    def _role_ok(self, resource_type: str) -> bool:
        return EVERY_TYPE in self.roles_read or resource_type in self.roles_read

    def can_see_patient(self, patient_id: str) -> bool:
        return self.confined_to is None or (
            bool(self.confined_to) and patient_id == self.confined_to
        )


def _meets(kind: RecordKind[Any], record: Record, key: str, token: str) -> bool:
    """A SMART granular constraint: `category` against the record's category codes (the
    domain keeps codes only, so the system part is not compared), `code` as a FHIR token
    against its code. A record without that element does not meet it (fail closed)."""
    if key == "category":
        return token.rpartition("|")[2] in kind.categories(record)
    concept = kind.code(record)
    return key == "code" and concept is not None and concept.has_code(token)


def load_policy(
    path: Path | None = None, field_owners: Mapping[str, frozenset[str]] | None = None
) -> Policy:
    """The policy at `path`, or the shipped default. `field_owners` (from the schema) maps
    GraphQL types to resource types; `schema.field_rules` checks the coordinates."""
    try:
        text = (
            path.read_text(encoding="utf-8")
            if path is not None
            else resources.files("app.auth").joinpath("default_policy.toml").read_text("utf-8")
        )
        data = tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"policy file unreadable: {exc.__class__.__name__}") from None
    return Policy(
        _roles(data),
        _sensitivity(data),
        _break_glass_minutes(data),
        _purpose_required(data),
        field_owners or {},
    )


def _roles(data: Mapping[str, Any]) -> dict[str, RoleRule]:
    roles = data.get("roles")
    if not isinstance(roles, dict) or not roles:
        raise PolicyError("policy: [roles.<name>] tables are required")
    out = {}
    for name, rule in roles.items():
        if not isinstance(rule, dict) or set(rule) - ROLE_KEYS:
            raise PolicyError(f"policy: roles.{name} may only set {', '.join(sorted(ROLE_KEYS))}")
        for key in ("own_record_only", "care_team_only", "sensitive", "break_glass"):
            if not isinstance(rule.get(key, False), bool):
                raise PolicyError(f"policy: roles.{name}.{key} must be true or false")
        if rule.get("ssn", "last4") not in ("full", "last4"):
            raise PolicyError(f'policy: roles.{name}.ssn must be "full" or "last4"')
        if rule.get("address", "region") not in ("full", "region"):
            raise PolicyError(f'policy: roles.{name}.address must be "full" or "region"')
        read = _strings(rule, "read", name, "resource types")
        deny = _strings(rule, "deny_fields", name, "Type.field names")
        if any(not FIELD_COORDINATE.fullmatch(c) for c in deny):
            raise PolicyError(f"policy: roles.{name}.deny_fields entries must be Type.field")
        purposes = rule.get("purposes")
        if purposes is not None:
            purposes = _strings(rule, "purposes", name, "purpose of use codes")
            if any(not PURPOSE_CODE.fullmatch(p) for p in purposes):
                raise PolicyError(f"policy: roles.{name}.purposes must be codes like TREAT")
        out[name] = RoleRule(
            read=frozenset(read),
            own_record_only=rule.get("own_record_only", False),
            ssn_in_full=rule.get("ssn") == "full",
            sensitive=rule.get("sensitive", False),
            break_glass=rule.get("break_glass", False),
            care_team_only=rule.get("care_team_only", False),
            address_in_full=rule.get("address") == "full",
            deny_fields=frozenset(deny),
            purposes=None if purposes is None else frozenset(purposes),
        )
    return out


def _strings(rule: Mapping[str, Any], key: str, role: str, what: str) -> list[str]:
    value = rule.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(f"policy: roles.{role}.{key} must be a list of {what}")
    return value


def _purpose_required(data: Mapping[str, Any]) -> bool:
    section = data.get("purpose_of_use", {})
    required = section.get("required", False) if isinstance(section, dict) else None
    if (
        not isinstance(section, dict)
        or set(section) - {"required"}
        or not isinstance(required, bool)
    ):
        raise PolicyError("policy: [purpose_of_use] may only set required = true or false")
    return required


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
