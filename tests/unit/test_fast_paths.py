"""schema/fast_paths.py: direct resolvers give the same answers as Strawberry's wrappers, keep
field-rule guards, and leave fields whose arguments Strawberry must convert alone."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
import strawberry
from graphql import GraphQLObjectType
from strawberry.extensions import ParserCache, SchemaExtension
from strawberry.schema.config import StrawberryConfig

from app.auth.policy import load_policy
from app.web.examples import DASHBOARD_QUERY, PORTAL_QUERY
from schema import fast_paths
from schema.build import build_schema
from schema.fast_paths import MARK, PlainDataExecution, has_fast_paths, install_fast_paths
from schema.field_rules import guard_fields
from schema.mutation import Mutation
from schema.patient import FIELD_OWNERS
from schema.query import Query as PatientGraphQuery
from schema.scalars import SCALAR_MAP
from tests.unit.graph_fakes import Graph, memory_graph

DEFAULT_POLICY = Path(__file__).parents[2] / "app" / "auth" / "default_policy.toml"

ARGUMENTS_QUERY = """
query($birthDate: Date, $since: DateTime) {
  patients(birthDate: $birthDate, first: 3) { totalCount nodes { id birthDate } }
  all: patients(first: 2) {
    nodes {
      ...Labs
      recent: observations(since: $since, first: 2, merged: false) { totalCount nodes { id } }
      medications(merged: false) { nodes { kind medication { text } fills { id } } }
      identifiers { system value type }
    }
  }
}
fragment Labs on Patient { labResults(first: 3) { totalCount pageInfo { hasNextPage endCursor } } }
"""


def outcome(result: Any, graph_context: Any) -> Any:
    errors = sorted((e.message, tuple(e.path or ())) for e in result.errors or [])
    return result.data, errors, graph_context.problems, graph_context.denials


async def run(schema: strawberry.Schema, graph: Graph, query: str, **options: Any) -> Any:
    variables = options.pop("variables", None)
    ctx = graph.context(**options)
    result = await schema.execute(query, variable_values=variables, context_value=ctx)
    return outcome(result, ctx)


def strawberry_built_fields(schema: strawberry.Schema) -> int:
    return sum(
        1
        for t in schema._schema.type_map.values()
        if isinstance(t, GraphQLObjectType) and not t.name.startswith("__")
        for f in t.fields.values()
        if f.resolve is not None
    )


def strawberry_schema() -> strawberry.Schema:
    """Our types with Strawberry's own resolvers (`build_schema` may install fast paths)."""
    return strawberry.Schema(
        query=PatientGraphQuery, mutation=Mutation, config=StrawberryConfig(scalar_map=SCALAR_MAP)
    )


def test_every_field_of_our_schema_resolves_directly_and_installing_twice_changes_nothing() -> None:
    schema = strawberry_schema()
    assert not has_fast_paths(schema)
    replaced = install_fast_paths(schema)
    assert replaced == strawberry_built_fields(schema)  # no field needs Strawberry's wrapper
    assert has_fast_paths(schema)
    assert install_fast_paths(schema) == replaced
    assert install_fast_paths(build_schema()) == replaced


@pytest.mark.parametrize(
    ("query", "options"),
    [
        (DASHBOARD_QUERY, {"variables": {"first": 3}}),
        (ARGUMENTS_QUERY, {"variables": {"birthDate": "1967-02-17", "since": "2020-01-01"}}),
        (ARGUMENTS_QUERY, {"variables": {}, "role": "care-coordinator"}),
    ],
)
async def test_same_answers_with_and_without_fast_paths(
    tmp_path: Path, query: str, options: dict[str, Any]
) -> None:
    plain, fast = strawberry_schema(), build_schema()
    install_fast_paths(fast)
    async with memory_graph(tmp_path) as graph:
        expected = await run(plain, graph, query, **options)
        got = await run(fast, graph, query, **options)
    assert expected[0]  # data
    assert got == expected


async def test_same_portal_answer_with_and_without_fast_paths(tmp_path: Path) -> None:
    plain, fast = strawberry_schema(), build_schema()
    install_fast_paths(fast)
    async with memory_graph(tmp_path) as graph:
        first = await run(plain, graph, "{ patients(first: 1) { nodes { id } } }")
        me = first[0]["patients"]["nodes"][0]["id"]
        expected = await run(plain, graph, PORTAL_QUERY, role="patient", patient=me)
        got = await run(fast, graph, PORTAL_QUERY, role="patient", patient=me)
    assert expected[0]["me"]["id"] == me
    assert got == expected


