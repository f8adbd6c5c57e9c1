"""HL7 v2 ORU^R01 -> domain records: the anti-corruption layer for laboratory results.

`parse_message` accepts one unsolicited observation message (ORU^R01, v2.3 to v2.5.1; later
versions are read the same way) and returns a `LabMessage`, or raises `MessageRejected` with
the acknowledgement code to send (AE/AR) and a short reason that never contains PHI. It raises
nothing else, whatever the input.

Tolerant of real-world feeds: a UTF-8 byte-order mark, MLLP framing bytes, CR / LF / CRLF
segment terminators, non-UTF-8 bytes (read as Latin-1), trailing empty fields, the HL7 null
`""`, escape sequences, repeating fields, several order groups with optional ORC / PV1 / SFT /
PRT / TQ1 / SPM / Z segments around them. The `hl7` package splits the message into segments,
fields, repetitions, components and subcomponents; everything after that (unescaping included:
`hl7`'s own unescape logs field contents, i.e. PHI, and turns `\\.br\\` into CR) happens in this
package: `syntax.py` (text, escapes, timestamps), `values.py` (OBX values), `patient.py` (PID).

`skipped` semantics: the number of OBX segments whose content did not fully reach the domain.
An OBX is dropped (and counted) when it has no observation identifier (OBX-3), when it is not
inside an OBR group (before the first OBR, or a specimen observation after SPM), or when mapping
it fails. An OBX whose value cannot be represented (OBX-2 ED, RP or an unknown / missing type
with OBX-5 valued) is kept without a value and counted too, so the count always says how many
OBX segments lost something. An OBX that simply has no value yet (e.g. status I) loses nothing
and is not counted.

Keys: an order (OBR group) is keyed by its filler order number OBR-3 (else the placer order
number OBR-2, else the message control id and OBR-1), a result by `<order key>/<OBX-3 code or
text>/<OBX-4 sub-id>`. A correction (OBX-11 = C) or a redelivery therefore maps to the same key
and the same record ids (`local_id`), which is how the store versions results.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

from app.domain.common import CodeableConcept, Identifier, RecordMeta, SourceLink
from app.domain.diagnostic_reports import DiagnosticReport
from app.domain.observations import Observation
from app.domain.patients import SSN_SYSTEM, SourcePatient
from app.sources.hl7v2.patient import (
    GENDER,
    addresses,
    birth_date,
    identifier,
    patient_name,
    telecom,
)
from app.sources.hl7v2.syntax import (
    Reader,
    Segment,
    Separators,
    decode_message,
    parse_segments,
    read_separators,
    split_segments,
)
from app.sources.hl7v2.syntax import timestamp as timestamp  # re-exported: tests import it here
from app.sources.hl7v2.values import first_concept, obx_units, obx_value, reference_range

MESSAGE_TYPE: Final = "ORU^R01"
LOCAL_ID_KINDS: Final = frozenset({"pat", "obs", "rpt"})

EMPTY_CONCEPT: Final = CodeableConcept(text=None)


class MessageRejected(Exception):
    """The message cannot be accepted; nothing of it may be stored.

    `ack_code` is the MSA-1 to answer with (AE: understood but not processed, AR: rejected),
    `reason` a short text safe to log and to send back (no PHI, no values from the message
    except its type and version), `error_code` the HL7 table 0357 code for ERR-3.
    """

    def __init__(self, ack_code: Literal["AE", "AR"], reason: str, error_code: str = "207") -> None:
        super().__init__(reason)
        self.ack_code: Literal["AE", "AR"] = ack_code
        self.reason = reason
        self.error_code = error_code


@dataclass(frozen=True, slots=True)
class LabResult:
    key: str  # "<order key>/<OBX-3 code or text>/<OBX-4 sub-id>": stable across corrections
    status: str  # OBX-11 as sent (F, C, P, X, D, ...), "" when absent
    observation: Observation


@dataclass(frozen=True, slots=True)
class LabReport:
    key: str  # order key: OBR-3 filler order number, else OBR-2 placer, else MSH-10 + OBR-1
    report: DiagnosticReport
    results: tuple[LabResult, ...]


@dataclass(frozen=True, slots=True)
class LabMessage:
    control_id: str  # MSH-10
    message_type: str  # "ORU^R01"
    version: str  # MSH-12 (VID.1)
    patient: SourcePatient
    reports: tuple[LabReport, ...]
    skipped: int  # OBX segments not fully represented (see the module docstring)


def local_id(kind: str, key: str) -> str:
    """Stable, FHIR-id-safe local id (`[A-Za-z0-9.-]`, 28 chars) for a key of one kind."""
    if kind not in LOCAL_ID_KINDS:
        raise ValueError(f"unknown local id kind {kind!r}")
    return f"{kind}-{hashlib.sha256(key.encode('utf-8', 'replace')).hexdigest()[:24]}"


# ---- patient (PID) ------------------------------------------------------------------------


def _patient(r: Reader, pid: Segment, source_id: str) -> SourcePatient:
    idents: list[Identifier] = []
    for rep in r.reps(pid, 3):
        if (ident := identifier(r, rep)) is not None:
            idents.append(ident)
    # PID-19 SSN number (deprecated since v2.3.1, still common).
    if ssn := r.get(pid, 19):
        idents.append(Identifier(SSN_SYSTEM, ssn, "SS"))
    seen: dict[tuple[str | None, str], Identifier] = {}
    for ident in idents:
        seen.setdefault((ident.system, ident.value), ident)
    unique = tuple(seen.values())
    if not unique:
        raise MessageRejected("AE", "PID-3 holds no patient identifier", "101")
    # The patient's local id: the first PID-3 identifier that is not an SSN, else the SSN.
    chosen = next((i for i in unique if i.system != SSN_SYSTEM), unique[0])
    sex = r.get(pid, 8).upper()
    return SourcePatient(
        link=SourceLink(
            source_id, local_id("pat", f"{chosen.system or ''}|{chosen.value}"), "Patient"
        ),
        identifiers=unique,
        name=patient_name(r, pid),
        birth_date=birth_date(r.get(pid, 7)),
        gender=GENDER.get(sex, "unknown") if sex else None,
        addresses=addresses(r, pid),
        telecom=telecom(r, pid),
    )


# ---- results (OBX) ------------------------------------------------------------------------

# OBX-11 observation result status (table 0085) -> FHIR Observation.status. A, C, D, F, P, W,
# X follow the HL7 v2-to-FHIR ConceptMap "ObservationResultStatusCodesInterpretation"; for the
# codes it leaves open: I/O (specimen in lab / order detail only: no result yet) are
# "registered", R/S (entered but not verified / partial) "preliminary", U/V (final, reviewed)
# "final", B (appended) "amended", N (not asked) "cancelled".
_OBSERVATION_STATUS: Final = {
    "A": "amended",
    "B": "amended",
    "C": "corrected",
    "D": "entered-in-error",
    "F": "final",
    "I": "registered",
    "N": "cancelled",
    "O": "registered",
    "P": "preliminary",
    "R": "preliminary",
    "S": "preliminary",
    "U": "final",
    "V": "final",
    "W": "entered-in-error",
    "X": "cancelled",
}
# OBR-25 result status (table 0123) -> FHIR DiagnosticReport.status, per the v2-to-FHIR
# ConceptMap "ResultStatus"; A (some results) "partial", M (corrected, not final) "corrected",
# N (procedure done, results pending) "registered", Y/Z (no order / no patient) "unknown".
_REPORT_STATUS: Final = {
    "O": "registered",
    "I": "registered",
    "S": "registered",
    "N": "registered",
    "A": "partial",
    "R": "partial",
    "P": "preliminary",
    "C": "corrected",
    "M": "corrected",
    "F": "final",
    "X": "cancelled",
    "Y": "unknown",
    "Z": "unknown",
}


@dataclass
class _Order:
    """One OBR group as collected from the segment stream."""

    index: int
    obr: Segment
    notes: list[str] = field(default_factory=list)  # NTE right after the OBR
    results: list[tuple[Segment, list[str]]] = field(default_factory=list)  # OBX + its NTEs


@dataclass(frozen=True, slots=True)
class _Context:
    source_id: str
    meta: RecordMeta
    reader: Reader


def _code_key(r: Reader, obx: Segment) -> str:
    reps = r.reps(obx, 3)
    if not reps:
        return ""
    return r.comp(reps[0], 1) or r.comp(reps[0], 4) or r.comp(reps[0], 2)


def _result(
    ctx: _Context, order: _Order, obx: Segment, notes: list[str], key: str
) -> tuple[LabResult, bool]:
    r = ctx.reader
    obr = order.obr
    units = obx_units(r, obx)
    value = obx_value(r, obx)
    status = r.get(obx, 11).upper()
    ref = reference_range(r, obx, units)
    effective = timestamp(r.get(obx, 14)) or timestamp(r.get(obr, 7)) or timestamp(r.get(obr, 8))
    observation = Observation(
        sources=(SourceLink(ctx.source_id, local_id("obs", key), "Observation"),),
        meta=ctx.meta,
        status=(_OBSERVATION_STATUS.get(status, "unknown") if status else None),
        category=("laboratory",),
        code=first_concept(r, obx, 3) or EMPTY_CONCEPT,
        effective=effective,
        issued=timestamp(r.get(obr, 22)),
        value_quantity=value.quantity,
        value_concept=value.concept,
        value_string=value.text,
        interpretation=tuple(c for rep in r.reps(obx, 8) if (c := r.comp(rep, 1))),
        reference_range=(ref,) if ref is not None else (),
        components=(),
        notes=tuple(notes),
    )
    return LabResult(key, status, observation), value.lost


def _unique(key: str, seen: set[str]) -> str:
    """Duplicate keys within one message get `#2`, `#3`, ... (in message order)."""
    candidate, n = key, 1
    while candidate in seen:
        n += 1
        candidate = f"{key}#{n}"
    seen.add(candidate)
    return candidate


def _order_key(r: Reader, obr: Segment, control_id: str, index: int) -> str:
    """OBR-3 filler order number (EI: entity id ^ namespace id), else OBR-2 placer order
    number, else the message control id with OBR-1 (set id) or the group's position."""
    for n in (3, 2):
        entity = r.get(obr, n)
        if entity:
            namespace = r.get(obr, n, 2)
            return f"{entity}^{namespace}" if namespace else entity
    return f"{control_id}-{r.get(obr, 1) or index}"


