"""Original-mode ACKs (`app.sources.hl7v2.ack.build_ack`): structure, swapped fields, MSA
codes, ERR for AE/AR, escaping of the caller's text, the message's own separators and
encoding, and garbage input."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Literal

import hl7  # type: ignore[import-untyped]
import pytest

from app.sources.hl7v2.ack import build_ack
from app.sources.hl7v2.mapping import MessageRejected, parse_message

MSH = (
    "MSH|^~\\&|LIS^1.2.3^ISO|CITYLAB|PGRAPH|PGFAC|20240102030405+0100||ORU^R01^ORU_R01|"
    "CTRL-1|T|2.5.1|||AL|NE"
)
MESSAGE = MSH + "\rPID|1||MRN1^^^CITYLAB^MR||Doe^Jane\rOBR|1||FI-1|1^Panel^LN\r"


def segments(ack: bytes, encoding: str = "utf-8") -> list[list[str]]:
    text = ack.decode(encoding)
    assert text.endswith("\r")
    assert "\n" not in text
    return [s.split("|") for s in text.removesuffix("\r").split("\r")]


def test_aa_swaps_sender_and_receiver_and_copies_what_it_must() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    msh, msa = segments(build_ack(MESSAGE, "AA"))
    assert msh[:2] == ["MSH", "^~\\&"]
    # fields after MSH-2: msh[n - 1] is MSH-n
    assert msh[2:6] == ["PGRAPH", "PGFAC", "LIS^1.2.3^ISO", "CITYLAB"]
    assert re.fullmatch(r"\d{14}\+0000", msh[6])
    sent = datetime.strptime(msh[6], "%Y%m%d%H%M%S+0000").replace(tzinfo=UTC)
    assert before - timedelta(seconds=1) <= sent <= datetime.now(UTC) + timedelta(seconds=1)
    assert msh[7] == ""
    assert msh[8] == "ACK^R01^ACK"
    assert re.fullmatch(r"[0-9A-F]{20}", msh[9])
    assert msh[9] != "CTRL-1"
    assert msh[10:12] == ["T", "2.5.1"]
    assert len(msh) == 12
    assert msa == ["MSA", "AA", "CTRL-1"]


def test_every_ack_gets_a_new_control_id() -> None:
    ids = {segments(build_ack(MESSAGE, "AA"))[0][9] for _ in range(50)}
    assert len(ids) == 50


@pytest.mark.parametrize("code", ["AE", "AR"])
def test_ae_and_ar_carry_the_text_and_an_err_segment(code: Literal["AE", "AR"]) -> None:
    msh, msa, err = segments(build_ack(MESSAGE, code, "ORU^R01 without an OBR segment"))
    assert msh[8] == "ACK^R01^ACK"
    assert msa == ["MSA", code, "CTRL-1", "ORU\\S\\R01 without an OBR segment"]
    # v2.5 ERR: ERR-3 error code (table 0357), ERR-4 severity, ERR-8 user message
    assert err == [
        "ERR",
        "",
        "",
        "207^Application internal error^HL70357",
        "E",
        "",
        "",
        "",
        "ORU\\S\\R01 without an OBR segment",
    ]


@pytest.mark.parametrize(
    ("error_code", "expected"),
    [
        ("200", "200^Unsupported message type^HL70357"),
        ("101", "101^Required field missing^HL70357"),
        ("999", "207^Application internal error^HL70357"),
        (None, "207^Application internal error^HL70357"),
    ],
)
def test_err_code_from_table_0357(error_code: str | None, expected: str) -> None:
    *_, err = segments(build_ack(MESSAGE, "AR", "x", error_code=error_code))
    assert err[3] == expected


def test_an_ae_or_ar_without_text_still_has_a_valid_err() -> None:
    _, msa, err = segments(build_ack(MESSAGE, "AE"))
    assert msa == ["MSA", "AE", "CTRL-1"]
    assert err == ["ERR", "", "", "207^Application internal error^HL70357", "E"]


def test_aa_ignores_text() -> None:
    assert len(segments(build_ack(MESSAGE, "AA", "ignored"))) == 2
    assert segments(build_ack(MESSAGE, "AA", "ignored"))[1] == ["MSA", "AA", "CTRL-1"]


def test_text_is_escaped_flattened_and_bounded() -> None:
    text = "bad | value ^ with & and ~ and \\ \r\n across lines " + "x" * 200
    _, msa, err = segments(build_ack(MESSAGE, "AE", text))
    assert msa[3].startswith("bad \\F\\ value \\S\\ with \\T\\ and \\R\\ and \\E\\ across lines x")
    assert len(msa) == 4
    assert len(err) == 9
    assert len(msa[3]) < 100


def test_a_rejection_from_the_mapper_round_trips_into_the_ack() -> None:
    raw = MESSAGE.replace("ORU^R01^ORU_R01", "VXU^V04^VXU_V04")
    with pytest.raises(MessageRejected) as info:
        parse_message(raw, "lab")
    error = info.value
    msh, msa, err = segments(
        build_ack(raw, error.ack_code, error.reason, error_code=error.error_code)
    )
    assert msh[8] == "ACK^V04^ACK"
    assert msa == ["MSA", "AR", "CTRL-1", "unsupported message type VXU^V04".replace("^", "\\S\\")]
    assert err[3] == "200^Unsupported message type^HL70357"


def test_the_ack_parses_with_hl7() -> None:
    ack = hl7.parse(build_ack(MESSAGE, "AE", "problem").decode())
    assert [str(s[0]) for s in ack] == ["MSH", "MSA", "ERR"]
    assert str(ack.segment("MSA")(2)) == "CTRL-1"
    assert str(ack.segment("MSH")(9)) == "ACK^R01^ACK"


@pytest.mark.parametrize(
    "raw",
    [b"", b"garbage", b"\x00\xff\xfe", "PID|1||x", "MSH", "MSH|", "MSH|^~|x", "  \r\n"],
)
def test_garbage_gets_a_well_formed_ar_with_empty_msa2(raw: bytes | str) -> None:
    msh, msa, err = segments(build_ack(raw, "AR", "not an HL7 v2 message", error_code="100"))
    assert msh[:2] == ["MSH", "^~\\&"]
    assert msh[2:6] == ["", "", "", ""]
    assert msh[8] == "ACK"
    assert msh[10:12] == ["P", "2.5.1"]  # defaults: production, v2.5.1
    assert msa == ["MSA", "AR", "", "not an HL7 v2 message"]
    assert err[3] == "100^Segment sequence error^HL70357"


def test_an_msh_followed_by_garbage_is_still_answered_properly() -> None:
    raw = MSH + "\r\x00\x01 not segments at all ||||\r\x1c"
    msh, msa = segments(build_ack(raw, "AA"))
    assert msh[2:4] == ["PGRAPH", "PGFAC"]
    assert msa == ["MSA", "AA", "CTRL-1"]


def test_bom_lf_and_mllp_framing_are_tolerated() -> None:
    raw = b"\x0b\xef\xbb\xbf" + MESSAGE.replace("\r", "\n").encode() + b"\x1c\r"
    msh, msa = segments(build_ack(raw, "AA"))
    assert msh[2] == "PGRAPH"
    assert msh[11] == "2.5.1"
    assert msa == ["MSA", "AA", "CTRL-1"]


def test_the_messages_own_separators_are_used() -> None:
    raw = "MSH#*~!@#LIS#LAB#PG#PGF#20240102##ORU*R01#C9#P#2.4\rPID#1"
    text = build_ack(raw, "AE", "a#b*c").decode()
    msh, msa, err = text.removesuffix("\r").split("\r")
    assert msh.startswith("MSH#*~!@#PG#PGF#LIS#LAB#")
    assert msh.split("#")[8] == "ACK*R01*ACK"
    assert msh.endswith("#P#2.4")
    assert msa == "MSA#AE#C9#a!F!b!S!c"
    assert err == "ERR###207*Application internal error*HL70357#E####a!F!b!S!c"


def test_missing_trigger_processing_id_and_version_get_defaults() -> None:
    raw = "MSH|^~\\&|LIS|LAB|PG|PGF|20240102||ORU|C1\rPID|1"
    msh, msa = segments(build_ack(raw, "AA"))
    assert msh[8] == "ACK"
    assert msh[10:12] == ["P", "2.5.1"]
    assert msa == ["MSA", "AA", "C1"]


def test_a_latin1_message_is_answered_in_latin1() -> None:
    raw = MESSAGE.replace("CITYLAB", "LABORATOIRE-CRÉTEIL").encode("latin-1")
    ack = build_ack(raw, "AA")
    msh, _ = segments(ack, "latin-1")
    assert msh[5] == "LABORATOIRE-CRÉTEIL"
    with pytest.raises(UnicodeDecodeError):
        ack.decode("utf-8")


def test_an_unknown_code_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="acknowledgement code"):
        build_ack(MESSAGE, "CA")  # type: ignore[arg-type]