@pytest.mark.parametrize("order", ["guard first", "fast paths first"])
async def test_a_denied_field_stays_guarded_whichever_pass_runs_first(
    tmp_path: Path, order: str
) -> None:
    text = DEFAULT_POLICY.read_text().replace(
        "[roles.clinician]\n", '[roles.clinician]\ndeny_fields = ["Observation.notes"]\n'
    )
    (tmp_path / "policy.toml").write_text(text)
    policy = load_policy(tmp_path / "policy.toml", FIELD_OWNERS)
    schema = strawberry_schema()
    if order == "guard first":
        guard_fields(schema, policy.denied_fields)
        install_fast_paths(schema)
    else:
        install_fast_paths(schema)
        guard_fields(schema, policy.denied_fields)
    query = "{ patients(first: 2) { nodes { observations(first: 50) { nodes { id notes } } } } }"
    async with memory_graph(tmp_path) as graph:
        graph = dataclasses.replace(graph, policy=policy)
        data, errors, _, _ = await run(schema, graph, query)
        admin, admin_errors, _, _ = await run(schema, graph, query, role="admin")
    nodes = [n for p in data["patients"]["nodes"] for n in p["observations"]["nodes"]]
    assert nodes
    assert all(n["notes"] is None for n in nodes)
    assert len(errors) == len(nodes)
    assert {message for message, _ in errors} == {"Not allowed to read Observation.notes"}
    assert any(n["notes"] for p in admin["patients"]["nodes"] for n in p["observations"]["nodes"])
    assert not admin_errors


# --- fields whose arguments Strawberry converts keep Strawberry's resolver ------------------


@strawberry.enum
class Color(Enum):
    RED = "red"


@strawberry.input
class Box:
    size: int


@strawberry.type
class Shelf:
    label: str


@strawberry.type
class Query:
    @strawberry.field
    def paint(self, color: Color) -> str:
        assert isinstance(color, Color)  # Strawberry hands over the Python enum
        return color.value

    @strawberry.field
    def boxed(self, box: Box) -> int:
        return box.size

    @strawberry.field
    def tags(self, names: list[str]) -> int:
        return len(names)

    @strawberry.field
    async def greet(self, info: strawberry.Info, first_name: str, times: int = 1) -> str:
        assert info.field_name == "greet"
        return " ".join([f"hello {first_name}"] * times)

    @strawberry.field
    def shelf(self) -> Shelf:
        return Shelf(label="top")


def resolver_marked(schema: strawberry.Schema, field: str) -> bool:
    query_type = schema._schema.query_type
    assert query_type is not None
    return bool(getattr(query_type.fields[field].resolve, MARK, False))


async def test_only_fields_with_plain_scalar_arguments_resolve_directly() -> None:
    schema = strawberry.Schema(Query)
    install_fast_paths(schema)
    assert not resolver_marked(schema, "paint")
    assert not resolver_marked(schema, "boxed")
    assert not resolver_marked(schema, "tags")
    assert resolver_marked(schema, "greet")
    assert resolver_marked(schema, "shelf")
    result = await schema.execute(
        '{ paint(color: RED) boxed(box: {size: 3}) tags(names: ["a", "b"])'
        ' greet(firstName: "Ada", times: 2) shelf { label } }'
    )
    assert result.errors is None
    assert result.data == {
        "paint": "red",
        "boxed": 3,
        "tags": 2,
        "greet": "hello Ada hello Ada",
        "shelf": {"label": "top"},
    }


# --- plain-data subtrees: the same answers and errors as graphql-core's own completion --------


@dataclass(frozen=True)
class Label:
    text: Any


@dataclass(frozen=True)
class Item:
    name: Any
    count: Any = 1
    tags: Any = ("a", "b")
    label: Any = None


@strawberry.type
class LabelType:
    text: str


@strawberry.type
class ItemType:
    name: str
    count: int | None
    tags: list[str]
    label: LabelType | None


@strawberry.type
class Listing:
    items: list[ItemType]
    total: int


ITEMS: list[Item] = []


@strawberry.type
class ListQuery:
    @strawberry.field
    def listing(self) -> Listing:
        return Listing(items=ITEMS, total=len(ITEMS))  # type: ignore[arg-type]