def _report(
    ctx: _Context, order: _Order, control_id: str, report_keys: set[str]
) -> tuple[LabReport, int]:
    r = ctx.reader
    obr = order.obr
    key = _unique(_order_key(r, obr, control_id, order.index), report_keys)
    results: list[LabResult] = []
    result_keys: set[str] = set()
    skipped = 0
    for obx, notes in order.results:
        code = _code_key(r, obx)
        if not code:  # OBX-3 (required) missing: nothing to say what was measured
            skipped += 1
            continue
        result_key = _unique(f"{key}/{code}/{r.get(obx, 4)}", result_keys)
        try:
            result, lost = _result(ctx, order, obx, notes, result_key)
        except Exception:  # a defect here must cost one result, not the whole message
            skipped += 1
            continue
        results.append(result)
        skipped += int(lost)
    status = r.get(obr, 25).upper()
    report = DiagnosticReport(
        sources=(SourceLink(ctx.source_id, local_id("rpt", key), "DiagnosticReport"),),
        meta=ctx.meta,
        code=first_concept(r, obr, 4) or EMPTY_CONCEPT,
        status=(_REPORT_STATUS.get(status, "unknown") if status else None),
        category=("LAB",),
        effective=timestamp(r.get(obr, 7)) or timestamp(r.get(obr, 8)),
        issued=timestamp(r.get(obr, 22)),
        conclusion="\n".join(order.notes) or None,
        result_ids=tuple(x.observation.sources[0].local_id for x in results),
    )
    return LabReport(key, report, tuple(results)), skipped


