"""Access enforcement: the one module that applies the policy's decision (`app.auth.policy`,
an `Access` per request) to what a query would disclose.

The policy decides who may read what; this module enforces it, for every entry point and
every collection: the patient gate (`admit_patient`, `admit_patients`, used by `patient`,
`patients` and `me`), administration (`require_admin`), the record types a caller reads,
record visibility (granular scopes, then sensitivity), identifier and address masking, field
rules (asked by `schema.field_rules`) and the care-team rule. Every decision passes through
`decide`, which keeps it in the request's `Context.decisions` (the audit trail records them
from there) and turns a refusal into what the client is told: a FORBIDDEN error at the path,
never a silent gap.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from app.domain.audit import Decision, Rule
from app.domain.care_teams import CareTeam
from app.domain.common import Address, Identifier, SourceLink
from app.domain.encounters import Encounter
from app.domain.patients import SSN_SYSTEM, Patient
from app.domain.records import CARE_TEAMS, ENCOUNTERS, Record, RecordKind, RecordQuery
from resolvers.context import Context
from resolvers.errors import Forbidden
from resolvers.fan_out import gather_sources

R = TypeVar("R")
Rec = TypeVar("Rec", bound=Record)
Path = tuple[str | int, ...] | None
PATIENT = "Patient"
ADMIN = "admin"
AUDITOR = "auditor"
PATIENT_ROLE = "patient"
OUTSIDE = "This patient is outside the caller's access"  # the same whether or not it exists
# The record kinds whose `participant_identifiers` put a practitioner on a patient's care team.
MEMBERSHIP_KINDS: tuple[RecordKind[Any], ...] = (ENCOUNTERS, CARE_TEAMS)


def decide(ctx: Context, decision: Decision, path: Path = None, message: str | None = None) -> bool:
    """The one place every access decision passes: kept for the request and, for a refusal
    with a `message`, reported as a FORBIDDEN error at `path`. Returns `decision.allowed`."""
    ctx.decisions.append(decision)
    if not decision.allowed and message is not None:
        ctx.denials.add(path, message)
    return decision.allowed


# ---- operations ------------------------------------------------------------------------------


def require_admin(ctx: Context, operation: str, scope: str, refusal: str) -> None:
    """Administration (cache purges) needs the admin role and the operation's own scope
    (`patientgraph/cache.purge`): a token issued for reading never runs one. Raises
    Forbidden."""
    if not decide(ctx, Decision(Rule.ROLE, operation, ADMIN in ctx.principal.roles)):
        raise Forbidden(refusal)
    if not decide(ctx, Decision(Rule.OPERATION_SCOPE, operation, scope in ctx.access.operations)):
        raise Forbidden(refusal)


def is_auditor(ctx: Context, operation: str) -> bool:
    """Reading the audit trail (`auditEvents`, the access-pattern page) needs the auditor
    role."""
    return decide(ctx, Decision(Rule.ROLE, operation, AUDITOR in ctx.principal.roles))


def may_read_access_log(ctx: Context, patient_id: str, path: Path) -> bool:
    """A patient's access log is for the patient (a patient-context token for them): no one
    else, so no patient ever reads another patient's log (auditors read `auditEvents`)."""
    own = PATIENT_ROLE in ctx.principal.roles and ctx.access.confined_to == patient_id
    return decide(ctx, Decision(Rule.ROLE, "Patient.accessLog", own, patient_id), path)


# ---- patients --------------------------------------------------------------------------------


