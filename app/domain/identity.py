"""Identity review's records: how a source record was linked, what the matcher held for review,
what an administrator did, and a record moved between persons (`app.identity.review`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class LinkExplanation:
    """How one source record came to be part of its person."""

    source_id: str
    local_id: str
    method: str  # identifier | score | new | manual | split | legacy
    score: float | None
    contributions: Mapping[str, float]
    identifier_system: str | None
    rule_version: int
    linked_at: datetime | None
    linked_by: str | None
    kept_apart_from: str | None


@dataclass(frozen=True, slots=True)
class Review:
    id: int
    kind: str
    reason: str
    source_id: str
    local_id: str
    record_patient_id: str | None  # the person the record is now part of
    patient_id: str  # the person it was kept apart from
    score: float | None
    field: str | None
    created_at: datetime
    status: str


@dataclass(frozen=True, slots=True)
class Operation:
    id: int
    at: datetime
    actor: str
    operation: str
    source_id: str
    local_id: str
    from_patient_id: str | None
    to_patient_id: str | None
    review_id: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class Move:
    """A record moved between persons: both persons' cached answers are now wrong."""

    from_patient_id: str
    to_patient_id: str
