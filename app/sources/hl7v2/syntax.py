"""HL7 v2 syntax, below the message mapping and shared with `ack.py` and the demo lab feed.

Decoding raw input (UTF-8 with or without a byte-order mark, else Latin-1; MLLP framing bytes
and NULs dropped), the separators declared by MSH-1/MSH-2, segment splitting across CR / LF /
CRLF terminators, escape sequences both ways, the uniform segment tree built from `hl7`'s
output with a `Reader` for 1-based, unescaped access, DTM/TS timestamps, and coding system
names (table 0396) as FHIR system URIs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote

import hl7  # type: ignore[import-untyped]  # hl7 0.4.5 ships no type hints

LOINC: Final = "http://loinc.org"
SNOMED: Final = "http://snomed.info/sct"
UCUM: Final = "http://unitsofmeasure.org"
LOCAL_SYSTEM: Final = "urn:hl7v2:local:"
OTHER_SYSTEM: Final = "urn:hl7v2:codesystem:"


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


_HEADER_SCAN = 65_536  # an MSH further into the text than this is not looked for


def header_fields(text: str) -> tuple[list[str], Separators]:
    """The first MSH segment split into fields, escaped as sent (index n-1 is MSH-n), and its
    separators; no fields and the default separators when there is no usable MSH (a batch
    envelope FHS/BHS before it is fine)."""
    if len(text) > 3 and text[:3] in ("MSH", "FHS", "BHS"):
        # Only the head is split: this runs on the event loop for every message received.
        for segment in split_segments(text[:_HEADER_SCAN], text[3]):
            if segment.startswith("MSH"):
                seps = read_separators(segment)
                if seps is None:
                    break
                # split: "MSH", MSH-2, MSH-3, ...; MSH-1 is the separator itself.
                return [seps.field, *segment.split(seps.field)[1:]], seps
    return [], Separators()


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
class Reader:
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


# ---- timestamps ---------------------------------------------------------------------------

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


# ---- coding systems -----------------------------------------------------------------------


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