def _orders(r: Reader, segments: Iterable[Segment]) -> tuple[list[_Order], int]:
    """Group the ORU^R01 segment stream: OBR starts an order; OBX and NTE attach to the
    current one; NTE after an OBX is that result's note, NTE after the OBR the order's; an
    OBX outside an order, or after SPM (a specimen observation), is counted, not mapped."""
    orders: list[_Order] = []
    current: _Order | None = None
    notes: list[str] | None = None  # where the next NTE goes
    in_specimen = False
    outside = 0
    for seg in segments:
        name = seg.name
        if name == "OBR":
            current = _Order(len(orders) + 1, seg)
            orders.append(current)
            notes, in_specimen = current.notes, False
        elif name == "OBX":
            if current is None or in_specimen:
                outside += 1
                notes = None
                continue
            notes = []
            current.results.append((seg, notes))
        elif name == "NTE":
            if notes is not None and (text := "\n".join(r.texts(seg, 3))):
                notes.append(text)
        elif name in ("ORC", "SPM", "PID", "PV1"):
            notes, in_specimen = None, name == "SPM"
            if name == "ORC":
                current = None
    return orders, outside


# ---- the message --------------------------------------------------------------------------

_SAFE_TOKEN = re.compile(r"[A-Z0-9_]{1,7}")
_ENVELOPE: Final = frozenset({"FHS", "FTS", "BHS", "BTS"})