async def admit_patient(ctx: Context, patient_id: str, path: Path) -> tuple[SourceLink, ...]:
    """The linked records of a patient this caller may read by id (SMART `r` on Patient);
    raises Forbidden otherwise (the same refusal whether or not the patient exists: no
    enumeration through errors)."""
    if not decide(ctx, Decision(Rule.RECORD_TYPE, PATIENT, ctx.access.can_read(PATIENT))):
        raise Forbidden("Not allowed to read patients")
    if not _within_confinement(ctx, patient_id):
        raise Forbidden(OUTSIDE)
    links: tuple[SourceLink, ...] = await ctx.loaders.links.load(patient_id)
    if ctx.access.care_team is not None:
        member = await on_care_team(ctx, links, path)
        if not decide(ctx, Decision(Rule.CARE_TEAM, PATIENT, member, patient_id)):
            raise Forbidden(OUTSIDE)
    return links


def may_search_patients(ctx: Context, path: Path) -> bool:
    """Whether the caller may search patients at all (SMART `s` on Patient; else FORBIDDEN at
    the connection)."""
    searchable = ctx.access.can_search(PATIENT)
    return decide(
        ctx,
        Decision(Rule.RECORD_TYPE, PATIENT, searchable),
        path,
        "Not allowed to search patients",
    )


async def admit_patients(
    ctx: Context, patient_ids: Sequence[str], path: Path
) -> list[tuple[str, tuple[SourceLink, ...]]]:
    """The patients found by a search that this caller may see, with their linked records,
    in order: a patient-context caller finds only themself (nothing more is fetched for
    anyone else), a caller bound to its care team only its patients."""
    order = [pid for pid in dict.fromkeys(patient_ids) if _within_confinement(ctx, pid)]
    links: list[tuple[SourceLink, ...]] = await ctx.loaders.links.load_many(order)
    admitted = list(zip(order, links, strict=True))
    if ctx.access.care_team is None:
        return admitted
    kept = await asyncio.gather(*(on_care_team(ctx, group, path) for _, group in admitted))
    return [
        (pid, group)
        for (pid, group), keep in zip(admitted, kept, strict=True)
        if decide(ctx, Decision(Rule.CARE_TEAM, PATIENT, keep, pid))
    ]


def _within_confinement(ctx: Context, patient_id: str) -> bool:
    """A caller confined to one patient (patient context) sees that patient only; for any
    other caller the rule does not apply and nothing is decided."""
    if ctx.access.confined_to is None:
        return True
    seen = ctx.access.can_see_patient(patient_id)
    return decide(ctx, Decision(Rule.CONFINEMENT, PATIENT, seen, patient_id))


async def on_care_team(ctx: Context, links: Sequence[SourceLink], path: Path) -> bool:
    """Whether the caller's practitioner identifier is among the participants of one of the
    patient's encounters or the members of one of their FHIR CareTeams.

    Read through the request's loaders, concurrently, so a query that also asks for them
    costs no extra upstream call, and patients on one page are checked in one batch per
    source and kind. The check discloses nothing but its yes or no; a source that fails gives
    no evidence (fail closed: with no other match, the answer is no)."""
    practitioner = ctx.access.care_team
    if not practitioner or not links:
        return False  # bound, but no practitioner identifier or no linked record
    system, _, value = practitioner.partition("|")
    calls: list[Awaitable[Sequence[Encounter | CareTeam]]] = []
    for link in links:
        source = ctx.services.record_source(link.source_id)
        if source is None:
            continue
        for kind in MEMBERSHIP_KINDS:
            if kind.name in source.record_kinds:
                calls.append(ctx.loaders.record_answer(source, kind, RecordQuery(link.local_id)))
    results, _ = await gather_sources(calls, ctx.problems, path)
    return any(
        i.system == system and i.value == value
        for records in results.values()
        for record in records
        for i in record.participant_identifiers
    )


# ---- record types and records ----------------------------------------------------------------


def readable_types(ctx: Context, kind: RecordKind[Any]) -> frozenset[str]:
    """The resource types of `kind` the caller may read in a collection: a collection is a
    search of those types for the patient, so SMART `s` (granular scopes decide per record);
    worked out once per request and kind."""
    access, memo = ctx.access, ctx.loaders.readable_types
    known = memo.get(kind.name)
    if known is not None and known[0] is access:
        return known[1]
    readable = frozenset(t for t in kind.resource_types if access.can_search(t))
    memo[kind.name] = (access, readable)
    return readable


