"""The care-team rule: a caller bound to its care team (`Access.care_team`) sees a patient
only when the caller's practitioner identifier is among the participants of one of the
patient's encounters or among the members of one of the patient's care teams (FHIR CareTeam).

Encounters and care teams are read through the request's loaders, concurrently, so a query
that also asks for them costs no extra upstream call, and patients on one page are checked in
one batch per source and kind. The check discloses nothing but its yes or no; a source that
fails gives no evidence (fail closed: with no other match, the answer is no).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any

from app.domain.care_teams import CareTeam
from app.domain.common import Identifier, SourceLink
from app.domain.encounters import Encounter
from app.domain.records import CARE_TEAMS, ENCOUNTERS, RecordKind, RecordQuery
from resolvers.context import Context
from resolvers.outcomes import gather_sources

Path = tuple[str | int, ...] | None

# The record kinds whose `participant_identifiers` put a practitioner on a patient's care team.
MEMBERSHIP_KINDS: tuple[RecordKind[Any], ...] = (ENCOUNTERS, CARE_TEAMS)


def bound_to_care_team(ctx: Context) -> bool:
    return ctx.access.care_team is not None


async def on_care_team(ctx: Context, links: Sequence[SourceLink], path: Path) -> bool:
    practitioner = ctx.access.care_team
    if not practitioner or not links:
        return False  # bound, but no practitioner identifier or no linked record
    system, _, value = practitioner.partition("|")
    calls: list[Awaitable[Sequence[Encounter | CareTeam]]] = []
    for link in links:
        source = ctx.services.record_source(link.source_id)
        if source is None:
            continue
        for kind in MEMBERSHIP_KINDS:
            if kind.name in source.record_kinds:
                calls.append(ctx.loaders.record_answer(source, kind, RecordQuery(link.local_id)))
    results, _ = await gather_sources(calls, ctx.problems, path)
    return any(
        _is(i, system, value)
        for records in results.values()
        for record in records
        for i in record.participant_identifiers
    )


def _is(identifier: Identifier, system: str, value: str) -> bool:
    return identifier.system == system and identifier.value == value


async def on_care_team_each(
    ctx: Context, groups: Sequence[Sequence[SourceLink]], path: Path
) -> list[bool]:
    """`on_care_team` for several patients at once (one batch per source and kind)."""
    return list(await asyncio.gather(*(on_care_team(ctx, links, path) for links in groups)))
