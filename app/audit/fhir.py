"""Stored audit events as FHIR R4 AuditEvent resources, in the shape of the IHE Basic Audit
Log Patterns (BALP) profiles, for `patientgraph audit export` (NDJSON for a SIEM).

Every GraphQL query is a search in REST terms: an event about a patient is a BALP
PatientQuery, one without a patient (a refusal, a search that found no one) a Query; a
mutation keeps the query shape with its own subtype. The document is
named by its SHA-256 in the query entity (never the query text, which may carry literal
names), and variable values only as keyed hashes.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from app.domain.audit import AuditRecord

BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/"
EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
INTERACTION = "http://hl7.org/fhir/restful-interaction"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ROLE_SYSTEM = "urn:patientgraph:role"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
OUTCOMES = {"success": "0", "partial": "4", "denied": "4", "error": "8"}  # R4 AuditEvent.outcome


def audit_event(record: AuditRecord, observer: str = "PatientGraph") -> dict[str, Any]:
    event = record.event
    op: Mapping[str, Any] = event["operation"]
    who: Mapping[str, Any] = event["who"]
    profile = "IHE.BasicAudit.PatientQuery" if record.patient_id else "IHE.BasicAudit.Query"
    subtype = "search-type" if op["kind"] == "query" else op["kind"].replace(" ", "-")
    action = "E"  # BALP: a query is Execute
    purposes = list(who["purposes"]) + (["ETREAT"] if who.get("break_glass") else [])
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(record.seq),
        "meta": {"profile": [BALP + profile]},
        "type": {"system": EVENT_TYPE, "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": INTERACTION, "code": subtype}],
        "action": action,
        "recorded": record.at.isoformat(),
        "outcome": OUTCOMES.get(event["outcome"], "8"),
        "outcomeDesc": event["outcome"],
        "agent": _agents(who, event["where"]),
        "source": {
            "observer": {"display": observer},
            "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
        "entity": _entities(record, op, event),
    }
    if purposes:
        resource["purposeOfEvent"] = [
            {"coding": [{"system": ACT_REASON, "code": p}]} for p in sorted(set(purposes))
        ]
    return resource


def _agents(who: Mapping[str, Any], where: Mapping[str, Any]) -> list[dict[str, Any]]:
    user: dict[str, Any] = {
        "type": {"coding": [{"system": PARTICIPATION, "code": "IRCP"}]},
        "who": {"identifier": {"value": who["subject"]}},
        "requestor": True,
        "role": [{"coding": [{"system": ROLE_SYSTEM, "code": r}]} for r in who["roles"]],
    }
    if who.get("name"):
        user["who"]["display"] = who["name"]
    if where.get("address"):
        user["network"] = {"address": where["address"], "type": "2"}  # 2: IP address
    if who.get("token_id"):
        user["policy"] = [who["token_id"]]  # the token's jti, never the token
    agents = [user]
    if who.get("client"):
        agents.append(
            {
                "type": {"coding": [{"system": PARTICIPATION, "code": "CST"}]},
                "who": {"display": who["client"]},
                "requestor": False,
            }
        )
    return agents


def _entities(
    record: AuditRecord, op: Mapping[str, Any], event: Mapping[str, Any]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if record.patient_id is not None:
        kinds = event["what"]["kinds"]
        out.append(
            {
                "what": {"reference": f"Patient/{record.patient_id}"},
                "type": {"system": ENTITY_TYPE, "code": "1"},  # person
                "role": {"system": OBJECT_ROLE, "code": "1"},  # patient
                "detail": [
                    {"type": kind, "valueString": str(count)} for kind, count in kinds.items()
                ],
            }
        )
    query: dict[str, Any] = {
        "type": {"system": ENTITY_TYPE, "code": "2"},  # system object
        "role": {"system": OBJECT_ROLE, "code": "24"},  # query
        "detail": [
            {"type": "request-id", "valueString": event["where"]["request_id"]},
            {"type": "served", "valueString": event["served"]},
        ],
    }
    if op.get("hash"):
        query["query"] = base64.b64encode(op["hash"].encode()).decode()
    if op.get("name"):
        query["name"] = op["name"]
    if event["who"].get("break_glass"):
        reason = event["who"]["break_glass"]
        query["detail"].append({"type": "break-the-glass reason", "valueString": reason})
    out.append(query)
    return out
