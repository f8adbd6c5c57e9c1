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
`hl7`'s own unescape logs field contents, i.e. PHI, and turns `\\.br\\` into CR) happens here.

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal
from urllib.parse import quote

import hl7  # type: ignore[import-untyped]  # hl7 0.4.5 ships no type hints

from app.domain.common import (
    CodeableConcept,
    Coding,
    HumanName,
    Identifier,
    Quantity,
    RecordMeta,
    SourceLink,
)
from app.domain.diagnostic_reports import DiagnosticReport
from app.domain.observations import Observation, ReferenceRange
from app.domain.patients import SourcePatient

LOINC: Final = "http://loinc.org"
SNOMED: Final = "http://snomed.info/sct"
UCUM: Final = "http://unitsofmeasure.org"
US_SSN: Final = "http://hl7.org/fhir/sid/us-ssn"
LOCAL_SYSTEM: Final = "urn:hl7v2:local:"
OTHER_SYSTEM: Final = "urn:hl7v2:codesystem:"
AUTHORITY_SYSTEM: Final = "urn:hl7v2:authority:"
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


# ---- text, separators, escapes ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Separators:
    """MSH-1 (field separator) and MSH-2 (encoding characters), v2.5.1 section 2.5.4."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""  # v2.7+: a fifth encoding character

    @property
    def encoding_characters(self) -> str:
        return self.component + self.repetition + self.escape + self.subcomponent + self.truncation


def decode_message(raw: bytes | str) -> tuple[str, str]:
    """(text, codec): UTF-8 (a byte-order mark dropped), else Latin-1 for any other bytes.

    MSH-18 could name the character set, but senders often get it wrong, and Latin-1 never
    fails; NUL characters are dropped (they break text columns), lone surrogates replaced.
    """
    if isinstance(raw, bytes | bytearray):
        data = bytes(raw)
        data = data.removeprefix(b"\xef\xbb\xbf")
        try:
            text, codec = data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, codec = data.decode("latin-1"), "latin-1"
    else:
        text, codec = str(raw).encode("utf-8", "replace").decode("utf-8"), "utf-8"
    # MLLP start block / end block (0x0B, 0x1C) and whitespace around the message; a BOM inside
    # a str (a file read as text).
    text = text.strip().lstrip("\ufeff").strip()
    return text.replace("\x00", ""), codec


def read_separators(msh: str) -> Separators | None:
    """The separators declared by an MSH segment's text, or None when they are unusable."""
    if len(msh) < 8 or not msh.startswith("MSH"):
        return None
    fs = msh[3]
    end = msh.find(fs, 4)
    encoding = msh[4:] if end == -1 else msh[4:end]
    chars = fs + encoding
    if (
        len(encoding) not in (4, 5)
        or len(set(chars)) != len(chars)
        or any(c.isalnum() or c.isspace() for c in chars)
    ):
        return None
    return Separators(fs, encoding[0], encoding[1], encoding[2], encoding[3], encoding[4:])


def split_segments(text: str, fs: str) -> list[str]:
    """Segments of a message whose terminators may be CR, LF or CRLF (normalised to CR).

    A CR always ends a segment. An LF ends one only when a segment id follows it (`XYZ|`): an
    LF inside a field (wrapped text from a careless sender) stays part of the value.
    """
    next_segment = re.compile(r"\n+(?=[A-Z][A-Z0-9]{2}(?:" + re.escape(fs) + r"|$))")
    out: list[str] = []
    for piece in text.replace("\r\n", "\r").split("\r"):
        out.extend(s.strip() for s in next_segment.split(piece))
    return [s for s in out if s]


_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})+")
_REPEAT_FORMAT = re.compile(r"\.(sp|sk|in|ti)\s*([+-]?\d*)")
_MAX_REPEAT = 50


def unescape(text: str, seps: Separators) -> str:
    """Resolve escape sequences (v2.5.1 section 2.7): \\F\\ \\S\\ \\T\\ \\R\\ \\E\\, highlighting
    \\H\\ \\N\\ (dropped), formatting \\.br\\ \\.sp\\ \\.ce\\ (new lines) \\.sk\\ (spaces)
    \\.in\\ \\.ti\\ \\.fi\\ \\.nf\\ (dropped), \\Xhh..\\ (bytes, UTF-8 else Latin-1),
    \\C..\\ \\M..\\ (character set switches, dropped). Unknown or broken sequences stay as sent.
    """
    esc = seps.escape
    if esc not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        end = text.find(esc, i)
        if end == -1:
            out.append(text[i:])
            break
        out.append(text[i:end])
        close = text.find(esc, end + 1)
        if close == -1:  # unterminated: keep the rest literally
            out.append(text[end:])
            break
        out.append(_sequence(text[end + 1 : close], text[end : close + 1], seps))
        i = close + 1
    return "".join(out)


