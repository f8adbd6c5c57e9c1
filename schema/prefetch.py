"""Asking for the collections a query selects on a page of patients before graphql-core
resolves them.

A dashboard selects a few collections on every patient of a page. Left to themselves, each
patient's collection fields would each start their loads and wait (one coroutine per field,
one task per patient for graphql-core to gather them), all to end up in the same batches.
Instead `patients` reads its own selection (`nodes { ... }`), starts every load the collection
fields will need for every patient of the page (the same DataLoader keys, so the same batched
upstream searches) and waits once; the collection fields then find their answers in and
resolve without awaiting (`resolvers.records.records_of`). A single patient (`patient`, `me`)
gains nothing from this and is left alone.

The selection is read conservatively: fields and fragments are followed; anything under a
directive (`@skip`, `@include`, ...) or with an argument value it does not evaluate (lists,
objects) is not asked for in advance. Such a field simply loads when it is resolved, as
before, so the answer never depends on this module; it only decides what is already there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar

from graphql import (
    BooleanValueNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    IntValueNode,
    NullValueNode,
    SelectionSetNode,
    StringValueNode,
    VariableNode,
)

from app.domain.patients import Patient
from app.domain.records import RecordKind, RecordQuery
from resolvers.records import Asked, ask
from schema import field_rules
from schema.context import Info

if TYPE_CHECKING:
    from schema.collections import CollectionFields

T = TypeVar("T")
Need = tuple[RecordKind[Any], RecordQuery]
# A field's answer: the value itself when it is already known, else an awaitable of it.
NowOrLater: TypeAlias = T | Awaitable[T]


class Loads(Protocol):
    def ready(self) -> bool: ...

    async def wait(self) -> None: ...


def when_answered(loads: Loads, then: Callable[[], T]) -> NowOrLater[T]:
    """`then()` right away when every load has already finished (a collection prefetched for
    the page), else an awaitable of it: graphql-core awaits only what must be, so a page of
    prefetched collections resolves without a coroutine per field."""
    if loads.ready():
        return then()
    return _later(loads, then)


async def _later(loads: Loads, then: Callable[[], T]) -> T:
    await loads.wait()
    return then()


async def prefetch_collections(
    info: Info, patients: Sequence[Patient], collections: CollectionFields
) -> None:
    """Start and await the loads of every collection this connection field selects on its
    `nodes`, for `patients` (the page). Never raises for a failed source: the collection field
    that reads the answer reports it, at its own path."""
    if not patients:
        return
    needs = selected_collections(info, collections)
    if not needs:
        return
    ctx = info.context
    asked = [ask(ctx, patient, kind, filters) for patient in patients for kind, filters in needs]
    await Asked(
        tuple(f for a in asked for f in a.linked), tuple(f for a in asked for f in a.people)
    ).wait()


def selected_collections(info: Info, collections: CollectionFields) -> list[Need]:
    """What the Patient collection fields under this connection's `nodes` will load, without
    duplicates (fields the caller is denied load nothing)."""
    raw = info._raw_info  # graphql-core's resolve info: field nodes, fragments, variables
    fragments: Mapping[str, FragmentDefinitionNode] = raw.fragments
    values: Any = raw.variable_values  # Strawberry passes the coerced dict
    variables: Mapping[str, Any] = getattr(values, "coerced", values)
    patient_sets = [
        field.selection_set
        for node in raw.field_nodes
        for field in _fields(node.selection_set, fragments)
        if field.name.value == "nodes"
    ]
    ctx = info.context
    needs: dict[tuple[str, RecordQuery], Need] = {}
    for selections in patient_sets:
        for field in _fields(selections, fragments):
            name = field.name.value
            collection = collections.by_name.get(name)
            if collection is None or field_rules.denied(ctx, f"Patient.{name}"):
                continue
            arguments = _argument_values(field, variables)
            if arguments is not None:
                filters = collection.filters(arguments)
                needs.setdefault((collection.kind.name, filters), (collection.kind, filters))
    return list(needs.values())


def _fields(
    selections: SelectionSetNode | None,
    fragments: Mapping[str, FragmentDefinitionNode],
    spread: frozenset[str] = frozenset(),
) -> Iterator[FieldNode]:
    """The fields of a selection set, through inline fragments and fragment spreads (our
    object types implement no interface, so every fragment valid here applies)."""
    if selections is None:
        return
    for selection in selections.selections:
        if selection.directives:
            continue  # @skip/@include are not evaluated here: resolved later, as before
        if isinstance(selection, FieldNode):
            yield selection
        elif isinstance(selection, InlineFragmentNode):
            yield from _fields(selection.selection_set, fragments, spread)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is not None and name not in spread:
                yield from _fields(fragment.selection_set, fragments, spread | {name})


def _argument_values(field: FieldNode, variables: Mapping[str, Any]) -> dict[str, Any] | None:
    """The field's arguments as the resolver will receive them (variables already coerced;
    an unset variable leaves its argument out), or None for a value not evaluated here."""
    values: dict[str, Any] = {}
    for argument in field.arguments or ():
        name, node = argument.name.value, argument.value
        if isinstance(node, VariableNode):
            if node.name.value in variables:
                values[name] = variables[node.name.value]
        elif isinstance(node, NullValueNode):
            values[name] = None
        elif isinstance(node, StringValueNode | BooleanValueNode):
            values[name] = node.value
        elif isinstance(node, IntValueNode):
            values[name] = int(node.value)
        else:
            return None
    return values
