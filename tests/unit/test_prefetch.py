"""schema/prefetch.py with resolvers/records.py: the collections selected on a page of patients
are asked for once, in the same batches, before graphql-core resolves them; every collection
field then resolves without awaiting. What cannot be read in advance is loaded as before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from graphql import GraphQLObjectType, get_named_type
from strawberry.types import ExecutionResult

from app.web.examples import DASHBOARD_QUERY
from resolvers.context import Context
from schema import prefetch
from schema.build import build_schema
from schema.fast_paths import install_fast_paths
from schema.patient import COLLECTIONS
from tests.unit.graph_fakes import Graph, memory_graph

SCHEMA = build_schema()
install_fast_paths(SCHEMA)


@pytest.fixture
def awaited(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The collection fields that had to wait for their loads (by field path)."""
    waited: list[str] = []
    later = prefetch._later

    def counting(*args: Any) -> Any:
        waited.append("collection")
        return later(*args)

    monkeypatch.setattr(prefetch, "_later", counting)
    return waited


async def execute(
    graph: Graph, query: str, variables: dict[str, Any] | None = None, **options: Any
) -> tuple[ExecutionResult, Context]:
    ctx = graph.context(**options)
    result = await SCHEMA.execute(query, variable_values=variables, context_value=ctx)
    return result, ctx


def data(result: ExecutionResult) -> dict[str, Any]:
    assert result.data is not None
    return result.data


def batches(graph: Graph) -> dict[str, dict[str, int]]:
    return {s.id: dict(s.calls) for s in graph.sources}


async def test_dashboard_collections_resolve_without_awaiting_in_one_batch_per_source(
    tmp_path: Path, awaited: list[str]
) -> None:
    async with memory_graph(tmp_path) as graph:
        result, _ = await execute(graph, DASHBOARD_QUERY, {"first": 4})
    assert result.errors is None
    patients = data(result)["patients"]["nodes"]
    assert len(patients) == 4
    assert all(p["observations"]["totalCount"] for p in patients)
    assert awaited == []
    expected = dict.fromkeys(("observations", "conditions", "allergies", "immunizations"), 1)
    assert batches(graph) == {s: {**expected, "encounters": 1} for s in ("hospital", "clinic")}


FRAGMENTS = """
query($category: String, $since: DateTime) {
  patients(first: 3) {
    nodes {
      ... on Patient { vitals: observations(category: $category, first: 2) { totalCount } }
      ...Recent
      again: observations(category: $category) { totalCount }
    }
  }
}
fragment Recent on Patient {
  observations(since: $since, merged: false) { totalCount }
  medications { totalCount }
}
"""


async def test_fragments_aliases_and_variables_are_read_in_advance(
    tmp_path: Path, awaited: list[str]
) -> None:
    variables = {"category": "vital-signs", "since": "2021-01-01T00:00:00Z"}
    async with memory_graph(tmp_path) as graph:
        result, _ = await execute(graph, FRAGMENTS, variables)
    assert result.errors is None
    assert awaited == []
    for source in graph.sources:  # one batch per kind and source, with every filter group
        assert source.calls == {"observations": 1, "medications": 1}
        filters = {(k, q.category, q.since) for k, q in source.queries}
        assert filters == {
            ("observations", "vital-signs", None),
            ("observations", None, "2021-01-01T00:00:00Z"),
            ("medications", None, None),
        }
        assert len(source.queries) == 3 * 3  # three patients, each key asked once


async def test_a_collection_under_a_directive_is_loaded_when_resolved(
    tmp_path: Path, awaited: list[str]
) -> None:
    query = """query($with: Boolean!) { patients(first: 3) { nodes {
        conditions @include(if: $with) { totalCount }
        allergies { totalCount }
    } } }"""
    async with memory_graph(tmp_path) as graph:
        result, _ = await execute(graph, query, {"with": True})
        assert result.errors is None
        assert len(awaited) == 3  # each patient's conditions, not asked in advance
        assert all(s.calls == {"conditions": 1, "allergies": 1} for s in graph.sources)
        awaited.clear()
        skipped, _ = await execute(graph, query, {"with": False})
    assert skipped.errors is None
    assert awaited == []
    assert all(s.calls == {"conditions": 1, "allergies": 2} for s in graph.sources)


async def test_a_failed_source_is_asked_once_and_reported_once(
    tmp_path: Path, awaited: list[str]
) -> None:
    async with memory_graph(tmp_path) as graph:
        healthy = data((await execute(graph, DASHBOARD_QUERY, {"first": 3}))[0])
        graph.sources[0].failing.add("observations")
        graph.sources[0].calls.clear()
        result, ctx = await execute(graph, DASHBOARD_QUERY, {"first": 3})
    assert graph.sources[0].calls["observations"] == 1  # a failed batch is not asked again
    assert result.errors is None  # source failures are reported beside `data`, once per source
    assert list(ctx.problems.failures) == [graph.sources[0].id]
    _, path = ctx.problems.failures[graph.sources[0].id]
    assert path is not None
    assert path[-1] == "observations"
    assert awaited == []
    got, before = data(result)["patients"]["nodes"], healthy["patients"]["nodes"]
    assert [p["conditions"] for p in got] == [p["conditions"] for p in before]
    assert all(
        p["observations"]["totalCount"] < q["observations"]["totalCount"]
        for p, q in zip(got, before, strict=True)
    )


async def test_collections_the_caller_may_not_read_are_not_asked_for(
    tmp_path: Path, awaited: list[str]
) -> None:
    async with memory_graph(tmp_path) as graph:
        result, ctx = await execute(graph, DASHBOARD_QUERY, {"first": 3}, role="care-coordinator")
    assert result.errors is None
    assert all(set(s.calls) == {"encounters"} for s in graph.sources)
    denied = {path[-1] for path, _ in ctx.denials.items if path}
    assert denied == {"observations", "conditions", "allergies", "immunizations"}
    assert awaited == []


def test_every_collection_field_of_patient_says_what_it_loads() -> None:
    patient = SCHEMA._schema.type_map["Patient"]
    assert isinstance(patient, GraphQLObjectType)
    connections = {
        name
        for name, field in patient.fields.items()
        if get_named_type(field.type).name.endswith("Connection")
    }
    assert connections == set(COLLECTIONS.by_name)
