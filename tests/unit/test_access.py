"""resolvers/access.py: every access decision passes through `decide`, is kept in the request's
`Context.decisions` (what the audit trail will record) and refuses what the policy refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.domain.audit import Decision, Rule
from app.domain.patients import PatientCriteria
from app.domain.records import OBSERVATIONS, RecordQuery
from resolvers import access
from resolvers.errors import Forbidden
from resolvers.patients import patient_by_id, search_patients
from resolvers.records import records_of
from tests.unit.graph_fakes import memory_graph


async def test_a_patient_context_caller_is_refused_another_patient_and_the_refusal_is_kept(
    tmp_path: Path,
) -> None:
    async with memory_graph(tmp_path) as graph:
        everyone = await search_patients(graph.context("clinician"), PatientCriteria())
        mine, other = everyone[0].id, everyone[1].id
        ctx = graph.context("patient", patient=mine)
        with pytest.raises(Forbidden):
            await patient_by_id(ctx, other)
        assert Decision(Rule.CONFINEMENT, "Patient", False, other) in ctx.decisions
        assert (await patient_by_id(ctx, mine)) is not None
        assert Decision(Rule.CONFINEMENT, "Patient", True, mine) in ctx.decisions


async def test_a_search_by_a_confined_caller_finds_only_themself_and_keeps_each_refusal(
    tmp_path: Path,
) -> None:
    async with memory_graph(tmp_path) as graph:
        everyone = [p.id for p in await search_patients(graph.context(), PatientCriteria())]
        ctx = graph.context("patient", patient=everyone[2])
        found = await search_patients(ctx, PatientCriteria())
        assert [p.id for p in found] == [everyone[2]]
        refused = {d.patient for d in ctx.decisions if d.rule is Rule.CONFINEMENT and not d.allowed}
        assert refused == set(everyone) - {everyone[2]}
        assert ctx.disclosures.ids == {everyone[2]}


async def test_a_role_that_reads_no_observations_gets_none_a_forbidden_and_a_decision(
    tmp_path: Path,
) -> None:
    async with memory_graph(tmp_path) as graph:
        (patient, *_) = await search_patients(graph.context("admin"), PatientCriteria())
        ctx = graph.context("billing")  # reads Patient only
        found = await records_of(ctx, patient, OBSERVATIONS, RecordQuery(""), ("p", "obs"))
        assert found.records == []
        assert ctx.denials.items == [(("p", "obs"), "Not allowed to read observations")]
        assert Decision(Rule.RECORD_TYPE, "observations", False) in ctx.decisions
        assert all(s.calls["observations"] == 0 for s in graph.sources)  # nothing fetched


async def test_a_readable_collection_is_shown_without_refusals(tmp_path: Path) -> None:
    async with memory_graph(tmp_path) as graph:
        ctx = graph.context("clinician")
        (patient, *_) = await search_patients(ctx, PatientCriteria())
        found = await records_of(ctx, patient, OBSERVATIONS, RecordQuery(""))
        assert found.records
        assert ctx.denials.items == []
        assert not [d for d in ctx.decisions if not d.allowed]


async def test_a_denied_field_is_refused_and_kept_while_asking_ahead_decides_nothing(
    tmp_path: Path,
) -> None:
    async with memory_graph(tmp_path) as graph:
        ctx = graph.context("care-coordinator")  # denied Observation.notes by default
        assert access.field_denied(ctx, "Observation.notes")
        assert ctx.decisions == []  # asking ahead (prefetch) is not a decision
        assert not access.field_allowed(ctx, "Observation.notes")
        assert ctx.decisions == [Decision(Rule.FIELD, "Observation.notes", False)]
        assert access.field_allowed(ctx, "Observation.status")
        assert access.field_allowed(graph.context("clinician"), "Observation.notes")
