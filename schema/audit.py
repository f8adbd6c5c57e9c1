"""The audit trail in the graph (`resolvers.audit_log`): every event for auditors, and a
patient's access log, which shows people and apps by name and role, never internal ids."""

from __future__ import annotations

from typing import Any

import strawberry

from app.audit.usage import Usage
from app.domain.audit import AuditRecord
from resolvers.audit_log import EventPage
from schema.common import PageInfo
from schema.scalars import DateTime


@strawberry.type(description="How many records of one kind an event disclosed.")
class DisclosedKind:
    kind: str = strawberry.field(
        description="demographics (the Patient itself) or a collection: observations, ..."
    )
    count: int = strawberry.field(description="Records of it in the response.")


@strawberry.type(description="One access decision the policy made for the operation.")
class AccessDecision:
    rule: str = strawberry.field(
        description="role, operation scope, record type, confinement, care team, granular "
        "scope, sensitivity, field rule, purpose of use or break-the-glass."
    )
    target: str = strawberry.field(description="What it decided on: a type, Type.field, ...")
    allowed: bool = strawberry.field(description="Whether it allowed.")
    count: int = strawberry.field(description="Decisions (or records) it stands for.")


def _page_info(page: EventPage) -> PageInfo:
    return PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor)


def _kinds(event: Any) -> list[DisclosedKind]:
    return [DisclosedKind(kind=k, count=n) for k, n in event["what"]["kinds"].items()]


@strawberry.type(
    description="One audit event: an operation's disclosure of, or refusal for, a "
    "patient (or, without a patient, a refusal or an empty search)."
)
class AuditEvent:
    id: strawberry.ID = strawberry.field(description="Its sequence number in the trail.")
    recorded: DateTime = strawberry.field(description="When it was committed (UTC).")
    patient_id: strawberry.ID | None = strawberry.field(description="The patient concerned.")
    outcome: str = strawberry.field(description="success, partial, denied or error.")
    served: str = strawberry.field(
        description="executed, cache (the response cache) or shared (an identical concurrent "
        "request's result)."
    )
    subject: str = strawberry.field(description="The token's subject.")
    name: str | None = strawberry.field(description="The token's display name.")
    client: str | None = strawberry.field(description="The app (client id) the token names.")
    organization: str | None = strawberry.field(
        description="The organisation the token says the user acts for."
    )
    roles: list[str] = strawberry.field(description="The caller's roles.")
    purposes: list[str] = strawberry.field(description="Purposes of use the token states.")
    break_glass_reason: str | None = strawberry.field(
        description="The emergency reason stated with break-the-glass."
    )
    address: str | None = strawberry.field(description="The client's network address.")
    request_id: str = strawberry.field(description="The request id (X-Request-Id).")
    operation_kind: str = strawberry.field(description="query or mutation.")
    operation_name: str | None = strawberry.field(description="The operation's name.")
    document_hash: str | None = strawberry.field(description="SHA-256 of the document.")
    fields: list[str] = strawberry.field(
        description="The Type.field coordinates the document selects (what it could disclose)."
    )
    kinds: list[DisclosedKind] = strawberry.field(description="What of the patient it held.")
    sources: list[str] = strawberry.field(description="The sources that data came from.")
    decisions: list[AccessDecision] = strawberry.field(
        description="The access decisions made for it, each distinct one once."
    )

    @staticmethod
    def of(record: AuditRecord) -> AuditEvent:
        event, who, op = record.event, record.event["who"], record.event["operation"]
        return AuditEvent(
            id=strawberry.ID(str(record.seq)),
            recorded=DateTime(record.at.isoformat()),
            patient_id=strawberry.ID(record.patient_id) if record.patient_id else None,
            outcome=event["outcome"],
            served=event["served"],
            subject=who["subject"],
            name=who["name"],
            client=who["client"],
            organization=who["organization"],
            roles=list(who["roles"]),
            purposes=list(who["purposes"]),
            break_glass_reason=who["break_glass"],
            address=event["where"]["address"],
            request_id=event["where"]["request_id"],
            operation_kind=op["kind"],
            operation_name=op["name"],
            document_hash=op["hash"],
            fields=list(op.get("fields", ())),
            kinds=_kinds(event),
            sources=list(event["what"]["sources"]),
            decisions=[
                AccessDecision(
                    rule=d["rule"],
                    target=d["target"],
                    allowed=d["allowed"],
                    count=d.get("count", 1),
                )
                for d in event["decisions"]
            ],
        )


@strawberry.type(description="A page of audit events, newest first.")
class AuditEventPage:
    nodes: list[AuditEvent] = strawberry.field(description="The events on this page.")
    page_info: PageInfo = strawberry.field(description="Whether more follow, and the cursor.")

    @staticmethod
    def of(page: EventPage) -> AuditEventPage:
        return AuditEventPage(
            nodes=[AuditEvent.of(r) for r in page.records], page_info=_page_info(page)
        )


@strawberry.type(description="Someone who saw the patient's data: when, who, what and why.")
class AccessLogEntry:
    at: DateTime = strawberry.field(description="When (UTC).")
    who: str | None = strawberry.field(
        description="The person's display name as their sign-in gave it (null when it gave none)."
    )
    organization: str | None = strawberry.field(
        description="The organisation they act for, as their sign-in gave it (null when it "
        "gave none)."
    )
    roles: list[str] = strawberry.field(description="Their roles: clinician, billing, ...")
    app: str | None = strawberry.field(description="The app they used.")
    kinds: list[str] = strawberry.field(description="Which kinds of data they saw.")
    purposes: list[str] = strawberry.field(
        description="Why: the purposes of use stated (ETREAT for an emergency)."
    )
    emergency: bool = strawberry.field(
        description="True when they used emergency access (break-the-glass)."
    )

    @staticmethod
    def of(record: AuditRecord) -> AccessLogEntry:
        who = record.event["who"]
        emergency = who["break_glass"] is not None
        purposes = sorted({*who["purposes"], *(["ETREAT"] if emergency else [])})
        return AccessLogEntry(
            at=DateTime(record.at.isoformat()),
            who=who["name"],
            organization=who["organization"],
            roles=list(who["roles"]),
            app=who["client"],
            kinds=list(record.event["what"]["kinds"]),
            purposes=purposes,
            emergency=emergency,
        )


@strawberry.type(description="A page of the patient's access log, newest first.")
class AccessLogPage:
    nodes: list[AccessLogEntry] = strawberry.field(description="The entries on this page.")
    page_info: PageInfo = strawberry.field(description="Whether more follow, and the cursor.")

    @staticmethod
    def of(page: EventPage) -> AccessLogPage:
        return AccessLogPage(
            nodes=[AccessLogEntry.of(r) for r in page.records], page_info=_page_info(page)
        )


@strawberry.type(description="One client app's disclosures over a period.")
class ClientUsage:
    client: str = strawberry.field(description="The app's client id ('(no client id)' if none).")
    patients: int = strawberry.field(description="Unique patients whose data it disclosed.")
    repeat_patients: int = strawberry.field(description="Of them, disclosed more than once.")
    disclosures: int = strawberry.field(description="Disclosures of a patient's data.")

    @staticmethod
    def of(usage: Usage) -> ClientUsage:
        return ClientUsage(
            client=usage.client,
            patients=usage.patients,
            repeat_patients=usage.repeat_patients,
            disclosures=usage.disclosures,
        )