def _sequence(body: str, raw: str, seps: Separators) -> str:
    simple = {
        "F": seps.field,
        "S": seps.component,
        "T": seps.subcomponent,
        "R": seps.repetition,
        "E": seps.escape,
        "P": seps.truncation or raw,  # v2.7 truncation character
        "H": "",
        "N": "",
        ".br": "\n",
        ".ce": "\n",
        ".fi": "",
        ".nf": "",
    }
    if body in simple:
        return simple[body]
    if match := _REPEAT_FORMAT.fullmatch(body):
        kind, number = match.groups()
        count = min(abs(int(number)) if number.lstrip("+-") else 1, _MAX_REPEAT)
        if kind == "sp":
            return "\n" * max(count, 1)
        return " " * count if kind == "sk" else ""
    if body[:1] == "X" and _HEX.fullmatch(body[1:]):
        data = bytes.fromhex(body[1:])
        try:
            return data.decode("utf-8").replace("\x00", "")
        except UnicodeDecodeError:
            return data.decode("latin-1").replace("\x00", "")
    if body[:1] in ("C", "M") and _HEX.fullmatch(body[1:]):
        return ""
    return raw


def escape(text: str, seps: Separators) -> str:
    """The inverse of `unescape` for plain text (line breaks become \\.br\\)."""
    e = seps.escape
    out = text.replace(e, f"{e}E{e}")
    for char, code in (
        (seps.field, "F"),
        (seps.component, "S"),
        (seps.subcomponent, "T"),
        (seps.repetition, "R"),
    ):
        out = out.replace(char, f"{e}{code}{e}")
    out = out.replace("\r\n", "\n").replace("\r", "\n").replace("\n", f"{e}.br{e}")
    return "".join(c for c in out if c.isprintable())


# ---- the parsed tree, normalised ----------------------------------------------------------

Component = tuple[str, ...]  # raw (escaped) subcomponents
Repetition = tuple[Component, ...]
Field = tuple[Repetition, ...]


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment: `fields[n]` is field n (for MSH, MSH-n: `fields[1]` is the separator)."""

    name: str
    fields: tuple[Field, ...]


def _as_list(node: Any) -> list[Any]:
    return node if isinstance(node, list) else [node]


def _component(node: Any) -> Component:
    return tuple(str(s) for s in _as_list(node))


def _repetition(node: Any) -> Repetition:
    return ((node,),) if isinstance(node, str) else tuple(_component(c) for c in node)


def _field(node: Any) -> Field:
    return (((node,),),) if isinstance(node, str) else tuple(_repetition(r) for r in node)


def _segment(node: Any) -> Segment:
    """`hl7` nests only as deep as a value's separators need; flatten to one uniform depth."""
    fields = tuple(_field(f) for f in _as_list(node))
    name = fields[0][0][0][0] if fields and fields[0] and fields[0][0] and fields[0][0][0] else ""
    return Segment(name, fields)


def parse_segments(segments: Sequence[str]) -> list[Segment]:
    """Split segment texts (the first one an MSH) with `hl7`; ValueError if it cannot."""
    try:
        message = hl7.parse("\r".join(segments))
        return [_segment(s) for s in message]
    except Exception as exc:  # hl7 raises assorted errors on malformed input
        raise ValueError("hl7 could not split the message") from exc


