"""The root Mutation: server administration (the graph itself is read-only)."""

from __future__ import annotations

from typing import Annotated

import strawberry

from resolvers.cache_admin import purge_patient_cache
from schema.context import Info


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
