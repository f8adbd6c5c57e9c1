"""Identity review and repair in the graph (admins only): how records were linked, what the
matcher held for review, and link, unlink and dismiss, each kept with who, when and why.

A move changes two persons' answers, so both persons' caches are purged before the mutation
returns; if that purge fails the move has still happened (it is committed first, and the
index is the truth) and the error says to purge those patients again.
"""

from __future__ import annotations

from app.auth.scopes import IDENTITY_READ_SCOPE, IDENTITY_WRITE_SCOPE
from app.cache.backend import CacheUnavailable
from app.domain.identity import LinkExplanation, Move, Operation, Review
from app.identity.index import is_patient_id
from app.identity.review import IdentityError, IdentityReview
from resolvers import access
from resolvers.context import Context
from resolvers.errors import ClientError, UserInputError

MAX_PAGE = 200


class PurgeAfterMoveFailed(ClientError):
    code = "INTERNAL"


def _review(ctx: Context, operation: str, scope: str) -> IdentityReview:
    access.require_admin(
        ctx,
        operation,
        scope,
        f"Only administrators whose token has the {scope} scope may {operation}",
    )
    return IdentityReview(ctx.services.index)


def _page(first: int) -> int:
    if not 1 <= first <= MAX_PAGE:
        raise UserInputError(f"'first' must be 1 to {MAX_PAGE}")
    return first


async def link_explanations(ctx: Context, patient_id: str) -> list[LinkExplanation]:
    review = _review(ctx, "read patient links", IDENTITY_READ_SCOPE)
    return (await review.explain([patient_id])).get(patient_id, [])


async def identity_reviews(
    ctx: Context, status: str | None, kind: str | None, first: int, after: int | None
) -> list[Review]:
    review = _review(ctx, "read identity reviews", IDENTITY_READ_SCOPE)
    try:
        return await review.reviews(status, kind, _page(first), after)
    except IdentityError as exc:
        raise UserInputError(str(exc)) from None


async def identity_operations(ctx: Context, first: int, after: int | None) -> list[Operation]:
    review = _review(ctx, "read identity operations", IDENTITY_READ_SCOPE)
    return await review.operations(_page(first), after)


async def link_record(
    ctx: Context, source_id: str, local_id: str, patient_id: str, reason: str
) -> Move:
    review = _review(ctx, "link patient records", IDENTITY_WRITE_SCOPE)
    if not is_patient_id(patient_id):
        raise UserInputError("'patientId' is not a PatientGraph patient id")
    try:
        move = await review.link((source_id, local_id), patient_id, _actor(ctx), reason)
    except IdentityError as exc:
        raise UserInputError(str(exc)) from None
    await _purge(ctx, move)
    return move


async def unlink_record(ctx: Context, source_id: str, local_id: str, reason: str) -> Move:
    review = _review(ctx, "unlink patient records", IDENTITY_WRITE_SCOPE)
    try:
        move = await review.unlink((source_id, local_id), _actor(ctx), reason)
    except IdentityError as exc:
        raise UserInputError(str(exc)) from None
    await _purge(ctx, move)
    return move


async def dismiss_review(ctx: Context, review_id: int, reason: str) -> None:
    review = _review(ctx, "dismiss identity reviews", IDENTITY_WRITE_SCOPE)
    try:
        await review.dismiss(review_id, _actor(ctx), reason)
    except IdentityError as exc:
        raise UserInputError(str(exc)) from None


def _actor(ctx: Context) -> str:
    """Who, as the audit trail names them: the token's issuer and subject."""
    return f"{ctx.principal.issuer}#{ctx.principal.subject}"


async def _purge(ctx: Context, move: Move) -> None:
    ctx.disclosures.changed.update((move.from_patient_id, move.to_patient_id))
    caches = ctx.services.caches
    if caches is None:
        return
    try:
        for patient_id in (move.from_patient_id, move.to_patient_id):
            await caches.purge_patient(patient_id)
    except CacheUnavailable:
        raise PurgeAfterMoveFailed(
            "The record was moved, but the cache could not be reached: purge both patients "
            "(purgePatientCache) before trusting cached answers"
        ) from None
