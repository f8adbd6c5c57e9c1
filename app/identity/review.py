"""Identity review and repair: what the matcher held back, how each link was made, and an
administrator's link, unlink and dismiss, each kept in `identity_operations` (who, when, why).

The caller purges the caches of both persons a move touches (`Move`); this module changes the
index only. Every operation runs in one transaction: the link, the record's evidence, the
reviews it settles and the operation's own row commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.identity import LinkExplanation, Move, Operation, Review
from app.identity.index import PatientIndex, is_patient_id, new_patient_id
from app.identity.matcher import Ref
from app.identity.scoring import RULE_VERSION
from app.identity.tables import (
    identity_operations,
    identity_reviews,
    links_with_records,
    patient_links,
    patient_records,
    same_record,
)

MAX_REASON = 1000
REVIEW_KINDS = frozenset({"conflict", "possible_match"})
REVIEW_STATUSES = frozenset({"open", "linked", "dismissed"})


class IdentityError(ValueError):
    """An operation that cannot be done as asked; the message says why (no PHI in it)."""


def _utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes; every stored time is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class IdentityReview:
    def __init__(self, index: PatientIndex) -> None:
        self._index = index
        self._engine = index.engine

    async def explain(self, patient_ids: Sequence[str]) -> dict[str, list[LinkExplanation]]:
        wanted = [p for p in dict.fromkeys(patient_ids) if is_patient_id(p)]
        if not wanted:
            return {}
        query = (
            sa.select(
                patient_links,
                *(patient_records.c[n] for n in ("method", "score", "detail", "rule_version")),
                patient_records.c.linked_at,
                patient_records.c.linked_by,
            )
            .select_from(links_with_records())
            .where(patient_links.c.patient_id.in_(wanted))
            .order_by(patient_links.c.source_id, patient_links.c.local_id)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        out: dict[str, list[LinkExplanation]] = {}
        for row in rows:
            detail: dict[str, Any] = orjson.loads(row.detail) if row.detail else {}
            out.setdefault(row.patient_id, []).append(
                LinkExplanation(
                    source_id=row.source_id,
                    local_id=row.local_id,
                    method=row.method or "legacy",
                    score=row.score,
                    contributions=detail.get("contributions", {}),
                    identifier_system=detail.get("identifierSystem"),
                    rule_version=row.rule_version or 1,
                    linked_at=_utc(row.linked_at) if row.linked_at else None,
                    linked_by=row.linked_by,
                    kept_apart_from=detail.get("keptApartFrom"),
                )
            )
        return out

    async def reviews(
        self,
        status: str | None = "open",
        kind: str | None = None,
        first: int = 50,
        after: int | None = None,
    ) -> list[Review]:
        """Oldest first; `after` a review id (keyset paging)."""
        if status is not None and status not in REVIEW_STATUSES:
            raise IdentityError(f"status must be one of {', '.join(sorted(REVIEW_STATUSES))}")
        if kind is not None and kind not in REVIEW_KINDS:
            raise IdentityError(f"kind must be one of {', '.join(sorted(REVIEW_KINDS))}")
        reviews = identity_reviews
        query = (
            sa.select(reviews, patient_links.c.patient_id.label("record_patient_id"))
            .select_from(reviews.outerjoin(patient_links, same_record(patient_links, reviews)))
            .order_by(reviews.c.id)
            .limit(first)
        )
        if status is not None:
            query = query.where(reviews.c.status == status)
        if kind is not None:
            query = query.where(reviews.c.kind == kind)
        if after is not None:
            query = query.where(reviews.c.id > after)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            Review(
                id=r.id,
                kind=r.kind,
                reason=r.reason,
                source_id=r.source_id,
                local_id=r.local_id,
                record_patient_id=r.record_patient_id,
                patient_id=r.patient_id,
                score=r.score,
                field=r.field,
                created_at=_utc(r.created_at),
                status=r.status,
            )
            for r in rows
        ]

    async def operations(self, first: int = 100, after: int | None = None) -> list[Operation]:
        query = sa.select(identity_operations).order_by(identity_operations.c.id).limit(first)
        if after is not None:
            query = query.where(identity_operations.c.id > after)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            Operation(
                id=r.id,
                at=_utc(r.at),
                actor=r.actor,
                operation=r.operation,
                source_id=r.source_id,
                local_id=r.local_id,
                from_patient_id=r.from_patient_id,
                to_patient_id=r.to_patient_id,
                review_id=r.review_id,
                reason=r.reason,
            )
            for r in rows
        ]

    async def link(self, ref: Ref, patient_id: str, actor: str, reason: str) -> Move:
        """Make the record part of `patient_id` (an existing person); settles its open reviews."""
        _check(actor, reason)
        if not is_patient_id(patient_id):
            raise IdentityError("patientId is not a PatientGraph patient id")
        async with self._engine.begin() as conn:
            current = await _person_of(conn, ref)
            if current == patient_id:
                raise IdentityError("the record is already part of that patient")
            members = await conn.scalar(
                sa.select(sa.func.count()).where(patient_links.c.patient_id == patient_id)
            )
            if not members:
                raise IdentityError("no such patient")
            await self._move(conn, ref, current, patient_id, "link", actor, reason, "linked")
        return Move(current, patient_id)

    async def unlink(self, ref: Ref, actor: str, reason: str) -> Move:
        """Make the record a person of its own, at once."""
        _check(actor, reason)
        async with self._engine.begin() as conn:
            current = await _person_of(conn, ref)
            members = await conn.scalar(
                sa.select(sa.func.count()).where(patient_links.c.patient_id == current)
            )
            if members == 1:
                raise IdentityError("the record is the only one of its patient: nothing to unlink")
            target = new_patient_id()
            await self._move(conn, ref, current, target, "unlink", actor, reason, None)
        return Move(current, target)

    async def dismiss(self, review_id: int, actor: str, reason: str) -> None:
        """Close an open review without changing any link (the people are different)."""
        _check(actor, reason)
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    sa.select(identity_reviews).where(identity_reviews.c.id == review_id)
                )
            ).first()
            if row is None:
                raise IdentityError("no such review")
            if row.status != "open":
                raise IdentityError(f"the review is already {row.status}")
            await conn.execute(
                identity_reviews.update()
                .where(identity_reviews.c.id == review_id)
                .values(status="dismissed")
            )
            await conn.execute(
                identity_operations.insert(),
                _operation(
                    actor, "dismiss", (row.source_id, row.local_id), None, None, reason, review_id
                ),
            )

    async def _move(
        self,
        conn: AsyncConnection,
        ref: Ref,
        current: str,
        target: str,
        operation: str,
        actor: str,
        reason: str,
        settles: str | None,
    ) -> None:
        now = datetime.now(UTC)
        where_link = sa.and_(
            patient_links.c.source_id == ref[0], patient_links.c.local_id == ref[1]
        )
        await conn.execute(patient_links.update().where(where_link).values(patient_id=target))
        where_record = sa.and_(
            patient_records.c.source_id == ref[0], patient_records.c.local_id == ref[1]
        )
        await conn.execute(
            patient_records.update()
            .where(where_record)
            .values(
                method="manual",
                score=None,
                detail=orjson.dumps({"operation": operation}).decode(),
                rule_version=RULE_VERSION,
                linked_at=now,
                linked_by=actor,
            )
        )
        if settles is not None:
            await conn.execute(
                identity_reviews.update()
                .where(
                    identity_reviews.c.source_id == ref[0],
                    identity_reviews.c.local_id == ref[1],
                    identity_reviews.c.status == "open",
                )
                .values(status=settles)
            )
        await conn.execute(
            identity_operations.insert(),
            _operation(actor, operation, ref, current, target, reason, None, now),
        )
        self._index.forget([ref])


def _check(actor: str, reason: str) -> None:
    if not actor.strip():
        raise IdentityError("an operation needs the administrator who runs it")
    if not reason.strip() or len(reason) > MAX_REASON:
        raise IdentityError(f"a reason is required (1 to {MAX_REASON} characters)")


async def _person_of(conn: AsyncConnection, ref: Ref) -> str:
    pid = await conn.scalar(
        sa.select(patient_links.c.patient_id).where(
            patient_links.c.source_id == ref[0], patient_links.c.local_id == ref[1]
        )
    )
    if pid is None:
        raise IdentityError("no such source record in the patient index")
    return str(pid)


def _operation(
    actor: str,
    operation: str,
    ref: Ref,
    from_patient_id: str | None,
    to_patient_id: str | None,
    reason: str,
    review_id: int | None,
    at: datetime | None = None,
) -> dict[str, object]:
    return {
        "at": at or datetime.now(UTC),
        "actor": actor,
        "operation": operation,
        "source_id": ref[0],
        "local_id": ref[1],
        "from_patient_id": from_patient_id,
        "to_patient_id": to_patient_id,
        "review_id": review_id,
        "reason": reason.strip(),
    }