@dataclass(frozen=True, slots=True)
class _Reader:
    """Typed, 1-based access to values, unescaped; absent parts read as empty."""

    seps: Separators

    def leaf(self, raw: str) -> str:
        value = unescape(raw, self.seps).strip()
        return "" if value == '""' else value  # "" is the HL7 explicit null

    def reps(self, seg: Segment, n: int) -> Field:
        return seg.fields[n] if 0 < n < len(seg.fields) else ()

    def comp(self, rep: Repetition, c: int = 1, s: int = 1) -> str:
        if c > len(rep) or s > len(rep[c - 1]):
            return ""
        return self.leaf(rep[c - 1][s - 1])

    def get(self, seg: Segment, n: int, c: int = 1, s: int = 1) -> str:
        reps = self.reps(seg, n)
        return self.comp(reps[0], c, s) if reps else ""

    def text(self, rep: Repetition) -> str:
        """A repetition as text: components rejoined with their original separator."""
        comps = [_join([self.leaf(s) for s in c], self.seps.subcomponent) for c in rep]
        return _join(comps, self.seps.component).strip()

    def texts(self, seg: Segment, n: int) -> list[str]:
        return [t for rep in self.reps(seg, n) if (t := self.text(rep))]


def _join(parts: list[str], separator: str) -> str:
    """Parts rejoined, trailing empty ones dropped (HL7 lets senders omit or keep them)."""
    while parts and not parts[-1]:
        parts.pop()
    return separator.join(parts)


# ---- primitives ---------------------------------------------------------------------------

_DTM = re.compile(
    r"(?P<y>\d{4})(?:(?P<mo>\d{2})(?:(?P<d>\d{2})(?:(?P<h>\d{2})(?:(?P<mi>\d{2})"
    r"(?:(?P<s>\d{2})(?P<f>\.\d{1,9})?)?)?)?)?)?(?P<tz>[+-]\d{4})?"
)


def timestamp(value: str) -> str | None:
    """HL7 DTM/TS `YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]` as ISO 8601 of the same precision
    (v2.5.1 section 2.A.22): a date stays a date (its offset, meaningless there, is dropped),
    an offset becomes `+hh:mm`, no offset stays none. Invalid -> None."""
    match = _DTM.fullmatch(value.strip())
    if match is None:
        return None
    g = match.groupdict()
    try:
        datetime(
            int(g["y"]),
            int(g["mo"] or 1),
            int(g["d"] or 1),
            int(g["h"] or 0),
            int(g["mi"] or 0),
            int(g["s"] or 0),
        )
    except ValueError:
        return None
    out = g["y"] + "".join(f"-{g[k]}" for k in ("mo", "d") if g[k])
    if g["h"] is None:
        return out
    out += f"T{g['h']}" + "".join(f":{g[k]}" for k in ("mi", "s") if g[k]) + (g["f"] or "")
    if tz := g["tz"]:
        hours, minutes = int(tz[1:3]), int(tz[3:5])
        if hours > 14 or minutes > 59:
            return None
        out += f"{tz[0]}{tz[1:3]}:{tz[3:5]}"
    return out


def _date(value: str) -> str | None:
    """A birth date (PID-7, TS in v2.3-2.5): its date part only."""
    iso = timestamp(value)
    return iso.split("T", 1)[0] if iso else None


_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_NUM = re.compile(_NUMBER)
_COMPARED = re.compile(r"(<=|>=|<|>)\s*(" + _NUMBER + r")")
_RANGE = re.compile(r"(" + _NUMBER + r")\s*(?:-|_|to|\u2013)\s*(" + _NUMBER + r")", re.IGNORECASE)
_BOUND = re.compile(r"(<=|>=|<|>|\u2264|\u2265)\s*(" + _NUMBER + r")")


def _number(text: str) -> float | None:
    """A decimal as HL7 NM allows it (no exponent, no NaN/inf)."""
    text = text.strip()
    return float(text) if _NUM.fullmatch(text) else None


_SYSTEM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9+_.-]{0,19}")


def coding_system(name: str) -> str | None:
    """A v2 coding system name (table 0396) as a FHIR system URI."""
    upper = name.strip().upper()
    if not upper:
        return None
    known = {
        "LN": LOINC,
        "SCT": SNOMED,
        "SNM": SNOMED,
        "SNOMED": SNOMED,
        "SNOMEDCT": SNOMED,
        "UCUM": UCUM,
        "I10": "http://hl7.org/fhir/sid/icd-10",
        "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
        "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
        "NDC": "http://hl7.org/fhir/sid/ndc",
        "CVX": "http://hl7.org/fhir/sid/cvx",
    }
    if upper in known:
        return known[upper]
    if re.fullmatch(r"HL7\d{4}", upper):  # HL7-defined table nnnn
        return f"http://terminology.hl7.org/CodeSystem/v2-{upper[3:]}"
    if upper == "L" or re.fullmatch(r"99[A-Z0-9]{3}", upper):  # local codes (table 0396)
        return LOCAL_SYSTEM + quote(name.strip(), safe="")
    if _SYSTEM_NAME.fullmatch(name.strip()):  # another table 0396 name (ISO+, CDCREC, ...)
        return OTHER_SYSTEM + quote(name.strip(), safe="")
    return None  # not a coding system name (free text in the wrong component)


