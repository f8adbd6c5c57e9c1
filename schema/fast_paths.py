"""Resolvers that graphql-core calls directly, installed once when the schema is built.

Strawberry puts a generic wrapper around every field. For a plain attribute that is three
Python calls per resolved field (wrapper, `get_result`, the default resolver); for a field
with a resolver function it also builds a Strawberry `Info`, converts every argument,
chains the field extensions and, for an `async def`, adds one more coroutine per field. Our
fields need none of that: there are no field extensions or permission classes, and every
argument is a scalar that graphql-core has already coerced (Strawberry passes those through
unchanged). `install_fast_paths` therefore replaces, after the schema is built:

- each plain attribute field's resolver with `getattr(source, python_name)`;
- each resolver field whose arguments are all scalars with a direct call of the resolver
  function, arguments renamed from GraphQL to Python names, `Info`, `root` and `self`
  supplied as Strawberry would.

Anything else (field extensions, input objects, enums, lists or `Maybe` as arguments,
exception handlers, a custom default resolver) keeps Strawberry's resolver. Only resolvers
that Strawberry built are replaced: a field already wrapped by `schema.field_rules` keeps its
guard, so the two passes may run in either order. The semantics do not change: the same
resolver function is called with the same arguments; only the layers between graphql-core
and it are gone.

Plain-data subtrees. Below a connection's `nodes`, a record and everything it holds (codes,
quantities, provenance) are immutable values read attribute by attribute. For such a
selection graphql-core still runs its whole per-field machinery (resolve info, resolver call,
awaitable checks, completion by type) for every field of every item. `PlainDataExecution`
(installed as the schema's execution context) instead builds, once per selection (shared by
the requests that send the same query with the same variables, in a plan cache each schema
owns), a plan that reads the attributes and serializes the leaves directly. It applies only
where every selected field is a plain attribute (as installed above: no arguments, no guard, no
middleware), of object, list, scalar or enum type, with no `@defer`/`@stream`; anything else,
and any value the plan does not expect (a null in a non-null field, a value a scalar refuses,
...), is completed by graphql-core's own code for that list or object, which then reports
errors exactly as before. Building the answer reads nothing but the attributes graphql-core
would read, so doing it twice in that case changes nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any, cast

import strawberry
from graphql import (
    GraphQLEnumType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    Undefined,
)
from graphql.execution.collect_fields import FieldDetails, FieldDetailsList
from graphql.pyutils import Path
from graphql.type.scalars import serialize_id, serialize_string
from strawberry.relay import GlobalID
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.base import StrawberryOptional
from strawberry.types.field import StrawberryField

Resolver = Callable[..., Any]
STRAWBERRY_RESOLVERS = "strawberry.schema.schema_converter"  # module of Strawberry's wrappers
MARK = "_patientgraph_fast_path"
ATTRIBUTE = "_patientgraph_attribute"  # on a plain attribute's resolver: the attribute's name
PLANS = "patientgraph.plans"  # key of the plan cache in the GraphQL schema's `extensions`


def install_fast_paths(schema: strawberry.Schema) -> int:
    """Replace Strawberry's per-field wrappers where they add nothing, and complete plain-data
    subtrees directly (`PlainDataExecution`); returns how many fields now resolve directly.
    Idempotent."""
    converter = schema.schema_converter
    if getattr(converter, "_exception_handler_specs", ()):
        return 0  # exception handlers need Strawberry's wrapper around every resolver
    if schema.execution_context_class is StrawberryGraphQLCoreExecutionContext:
        schema.execution_context_class = PlainDataExecution  # a custom one is left as it is
    # Kept by the schema the plans were built for (their keys hold its types and documents'
    # nodes): another schema in the process neither evicts them nor keeps them alive.
    schema._schema.extensions.setdefault(PLANS, SharedPlans())
    replaced = 0
    for graphql_type in schema._schema.type_map.values():
        if not isinstance(graphql_type, GraphQLObjectType) or graphql_type.name.startswith("__"):
            continue
        for graphql_field in graphql_type.fields.values():
            field = (graphql_field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
            resolve = graphql_field.resolve
            if not isinstance(field, StrawberryField) or resolve is None:
                continue
            if getattr(resolve, MARK, False):
                replaced += 1
                continue
            if getattr(resolve, "__module__", None) != STRAWBERRY_RESOLVERS:
                continue  # not Strawberry's own wrapper (a field rule's guard, ...): keep it
            direct = _direct_resolver(schema, field)
            if direct is not None:
                setattr(direct, MARK, True)
                graphql_field.resolve = direct
                replaced += 1
    return replaced


def has_fast_paths(schema: strawberry.Schema) -> bool:
    """Whether `install_fast_paths` ran on this schema (benchmarks print it)."""
    return any(
        getattr(graphql_field.resolve, MARK, False)
        for graphql_type in schema._schema.type_map.values()
        if isinstance(graphql_type, GraphQLObjectType)
        for graphql_field in graphql_type.fields.values()
    )


def _direct_resolver(schema: strawberry.Schema, field: StrawberryField) -> Resolver | None:
    if field.extensions:
        return None
    if field.base_resolver is None:
        if schema.config.default_resolver is not getattr:
            return None
        return _attribute(field.python_name)
    if not callable(field.base_resolver.wrapped_func):
        return None  # Strawberry raises its own error for it when resolving
    if not all(_passes_through(schema, argument.type) for argument in field.arguments):
        return None
    return _call(schema, field)


def _passes_through(schema: strawberry.Schema, type_: object) -> bool:
    """An argument type whose graphql-core value Strawberry hands to the resolver unchanged:
    a (nullable) scalar other than GlobalID. `Maybe` is a subclass of StrawberryOptional
    that wraps the value, hence the exact type check."""
    if type(type_) is StrawberryOptional:
        type_ = type_.of_type
    registry = schema.schema_converter.scalar_registry
    return type_ is not GlobalID and _hashable(type_) and type_ in registry


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _attribute(name: str) -> Resolver:
    def resolve(source: Any, info: Any) -> Any:
        return getattr(source, name)

    setattr(resolve, ATTRIBUTE, name)
    return resolve


def _call(schema: strawberry.Schema, field: StrawberryField) -> Resolver:
    resolver = field.base_resolver
    assert resolver is not None
    function = resolver.wrapped_func
    assert callable(function)
    name_of = schema.config.name_converter.from_argument
    renames = tuple(
        (graphql_name, argument.python_name)
        for argument in field.arguments
        if (graphql_name := name_of(argument)) != argument.python_name
    )
    info_class = schema.config.info_class
    info_name = resolver.info_parameter.name if resolver.info_parameter else None
    source_names = tuple(
        dict.fromkeys(
            parameter.name
            for parameter in (resolver.root_parameter, resolver.parent_parameter)
            if parameter is not None
        )
    )
    passes_self = resolver.self_parameter is not None

    def resolve(source: Any, info: Any, **arguments: Any) -> Any:
        for graphql_name, python_name in renames:
            if graphql_name in arguments:
                arguments[python_name] = arguments.pop(graphql_name)
        if info_name is not None:
            arguments[info_name] = info_class(_raw_info=info, _field=field)
        for name in source_names:
            arguments[name] = source
        return function(source, **arguments) if passes_self else function(**arguments)

    return resolve


# --- plain-data subtrees ------------------------------------------------------------------------

Plan = Callable[[Any], Any]  # a value as the resolver returned it -> its completed form
PASSES_STR = (serialize_string, serialize_id)  # scalars that return a str unchanged
SKIP_INCLUDE = frozenset({"skip", "include"})  # already applied when fields are collected


MISSING = object()
SHARED_PLANS_MAX = 4096  # per schema; the cache starts over when full


class SharedPlans(dict[tuple[Any, ...], tuple[tuple[Any, ...], Plan | None]]):
    """One schema's plans by (object type, ids of the selection's field nodes, variable
    values), across requests; each with the nodes, kept so that their ids cannot be reused."""


class NotPlain(Exception):
    """A value the plan does not complete: graphql-core's own completion takes over."""


