"""Collection fields: one factory makes every paged collection of a parent type (Patient's
`observations`, `conditions`, ...) from its record kind, and remembers what each one loads
and which resource types its node type comes from.

From that one registry `schema.prefetch` learns what a page of patients will load and
`app.auth.policy` which roles a field denial concerns (`owners`); nothing is listed twice.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any

import strawberry

from app.domain.patients import Patient as PatientRecord
from app.domain.records import RecordKind, RecordQuery
from resolvers.pagination import Page
from resolvers.records import Pending, start
from schema.common import Connection
from schema.context import Info, path_of
from schema.prefetch import NowOrLater, when_answered
from schema.scalars import DateTime

# Described with the server's page sizes when the schema is built (`schema.build`).
First = Annotated[int | None, strawberry.argument(description="How many to return.")]
After = Annotated[
    str | None,
    strawberry.argument(description="Cursor from a previous page's `pageInfo.endCursor`."),
]
Category = Annotated[
    str | None,
    strawberry.argument(description="Category token, e.g. `laboratory`, `vital-signs`."),
]
Code = Annotated[
    str | None,
    strawberry.argument(description="Code token: `http://loinc.org|2339-0` or `2339-0`."),
]
Since = Annotated[
    DateTime | None,
    strawberry.argument(description="Only those effective at or after this time."),
]
Merged = Annotated[
    bool,
    strawberry.argument(
        description="true (default): the same fact reported by several sources appears once, "
        "with every source in `sources`; false: each source's record separately."
    ),
]
NO_FILTER = RecordQuery(patient="")
LABORATORY = "laboratory"


class Arguments(Enum):
    """The arguments a collection field takes besides `first` and `after`."""

    NONE = "none"
    MERGED = "merged"  # `merged`
    OBSERVATIONS = "observations"  # `category`, `code`, `since`, `merged`
    LAB_RESULTS = "lab results"  # `code`, `since`, `merged`; category fixed to laboratory


def record_filters(category: str | None, code: str | None, since: str | None) -> RecordQuery:
    return RecordQuery("", category or None, code or None, since)


@dataclass(frozen=True, slots=True)
class Collection:
    kind: RecordKind[Any]
    arguments: Arguments

    def filters(self, values: Mapping[str, Any]) -> RecordQuery:
        """The record filters these GraphQL argument values select: the one mapping, used
        when the field resolves and when `schema.prefetch` asks ahead for a page."""
        if self.arguments is Arguments.OBSERVATIONS:
            category = values.get("category")
            return record_filters(category, values.get("code"), values.get("since"))
        if self.arguments is Arguments.LAB_RESULTS:
            return record_filters(LABORATORY, values.get("code"), values.get("since"))
        return NO_FILTER


class CollectionFields:
    """The collection fields of one parent type, by GraphQL field name."""

    def __init__(self) -> None:
        self.by_name: dict[str, Collection] = {}
        self._owners: dict[str, frozenset[str]] = {}

    def field(
        self,
        name: str,
        kind: RecordKind[Any],
        node: type,
        description: str,
        *,
        arguments: Arguments = Arguments.NONE,
        companion_node: type | None = None,
    ) -> Any:
        """A paged collection field `name` of `kind`, whose nodes are `node` (and, for a kind
        with a companion, whose nested `companion_node`s come from it)."""
        collection = self.by_name[name] = Collection(kind, arguments)
        self._own(node, kind.resource_types)
        if companion_node is not None and kind.companion is not None:
            self._own(companion_node, kind.companion.resource_types)
        return strawberry.field(
            resolver=_RESOLVERS[arguments](collection),
            name=name,
            graphql_type=Connection[node],  # type: ignore[valid-type]  # a Strawberry type
            description=description,
        )

    def _own(self, node: type, resource_types: tuple[str, ...]) -> None:
        name = node.__name__
        self._owners[name] = self._owners.get(name, frozenset()) | frozenset(resource_types)

    def owners(self) -> dict[str, frozenset[str]]:
        """GraphQL node type -> the resource types its records come from."""
        return dict(self._owners)


def _page(
    info: Info,
    root: PatientRecord,
    collection: Collection,
    first: int | None,
    after: str | None,
    filters: RecordQuery = NO_FILTER,
    *,
    merged: bool = True,
) -> NowOrLater[Page[Any]]:
    ctx = info.context
    pending: Pending[Any] = start(ctx, root, collection.kind, filters, path_of(info))
    return when_answered(pending, functools.partial(pending.page, first, after, merged=merged))


Resolver = Callable[..., NowOrLater[Page[Any]]]


def _plain(collection: Collection) -> Resolver:
    def resolve(
        root: strawberry.Parent[PatientRecord], info: Info, first: First = None, after: After = None
    ) -> NowOrLater[Page[Any]]:
        return _page(info, root, collection, first, after)

    return resolve


def _merged(collection: Collection) -> Resolver:
    def resolve(
        root: strawberry.Parent[PatientRecord],
        info: Info,
        first: First = None,
        after: After = None,
        merged: Merged = True,
    ) -> NowOrLater[Page[Any]]:
        return _page(info, root, collection, first, after, merged=merged)

    return resolve


def _observations(collection: Collection) -> Resolver:
    def resolve(
        root: strawberry.Parent[PatientRecord],
        info: Info,
        category: Category = None,
        code: Code = None,
        since: Since = None,
        first: First = None,
        after: After = None,
        merged: Merged = True,
    ) -> NowOrLater[Page[Any]]:
        filters = collection.filters({"category": category, "code": code, "since": since})
        return _page(info, root, collection, first, after, filters, merged=merged)

    return resolve


def _lab_results(collection: Collection) -> Resolver:
    def resolve(
        root: strawberry.Parent[PatientRecord],
        info: Info,
        code: Code = None,
        since: Since = None,
        first: First = None,
        after: After = None,
        merged: Merged = True,
    ) -> NowOrLater[Page[Any]]:
        filters = collection.filters({"code": code, "since": since})
        return _page(info, root, collection, first, after, filters, merged=merged)

    return resolve


_RESOLVERS: Mapping[Arguments, Callable[[Collection], Resolver]] = {
    Arguments.NONE: _plain,
    Arguments.MERGED: _merged,
    Arguments.OBSERVATIONS: _observations,
    Arguments.LAB_RESULTS: _lab_results,
}
