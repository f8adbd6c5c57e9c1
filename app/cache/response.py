"""The response cache: whole GraphQL responses, keyed so that a caller can only ever be
answered with a response computed for the same rights.

Key = sha256 of the normalized document, the operation name, the canonical variables and the
caller's authorization fingerprint, a digest the caller computes (`app.auth.fingerprint`): two
callers share an entry only when the policy gives them the same rights over the same patient
context. The cache itself knows nothing of principals or policies.

Only successful queries are stored: never break-the-glass requests, responses with errors or
mutations (the endpoint decides; see `app.web.graphql`). Entries are tagged with the patients
they disclose, so one patient's entries can be purged, and patient searches also with
SEARCH_TAG, so all of them can be when someone new appears.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    get_named_type,
    parse,
    print_ast,
    visit,
)

from app.cache.backend import CacheBackend
from app.cache.guarded import Guarded
from app.sources.singleflight import SingleFlight

DOCUMENT_CACHE_SIZE = 512
CONNECTION = "Connection"  # suffix of paged collection types (ObservationConnection)
MAX_CACHED_DOCUMENT = 20_000  # characters; longer documents are analysed but not memoized
NOTE_LENGTH = 10  # digits of the note's length, before the note and the body


# Every cached patient search: a new person (a lab patient first seen) may belong in any.
SEARCH_TAG = "patients:search"
SEARCH_TYPE = "PatientConnection"  # the type `patients(...)` answers with


def patient_tag(patient_id: str) -> str:
    return f"patient:{patient_id}"


@dataclass(frozen=True, slots=True)
class Document:
    """What the cache needs to know of a query text (memoized per text)."""

    normalized: str  # printed AST: whitespace and comments do not split entries
    digest: str  # sha256 of `normalized`
    operations: Mapping[str | None, OperationType]  # by name; None for a lone anonymous one
    types: frozenset[str]  # every named output type the document selects


@dataclass(frozen=True, slots=True)
class Stored:
    """A computed response: what the caller gets, and whether others may get it too."""

    status: int
    body: bytes
    cacheable: bool


class ResponseCache:
    def __init__(
        self,
        backend: CacheBackend,
        schema: GraphQLSchema,
        *,
        ttl: float,
        ttl_by_type: Mapping[str, float],
    ) -> None:
        self.backend = backend
        self._guarded = Guarded(backend, "response cache")
        self.ttl = ttl
        self._ttl_by_type = dict(ttl_by_type)
        self._schema = schema
        self.flight: SingleFlight[Any] = SingleFlight()  # the endpoint's outcome of a miss
        self._analyse = functools.lru_cache(maxsize=DOCUMENT_CACHE_SIZE)(self._analyse_text)

    def document(self, query: str) -> Document | None:
        """None when the text does not parse (execution reports the error, uncached)."""
        if len(query) > MAX_CACHED_DOCUMENT:
            return self._analyse_text(query)
        return self._analyse(query)

    def _analyse_text(self, query: str) -> Document | None:
        try:
            ast = parse(query)
        except GraphQLError:
            return None
        normalized = print_ast(ast)
        digest = hashlib.sha256(normalized.encode()).hexdigest()
        return Document(normalized, digest, _operations(ast), self._selected_types(ast))

    def _selected_types(self, ast: DocumentNode) -> frozenset[str]:
        info = TypeInfo(self._schema)
        seen: set[str] = set()

        class Collect(Visitor):
            def enter_field(self, *_: Any) -> None:
                field_type = info.get_type()
                if field_type is not None:
                    name = get_named_type(field_type).name
                    seen.add(name)
                    # `observations { totalCount }` is about observations too.
                    seen.add(name.removesuffix(CONNECTION))

        visit(ast, TypeInfoVisitor(info, Collect()))
        return frozenset(seen)

    def ttl_for(self, document: Document) -> float:
        """The shortest TTL among the types the document selects (the default otherwise)."""
        ttls = [self._ttl_by_type[t] for t in document.types if t in self._ttl_by_type]
        return min([self.ttl, *ttls])

    def key(
        self,
        document: Document,
        operation: str | None,
        variables: Mapping[str, Any] | None,
        caller: str,
    ) -> str:
        """`caller`: the digest of the caller's authorization fingerprint."""
        return _digest([document.digest, operation, variables or {}, caller])

    async def get(self, key: str) -> Entry | None:
        """The stored entry, or None (also when the backend is down, or the entry was stored
        without a note by an older version: the query then runs)."""
        value = await self._guarded.get(key)
        if value is None or len(value) < NOTE_LENGTH or not value[:NOTE_LENGTH].isdigit():
            return None
        end = NOTE_LENGTH + int(value[:NOTE_LENGTH])
        return Entry(value[end:], value[NOTE_LENGTH:end])

    async def put(
        self,
        key: str,
        entry: Entry,
        ttl: float,
        patients: Iterable[str],
        document: Document,
    ) -> None:
        tags = [patient_tag(p) for p in patients]
        if SEARCH_TYPE in document.types:
            tags.append(SEARCH_TAG)
        value = b"%0*d" % (NOTE_LENGTH, len(entry.note)) + entry.note + entry.body
        await self._guarded.set(key, value, ttl, tags)


@dataclass(frozen=True, slots=True)
class Entry:
    body: bytes
    note: bytes  # what serving the body again must do: the audit trail's summary


def _digest(material: Any) -> str:
    return hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _operations(ast: DocumentNode) -> dict[str | None, OperationType]:
    operations = [d for d in ast.definitions if isinstance(d, OperationDefinitionNode)]
    out: dict[str | None, OperationType] = {
        op.name.value: op.operation for op in operations if op.name is not None
    }
    if len(operations) == 1:
        out[None] = operations[0].operation
    return out