class PlainDataExecution(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context, completing lists and objects of plain data with a
    plan (see the module docstring) and everything else as graphql-core does."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        manager = self.middleware_manager
        self._planning = manager is None or not manager.middlewares
        # (object type, id(field details)) -> (field details kept alive, plan or None), like
        # graphql-core's memo of collected subfields.
        self._plans: dict[tuple[GraphQLObjectType, int], tuple[FieldDetailsList, Plan | None]]
        self._plans = {}
        self._variables: object = MISSING
        shared = self.schema.extensions.get(PLANS)  # once per request, not per plan
        # Installed by hand rather than by `install_fast_paths`: plans last for this request.
        self._shared_plans: SharedPlans = SharedPlans() if shared is None else shared

    def complete_list_value(
        self,
        return_type: GraphQLList[GraphQLOutputType],
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo[Any],
        path: Path,
        result: Any,
        position_context: Any,
    ) -> Any:
        if self._planning and not _streamed(field_details_list):
            plan = self._value_plan(return_type, field_details_list)
            if plan is not None:
                with contextlib.suppress(Exception):  # completed below, errors reported there
                    return plan(result)
        return super().complete_list_value(
            return_type, field_details_list, info, path, result, position_context
        )

    def complete_object_value(
        self,
        return_type: GraphQLObjectType,
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo[Any],
        path: Path,
        result: Any,
        position_context: Any,
    ) -> Any:
        if self._planning:
            plan = self._object_plan(return_type, field_details_list)
            if plan is not None:
                with contextlib.suppress(Exception):  # completed below, errors reported there
                    return plan(result)
        return super().complete_object_value(
            return_type, field_details_list, info, path, result, position_context
        )

    def _object_plan(
        self, object_type: GraphQLObjectType, field_details_list: FieldDetailsList
    ) -> Plan | None:
        key = (object_type, id(field_details_list))
        known = self._plans.get(key)
        if known is None:
            known = self._plans[key] = (
                field_details_list,
                self._shared_plan(object_type, field_details_list),
            )
        return known[1]

    def _shared_plan(
        self, object_type: GraphQLObjectType, field_details_list: FieldDetailsList
    ) -> Plan | None:
        """The plan other requests built for the same selection, else a new one. A parsed
        document is cached per query text, so the same query selects the same field nodes;
        what else decides the collected fields is the variables (`@skip`, `@include`)."""
        variables = self._variables_key()
        if variables is None or any(d.fragment_variable_values for d in field_details_list):
            return self._new_object_plan(object_type, field_details_list)
        nodes = tuple(d.node for d in field_details_list)
        key = (object_type, tuple(map(id, nodes)), variables)
        shared = self._shared_plans
        known = shared.get(key)
        if known is None:
            if len(shared) >= SHARED_PLANS_MAX:
                shared.clear()
            known = shared[key] = (
                nodes,
                self._new_object_plan(object_type, field_details_list),
            )
        return known[1]

    def _variables_key(self) -> tuple[tuple[str, Any], ...] | None:
        """The request's variable values as a dict key, or None when one is not hashable."""
        if self._variables is MISSING:
            values: Any = self.variable_values
            coerced = getattr(values, "coerced", values) or {}
            key: tuple[tuple[str, Any], ...] | None = tuple(sorted(coerced.items()))
            try:
                hash(key)
            except TypeError:
                key = None
            self._variables = key
        return cast("tuple[tuple[str, Any], ...] | None", self._variables)

    def _new_object_plan(
        self, object_type: GraphQLObjectType, field_details_list: FieldDetailsList
    ) -> Plan | None:
        if object_type.is_type_of is not None:
            return None
        grouped, new_defer_usages, forbidden = self.collect_subfields(
            object_type, field_details_list
        )
        if new_defer_usages or forbidden:
            return None
        steps: list[tuple[str, str | None, Plan]] = []
        for response_key, details in grouped.items():
            if not _plain_nodes(details):
                return None
            name = details[0].node.name.value
            if name == "__typename":
                steps.append((response_key, None, _constant(object_type.name)))
                continue
            field = object_type.fields.get(name)
            attribute = getattr(field.resolve, ATTRIBUTE, None) if field else None
            if field is None or attribute is None or field.args:
                return None
            complete = self._value_plan(field.type, details)
            if complete is None:
                return None
            steps.append((response_key, attribute, complete))
        return _object(steps)

    def _value_plan(
        self, type_: GraphQLOutputType, field_details_list: FieldDetailsList
    ) -> Plan | None:
        non_null = isinstance(type_, GraphQLNonNull)
        inner = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
        plan: Plan | None
        if isinstance(inner, GraphQLScalarType | GraphQLEnumType):
            plan = _leaf(inner)
        elif isinstance(inner, GraphQLList):
            item = self._value_plan(inner.of_type, field_details_list)
            plan = None if item is None else _list(item)
        elif isinstance(inner, GraphQLObjectType):
            plan = self._object_plan(inner, field_details_list)
        else:
            return None  # interfaces and unions: graphql-core resolves the concrete type
        if plan is None:
            return None
        return _required(plan) if non_null else _nullable(plan)


def _plain_nodes(field_details_list: FieldDetailsList) -> bool:
    """A field selected without arguments, fragment variables, `@defer` or `@stream`."""
    return all(
        d.defer_usage is None
        and d.fragment_variable_values is None
        and not d.node.arguments
        and not _streamed((d,))
        for d in field_details_list
    )


def _streamed(field_details_list: Sequence[FieldDetails]) -> bool:
    """Any directive but `@skip`/`@include` (already applied): `@stream` and the like."""
    return any(
        directive.name.value not in SKIP_INCLUDE
        for d in field_details_list
        for directive in d.node.directives or ()
    )


def _constant(value: str) -> Plan:
    return lambda _: value


def _object(steps: list[tuple[str, str | None, Plan]]) -> Plan:
    fields = tuple(steps)

    def complete(source: Any) -> dict[str, Any]:
        return {
            key: plan(source if attribute is None else getattr(source, attribute))
            for key, attribute, plan in fields
        }

    return complete


def _leaf(type_: GraphQLScalarType | GraphQLEnumType) -> Plan:
    # What graphql-core's `complete_leaf_value` calls (`serialize` is its deprecated alias).
    serialize = type_.coerce_output_value
    passes_str = serialize in PASSES_STR

    def complete(value: Any) -> Any:
        if passes_str and type(value) is str:
            return value
        if isinstance(value, Exception):
            raise NotPlain  # graphql-core raises it as the field's error
        serialized = serialize(value)
        if serialized is None or serialized is Undefined:
            raise NotPlain  # graphql-core reports it
        return serialized

    return complete


def _list(item: Plan) -> Plan:
    def complete(value: Any) -> list[Any]:
        if type(value) is not list and type(value) is not tuple:
            raise NotPlain  # generators, async iterables, strings, mappings, ...
        return [item(v) for v in value]

    return complete


def _required(plan: Plan) -> Plan:
    def complete(value: Any) -> Any:
        if value is None:
            raise NotPlain  # a null in a non-null field: graphql-core reports it
        return plan(value)

    return complete


def _nullable(plan: Plan) -> Plan:
    def complete(value: Any) -> Any:
        return None if value is None else plan(value)

    return complete
