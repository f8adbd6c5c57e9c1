"""Tripwire: the private and internal Strawberry and graphql-core names that the fast paths
(schema/fast_paths.py), the prefetch (schema/prefetch.py), the field rules
(schema/field_rules.py) and the response cache (app/cache/response.py) rely on.

Most of them would not fail loudly when they move: the code reads some with `getattr(...,
default)` or compares a module's name, and falls back to the slow path or, worse, installs a
fast path where Strawberry's own wrapper was needed. One row per name, with where it is used
and why; a failing row names it and says what to do.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import pytest
import strawberry
from graphql import (
    FragmentDefinitionNode,
    GraphQLEnumType,
    GraphQLID,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLString,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    parse,
    visit,
)
from graphql.execution import Executor
from strawberry.extensions import SchemaExtension
from strawberry.relay import GlobalID
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.base import StrawberryOptional
from strawberry.types.field import StrawberryField

from schema.build import build_schema
from schema.fast_paths import MARK, STRAWBERRY_RESOLVERS, PlainDataExecution, install_fast_paths

FAST_PATHS = "schema/fast_paths.py"
PREFETCH = "schema/prefetch.py"
FIELD_RULES = "schema/field_rules.py"
RESPONSE_CACHE = "app/cache/response.py"


# --- a probe: one small schema executed once, to look at what the engine hands us ----------


@strawberry.type
class Thing:
    name: str


@strawberry.type
class Probe:
    @strawberry.field
    def things(self, info: strawberry.Info, since: str | None = None) -> list[Thing]:
        info.context.append(info)
        return [Thing(name="a")]

    @strawberry.field
    def maybe(self, n: strawberry.Maybe[int]) -> int:
        return 0


class Watch(SchemaExtension):
    """A field middleware (a `resolve` hook), which plans must see in the execution context."""

    def resolve(self, _next: Any, root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
        return _next(root, info, *args, **kwargs)


PROBE_QUERY = """query($since: String) { things(since: $since) { ...F } }
fragment F on Thing { name }"""


class Seen(NamedTuple):
    plain: strawberry.Schema  # as Strawberry built it
    fast: strawberry.Schema  # after install_fast_paths, with a field middleware
    installed_class: type[Any]  # the fast schema's execution context class after install
    executor: PlainDataExecution  # the one that executed PROBE_QUERY on `fast`
    info: strawberry.Info[Any, Any]  # what `Probe.things` received
    field: StrawberryField  # Probe.things


@functools.cache
def seen() -> Seen:
    plain = strawberry.Schema(Probe)
    fast = strawberry.Schema(Probe, extensions=[Watch])
    install_fast_paths(fast)
    installed_class = fast.execution_context_class
    executors: list[PlainDataExecution] = []

    class Recording(PlainDataExecution):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            executors.append(self)

    fast.execution_context_class = Recording
    infos: list[strawberry.Info[Any, Any]] = []
    result = fast.execute_sync(PROBE_QUERY, {"since": "2024"}, context_value=infos)
    assert result.errors is None, result.errors
    field = graphql_field(plain, "Probe", "things").extensions[
        GraphQLCoreConverter.DEFINITION_BACKREF
    ]
    return Seen(plain, fast, installed_class, executors[0], infos[0], field)


def graphql_field(schema: strawberry.Schema, type_name: str, field_name: str) -> Any:
    graphql_type = schema._schema.type_map[type_name]
    assert isinstance(graphql_type, GraphQLObjectType)
    return graphql_type.fields[field_name]


# --- checks -----------------------------------------------------------------------------------


def resolve(name: str) -> Any:
    """`module:attribute.attribute` -> the object."""
    module, _, path = name.partition(":")
    value: Any = importlib.import_module(module)
    for attribute in filter(None, path.split(".")):
        value = getattr(value, attribute)
    return value


def exists(name: str) -> Callable[[], bool]:
    return lambda: resolve(name) is not None


def parameters(name: str, expected: str) -> Callable[[], bool]:
    """The callable's parameter names, in order."""

    def check() -> bool:
        found = ", ".join(inspect.signature(resolve(name)).parameters)
        assert found == expected, f"parameters now ({found})"
        return True

    return check


def fields(name: str, expected: str, *, ordered: bool = True) -> Callable[[], bool]:
    """A NamedTuple has these fields: its first ones, in this order, when they are unpacked."""
    names = expected.split(", ")

    def check() -> bool:
        found = list(resolve(name)._fields)
        ok = found[: len(names)] == names if ordered else set(names) <= set(found)
        assert ok, f"fields now {found}"
        return True

    return check


