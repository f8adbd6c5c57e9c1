"""Recording what a GraphQL request disclosed and decided (`app.audit`), before its response
leaves: the events of an executed operation, of a response served from the cache and of a
single-flight follower alike. A trail that cannot be written fails the request closed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from starlette.requests import Request

from app.audit import events
from app.audit.trail import AuditTrail
from app.auth.break_glass import BreakGlass
from app.auth.principal import Principal
from app.domain.audit import Decision, Summary
from app.logging import REQUEST_ID


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
    )


def operation_of(
    trail: AuditTrail | None,
    kind: str,
    name: str | None,
    query: str | None,
    variables: Mapping[str, Any] | None,
) -> events.Operation:
    key = trail.key if trail is not None else b""  # nothing is recorded without a trail
    return events.operation(key, kind, name, query, variables)


async def record(
    trail: AuditTrail | None,
    caller: events.Caller,
    operation: events.Operation,
    parts: Sequence[events.Part],
    served: str,
) -> None:
    """Commit the operation's events; raises AuditUnavailable if they could not be."""
    if trail is not None:
        await trail.record(events.assemble(events.head_of(caller, operation, served), parts))


async def record_refusal(
    trail: AuditTrail | None,
    caller: events.Caller,
    operation: events.Operation,
    decision: Decision,
) -> None:
    """A request the policy refused before it ran (purpose of use, break-the-glass)."""
    parts = events.parts_of(Summary({}, (decision,), errors=True))
    await record(trail, caller, operation, parts, events.EXECUTED)
