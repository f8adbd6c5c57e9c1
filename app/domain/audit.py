"""What a request disclosed and decided, as the audit trail records it (`app.audit`), and the
audit events read back (`auditEvents`, `me { accessLog }`).

Access decisions are made in `resolvers.access`; their shape lives here so the audit trail can
record them without knowing the resolvers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any


class Rule(Enum):
    """Which rule of the policy a decision applied."""

    ROLE = "role"  # operations only some roles may run (administration)
    OPERATION_SCOPE = "operation scope"  # the token's scope for an administrative operation
    RECORD_TYPE = "record type"  # roles and scopes: which resource types are read
    CONFINEMENT = "confinement"  # patient context: one patient only
    CARE_TEAM = "care team"  # the caller's practitioner on the patient's care team
    SCOPE = "granular scope"  # SMART v2 category/code constraints, per record
    SENSITIVITY = "sensitivity"  # security labels and sensitive codes, per record
    FIELD = "field rule"  # `deny_fields`
    PURPOSE = "purpose of use"  # the purposes the policy accepts for a role
    BREAK_GLASS = "break-the-glass"  # an emergency assertion the policy refused


@dataclass(frozen=True, slots=True)
class Decision:
    rule: Rule
    target: str  # what was decided on: a resource type, `Type.field`, or "Patient"
    allowed: bool
    patient: str | None = None  # PatientGraph id, when the decision is about one patient
    count: int = 1  # records concerned (per-record rules: how many were held back)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.rule.value, "target": self.target}
        out["allowed"] = self.allowed
        if self.count != 1:
            out["count"] = self.count
        return out


@dataclass(slots=True)
class PatientDisclosure:
    """What one patient's part of a response holds: record counts per kind ("demographics" for
    the Patient itself) and the sources they came from."""

    kinds: dict[str, int] = field(default_factory=dict)
    sources: set[str] = field(default_factory=set)

    def add(self, kind: str, count: int, sources: Iterable[str]) -> None:
        self.kinds[kind] = self.kinds.get(kind, 0) + count
        self.sources.update(sources)


@dataclass(slots=True)
class Disclosures:
    """Per request: every patient whose data the response holds, with what of theirs it
    holds; `ids` are the response cache's tags. `add` only notes (it runs for every page of
    every collection); `patients` sums up once, when the request is done."""

    entries: list[tuple[str, str, int, Iterable[str]]] = field(default_factory=list)
    # Patients the response depends on without showing their data (a search's matches beyond
    # the page count in `totalCount`): cache tags, not disclosures.
    related: set[str] = field(default_factory=set)
    # Patients whose records or cached answers the operation changed (identity moves, purges).
    changed: set[str] = field(default_factory=set)

    def add(self, patient_id: str, kind: str, count: int, sources: Iterable[str] = ()) -> None:
        self.entries.append((patient_id, kind, count, sources))

    @property
    def patients(self) -> dict[str, PatientDisclosure]:
        out: dict[str, PatientDisclosure] = {}
        for patient_id, kind, count, sources in self.entries:
            disclosure = out.get(patient_id)
            if disclosure is None:
                disclosure = out[patient_id] = PatientDisclosure()
            disclosure.add(kind, count, sources)
        return out

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(p for p, _, _, _ in self.entries) | frozenset(self.related)


DISCLOSED_OUTCOMES = ("success", "partial")  # the outcomes of an event that showed data


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One stored audit event, as read back for auditors and patients."""

    seq: int
    at: datetime
    patient_id: str | None
    event: Mapping[str, Any]  # the JSON body (`app.audit.events`)

    @property
    def disclosed(self) -> bool:
        """Whether the event showed a patient's data (not a refusal, an error, an empty
        search)."""
        return self.patient_id is not None and self.event["outcome"] in DISCLOSED_OUTCOMES


@dataclass(frozen=True, slots=True)
class Summary:
    """What one execution of an operation disclosed and decided: kept with a cached response
    so that serving it again is audited like running it."""

    patients: Mapping[str, PatientDisclosure]
    decisions: tuple[Decision, ...]
    failed_sources: tuple[str, ...] = ()  # sources that failed (their data is missing)
    errors: bool = False  # the response carries errors (denials or failures)
    changed: tuple[str, ...] = ()  # patients the operation changed something of
