"""The audit events of one operation: one per patient whose data it disclosed or for whom it
was denied, in the shape of IHE Basic Audit Log Patterns (who, what, when, where, outcome),
stored as JSON by `app.audit.trail` and exported as FHIR AuditEvent by `app.audit.fhir`.

No PHI in clear beyond the patient's PatientGraph id: variable values (a searched name, an
identifier) are kept as keyed hashes, so an auditor holding a value can check whether it was
searched, and the document by its SHA-256 (the trusted document or the query text it names).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from app.audit.trail import Part, Pending
from app.domain.audit import Decision, Rule, Summary

VERSION = 1
SUCCESS, PARTIAL, DENIED, ERROR = "success", "partial", "denied", "error"
EXECUTED, CACHED, SHARED = "executed", "cache", "shared"  # how the response was produced
CLI_CLIENT = "patientgraph-cli"
COMMAND = "command"  # the operation kind of a CLI command


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asked, from where: the token's claims and the connection, never the token."""

    subject: str
    name: str | None  # the token's display name, for a patient's access log
    client: str | None  # the OAuth client (app) the token was issued to
    roles: tuple[str, ...]
    purposes: tuple[str, ...]
    token_id: str | None
    address: str | None
    request_id: str
    break_glass: str | None = None  # the stated emergency reason
    organization: str | None = None  # whom the user acts for, as the token says

    def as_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "name": self.name,
            "client": self.client,
            "organization": self.organization,
            "roles": list(self.roles),
            "purposes": list(self.purposes),
            "token_id": self.token_id,
            "break_glass": self.break_glass,
        }


@dataclass(frozen=True, slots=True)
class Operation:
    kind: str  # query | mutation | identity | cache purge
    name: str | None
    document_hash: str | None
    variables: Mapping[str, str]  # name -> keyed hash of the value
    fields: tuple[str, ...] = ()  # the `Type.field`s the document selects

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "hash": self.document_hash,
            "variables": dict(self.variables),
            "fields": list(self.fields),
        }


def operation(
    key: bytes,
    kind: str,
    name: str | None,
    query: str | None,
    variables: Mapping[str, Any] | None,
    fields: tuple[str, ...] = (),
) -> Operation:
    digest = hashlib.sha256(query.encode()).hexdigest() if query is not None else None
    hashed = {k: keyed_hash(key, v) for k, v in sorted((variables or {}).items())}
    return Operation(kind, name, digest, hashed, fields)


def keyed_hash(key: bytes, value: Any) -> str:
    material = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return hmac.new(key, material, hashlib.sha256).hexdigest()


def events_of(caller: Caller, op: Operation, summary: Summary, served: str) -> Pending:
    """The operation's events as the trail records them: the shared head, each one's part."""
    return head_of(caller, op, served), parts_of(summary, command=op.kind == COMMAND)


def head_of(caller: Caller, op: Operation, served: str) -> str:
    """What every event of one request shares, serialised once: the opening of its JSON."""
    head = {
        "v": VERSION,
        "served": served,
        "who": caller.as_json(),
        "where": {"address": caller.address, "request_id": caller.request_id},
        "operation": op.as_json(),
    }
    return orjson.dumps(head)[:-1].decode() + ","


def parts_of(summary: Summary, *, command: bool = False) -> list[Part]:
    """(patient id, outcome, the patient's part of the event as a JSON object) for each
    patient the operation disclosed, changed or was denied; one part without a patient when it
    concerned none but decided or failed something. The same for every caller served the same
    response, so a cached response keeps them (`app.web.graphql`)."""
    refused = {d.patient for d in summary.decisions if not d.allowed and d.patient is not None}
    concerned = dict.fromkeys([*summary.patients, *summary.changed, *sorted(refused)])
    patients: list[str | None] = list(concerned)
    if not patients and (summary.decisions or summary.errors or command):
        patients = [None]
    shared = [d for d in summary.decisions if d.patient is None]
    shared_denied = any(not d.allowed for d in shared)
    shared_json = _compact(shared)
    out: list[Part] = []
    for patient in patients:
        shown = summary.patients.get(patient) if patient is not None else None
        own = [d for d in summary.decisions if d.patient is not None and d.patient == patient]
        changed = patient is not None and patient in summary.changed
        denied = shared_denied or any(not d.allowed for d in own)
        if shown is not None or changed:
            outcome = PARTIAL if denied or summary.errors else SUCCESS
        else:
            outcome = DENIED if denied else ERROR if summary.errors else SUCCESS
        part = {
            "patient": patient,
            "outcome": outcome,
            "what": {
                "kinds": dict(shown.kinds) if shown is not None else {},
                "sources": sorted(shown.sources) if shown is not None else [],
                "failed_sources": list(summary.failed_sources),
                "changed": changed,  # the operation changed the patient's links or caches
            },
            "decisions": shared_json + _compact(own) if own else shared_json,
        }
        out.append((patient, outcome, orjson.dumps(part).decode()))
    return out


def _compact(decisions: list[Decision]) -> list[dict[str, Any]]:
    """Each distinct decision once (a rule asked for every record of a page), counts summed."""
    merged: dict[tuple[Rule, str, bool], int] = {}
    for d in decisions:
        key = (d.rule, d.target, d.allowed)
        merged[key] = merged.get(key, 0) + d.count
    return [
        Decision(rule, target, allowed, count=count).as_json()
        for (rule, target, allowed), count in merged.items()
    ]


# ---- the parts kept with a cached response ---------------------------------------------------


def parts_json(parts: Sequence[Part]) -> bytes:
    return orjson.dumps(parts)


def parts_from_json(data: bytes) -> list[Part]:
    return [(patient, outcome, part) for patient, outcome, part in orjson.loads(data)]


def cli_events(actor: str, name: str, changed: tuple[str, ...]) -> Pending:
    """The events of a `patientgraph` command run by an operator (identity moves, cache
    purges): who ran it as they named themself, with no token or address."""
    caller = Caller(actor, None, CLI_CLIENT, ("admin",), (), None, None, CLI_CLIENT)
    op = Operation(COMMAND, name, None, {})
    return events_of(caller, op, Summary({}, (), changed=changed), EXECUTED)
