"""SMART permissions per query root and collection (SMART App Launch 2.2, "Clinical Scope
Syntax"): reading one record by id (`patient(id)`, `me`) needs `r` on Patient; `patients(...)`
needs `s` on Patient; every collection of a patient is a search of its types, so it needs `s`
on them; SMART v1 `read` means both. Anything not granted fails closed with FORBIDDEN at its
path, over every collection field of Patient."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.auth.principal import Principal
from app.demo.runner import ISSUER
from resolvers.context import Context
from resolvers.loaders import RequestLoaders
from schema.build import build_schema
from schema.patient import COLLECTIONS
from tests.unit.graph_fakes import Graph, memory_graph

SCHEMA = build_schema()
FIELDS = sorted(COLLECTIONS.by_name)
SELECTION = " ".join(f"{name} {{ totalCount }}" for name in FIELDS)
BY_ID = f"query($id: ID!) {{ patient(id: $id) {{ id {SELECTION} }} }}"
ME = f"{{ me {{ id {SELECTION} }} }}"
SEARCH = f"{{ patients(first: 2) {{ totalCount nodes {{ id {SELECTION} }} }} }}"
# permission letters -> (may read by id, may search)
GRANTS = {"r": (True, False), "s": (False, True), "rs": (True, True), "read": (True, True)}


def context(graph: Graph, scope: str, *, patient: str | None = None) -> Context:
    role = "patient" if patient else "clinician"
    principal = Principal("t", frozenset({role}), tuple(scope.split()), patient, None, ISSUER)
    access = graph.policy.decide(principal)
    return Context(principal, graph.services, RequestLoaders(graph.services.index), access)


async def run(query: str, ctx: Context, **variables: Any) -> tuple[Any, set[tuple[Any, ...]]]:
    """The data and the paths refused with FORBIDDEN: collections (empty, an error at their
    path) and roots (null, an error at their path)."""
    result = await SCHEMA.execute(query, variable_values=variables or None, context_value=ctx)
    denied = {tuple(path or ()) for path, _ in ctx.denials.items}
    for error in result.errors or []:
        assert getattr(error.original_error, "code", None) == "FORBIDDEN", error
        denied.add(tuple(error.path or ()))
    return result.data, denied


async def some_patient(graph: Graph) -> str:
    data, _ = await run("{ patients(first: 1) { nodes { id } } }", context(graph, "user/*.rs"))
    patient_id: str = data["patients"]["nodes"][0]["id"]
    return patient_id


@pytest.mark.parametrize("permissions", sorted(GRANTS))
async def test_read_by_id_needs_r_and_its_collections_need_s(
    tmp_path: Path, permissions: str
) -> None:
    may_read, may_search = GRANTS[permissions]
    async with memory_graph(tmp_path) as graph:
        patient_id = await some_patient(graph)
        for query, scope, patient, root in (
            (BY_ID, f"user/*.{permissions}", None, "patient"),
            (ME, f"patient/*.{permissions}", patient_id, "me"),
        ):
            variables = {"id": patient_id} if root == "patient" else {}
            data, denied = await run(query, context(graph, scope, patient=patient), **variables)
            if not may_read:
                assert data == {root: None}
                assert denied == {(root,)}
                continue
            assert data[root]["id"] == patient_id
            refused = {(root, name) for name in FIELDS}
            assert denied == (set() if may_search else refused)
            counts = [data[root][name]["totalCount"] for name in FIELDS]
            assert (sum(counts) > 0) is may_search


@pytest.mark.parametrize("permissions", sorted(GRANTS))
async def test_searching_patients_and_their_collections_needs_s(
    tmp_path: Path, permissions: str
) -> None:
    _, may_search = GRANTS[permissions]
    async with memory_graph(tmp_path) as graph:
        data, denied = await run(SEARCH, context(graph, f"user/*.{permissions}"))
        if not may_search:
            assert data["patients"] == {"totalCount": 0, "nodes": []}
            assert denied == {("patients",)}
            return
        assert denied == set()
        assert data["patients"]["totalCount"] > 0
        first = data["patients"]["nodes"][0]
        assert sum(first[name]["totalCount"] for name in FIELDS) > 0


async def test_patient_by_id_without_r_is_forbidden_at_its_path(tmp_path: Path) -> None:
    async with memory_graph(tmp_path) as graph:
        patient_id = await some_patient(graph)
        ctx = context(graph, "user/*.s")
        result = await SCHEMA.execute(BY_ID, variable_values={"id": patient_id}, context_value=ctx)
        assert result.data == {"patient": None}
        (error,) = result.errors or []
        assert error.path == ["patient"]
        assert error.original_error is not None
        assert getattr(error.original_error, "code", None) == "FORBIDDEN"


async def test_a_collection_needs_s_on_its_own_types(tmp_path: Path) -> None:
    """Search on Patient and Observation only: every other collection is refused."""
    async with memory_graph(tmp_path) as graph:
        ctx = context(graph, "user/Patient.rs user/Observation.s")
        data, denied = await run(SEARCH, ctx)
        assert data["patients"]["nodes"]
        observation_fields = {"observations", "labResults"}
        refused = {path[-1] for path in denied}
        assert refused == set(FIELDS) - observation_fields