def attributes(get: Callable[[], object], expected: str) -> Callable[[], bool]:
    """An instance has these attributes."""

    def check() -> bool:
        missing = [name for name in expected.split(", ") if not hasattr(get(), name)]
        assert not missing, f"no attribute {', '.join(missing)}"
        return True

    return check


def coerced_variables() -> bool:
    return seen().executor.variable_values.coerced == {"since": "2024"}


def middleware_listed() -> bool:
    manager = seen().executor.middleware_manager
    return manager is not None and any(isinstance(m, Watch) for m in manager.middlewares)


def raw_info_as_prefetch_reads_it() -> bool:
    raw = seen().info._raw_info
    values = getattr(raw.variable_values, "coerced", raw.variable_values)
    return (
        isinstance(raw.fragments.get("F"), FragmentDefinitionNode)
        and values == {"since": "2024"}
        and [node.name.value for node in raw.field_nodes] == ["things"]
        and raw.context is seen().info.context
    )


def strawberry_wrappers_module() -> bool:
    """Strawberry builds both kinds of resolvers there (with and without a resolver)."""
    plain = seen().plain
    modules = {
        graphql_field(plain, "Probe", "things").resolve.__module__,
        graphql_field(plain, "Thing", "name").resolve.__module__,
    }
    fast_things = graphql_field(seen().fast, "Probe", "things").resolve
    return modules == {STRAWBERRY_RESOLVERS} and getattr(fast_things, MARK, False)


def leaves_coerce_as_graphql_core() -> bool:
    """Every leaf type of our schema has `coerce_output_value`, which graphql-core's
    `complete_leaf_value` calls (the plans call the same)."""
    types = build_schema()._schema.type_map.values()
    leaves = [t for t in types if isinstance(t, GraphQLScalarType | GraphQLEnumType)]
    source = inspect.getsource(Executor.complete_leaf_value)
    return (
        bool(leaves)
        and ".coerce_output_value(" in source
        and all(callable(t.coerce_output_value) for t in leaves)
    )


def optional_argument_types() -> bool:
    """`str | None` is exactly StrawberryOptional; `Maybe[int]` a subclass, so not passed
    through (it wraps the value)."""
    things = graphql_field(seen().plain, "Probe", "things")
    maybe = graphql_field(seen().plain, "Probe", "maybe")
    since = things.extensions[GraphQLCoreConverter.DEFINITION_BACKREF].arguments[0]
    n = maybe.extensions[GraphQLCoreConverter.DEFINITION_BACKREF].arguments[0]
    return (
        type(since.type) is StrawberryOptional
        and since.type.of_type is str
        and isinstance(n.type, StrawberryOptional)
        and type(n.type) is not StrawberryOptional
        and not getattr(maybe.resolve, MARK, False)
        and not getattr(graphql_field(seen().fast, "Probe", "maybe").resolve, MARK, False)
    )


def schema_config() -> bool:
    config = seen().plain.config
    argument = seen().field.arguments[0]
    return (
        config.default_resolver is getattr
        and config.info_class is strawberry.Info
        and config.name_converter.from_argument(argument) == "since"
    )


def assigned_resolver_is_used() -> bool:
    """graphql-core reads `GraphQLField.resolve` when executing, not when the schema is
    built: the field rules and the fast paths replace it afterwards."""
    schema = strawberry.Schema(Probe)
    graphql_field(schema, "Thing", "name").resolve = lambda *_args, **_kwargs: "replaced"
    result = schema.execute_sync("{ things { name } }", context_value=[])
    return result.data == {"things": [{"name": "replaced"}]}


def selected_types() -> bool:
    schema = seen().plain._schema
    info = TypeInfo(schema)
    names: list[str] = []

    class Collect(Visitor):
        def enter_field(self, *_: Any) -> None:
            names.append(str(info.get_type()))

    visit(parse("{ things { name } }"), TypeInfoVisitor(info, Collect()))
    return names == ["[Thing!]!", "String!"]


# --- the table --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Relied:
    name: str
    where: str
    why: str
    check: Callable[[], bool]  # False or an exception: the name moved