# ---- coded values (CE / CWE / CNE) --------------------------------------------------------


def _concept(r: _Reader, rep: Repetition) -> CodeableConcept | None:
    """CE/CWE: identifier^text^system, alternate triplet in components 4-6, CWE-9 original
    text. Text is component 2 (else the original text, else the alternate text)."""
    codings = []
    for code_c, text_c, system_c in ((1, 2, 3), (4, 5, 6)):
        code = r.comp(rep, code_c)
        if code:
            system = coding_system(r.comp(rep, system_c))
            codings.append(Coding(system, code, r.comp(rep, text_c) or None))
    text = r.comp(rep, 2) or r.comp(rep, 9) or r.comp(rep, 5) or None
    if not codings and text is None:
        return None
    return CodeableConcept(text, tuple(codings))


def _first_concept(r: _Reader, seg: Segment, n: int) -> CodeableConcept | None:
    reps = r.reps(seg, n)
    return _concept(r, reps[0]) if reps else None


# ---- patient (PID) ------------------------------------------------------------------------

# PID-8 administrative sex (table 0001) -> FHIR administrative-gender, per the HL7
# v2-to-FHIR ConceptMap "AdministrativeSex"; an unrecognised code is "unknown".
_GENDER: Final = {
    "M": "male",
    "F": "female",
    "O": "other",
    "U": "unknown",
    "A": "other",
    "N": "other",
}
_SSN_AUTHORITIES: Final = frozenset({"USSSA", "SSA"})


def _identifier(r: _Reader, rep: Repetition) -> Identifier | None:
    """PID-3 CX: ID^check digit^scheme^assigning authority (HD)^identifier type code."""
    value = r.comp(rep, 1)
    if not value:
        return None
    namespace, universal, universal_type = (r.comp(rep, 4, s) for s in (1, 2, 3))
    type_code = r.comp(rep, 5)
    system: str | None
    if type_code.upper() == "SS" or namespace.upper() in _SSN_AUTHORITIES:
        system = US_SSN
    elif universal and universal_type.upper() == "ISO":  # HD.2 an OID (table 0301 "ISO")
        system = f"urn:oid:{universal}"
    elif universal and universal_type.upper() == "UUID":
        system = f"urn:uuid:{universal.lower()}"
    elif namespace:  # HD.1 namespace id only: a local authority name
        system = AUTHORITY_SYSTEM + quote(namespace, safe="")
    else:
        system = None
    return Identifier(system, value, type_code or None)


def _name(r: _Reader, seg: Segment) -> HumanName | None:
    """PID-5 XPN (repeating): the legal name (XPN-7 = L) else the first one. Family is FN.1
    (the surname), given are XPN-2 and XPN-3 (given name, further given names or initials)."""
    reps = [rep for rep in r.reps(seg, 5) if r.comp(rep, 1) or r.comp(rep, 2)]
    if not reps:
        return None
    rep = next((x for x in reps if r.comp(x, 7).upper() == "L"), reps[0])
    family = r.comp(rep, 1) or None
    given = tuple(g for g in (r.comp(rep, 2), r.comp(rep, 3)) if g)
    text = " ".join((*given, family or "")).strip() or None
    return HumanName(family, given, text)


