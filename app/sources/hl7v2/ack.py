"""Original-mode acknowledgements (HL7 v2.5.1 section 2.9.2) for any received bytes.

`build_ack` answers a message with MSH + MSA (+ ERR for AE/AR). It reads only the message's
MSH line, split by hand rather than by `hl7`, so a message whose body is garbage still gets a
well-formed answer, and input without a usable MSH gets one with default separators and an
empty MSA-2. Values copied from the message (applications, facilities, processing id, version,
control id) are copied in their escaped form with the message's own separators, which the ACK
reuses; the caller's `text` is escaped and must never contain PHI.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Final, Literal

from app.sources.hl7v2.syntax import (
    decode_message,
    escape,
    header_fields,
)

DEFAULT_PROCESSING_ID: Final = "P"
DEFAULT_VERSION: Final = "2.5.1"
# HL7 table 0357 (message error condition codes), the ERR-3 vocabulary.
ERROR_CODES: Final = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}
_MAX_COPIED = 199  # MSH-10 length in v2.7+; longer copied values are cut
_MAX_TEXT = 80  # MSA-3 is ST(80)
_TRIGGER = re.compile(r"[A-Z0-9]{3}")


def build_ack(
    raw: bytes | str,
    code: Literal["AA", "AE", "AR"],
    text: str = "",
    *,
    error_code: str | None = None,
) -> bytes:
    """The ACK for `raw`, encoded like the message (UTF-8, or Latin-1 when it was Latin-1).

    AE/AR carry `text` in MSA-3 and an ERR segment (v2.5 style: ERR-3 the table 0357
    `error_code`, default 207, ERR-4 severity E, ERR-8 the text).
    """
    if code not in ("AA", "AE", "AR"):
        raise ValueError(f"unknown acknowledgement code {code!r}")
    decoded, codec = decode_message(raw)
    fields, seps = header_fields(decoded)

    def msh(n: int) -> str:  # MSH-n of the received message, as sent (escaped)
        value = fields[n - 1] if 1 < n <= len(fields) else ""
        return value.replace("\r", "").replace("\n", "")[:_MAX_COPIED]

    trigger = msh(9).split(seps.component)[1:2]
    message_type = (
        seps.component.join(("ACK", trigger[0], "ACK"))
        if trigger and _TRIGGER.fullmatch(trigger[0])
        else "ACK"
    )
    header = [
        "MSH",
        seps.encoding_characters,
        msh(5),  # sending application: the receiving application of the message
        msh(6),
        msh(3),  # receiving application: its sending application
        msh(4),
        datetime.now(UTC).strftime("%Y%m%d%H%M%S") + "+0000",
        "",
        message_type,
        uuid.uuid4().hex[:20].upper(),  # MSH-10: a new control id (ST 20 in v2.5.1)
        msh(11) or DEFAULT_PROCESSING_ID,
        msh(12) or DEFAULT_VERSION,
    ]
    fs = seps.field
    segments = ["MSH" + fs + fs.join(header[1:])]
    safe = escape(" ".join(text.split())[:_MAX_TEXT], seps) if code != "AA" else ""
    segments.append(fs.join(["MSA", code, msh(10)] + ([safe] if safe else [])))
    if code != "AA":
        err = error_code if error_code in ERROR_CODES else "207"
        condition = seps.component.join((err, ERROR_CODES[err], "HL70357"))
        segments.append(fs.join(["ERR", "", "", condition, "E", "", "", "", safe]).rstrip(fs))
    return ("\r".join(segments) + "\r").encode(codec, "replace")