def allowed_types(ctx: Context, kind: RecordKind[Any], path: Path) -> frozenset[str]:
    """`readable_types`, with what is withheld reported at `path`: the whole collection when
    nothing of it is readable, else the types left out."""
    allowed = readable_types(ctx, kind)
    withheld = sorted(set(kind.resource_types) - allowed)
    if not allowed:
        what = kind.name.replace("_", " ")
        decide(
            ctx, Decision(Rule.RECORD_TYPE, kind.name, False), path, f"Not allowed to read {what}"
        )
    elif withheld:
        message = f"Not shown by policy: {', '.join(withheld)}"
        decide(
            ctx, Decision(Rule.RECORD_TYPE, kind.name, False, count=len(withheld)), path, message
        )
    return allowed


@dataclass(frozen=True, slots=True)
class RecordSet(Generic[R]):
    records: list[R]
    withheld: int  # held back by the sensitivity rules: the caller learns how many, not which


def visible_records(
    ctx: Context, kind: RecordKind[Any], found: list[Rec], path: Path
) -> RecordSet[Rec]:
    """Granular scopes, then sensitivity: one pass over the records. Out-of-scope records are
    reported at `path`; sensitive ones only counted."""
    access = ctx.access
    allows, withholds = access.allows_record, access.withholds
    visible: list[Rec] = []
    in_scope = 0
    for record in found:
        if allows(kind, record):
            in_scope += 1
            if not withholds(kind, record):
                visible.append(record)
    if in_scope < len(found):
        decision = Decision(Rule.SCOPE, kind.name, False, count=len(found) - in_scope)
        decide(ctx, decision, path, "Some records are outside the token's scopes")
    if len(visible) < in_scope:
        decide(ctx, Decision(Rule.SENSITIVITY, kind.name, False, count=in_scope - len(visible)))
    return RecordSet(visible, in_scope - len(visible))


# ---- fields and masking ----------------------------------------------------------------------


def field_denied(ctx: Context, coordinate: str) -> bool:
    """Whether the policy denies the GraphQL field `Type.field` to this caller (asking only:
    `field_allowed` is the decision, made when the field is read)."""
    return coordinate in ctx.access.denied_fields


def field_allowed(ctx: Context, coordinate: str) -> bool:
    """Whether the caller may read the GraphQL field `Type.field` (policy `deny_fields`)."""
    return not field_denied(ctx, coordinate) or decide(ctx, Decision(Rule.FIELD, coordinate, False))


def visible_identifiers(ctx: Context, patient: Patient) -> list[Identifier]:
    """The patient's identifiers as this caller may see them: an SSN in full only for roles
    whose policy says so, else as its last four digits (minimum necessary)."""
    if ctx.access.ssn_in_full:
        return list(patient.identifiers)
    return [
        dataclasses.replace(i, value=f"***-**-{_digits(i.value)[-4:]}")
        if i.system == SSN_SYSTEM
        else i
        for i in patient.identifiers
    ]


def _digits(value: str) -> str:
    return "".join(c for c in value if c.isdigit())


def visible_addresses(ctx: Context, patient: Patient) -> list[Address]:
    """The patient's addresses in full for roles whose policy says so; else only the region:
    city, state, country and the first three ZIP digits (minimum necessary)."""
    if ctx.access.address_in_full:
        return list(patient.addresses)
    return [
        Address(
            use=a.use,
            lines=(),
            city=a.city,
            state=a.state,
            postal_code=_zip3(a.postal_code),
            country=a.country,
        )
        for a in patient.addresses
    ]


def _zip3(postal_code: str | None) -> str | None:
    code = (postal_code or "").strip()
    return f"{code[:3]}**" if len(code) >= 5 else None  # a shorter code would show whole
