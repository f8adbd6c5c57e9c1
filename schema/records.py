"""Fields every clinical record has: an opaque id, provenance and upstream bookkeeping."""

from __future__ import annotations

import strawberry

from schema.common import RecordMeta, SourceLink


@strawberry.type
class Record:
    id: strawberry.ID = strawberry.field(
        description="Opaque, stable id of this record within PatientGraph."
    )
    sources: list[SourceLink] = strawberry.field(
        description="Every upstream record that reported it (provenance)."
    )
    meta: RecordMeta = strawberry.field(description="Upstream bookkeeping.")