RELIED_ON = [
    # graphql-core 3.3's executor (names 3.2 lacks: see the pin in pyproject.toml)
    Relied(
        "graphql.execution.collect_fields:FieldDetails",
        FAST_PATHS,
        "a selected field's node, @defer usage and fragment variables: plans step aside for "
        "the last two",
        fields(
            "graphql.execution.collect_fields:FieldDetails",
            "node, defer_usage, fragment_variable_values",
            ordered=False,
        ),
    ),
    Relied(
        "graphql.execution.collect_fields:FieldDetailsList",
        FAST_PATHS,
        "the field group the overridden completion methods receive",
        exists("graphql.execution.collect_fields:FieldDetailsList"),
    ),
    Relied(
        "graphql.execution.collect_fields:CollectedFields",
        FAST_PATHS,
        "what `collect_subfields` returns; `_new_object_plan` unpacks its three fields in order",
        fields(
            "graphql.execution.collect_fields:CollectedFields",
            "grouped_field_set, new_defer_usages, forbidden_directive_instances",
        ),
    ),
    Relied(
        "strawberry.schema.schema:StrawberryGraphQLCoreExecutionContext.complete_list_value",
        FAST_PATHS,
        "PlainDataExecution overrides it and calls it with these arguments",
        parameters(
            "strawberry.schema.schema:StrawberryGraphQLCoreExecutionContext.complete_list_value",
            "self, return_type, field_details_list, info, path, result, position_context",
        ),
    ),
    Relied(
        "strawberry.schema.schema:StrawberryGraphQLCoreExecutionContext.complete_object_value",
        FAST_PATHS,
        "PlainDataExecution overrides it and calls it with these arguments",
        parameters(
            "strawberry.schema.schema:StrawberryGraphQLCoreExecutionContext.complete_object_value",
            "self, return_type, field_details_list, info, path, result, position_context",
        ),
    ),
    Relied(
        "strawberry.schema.schema:StrawberryGraphQLCoreExecutionContext.collect_subfields",
        FAST_PATHS,
        "plans collect an object's subfields with graphql-core's own (memoized) method",
        parameters(
            "strawberry.schema.schema:StrawberryGraphQLCoreExecutionContext.collect_subfields",
            "self, return_type, field_details_list",
        ),
    ),
    Relied(
        "execution context .variable_values.coerced",
        FAST_PATHS,
        "the request's coerced variables are part of a shared plan's key (@skip/@include)",
        coerced_variables,
    ),
    Relied(
        "execution context .middleware_manager.middlewares",
        FAST_PATHS,
        "plans step aside when a field middleware (an extension's `resolve`) must see every field",
        middleware_listed,
    ),
    Relied(
        "execution context .schema (the GraphQLSchema, its `extensions`)",
        FAST_PATHS,
        "the execution context finds the schema's plan cache in its extensions",
        lambda: (
            seen().executor.schema is seen().fast._schema
            and isinstance(seen().fast._schema.extensions, dict)
        ),
    ),
    Relied(
        "graphql.type.scalars:serialize_string / serialize_id",
        FAST_PATHS,
        "plans pass a str through unchanged where String and ID coerce with these",
        lambda: (
            GraphQLString.coerce_output_value is resolve("graphql.type.scalars:serialize_string")
            and GraphQLID.coerce_output_value is resolve("graphql.type.scalars:serialize_id")
        ),
    ),
    Relied(
        "graphql:Executor.complete_leaf_value calls coerce_output_value",
        FAST_PATHS,
        "plans coerce leaves with the method graphql-core's own completion calls",
        leaves_coerce_as_graphql_core,
    ),
    # Strawberry's internals
    Relied(
        "strawberry.schema.schema:StrawberryGraphQLCoreExecutionContext",
        FAST_PATHS,
        "a schema's default execution context: install_fast_paths replaces exactly it",
        lambda: (
            strawberry.Schema(Probe).execution_context_class
            is StrawberryGraphQLCoreExecutionContext
            and seen().installed_class is PlainDataExecution
        ),
    ),
    Relied(
        "strawberry.Schema.execution_context_class (read at each execution)",
        FAST_PATHS,
        "install_fast_paths sets it after the schema is built",
        lambda: type(seen().executor) is seen().fast.execution_context_class,  # Recording
    ),
    Relied(
        "strawberry.Schema._schema",
        f"{FAST_PATHS}, {FIELD_RULES}",
        "the GraphQLSchema whose fields get direct resolvers and guards",
        lambda: isinstance(seen().plain._schema, GraphQLSchema),
    ),
    Relied(
        "strawberry.schema.schema_converter:GraphQLCoreConverter._exception_handler_specs",
        FAST_PATHS,
        "read with a default: renamed, fast paths would be installed on a schema with "
        "exception handlers, which need Strawberry's wrapper around every resolver",
        lambda: hasattr(seen().plain.schema_converter, "_exception_handler_specs"),
    ),
    Relied(
        "strawberry.schema.schema_converter:GraphQLCoreConverter.DEFINITION_BACKREF",
        f"{FAST_PATHS}, this test",
        "the key of a GraphQL field's extensions that holds its StrawberryField",
        lambda: isinstance(seen().field, StrawberryField) and seen().field.python_name == "things",
    ),
    Relied(
        f"{STRAWBERRY_RESOLVERS} (module of Strawberry's resolver wrappers)",
        FAST_PATHS,
        "only resolvers defined there are replaced; renamed, no field resolves directly",
        strawberry_wrappers_module,
    ),
    Relied(
        "strawberry.schema.schema_converter:GraphQLCoreConverter.scalar_registry",
        FAST_PATHS,
        "an argument passes through unchanged when its type is a registered scalar",
        lambda: (
            str in seen().plain.schema_converter.scalar_registry
            and GlobalID in seen().plain.schema_converter.scalar_registry
        ),
    ),
    Relied(
        "strawberry.Schema.config: default_resolver, info_class, name_converter.from_argument",
        FAST_PATHS,
        "direct resolvers do what Strawberry's wrapper does with them",
        schema_config,
    ),
    Relied(
        "strawberry.types.field:StrawberryField attributes",
        FAST_PATHS,
        "direct resolvers are built from the field's resolver, arguments and extensions",
        attributes(lambda: seen().field, "python_name, base_resolver, arguments, extensions"),
    ),
    Relied(
        "StrawberryResolver attributes",
        FAST_PATHS,
        "direct resolvers call the function and pass info, root, parent and self as "
        "Strawberry does",
        attributes(
            lambda: seen().field.base_resolver,
            "wrapped_func, info_parameter, root_parameter, parent_parameter, self_parameter",
        ),
    ),
    Relied(
        "strawberry.types.base:StrawberryOptional (exact type), StrawberryMaybe",
        FAST_PATHS,
        "a nullable scalar argument passes through; `Maybe` wraps the value, so it does not",
        optional_argument_types,
    ),
    Relied(
        "strawberry:Info(_raw_info=..., _field=...)",
        FAST_PATHS,
        "direct resolvers build the Info Strawberry would",
        lambda: {"_raw_info", "_field"} <= set(inspect.signature(strawberry.Info).parameters),
    ),
    Relied(
        "strawberry.Info._raw_info: .fragments, .variable_values, .field_nodes, .context",
        PREFETCH,
        "the prefetch reads the connection's own selection, fragments and variables",
        raw_info_as_prefetch_reads_it,
    ),
    # graphql-core, public but relied on in a particular way
    Relied(
        "graphql:GraphQLField.resolve (assigned after the schema is built)",
        f"{FIELD_RULES}, {FAST_PATHS}",
        "guards and direct resolvers replace it on the built schema",
        assigned_resolver_is_used,
    ),
    Relied(
        "graphql:TypeInfoVisitor with a Visitor's enter_field and TypeInfo.get_type",
        RESPONSE_CACHE,
        "the cache finds the types a document selects, for their TTLs",
        selected_types,
    ),
]


@pytest.mark.parametrize("relied", RELIED_ON, ids=lambda relied: relied.name)
def test_the_engine_still_has_what_we_rely_on(relied: Relied) -> None:
    try:
        problem = None if relied.check() else "no longer as expected"
    except Exception as error:
        first_line = str(error).partition("\n")[0]  # not pytest's assertion diff
        problem = f"{type(error).__name__}: {first_line}"
    if problem is not None:
        pytest.fail(
            f"ENGINE TRIPWIRE: {relied.name} changed ({problem}).\n"
            f"{relied.where} relies on it: {relied.why}.\n"
            "What to do: find what replaced it in the Strawberry / graphql-core changelog, "
            f"adapt {relied.where} and this row (tests/unit/test_engine_tripwire.py), or pin "
            "the previous version in pyproject.toml.",
            pytrace=False,
        )