def _patient(r: _Reader, pid: Segment, source_id: str) -> SourcePatient:
    idents: list[Identifier] = []
    for rep in r.reps(pid, 3):
        if (ident := _identifier(r, rep)) is not None:
            idents.append(ident)
    # PID-19 SSN number (deprecated since v2.3.1, still common).
    if ssn := r.get(pid, 19):
        idents.append(Identifier(US_SSN, ssn, "SS"))
    seen: dict[tuple[str | None, str], Identifier] = {}
    for ident in idents:
        seen.setdefault((ident.system, ident.value), ident)
    unique = tuple(seen.values())
    if not unique:
        raise MessageRejected("AE", "PID-3 holds no patient identifier", "101")
    # The patient's local id: the first PID-3 identifier that is not an SSN, else the SSN.
    chosen = next((i for i in unique if i.system != US_SSN), unique[0])
    sex = r.get(pid, 8).upper()
    return SourcePatient(
        link=SourceLink(
            source_id, local_id("pat", f"{chosen.system or ''}|{chosen.value}"), "Patient"
        ),
        identifiers=unique,
        name=_name(r, pid),
        birth_date=_date(r.get(pid, 7)),
        gender=_GENDER.get(sex, "unknown") if sex else None,
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
_TEXT_TYPES: Final = frozenset({"ST", "TX", "FT", "ID", "IS", "TM"})
_CODED_TYPES: Final = frozenset({"CE", "CWE", "CNE", "CF"})
_TIME_TYPES: Final = frozenset({"DT", "TS", "DTM"})
_COMPARATORS: Final = frozenset({"<", "<=", ">", ">="})  # FHIR Quantity.comparator


@dataclass(frozen=True, slots=True)
class _Value:
    quantity: Quantity | None = None
    concept: CodeableConcept | None = None
    text: str | None = None
    lost: bool = False  # the value exists but could not be represented


def _units(r: _Reader, seg: Segment) -> tuple[str | None, str | None, str | None]:
    """OBX-6 (CE): (unit, system, code). The unit is the identifier (else the text); UCUM
    when the coding system is "UCUM" (first or alternate triplet)."""
    reps = r.reps(seg, 6)
    if not reps:
        return None, None, None
    rep = reps[0]
    unit = r.comp(rep, 1) or r.comp(rep, 2) or None
    if r.comp(rep, 3).upper() == "UCUM" and r.comp(rep, 1):
        return unit, UCUM, r.comp(rep, 1)
    if r.comp(rep, 6).upper() == "UCUM" and r.comp(rep, 4):
        return unit or r.comp(rep, 4), UCUM, r.comp(rep, 4)
    return unit, None, None


def _quantity(
    value: float, units: tuple[str | None, ...], comparator: str | None = None
) -> Quantity:
    unit, system, code = units
    return Quantity(value, unit, system, code, comparator)


def _numeric(text: str, units: tuple[str | None, ...]) -> _Value:
    """NM (OBX-2): a decimal. Tolerates a comparator written into the value (`<5`), and keeps
    anything else as text rather than dropping it."""
    if (number := _number(text)) is not None:
        return _Value(quantity=_quantity(number, units))
    if match := _COMPARED.fullmatch(text.strip()):
        return _Value(quantity=_quantity(float(match[2]), units, match[1]))
    return _Value(text=text)


def _structured(r: _Reader, rep: Repetition, units: tuple[str | None, ...]) -> _Value:
    """SN (OBX-2): comparator^num1^separator/suffix^num2. `^182` and `>^10` are quantities;
    ratios, ranges and categorical forms (`^1^:^2`, `^10^-^20`, `^2^+`) are kept as text."""
    comparator, num1, separator, num2 = (r.comp(rep, c) for c in (1, 2, 3, 4))
    first = _number(num1)
    if first is not None and not separator and not num2:
        if comparator in ("", "="):
            return _Value(quantity=_quantity(first, units))
        if comparator in _COMPARATORS:
            return _Value(quantity=_quantity(first, units, comparator))
    text = "" if comparator == "=" else comparator
    text += num1 + separator + num2
    return _Value(text=text) if text else _Value()


def _value(r: _Reader, obx: Segment) -> _Value:
    """OBX-5 read by its type OBX-2; repetitions of a text value join with new lines."""
    value_type = r.get(obx, 2).upper()
    reps = [rep for rep in r.reps(obx, 5) if r.text(rep)]
    if not reps:
        return _Value()
    units = _units(r, obx)
    if value_type in _TEXT_TYPES:
        return _Value(text="\n".join(r.text(rep) for rep in reps))
    if value_type in _CODED_TYPES:
        concepts = [c for rep in reps if (c := _concept(r, rep)) is not None]
        if not concepts:
            return _Value(text="\n".join(r.text(rep) for rep in reps))
        texts = [c.text or next((x.code for x in c.coding if x.code), "") for c in concepts]
        return _Value(concept=concepts[0], text="\n".join(t for t in texts if t) or None)
    if value_type in _TIME_TYPES:
        return _Value(text="\n".join(timestamp(r.comp(rep)) or r.text(rep) for rep in reps))
    if value_type in ("NM", "SN"):
        values = [
            _numeric(r.text(rep), units) if value_type == "NM" else _structured(r, rep, units)
            for rep in reps
        ]
        if len(values) == 1:
            return values[0]
        # Several numbers in one OBX-5: no single quantity, so all of them as text.
        return _Value(text="\n".join(_value_text(v) for v in values))
    return _Value(lost=True)  # ED, RP, NA, MA, unknown or missing type: not representable


def _value_text(value: _Value) -> str:
    q = value.quantity
    if q is None or q.value is None:
        return value.text or ""
    return f"{q.comparator or ''}{q.value:g}"


def _reference_range(
    r: _Reader, obx: Segment, units: tuple[str | None, ...]
) -> ReferenceRange | None:
    """OBX-7: "70-105", "70_105", "4.3 to 6.2", "<5", ">60"; the raw text is always kept."""
    reps = r.reps(obx, 7)
    text = r.text(reps[0]) if reps else ""
    if not text:
        return None
    low = high = None
    if match := _RANGE.fullmatch(text.strip()):
        low, high = _quantity(float(match[1]), units), _quantity(float(match[2]), units)
    elif match := _BOUND.fullmatch(text.strip()):
        bound = _quantity(float(match[2]), units)
        if match[1] in ("<", "<=", "\u2264"):
            high = bound
        else:
            low = bound
    return ReferenceRange(low, high, text)


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
    reader: _Reader


def _code_key(r: _Reader, obx: Segment) -> str:
    reps = r.reps(obx, 3)
    if not reps:
        return ""
    return r.comp(reps[0], 1) or r.comp(reps[0], 4) or r.comp(reps[0], 2)


def _result(
    ctx: _Context, order: _Order, obx: Segment, notes: list[str], key: str
) -> tuple[LabResult, bool]:
    r = ctx.reader
    obr = order.obr
    units = _units(r, obx)
    value = _value(r, obx)
    status = r.get(obx, 11).upper()
    ref = _reference_range(r, obx, units)
    effective = timestamp(r.get(obx, 14)) or timestamp(r.get(obr, 7)) or timestamp(r.get(obr, 8))
    observation = Observation(
        sources=(SourceLink(ctx.source_id, local_id("obs", key), "Observation"),),
        meta=ctx.meta,
        status=(_OBSERVATION_STATUS.get(status, "unknown") if status else None),
        category=("laboratory",),
        code=_first_concept(r, obx, 3) or EMPTY_CONCEPT,
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


def _order_key(r: _Reader, obr: Segment, control_id: str, index: int) -> str:
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
        code=_first_concept(r, obr, 4) or EMPTY_CONCEPT,
        status=(_REPORT_STATUS.get(status, "unknown") if status else None),
        category=("LAB",),
        effective=timestamp(r.get(obr, 7)) or timestamp(r.get(obr, 8)),
        issued=timestamp(r.get(obr, 22)),
        conclusion="\n".join(order.notes) or None,
        result_ids=tuple(x.observation.sources[0].local_id for x in results),
    )
    return LabReport(key, report, tuple(results)), skipped


def _orders(r: _Reader, segments: Iterable[Segment]) -> tuple[list[_Order], int]:
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


def _segments(text: str) -> tuple[list[Segment], Separators]:
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
    if sum(s.startswith("MSH") for s in lines) > 1:
        raise MessageRejected("AR", "more than one message (batches are not supported)", "100")
    try:
        return parse_segments(lines), seps
    except ValueError:
        raise MessageRejected("AR", "message could not be parsed", "102") from None


def _parse(raw: bytes | str, source_id: str) -> LabMessage:
    text, _ = decode_message(raw)
    segments, seps = _segments(text)
    r = _Reader(seps)
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


def parse_message(raw: bytes | str, source_id: str) -> LabMessage:
    """One ORU^R01 as domain records; MessageRejected (and nothing else) when it cannot be."""
    try:
        return _parse(raw, source_id)
    except MessageRejected:
        raise
    except Exception as exc:  # a defect of ours: answer AE (not stored), never crash the feed
        raise MessageRejected("AE", "internal error while mapping the message", "207") from exc
