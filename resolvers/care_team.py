"""The care-team rule: a caller bound to its care team (`Access.care_team`) sees a patient
only when one of the patient's encounters lists the caller's practitioner identifier among
its participants.

Encounters are read through the request's loaders, so a query that also asks for them costs
no extra upstream call, and patients on one page are checked in one batch per source. The
check discloses nothing but its yes or no; a source that fails counts as no (fail closed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence

from app.domain.common import SourceLink
from app.domain.encounters import Encounter
from app.domain.records import ENCOUNTERS, RecordQuery
from resolvers.context import Context
from resolvers.outcomes import gather_sources

Path = tuple[str | int, ...] | None


def bound_to_care_team(ctx: Context) -> bool:
    return ctx.access.care_team is not None


async def on_care_team(ctx: Context, links: Sequence[SourceLink], path: Path) -> bool:
    practitioner = ctx.access.care_team
    if not practitioner or not links:
        return False  # bound, but no practitioner identifier or no linked record
    system, _, value = practitioner.partition("|")
    calls: list[Awaitable[Sequence[Encounter]]] = []
    for link in links:
        source = ctx.services.record_source(link.source_id)
        if source is not None and ENCOUNTERS.name in source.record_kinds:
            calls.append(ctx.loaders.records(source, ENCOUNTERS).load(RecordQuery(link.local_id)))
    results, _ = await gather_sources(calls, ctx.problems, path)
    return any(
        i.system == system and i.value == value
        for encounters in results.values()
        for encounter in encounters
        for i in encounter.participant_identifiers
    )


async def on_care_team_each(
    ctx: Context, groups: Sequence[Sequence[SourceLink]], path: Path
) -> list[bool]:
    """`on_care_team` for several patients at once (one batch per source)."""
    return list(await asyncio.gather(*(on_care_team(ctx, links, path) for links in groups)))