def _token(value: str) -> str:
    """A message type part echoed in a reason: only when it is a plausible code."""
    return value if _SAFE_TOKEN.fullmatch(value) else "?"


@dataclass(frozen=True, slots=True)
class MessageLimits:
    """Bounds on one message, checked before any segment is parsed: a message over them is
    AR (error 207) and nothing of it is stored. One message has one patient, so `results`
    bounds the results one message can add to one chart."""

    segments: int = 5000
    results: int = 1000  # OBX segments


def _segments(text: str, limits: MessageLimits) -> tuple[list[Segment], Separators]:
    if not text.startswith("MSH") and text[:3] not in _ENVELOPE:
        raise MessageRejected("AR", "not an HL7 v2 message (no MSH segment)", "100")
    fs = text[3] if len(text) > 3 else "|"
    lines = [s for s in split_segments(text, fs) if s[:3] not in _ENVELOPE]
    if not lines or not lines[0].startswith("MSH"):
        raise MessageRejected("AR", "not an HL7 v2 message (no MSH segment)", "100")
    seps = read_separators(lines[0])
    if seps is None:
        raise MessageRejected("AR", "MSH-1/MSH-2 separators are invalid", "102")
    header = re.compile(r"[A-Z][A-Z0-9]{2}(?:" + re.escape(seps.field) + r"|$)")
    lines = [s for s in lines if header.match(s)]  # junk lines are not segments
    if len(lines) > limits.segments:
        raise MessageRejected("AR", f"more than {limits.segments} segments in one message", "207")
    if sum(s.startswith("OBX") for s in lines) > limits.results:
        raise MessageRejected("AR", f"more than {limits.results} results in one message", "207")
    if sum(s.startswith("MSH") for s in lines) > 1:
        raise MessageRejected("AR", "more than one message (batches are not supported)", "100")
    try:
        return parse_segments(lines), seps
    except ValueError:
        raise MessageRejected("AR", "message could not be parsed", "102") from None


def _parse(raw: bytes | str, source_id: str, limits: MessageLimits) -> LabMessage:
    text, _ = decode_message(raw)
    segments, seps = _segments(text, limits)
    r = Reader(seps)
    msh = segments[0]
    code, trigger = r.get(msh, 9, 1).upper(), r.get(msh, 9, 2).upper()
    if (code, trigger) != ("ORU", "R01"):
        reason = f"unsupported message type {_token(code)}^{_token(trigger)}"
        raise MessageRejected("AR", reason, "200" if code != "ORU" else "201")
    control_id = r.get(msh, 10)
    if not control_id:
        raise MessageRejected("AR", "MSH-10 message control id is missing", "101")
    pids = [s for s in segments if s.name == "PID"]
    if not pids:
        raise MessageRejected("AR", "ORU^R01 without a PID segment", "100")
    if len(pids) > 1:
        raise MessageRejected("AE", "more than one patient (PID) in one message", "207")
    patient = _patient(r, pids[0], source_id)
    orders, outside = _orders(r, segments[1:])
    if not orders:
        raise MessageRejected("AE", "ORU^R01 without an OBR segment", "100")
    ctx = _Context(source_id, RecordMeta(last_updated=timestamp(r.get(msh, 7))), r)
    reports: list[LabReport] = []
    report_keys: set[str] = set()
    skipped = outside
    for order in orders:
        report, lost = _report(ctx, order, control_id, report_keys)
        reports.append(report)
        skipped += lost
    return LabMessage(
        control_id=control_id,
        message_type=MESSAGE_TYPE,
        version=r.get(msh, 12),
        patient=patient,
        reports=tuple(reports),
        skipped=skipped,
    )


def parse_message(
    raw: bytes | str, source_id: str, limits: MessageLimits = MessageLimits()
) -> LabMessage:
    """One ORU^R01 as domain records; MessageRejected (and nothing else) when it cannot be."""
    try:
        return _parse(raw, source_id, limits)
    except MessageRejected:
        raise
    except Exception as exc:  # a defect of ours: answer AE (not stored), never crash the feed
        raise MessageRejected("AE", "internal error while mapping the message", "207") from exc
