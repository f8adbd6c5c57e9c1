"""Identity review in the graph: how a patient's records were linked, what the matcher held
for review, what administrators changed (`resolvers.identity_admin`; admins only)."""

from __future__ import annotations

from datetime import datetime

import strawberry

from app.domain import identity as domain
from schema.scalars import DateTime


def _instant(value: datetime | None) -> DateTime | None:
    return DateTime(value.isoformat()) if value is not None else None


@strawberry.type(description="One field's part of a match score (negative: it disagreed).")
class MatchContribution:
    field: str = strawberry.field(description="The compared field (given, family, birthDate, ...).")
    weight: float = strawberry.field(description="Its weight in the score.")


@strawberry.type(description="How one source record came to be part of this patient.")
class PatientLink:
    source_id: str = strawberry.field(description="The record's source id.")
    local_id: str = strawberry.field(description="Its id in that source.")
    method: str = strawberry.field(
        description="identifier (a shared identifier, demographics checked), score (demographic "
        "match), new (the first record of a person), manual (an administrator), split (moved to "
        "a person of its own: it contradicted another record), legacy (linked by the "
        "identifier-only index, re-checked since). A link's evidence stays when the record's "
        "demographics change without contradicting; an administrator's link stands."
    )
    score: float | None = strawberry.field(description="The match score, for method score.")
    contributions: list[MatchContribution] = strawberry.field(
        description="Each compared field's weight in the score."
    )
    identifier_system: str | None = strawberry.field(
        description="The identifier system that linked it, for method identifier."
    )
    rule_version: int = strawberry.field(description="The matching rules' version.")
    linked_at: DateTime | None = strawberry.field(
        description="When the link was made (null: by the identifier-only index)."
    )
    linked_by: str | None = strawberry.field(description="The administrator, if manual.")
    kept_apart_from: strawberry.ID | None = strawberry.field(
        description="For method split: the patient it was moved away from."
    )

    @staticmethod
    def of(link: domain.LinkExplanation) -> PatientLink:
        return PatientLink(
            source_id=link.source_id,
            local_id=link.local_id,
            method=link.method,
            score=link.score,
            contributions=[
                MatchContribution(field=f, weight=w) for f, w in link.contributions.items()
            ],
            identifier_system=link.identifier_system,
            rule_version=link.rule_version,
            linked_at=_instant(link.linked_at),
            linked_by=link.linked_by,
            kept_apart_from=strawberry.ID(link.kept_apart_from) if link.kept_apart_from else None,
        )


@strawberry.type(description="A source record the matcher kept apart from a patient, for review.")
class IdentityReview:
    id: int = strawberry.field(description="The review's id (pass as `after` for the next page).")
    kind: str = strawberry.field(description="conflict or possible_match.")
    reason: str = strawberry.field(
        description="shared_identifier, identifiers_of_several_people, matches_several_people, "
        "demographics_changed, upgrade_recheck (conflicts); score, same_source (possible "
        "matches)."
    )
    source_id: str = strawberry.field(description="The kept-apart record's source id.")
    local_id: str = strawberry.field(description="Its id in that source.")
    record_patient_id: strawberry.ID | None = strawberry.field(
        description="The patient the record is part of now."
    )
    patient_id: strawberry.ID = strawberry.field(description="The patient it was kept apart from.")
    score: float | None = strawberry.field(description="The match score, where one was computed.")
    field: str | None = strawberry.field(description="The contradicting field, if any.")
    created_at: DateTime = strawberry.field(description="When the matcher held it back.")
    status: str = strawberry.field(description="open, linked or dismissed.")

    @staticmethod
    def of(review: domain.Review) -> IdentityReview:
        return IdentityReview(
            id=review.id,
            kind=review.kind,
            reason=review.reason,
            source_id=review.source_id,
            local_id=review.local_id,
            record_patient_id=(
                strawberry.ID(review.record_patient_id) if review.record_patient_id else None
            ),
            patient_id=strawberry.ID(review.patient_id),
            score=review.score,
            field=review.field,
            created_at=DateTime(review.created_at.isoformat()),
            status=review.status,
        )


@strawberry.type(description="An administrator's identity operation, as the audit trail keeps it.")
class IdentityOperation:
    id: int = strawberry.field(
        description="The operation's id (pass as `after` for the next page)."
    )
    at: DateTime = strawberry.field(description="When it was done.")
    actor: str = strawberry.field(
        description="Who did it: the token's issuer and subject, or the CLI's --actor."
    )
    operation: str = strawberry.field(description="link, unlink or dismiss.")
    source_id: str = strawberry.field(description="The record's source id.")
    local_id: str = strawberry.field(description="Its id in that source.")
    from_patient_id: strawberry.ID | None = strawberry.field(
        description="The patient the record left."
    )
    to_patient_id: strawberry.ID | None = strawberry.field(description="The patient it joined.")
    review_id: int | None = strawberry.field(description="The review it settled, for dismiss.")
    reason: str = strawberry.field(description="Why, as the administrator gave it.")

    @staticmethod
    def of(op: domain.Operation) -> IdentityOperation:
        return IdentityOperation(
            id=op.id,
            at=DateTime(op.at.isoformat()),
            actor=op.actor,
            operation=op.operation,
            source_id=op.source_id,
            local_id=op.local_id,
            from_patient_id=strawberry.ID(op.from_patient_id) if op.from_patient_id else None,
            to_patient_id=strawberry.ID(op.to_patient_id) if op.to_patient_id else None,
            review_id=op.review_id,
            reason=op.reason,
        )


@strawberry.type(description="A record moved between patients; both patients' caches are purged.")
class IdentityMove:
    from_patient_id: strawberry.ID = strawberry.field(description="The patient the record left.")
    to_patient_id: strawberry.ID = strawberry.field(description="The patient it is part of now.")
