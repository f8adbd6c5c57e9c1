"""The root Mutation: server administration (the graph itself is read-only)."""

from __future__ import annotations

from typing import Annotated

import strawberry

from app.domain.identity import Move
from resolvers import identity_admin
from resolvers.cache_admin import purge_patient_cache
from schema.context import Info
from schema.identity import IdentityMove

SourceId = Annotated[str, strawberry.argument(description="The record's source id.")]
LocalId = Annotated[str, strawberry.argument(description="Its id in that source.")]
Reason = Annotated[
    str, strawberry.argument(description="Why (1 to 1000 characters), kept in the audit trail.")
]


@strawberry.type(description="What a cache purge removed.")
class CachePurge:
    responses: int = strawberry.field(description="Cached GraphQL responses removed.")
    sources: int = strawberry.field(description="Cached upstream responses removed.")


@strawberry.type(description="Administrative operations.")
class Mutation:
    @strawberry.mutation(
        description="Remove everything cached about one patient: every cached response that "
        "discloses them and every cached upstream response about their linked records. Admin "
        "role only. Fails with INTERNAL when a cache backend cannot be reached."
    )
    async def purge_patient_cache(
        self,
        info: Info,
        patient_id: Annotated[strawberry.ID, strawberry.argument(description="A PatientGraph id.")],
    ) -> CachePurge:
        counts = await purge_patient_cache(info.context, str(patient_id))
        return CachePurge(responses=counts.responses, sources=counts.sources)

    @strawberry.mutation(
        description="Make a source record part of an existing patient (it was kept apart, or "
        "linked to the wrong person), with the reason, kept in the audit trail; settles the "
        "record's open reviews and purges both patients' caches. Admin role with the "
        "patientgraph/identity.write scope only."
    )
    async def link_patient_record(
        self,
        info: Info,
        source_id: SourceId,
        local_id: LocalId,
        patient_id: Annotated[
            strawberry.ID, strawberry.argument(description="The PatientGraph id to join.")
        ],
        reason: Reason,
    ) -> IdentityMove:
        move = await identity_admin.link_record(
            info.context, source_id, local_id, str(patient_id), reason
        )
        return _move(move)

    @strawberry.mutation(
        description="Make a source record a patient of its own, at once (caches purged), with "
        "the reason, kept in the audit trail. Admin role with the patientgraph/identity.write "
        "scope only."
    )
    async def unlink_patient_record(
        self, info: Info, source_id: SourceId, local_id: LocalId, reason: Reason
    ) -> IdentityMove:
        return _move(await identity_admin.unlink_record(info.context, source_id, local_id, reason))

    @strawberry.mutation(
        description="Close an open identity review without linking (the records are different "
        "people), with the reason, kept in the audit trail. Admin role with the "
        "patientgraph/identity.write scope only."
    )
    async def dismiss_identity_review(
        self,
        info: Info,
        id: Annotated[int, strawberry.argument(description="The review's id.")],
        reason: Reason,
    ) -> bool:
        await identity_admin.dismiss_review(info.context, id, reason)
        return True


def _move(move: Move) -> IdentityMove:
    return IdentityMove(
        from_patient_id=strawberry.ID(move.from_patient_id),
        to_patient_id=strawberry.ID(move.to_patient_id),
    )