class Shout(SchemaExtension):
    """A field middleware: plans must step aside so it sees every field."""

    def resolve(self, _next: Any, root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
        value = _next(root, info, *args, **kwargs)
        return value.upper() if isinstance(value, str) else value


LISTING = """query($withTags: Boolean!) { listing { total
  items { __typename n: name count ...More tags @include(if: $withTags) label { text } } } }
fragment More on ItemType { again: name }"""


@pytest.mark.parametrize(
    "items",
    [
        [Item("x", 2, ("t",), Label("l")), Item("y", None, (), None)],
        [Item("x"), Item(None)],  # a null in a non-null field: the error nulls the list
        [Item("x", count="many")],  # a value Int refuses
        [Item("x", count=2**40)],  # out of Int's range
        [Item("x", tags="ab")],  # not a list
        [Item("x", label=Label(None))],  # null inside a nested object
        [Item("x", label=Label(3))],  # String serializes numbers
        [],
    ],
)
@pytest.mark.parametrize("with_tags", [True, False])
async def test_plain_subtrees_answer_and_fail_as_graphql_core_does(
    items: list[Item], with_tags: bool
) -> None:
    ITEMS[:] = items
    plain, fast = strawberry.Schema(ListQuery), strawberry.Schema(ListQuery)
    install_fast_paths(fast)
    assert fast.execution_context_class is PlainDataExecution
    variables = {"withTags": with_tags}
    expected = await plain.execute(LISTING, variable_values=variables)
    got = await fast.execute(LISTING, variable_values=variables)
    assert got.data == expected.data
    assert [(e.message, e.path) for e in got.errors or []] == [
        (e.message, e.path) for e in expected.errors or []
    ]


async def test_plans_step_aside_for_field_middleware() -> None:
    ITEMS[:] = [Item("x", label=Label("l"))]
    plain = strawberry.Schema(ListQuery, extensions=[Shout])
    fast = strawberry.Schema(ListQuery, extensions=[Shout])
    install_fast_paths(fast)
    expected = await plain.execute(LISTING, variable_values={"withTags": True})
    got = await fast.execute(LISTING, variable_values={"withTags": True})
    assert expected.data is not None
    assert expected.data["listing"]["items"][0]["n"] == "X"
    assert got.data == expected.data


async def test_a_plain_subtree_is_completed_without_graphql_core_resolving_its_fields(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ITEMS[:] = [Item(f"item {i}", i, ("t",), Label("l")) for i in range(50)]
    fast = strawberry.Schema(ListQuery)
    install_fast_paths(fast)
    resolved: list[str] = []
    execute_field = PlainDataExecution.execute_field

    def counting(self: PlainDataExecution, parent_type: Any, *args: Any) -> Any:
        resolved.append(parent_type.name)
        return execute_field(self, parent_type, *args)

    monkeypatch.setattr(PlainDataExecution, "execute_field", counting)
    result = await fast.execute(LISTING, variable_values={"withTags": True})
    assert result.errors is None
    assert result.data is not None
    assert len(result.data["listing"]["items"]) == 50
    assert resolved == ["ListQuery"]  # `listing` itself; everything below by the plan


async def test_plans_shared_across_requests_follow_the_variables() -> None:
    """With a parsed-document cache the same query text selects the same nodes in every
    request; `@include(if: $withTags)` must still decide per request."""
    ITEMS[:] = [Item("x", 2, ("t",), Label("l"))]
    fast = strawberry.Schema(ListQuery, extensions=[ParserCache])
    install_fast_paths(fast)
    for with_tags in (True, False, True, False):
        result = await fast.execute(LISTING, variable_values={"withTags": with_tags})
        assert result.data is not None
        assert ("tags" in result.data["listing"]["items"][0]) is with_tags


async def test_each_schema_keeps_its_own_plans(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another schema's requests neither evict a schema's plans nor find them."""
    ITEMS[:] = [Item("x", 2, ("t",), Label("l"))]
    first, second = (strawberry.Schema(ListQuery, extensions=[ParserCache]) for _ in range(2))
    install_fast_paths(first)
    install_fast_paths(second)
    built: list[str] = []
    new_object_plan = PlainDataExecution._new_object_plan

    def counting(self: PlainDataExecution, object_type: Any, *args: Any) -> Any:
        built.append(object_type.name)
        return new_object_plan(self, object_type, *args)

    monkeypatch.setattr(PlainDataExecution, "_new_object_plan", counting)
    variables = {"withTags": True}
    assert (await first.execute(LISTING, variable_values=variables)).errors is None
    assert built
    monkeypatch.setattr(fast_paths, "SHARED_PLANS_MAX", len(built))  # room for first's plans
    built.clear()
    assert (await second.execute(LISTING, variable_values=variables)).errors is None
    assert built  # second built its own plans, as many as first did, and evicted none
    built.clear()
    assert (await first.execute(LISTING, variable_values=variables)).errors is None
    assert built == []
