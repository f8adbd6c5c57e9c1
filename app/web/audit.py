"""Recording what a GraphQL request disclosed and decided (`app.audit`), before its response
leaves: the events of an executed operation, of a response served from the cache and of a
single-flight follower alike. A trail that cannot be written fails the request closed."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from graphql import (
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    parse,
    visit,
)
from starlette.requests import Request

from app.audit import events
from app.audit.trail import AuditTrail, Part
from app.auth.break_glass import BreakGlass
from app.auth.principal import Principal
from app.domain.audit import Decision, Summary
from app.logging import REQUEST_ID

MEMO_SIZE = 512  # documents whose selected fields are remembered


def caller_of(
    request: Request, principal: Principal, emergency: BreakGlass | None
) -> events.Caller:
    return events.Caller(
        subject=principal.subject,
        name=principal.name,
        client=principal.client_id,
        roles=tuple(sorted(principal.roles)),
        purposes=tuple(sorted(principal.purposes)),
        token_id=principal.token_id,
        address=request.client.host if request.client is not None else None,
        request_id=REQUEST_ID.get(),
        break_glass=emergency.reason if emergency is not None else None,
        organization=principal.organization,
    )


def operation_of(
    trail: AuditTrail | None,
    kind: str,
    name: str | None,
    query: str | None,
    variables: Mapping[str, Any] | None,
    fields: tuple[str, ...] = (),
) -> events.Operation:
    key = trail.key if trail is not None else b""  # nothing is recorded without a trail
    return events.operation(key, kind, name, query, variables, fields)


async def record(
    trail: AuditTrail | None,
    caller: events.Caller,
    operation: events.Operation,
    parts: Sequence[Part],
    served: str,
) -> None:
    """Commit the operation's events; raises AuditUnavailable if they could not be."""
    if trail is not None:
        await trail.record(events.head_of(caller, operation, served), parts)


async def record_decision(
    trail: AuditTrail | None,
    caller: events.Caller,
    operation: events.Operation,
    decision: Decision,
) -> None:
    """A request decided by one rule before anything ran: a refusal (purpose of use,
    break-the-glass, the patterns page's role check) or the page's allowed read."""
    parts = events.parts_of(Summary({}, (decision,), errors=not decision.allowed))
    await record(trail, caller, operation, parts, events.EXECUTED)


class SelectedFields:
    """The `Type.field` coordinates a document selects (fragments included), for the audit
    trail's "what": which fields of a record the operation could disclose. Remembered per
    document text (bounded), so a repeated query is analysed once."""

    def __init__(self, schema: GraphQLSchema, size: int = MEMO_SIZE) -> None:
        self._schema = schema
        self.of = functools.lru_cache(maxsize=size)(self._analyse)

    def _analyse(self, query: str) -> tuple[str, ...]:
        try:
            ast = parse(query)
        except GraphQLError:
            return ()
        info = TypeInfo(self._schema)
        seen: set[str] = set()

        class Collect(Visitor):
            def enter_field(self, node: FieldNode, *_: Any) -> None:
                parent = info.get_parent_type()
                if parent is not None and not node.name.value.startswith("__"):
                    seen.add(f"{parent.name}.{node.name.value}")

        visit(ast, TypeInfoVisitor(info, Collect()))
        return tuple(sorted(seen))
