"""HL7 v2 ORU^R01 -> domain records (`app.sources.hl7v2.mapping`), on synthetic messages.

One rule per test where possible: framing and encodings, escapes, repetitions, each OBX-2
value type, units and reference ranges, statuses, times, patient identity, order grouping and
keys, rejections (with PHI-free reasons), and a fuzz pass: any input gives a LabMessage or a
MessageRejected that is not an internal error.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.domain.common import (
    Address,
    CodeableConcept,
    Coding,
    ContactPoint,
    HumanName,
    Identifier,
    Quantity,
)
from app.domain.observations import Observation, ReferenceRange
from app.sources.hl7v2.mapping import (
    LabMessage,
    LabResult,
    MessageRejected,
    local_id,
    parse_message,
    timestamp,
)

SRC = "citylab"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
US_SSN = "http://hl7.org/fhir/sid/us-ssn"
LAB_OID = "urn:oid:2.16.840.1.113883.3.1"

MSH = "MSH|^~\\&|LIS|CITYLAB|PG|PGFAC|20240102030405+0100||ORU^R01^ORU_R01|CTRL-1|P|2.5.1"
PID = (
    "PID|1||MRN1^^^CITYLAB&2.16.840.1.113883.3.1&ISO^MR~999-12-3456^^^USSSA^SS||"
    "Doe^Jane^Quinn^^^^L||19800115|F"
)
OBR = (
    "OBR|1|PL-1^EHR|FI-1^CITYLAB|24323-8^Metabolic panel^LN|||20240101080000+0100|||||||||||||||"
    "20240101120000+0100|||F"
)
GLUCOSE = "OBX|1|NM|2345-7^Glucose^LN||95|mg/dL^mg/dL^UCUM|70-99|N|||F|||20240101081500+0100"


def message(*segments: str, msh: str = MSH, pid: str | None = PID, sep: str = "\r") -> str:
    head = [msh] + ([pid] if pid is not None else [])
    return sep.join([*head, *segments]) + sep


def parse(*segments: str, msh: str = MSH, pid: str | None = PID) -> LabMessage:
    return parse_message(message(*segments, msh=msh, pid=pid), SRC)


def only_result(msg: LabMessage) -> LabResult:
    (report,) = msg.reports
    (result,) = report.results
    return result


def obx(value_type: str, value: str, *, units: str = "", ref: str = "", status: str = "F") -> str:
    return f"OBX|1|{value_type}|1234-5^Test^LN||{value}|{units}|{ref}||||{status}"


def observation(*segments: str) -> Observation:
    return only_result(parse(OBR, *segments)).observation


def rejected(raw: bytes | str) -> MessageRejected:
    with pytest.raises(MessageRejected) as info:
        parse_message(raw, SRC)
    assert info.value.__cause__ is None, "an internal error, not a rejection"
    return info.value


# ---- the happy path -----------------------------------------------------------------------


def test_a_minimal_message_maps_to_patient_report_and_result() -> None:
    msg = parse(OBR, GLUCOSE)
    assert (msg.control_id, msg.message_type, msg.version, msg.skipped) == (
        "CTRL-1",
        "ORU^R01",
        "2.5.1",
        0,
    )
    patient = msg.patient
    assert patient.link.source_id == SRC
    assert patient.link.resource_type == "Patient"
    assert patient.link.local_id == local_id("pat", f"{LAB_OID}|MRN1")
    assert patient.identifiers == (
        Identifier(LAB_OID, "MRN1", "MR"),
        Identifier(US_SSN, "999-12-3456", "SS"),
    )
    assert patient.name == HumanName("Doe", ("Jane", "Quinn"), "Jane Quinn Doe")
    assert (patient.birth_date, patient.gender) == ("1980-01-15", "female")

    (report,) = msg.reports
    assert report.key == "FI-1^CITYLAB"
    dr = report.report
    assert dr.sources[0].local_id == local_id("rpt", "FI-1^CITYLAB")
    assert dr.sources[0].resource_type == "DiagnosticReport"
    assert dr.code == CodeableConcept(
        "Metabolic panel", (Coding(LOINC, "24323-8", "Metabolic panel"),)
    )
    assert (dr.status, dr.category) == ("final", ("LAB",))
    assert (dr.effective, dr.issued) == ("2024-01-01T08:00:00+01:00", "2024-01-01T12:00:00+01:00")
    assert dr.conclusion is None
    assert dr.meta.last_updated == "2024-01-02T03:04:05+01:00"

    (result,) = report.results
    assert result.key == "FI-1^CITYLAB/2345-7/"
    assert result.status == "F"
    obs = result.observation
    assert obs.sources[0].local_id == local_id("obs", result.key)
    assert dr.result_ids == (obs.sources[0].local_id,)
    assert obs.category == ("laboratory",)
    assert obs.status == "final"
    assert obs.code == CodeableConcept("Glucose", (Coding(LOINC, "2345-7", "Glucose"),))
    assert obs.value_quantity == Quantity(95.0, "mg/dL", UCUM, "mg/dL")
    assert (obs.value_concept, obs.value_string) == (None, None)
    assert obs.reference_range == (
        ReferenceRange(
            Quantity(70.0, "mg/dL", UCUM, "mg/dL"), Quantity(99.0, "mg/dL", UCUM, "mg/dL"), "70-99"
        ),
    )
    assert obs.interpretation == ("N",)
    assert obs.effective == "2024-01-01T08:15:00+01:00"
    assert obs.issued == "2024-01-01T12:00:00+01:00"
    assert obs.meta.last_updated == "2024-01-02T03:04:05+01:00"
    assert obs.notes == ()
    assert obs.components == ()


def test_local_ids_are_stable_fhir_safe_and_typed() -> None:
    ids = {local_id(kind, "FI-1^CITYLAB/2345-7/") for kind in ("pat", "obs", "rpt")}
    assert len(ids) == 3
    for value in ids:
        assert re.fullmatch(r"[A-Za-z0-9.-]{1,64}", value)
    assert local_id("obs", "k") == local_id("obs", "k") != local_id("obs", "k2")
    assert local_id("obs", "k") == "obs-" + __import__("hashlib").sha256(b"k").hexdigest()[:24]
    with pytest.raises(ValueError, match="kind"):
        local_id("patient", "k")


# ---- framing, encodings, separators -------------------------------------------------------


@pytest.mark.parametrize("sep", ["\r", "\n", "\r\n", "\n\r"])
def test_segment_terminators_cr_lf_crlf_all_read_the_same(sep: str) -> None:
    expected = parse(OBR, GLUCOSE)
    assert parse_message(message(OBR, GLUCOSE, sep=sep), SRC) == expected


def test_mixed_terminators_bom_mllp_framing_and_trailing_whitespace() -> None:
    expected = parse(OBR, GLUCOSE)
    text = f"{MSH}\r\n{PID}\n{OBR}\r{GLUCOSE}\n\n"
    assert parse_message(b"\xef\xbb\xbf" + text.encode(), SRC) == expected
    assert parse_message("\ufeff" + text, SRC) == expected
    assert parse_message(b"\x0b" + text.encode() + b"\x1c\r", SRC) == expected
    assert parse_message("  \n" + text + "   \r\n", SRC) == expected


def test_an_lf_inside_a_cr_terminated_message_stays_in_the_value() -> None:
    raw = message(OBR, "OBX|1|TX|1234-5^Note^LN||first line\nsecond line||||||F")
    assert only_result(parse_message(raw, SRC)).observation.value_string == (
        "first line\nsecond line"
    )


def test_non_utf8_bytes_are_read_as_latin1_and_utf8_as_utf8() -> None:
    pid = PID.replace("Doe^Jane", "Müller^Zoë")
    latin1 = parse_message(message(OBR, GLUCOSE, pid=pid).encode("latin-1"), SRC)
    utf8 = parse_message(message(OBR, GLUCOSE, pid=pid).encode("utf-8"), SRC)
    assert (
        latin1.patient.name
        == utf8.patient.name
        == HumanName("Müller", ("Zoë", "Quinn"), "Zoë Quinn Müller")
    )


def test_later_versions_with_a_fifth_encoding_character_are_tolerated() -> None:
    msh = MSH.replace("^~\\&", "^~\\&#").replace("|2.5.1", "|2.8")
    msg = parse(OBR, GLUCOSE, msh=msh)
    assert msg.version == "2.8"
    assert only_result(msg).observation.value_quantity == Quantity(95.0, "mg/dL", UCUM, "mg/dL")


def test_v23_message_without_structure_component() -> None:
    msh = "MSH|^~\\&|LIS|CITYLAB|PG|PGFAC|200402150930||ORU^R01|X1|P|2.3"
    msg = parse(OBR, GLUCOSE, msh=msh)
    assert (msg.version, msg.control_id) == ("2.3", "X1")
    assert msg.reports[0].report.meta.last_updated == "2004-02-15T09:30"


def test_custom_separators_are_honoured() -> None:
    raw = "\r".join(
        [
            "MSH#*~!@#LIS#CITYLAB#PG#PGFAC#20240102030405##ORU*R01#C9#P#2.5.1",
            "PID#1##MRN1***CITYLAB@2.16.840.1.113883.3.1@ISO*MR##Doe*Jane##19800115#F",
            "OBR#1##FI-1*CITYLAB#24323-8*Panel*LN",
            "OBX#1#ST#1234-5*Test*LN##a !F! b !S! c",
        ]
    )
    msg = parse_message(raw, SRC)
    assert msg.patient.identifiers == (Identifier(LAB_OID, "MRN1", "MR"),)
    assert only_result(msg).observation.value_string == "a # b * c"
    assert msg.reports[0].key == "FI-1^CITYLAB"


def test_trailing_empty_fields_components_and_hl7_nulls_are_ignored() -> None:
    obs = observation('OBX|1|NM|2345-7^Glucose^LN^^^^||95|mg/dL^^^|""|""|||F|||""|||||||||||||||')
    assert obs.value_quantity == Quantity(95.0, "mg/dL")
    assert obs.reference_range == ()
    assert obs.interpretation == ()
    assert obs.effective == "2024-01-01T08:00:00+01:00"  # OBX-14 null: falls back to OBR-7
    assert obs.code == CodeableConcept("Glucose", (Coding(LOINC, "2345-7", "Glucose"),))


# ---- escapes and repetitions --------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("a \\F\\ b \\S\\ c \\T\\ d \\R\\ e \\E\\ f", "a | b ^ c & d ~ e \\ f"),
        ("line one\\.br\\line two", "line one\nline two"),
        ("para\\.sp2\\next", "para\n\nnext"),
        ("x\\.sk3\\y", "x   y"),
        ("\\.in+4\\indented\\.ti-2\\\\.fi\\\\.nf\\", "indented"),
        ("\\H\\important\\N\\ note", "important note"),
        ("hex \\X41\\\\X4243\\", "hex ABC"),
        ("utf8 \\XC3BC\\ latin1 \\XFC\\", "utf8 \u00fc latin1 \u00fc"),
        ("charset \\C2842\\switch", "charset switch"),
        ("unknown \\Zabc\\ kept", "unknown \\Zabc\\ kept"),
        ("broken \\XZZ\\ kept", "broken \\XZZ\\ kept"),
        ("unterminated \\F", "unterminated \\F"),
        ("nul \\X00\\ dropped", "nul  dropped"),
    ],
)
def test_escape_sequences_are_resolved_in_text(raw: str, text: str) -> None:
    assert observation(obx("FT", raw)).value_string == text


def test_escapes_are_resolved_in_codes_names_notes_and_identifiers() -> None:
    pid = PID.replace("Doe^Jane", "O\\T\\Brien^Ann\\S\\Marie").replace("MRN1", "M\\F\\1")
    msg = parse(
        OBR,
        "OBX|1|NM|2345-7^Glucose \\T\\ sugar^LN||95|mg/dL",
        "NTE|1|L|Result \\E\\ note",
        pid=pid,
    )
    assert msg.patient.name == HumanName(
        "O&Brien", ("Ann^Marie", "Quinn"), "Ann^Marie Quinn O&Brien"
    )
    assert msg.patient.identifiers[0].value == "M|1"
    obs = only_result(msg).observation
    assert obs.code.text == "Glucose & sugar"
    assert obs.notes == ("Result \\ note",)


def test_text_repetitions_join_with_new_lines() -> None:
    assert observation(obx("TX", "first~second~~third")).value_string == "first\nsecond\nthird"


def test_repeating_interpretation_codes() -> None:
    obs = observation("OBX|1|NM|2345-7^Glucose^LN||250|mg/dL||H~A^Abnormal^HL70078|||F")
    assert obs.interpretation == ("H", "A")


# ---- values by type -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "quantity", "text"),
    [
        ("^182", Quantity(182.0, "mg/dl"), None),
        ("=^182", Quantity(182.0, "mg/dl"), None),
        (">^10", Quantity(10.0, "mg/dl", comparator=">"), None),
        ("<=^0.5", Quantity(0.5, "mg/dl", comparator="<="), None),
        ("^1^:^2", None, "1:2"),
        ("^10^-^20", None, "10-20"),
        ("^1^/^128", None, "1/128"),
        ("^2^+", None, "2+"),
        ("<>^5", None, "<>5"),
        ("^abc", None, "abc"),
    ],
)
def test_structured_numeric(value: str, quantity: Quantity | None, text: str | None) -> None:
    obs = observation(obx("SN", value, units="mg/dl"))
    assert (obs.value_quantity, obs.value_string) == (quantity, text)


@pytest.mark.parametrize(
    ("value", "quantity", "text"),
    [
        ("5.4", Quantity(5.4, "mmol/L", UCUM, "mmol/L"), None),
        ("-0.5", Quantity(-0.5, "mmol/L", UCUM, "mmol/L"), None),
        (".5", Quantity(0.5, "mmol/L", UCUM, "mmol/L"), None),
        ("<5", Quantity(5.0, "mmol/L", UCUM, "mmol/L", "<"), None),
        (">= 10", Quantity(10.0, "mmol/L", UCUM, "mmol/L", ">="), None),
        ("nan", None, "nan"),  # never a NaN quantity
        ("1e5", None, "1e5"),  # NM has no exponent
        ("see note", None, "see note"),
        ("27~25", None, "27\n25"),  # several numbers: no single quantity
    ],
)
def test_numeric(value: str, quantity: Quantity | None, text: str | None) -> None:
    obs = observation(obx("NM", value, units="mmol/L^millimole per liter^UCUM"))
    assert (obs.value_quantity, obs.value_string) == (quantity, text)


def test_coded_values_with_alternate_coding() -> None:
    obs = observation(obx("CWE", "260348001^Present ++^SCT^P2^Present moderate^99LAB^^^Moderate"))
    assert obs.value_concept == CodeableConcept(
        "Present ++",
        (
            Coding(SNOMED, "260348001", "Present ++"),
            Coding("urn:hl7v2:local:99LAB", "P2", "Present moderate"),
        ),
    )
    assert obs.value_string == "Present ++"
    assert obs.value_quantity is None


def test_coded_value_text_falls_back_to_the_original_text_and_repetitions_join() -> None:
    obs = observation(obx("CE", "A^^L^^^^^^Original~B^Second^L"))
    assert obs.value_concept == CodeableConcept(
        "Original", (Coding("urn:hl7v2:local:L", "A", None),)
    )
    assert obs.value_string == "Original\nSecond"


@pytest.mark.parametrize(
    ("value_type", "value", "text"),
    [
        ("DT", "20240102", "2024-01-02"),
        ("TS", "202401021230+0200", "2024-01-02T12:30+02:00"),
        ("DTM", "20240102123045", "2024-01-02T12:30:45"),
        ("DT", "not a date", "not a date"),
        ("TM", "1230", "1230"),
        ("ST", "plain text", "plain text"),
    ],
)
def test_date_time_and_text_values(value_type: str, value: str, text: str) -> None:
    assert observation(obx(value_type, value)).value_string == text


@pytest.mark.parametrize("value_type", ["ED", "RP", "FN", "XYZ", ""])
def test_unrepresentable_values_keep_the_result_and_are_counted(value_type: str) -> None:
    msg = parse(OBR, obx(value_type, "App^TEXT^PDF^Base64^JVBERi0="), GLUCOSE.replace("|1|", "|2|"))
    kept, glucose = msg.reports[0].results
    obs = kept.observation
    assert (obs.value_quantity, obs.value_concept, obs.value_string) == (None, None, None)
    assert obs.code.coding[0].code == "1234-5"
    assert obs.status == "final"
    assert glucose.observation.value_quantity is not None
    assert msg.skipped == 1


def test_a_result_without_a_value_yet_is_not_counted() -> None:
    msg = parse(OBR, "OBX|1|NM|2345-7^Glucose^LN||||||||I")
    result = only_result(msg)
    assert (result.status, result.observation.status) == ("I", "registered")
    assert result.observation.value_quantity is None
    assert msg.skipped == 0


# ---- units, reference ranges --------------------------------------------------------------


@pytest.mark.parametrize(
    ("units", "quantity"),
    [
        ("mg/dL^milligram per deciliter^UCUM", Quantity(5.0, "mg/dL", UCUM, "mg/dL")),
        ("mg/dl", Quantity(5.0, "mg/dl")),
        ("^percent", Quantity(5.0, "percent")),
        ("MGDL^mg/dL^L^mg/dL^^UCUM", Quantity(5.0, "MGDL", UCUM, "mg/dL")),
        ("beats/min^^ISO+", Quantity(5.0, "beats/min")),
        ("", Quantity(5.0, None)),
    ],
)
def test_units(units: str, quantity: Quantity) -> None:
    assert observation(obx("NM", "5", units=units)).value_quantity == quantity


@pytest.mark.parametrize(
    ("ref", "low", "high"),
    [
        ("70-105", 70.0, 105.0),
        ("70_105", 70.0, 105.0),
        ("4.3 to 6.2", 4.3, 6.2),
        (" 0.0 - 13.0 ", 0.0, 13.0),
        ("-5-5", -5.0, 5.0),
        ("<5", None, 5.0),
        ("<=5", None, 5.0),
        (">60", 60.0, None),
        (">= 60", 60.0, None),
        ("negative", None, None),
        ("see report", None, None),
    ],
)
def test_reference_ranges(ref: str, low: float | None, high: float | None) -> None:
    obs = observation(obx("NM", "5", units="mg", ref=ref))
    (rng,) = obs.reference_range
    assert rng.text == ref.strip()
    assert (rng.low, rng.high) == (
        Quantity(low, "mg") if low is not None else None,
        Quantity(high, "mg") if high is not None else None,
    )


# ---- statuses -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("F", "final"),
        ("C", "corrected"),
        ("P", "preliminary"),
        ("R", "preliminary"),
        ("S", "preliminary"),
        ("I", "registered"),
        ("O", "registered"),
        ("X", "cancelled"),
        ("N", "cancelled"),
        ("D", "entered-in-error"),
        ("W", "entered-in-error"),
        ("A", "amended"),
        ("U", "final"),
        ("f", "final"),
        ("Q", "unknown"),
        ("", None),
    ],
)
def test_observation_status_from_obx11(code: str, status: str | None) -> None:
    result = only_result(parse(OBR, obx("NM", "1", status=code)))
    assert result.status == code.upper()
    assert result.observation.status == status


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("F", "final"),
        ("C", "corrected"),
        ("P", "preliminary"),
        ("A", "partial"),
        ("R", "partial"),
        ("I", "registered"),
        ("O", "registered"),
        ("X", "cancelled"),
        ("Z", "unknown"),
        ("", None),
    ],
)
def test_report_status_from_obr25(code: str, status: str | None) -> None:
    msg = parse(OBR.removesuffix("|F") + f"|{code}", GLUCOSE)
    assert msg.reports[0].report.status == status


# ---- times --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "iso"),
    [
        ("2024", "2024"),
        ("202401", "2024-01"),
        ("20240102", "2024-01-02"),
        ("20240102+0100", "2024-01-02"),
        ("2024010203", "2024-01-02T03"),
        ("202401020304", "2024-01-02T03:04"),
        ("20240102030405", "2024-01-02T03:04:05"),
        ("20240102030405.1234", "2024-01-02T03:04:05.1234"),
        ("20240102030405+0215", "2024-01-02T03:04:05+02:15"),
        ("20240102030405-0500", "2024-01-02T03:04:05-05:00"),
        ("202401020304+0000", "2024-01-02T03:04+00:00"),
        (" 20240102 ", "2024-01-02"),
        ("20241302", None),
        ("20240230", None),
        ("20240102250000", None),
        ("20240102030461", None),
        ("20240102030405+2400", None),
        ("20240102030405+0160", None),
        ("2024010", None),
        ("abcd", None),
        ("", None),
        ("0000", None),
    ],
)
def test_timestamps(value: str, iso: str | None) -> None:
    assert timestamp(value) == iso


def test_effective_falls_back_from_obx14_to_obr7_to_obr8_and_bad_times_are_none() -> None:
    obr = "OBR|1||FI-1|24323-8^Panel^LN|||{obr7}|{obr8}"
    result = "OBX|1|NM|2345-7^Glucose^LN||1||||||F|||{obx14}"

    def effective(obr7: str, obr8: str, obx14: str) -> str | None:
        msg = parse(obr.format(obr7=obr7, obr8=obr8), result.format(obx14=obx14))
        return only_result(msg).observation.effective

    assert effective("202401010800", "202401010900", "202401011000") == "2024-01-01T10:00"
    assert effective("202401010800", "202401010900", "") == "2024-01-01T08:00"
    assert effective("", "202401010900", "") == "2024-01-01T09:00"
    assert effective("garbage", "", "2024999") is None


def test_birth_date_is_the_date_part_and_invalid_is_none() -> None:
    assert parse(OBR, pid=PID.replace("19800115", "198001151230+0100")).patient.birth_date == (
        "1980-01-15"
    )
    assert parse(OBR, pid=PID.replace("19800115", "19800152")).patient.birth_date is None
    assert parse(OBR, pid=PID.replace("19800115", "")).patient.birth_date is None


# ---- patient ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sex", "gender"),
    [("F", "female"), ("M", "male"), ("O", "other"), ("U", "unknown"), ("A", "other"),
     ("N", "other"), ("x", "unknown"), ("", None)],
)  # fmt: skip
def test_gender(sex: str, gender: str | None) -> None:
    assert parse(OBR, pid=PID.removesuffix("|F") + f"|{sex}").patient.gender == gender


def test_the_legal_name_is_preferred() -> None:
    pid = PID.replace("Doe^Jane^Quinn^^^^L", "Smith^Jo^^^^^A~Doe^Jane^^^^^L")
    assert parse(OBR, pid=pid).patient.name == HumanName("Doe", ("Jane",), "Jane Doe")
    pid = PID.replace("Doe^Jane^Quinn^^^^L", "Smith&van^Jo")
    assert parse(OBR, pid=pid).patient.name == HumanName("Smith", ("Jo",), "Jo Smith")
    assert parse(OBR, pid=PID.replace("Doe^Jane^Quinn^^^^L", "")).patient.name is None


@pytest.mark.parametrize(
    ("cx", "identifier"),
    [
        ("A1^^^LAB&1.2.3&ISO^MR", Identifier("urn:oid:1.2.3", "A1", "MR")),
        ("A1^^^&1.2.3&ISO", Identifier("urn:oid:1.2.3", "A1", None)),
        ("A1^^^NIST MPI^MR", Identifier("urn:hl7v2:authority:NIST%20MPI", "A1", "MR")),
        ("A1^^^LAB&1.2.3&L^MR", Identifier("urn:hl7v2:authority:LAB", "A1", "MR")),
        (
            "A1^^^&9B2C1D6E-6F0A-4B1C-8D2E-3F4A5B6C7D8E&UUID",
            Identifier("urn:uuid:9b2c1d6e-6f0a-4b1c-8d2e-3f4a5b6c7d8e", "A1", None),
        ),
        ("A1", Identifier(None, "A1", None)),
        ("123-45-6789^^^^SS", Identifier(US_SSN, "123-45-6789", "SS")),
        ("123456789^^^USSSA", Identifier(US_SSN, "123456789", None)),
        ("123456789^^^SSA&2.16.840.1.113883.4.1&ISO^SB", Identifier(US_SSN, "123456789", "SB")),
    ],
)
def test_patient_identifier_systems(cx: str, identifier: Identifier) -> None:
    pid = f"PID|1||{cx}||Doe^Jane"
    assert parse(OBR, pid=pid).patient.identifiers == (identifier,)


def test_ssn_from_pid19_is_deduplicated_and_the_local_id_skips_ssns() -> None:
    pid = "PID|1||999-12-3456^^^USSSA^SS~MRN1^^^CITYLAB&1.2.3&ISO^MR||Doe^Jane" + "|" * 14
    msg = parse(OBR, pid=pid + "999-12-3456")
    assert msg.patient.identifiers == (
        Identifier(US_SSN, "999-12-3456", "SS"),
        Identifier("urn:oid:1.2.3", "MRN1", "MR"),
    )
    assert msg.patient.link.local_id == local_id("pat", "urn:oid:1.2.3|MRN1")
    only_ssn = parse(OBR, pid="PID|1||||Doe^Jane" + "|" * 14 + "999-12-3456")
    assert only_ssn.patient.identifiers == (Identifier(US_SSN, "999-12-3456", "SS"),)
    assert only_ssn.patient.link.local_id == local_id("pat", f"{US_SSN}|999-12-3456")


def pid_with(*, address: str = "", home: str = "", work: str = "") -> str:
    """PID with PID-11 (address), PID-13 (home phone) and PID-14 (business phone)."""
    return f"{PID}|||{address}||{home}|{work}"


@pytest.mark.parametrize(
    ("xad", "address"),
    [
        (
            "153 FERNWOOD DR.^^STATESVILLE^OH^35292",
            Address(None, ("153 FERNWOOD DR.",), "STATESVILLE", "OH", "35292", None),
        ),
        (
            "721 SPRING STREET^Apt 4^GRINNELL^IA^50112^USA^H",
            Address("home", ("721 SPRING STREET", "Apt 4"), "GRINNELL", "IA", "50112", "USA"),
        ),
        # v2.5 SAD: street^street name^dwelling number; the parts join when SAD.1 lacks them.
        (
            "1000&Hospital Lane^Ste. 123^Ann Arbor ^MI^99999^USA^M",
            Address(None, ("1000 Hospital Lane", "Ste. 123"), "Ann Arbor", "MI", "99999", "USA"),
        ),
        (
            "&Hospital Lane&1000^^Ann Arbor^MI",
            Address(None, ("1000 Hospital Lane",), "Ann Arbor", "MI", None, None),
        ),
        (
            "1000 Hospital Lane&Hospital Lane&1000^^^^^^B",
            Address("work", ("1000 Hospital Lane",), None, None, None, None),
        ),
        (
            "PO Box 7\\S\\9^^Ames^IA^^^BA",  # an escaped component separator in the street
            Address("old", ("PO Box 7^9",), "Ames", "IA", None, None),
        ),
        ("^^^^99999^^P", Address("home", (), None, None, "99999", None)),
        ("^^Ames^^^^C", Address("temp", (), "Ames", None, None, None)),
        ("^^Ames^^^^BI", Address("billing", (), "Ames", None, None, None)),
        ("^^Ames^^^^ZZ", Address(None, (), "Ames", None, None, None)),
    ],
)
def test_patient_address_from_pid11(xad: str, address: Address) -> None:
    assert parse(OBR, pid=pid_with(address=xad)).patient.addresses == (address,)


def test_repeating_addresses_keep_their_order_and_empty_ones_are_skipped() -> None:
    pid = pid_with(address='1 A St^^Ames^IA^^^H~""~^^^^^^H~2 B St^^Boone^IA^^^O')
    assert parse(OBR, pid=pid).patient.addresses == (
        Address("home", ("1 A St",), "Ames", "IA", None, None),
        Address("work", ("2 B St",), "Boone", "IA", None, None),
    )
    assert parse(OBR).patient.addresses == ()


@pytest.mark.parametrize(
    ("home", "work", "telecom"),
    [
        ("(206)3345232", "(206)752-121", (
            ContactPoint("phone", "(206)3345232", "home"),
            ContactPoint("phone", "(206)752-121", "work"),
        )),
        ("8885551212", "8885551212", (
            ContactPoint("phone", "8885551212", "home"),
            ContactPoint("phone", "8885551212", "work"),
        )),
        # v2.5+: country code, area code, local number, extension; e-mail in XTN-4.
        ("^PRN^PH^^^406^5557896~^NET^^Elise.Wong@isp.com", "", (
            ContactPoint("phone", "(406) 555-7896", "home"),
            ContactPoint("email", "Elise.Wong@isp.com", "home"),
        )),
        ("", "^WPN^PH^^1^406^5557896^12", (
            ContactPoint("phone", "+1 (406) 555-7896 x12", "work"),
        )),
        ("^^PH^^^^555 0100", "", (ContactPoint("phone", "555 0100", "home"),)),
        ("^^PH^^^^^^^^^4065550100", "", (ContactPoint("phone", "4065550100", "home"),)),
        # XTN-1 wins over the components; a cell phone is `mobile`; other equipment types.
        ("(406)555-0100^PRN^CP^^^406^5550199", "", (
            ContactPoint("phone", "(406)555-0100", "mobile"),
        )),
        ("555-0101^^FX~555-0102^^BP~555-0103^^TDD", "", (
            ContactPoint("fax", "555-0101", "home"),
            ContactPoint("pager", "555-0102", "home"),
            ContactPoint("other", "555-0103", "home"),
        )),
        # The use code wins over the field; an e-mail beside a phone number; junk in XTN-4.
        ("555-0104^WPN^PH^jo@example.org", "555-0105^PRN^PH^5555", (
            ContactPoint("phone", "555-0104", "work"),
            ContactPoint("email", "jo@example.org", "work"),
            ContactPoint("phone", "555-0105", "home"),
        )),
        # E-mail by equipment type, or in XTN-1; an escaped separator in an address.
        ("", "^WPN^Internet^jo\\T\\co@example.org~jo@example.org^NET^X.400", (
            ContactPoint("email", "jo&co@example.org", "work"),
            ContactPoint("email", "jo@example.org", "work"),
        )),
        # Empty repetitions, HL7 nulls, a network address with nothing in it, duplicates.
        ('""~^PRN^PH~^NET^Internet~555-0106~555-0106', "", (
            ContactPoint("phone", "555-0106", "home"),
        )),
    ],
)  # fmt: skip
def test_patient_telecom_from_pid13_and_pid14(
    home: str, work: str, telecom: tuple[ContactPoint, ...]
) -> None:
    assert parse(OBR, pid=pid_with(home=home, work=work)).patient.telecom == telecom


def test_a_patient_without_any_identifier_is_an_error() -> None:
    error = rejected(message(OBR, GLUCOSE, pid="PID|1||^^^CITYLAB^MR||Doe^Jane||19800115|F"))
    assert (error.ack_code, error.error_code) == ("AE", "101")


# ---- grouping, notes, keys ----------------------------------------------------------------


def test_several_order_groups_with_notes_optional_segments_and_z_segments() -> None:
    msg = parse(
        "PV1|1|O",
        "ORC|RE|PL-1^EHR|FI-1^CITYLAB",
        OBR,
        "NTE|1|L|Fasting specimen.",
        "NTE|2|L|Second~line",
        "PRT|1|AD||OP^Ordering",
        "TQ1|1",
        GLUCOSE,
        "PRT|1|AD",
        "NTE|1|L|Repeated \\T\\ confirmed.",
        "OBX|2|NM|2823-3^Potassium^LN||4.1|mmol/L|||||F",
        "ZXX|custom|stuff",
        "SPM|1|||119364003^Serum specimen^SCT",
        "ORC|RE|PL-2^EHR|FI-2^CITYLAB",
        "OBR|2|PL-2^EHR|FI-2^CITYLAB|24357-6^Urinalysis^LN",
        "OBX|1|ST|5804-0^Protein^LN||Negative||||||F",
        "NTE|1|L|Visual read.",
    )
    first, second = msg.reports
    assert (first.key, second.key) == ("FI-1^CITYLAB", "FI-2^CITYLAB")
    assert first.report.conclusion == "Fasting specimen.\nSecond\nline"
    glucose, potassium = first.results
    assert glucose.observation.notes == ("Repeated & confirmed.",)
    assert potassium.observation.notes == ()
    (protein,) = second.results
    assert protein.observation.notes == ("Visual read.",)
    assert protein.observation.value_string == "Negative"
    assert second.report.conclusion is None
    assert second.report.effective is None
    assert msg.skipped == 0


def test_obx_outside_an_order_or_after_spm_or_without_obx3_is_counted_not_mapped() -> None:
    msg = parse(
        "OBX|1|NM|1111-1^Before any OBR^LN||1||||||F",
        OBR,
        "OBX|1|NM|||5|mg|||||F",  # no OBX-3
        GLUCOSE,
        "SPM|1|||119364003^Serum specimen^SCT",
        "OBX|1|NM|8310-5^Specimen temperature^LN||4|Cel|||||F",  # specimen observation
        "NTE|1|L|specimen note, not a result note",
    )
    (report,) = msg.reports
    (result,) = report.results
    assert result.key == "FI-1^CITYLAB/2345-7/"
    assert result.observation.notes == ()
    assert msg.skipped == 3


def test_order_keys_fall_back_from_filler_to_placer_to_control_id() -> None:
    msg = parse(
        "OBR|1|PL-1^EHR|FI-1|24323-8^Panel^LN",
        "OBR|2|PL-2^EHR||24323-8^Panel^LN",
        "OBR|3|||24323-8^Panel^LN",
        "OBR||||24323-8^Panel^LN",
        "OBR|1|PL-1^EHR|FI-1|24323-8^Panel^LN",
    )
    assert [r.key for r in msg.reports] == ["FI-1", "PL-2^EHR", "CTRL-1-3", "CTRL-1-4", "FI-1#2"]
    assert len({r.report.sources[0].local_id for r in msg.reports}) == 5


def test_result_keys_use_code_or_text_and_sub_id_and_stay_unique() -> None:
    msg = parse(
        OBR,
        "OBX|1|NM|2345-7^Glucose^LN|1|95||||||F",
        "OBX|2|NM|2345-7^Glucose^LN|2|97||||||F",
        "OBX|3|NM|^Local test^L||1||||||F",
        "OBX|4|NM|2345-7^Glucose^LN|2|99||||||F",
        "OBX|5|NM|^^^ALT1^Alt only^99LAB||1||||||F",
    )
    keys = [r.key for r in msg.reports[0].results]
    assert keys == [
        "FI-1^CITYLAB/2345-7/1",
        "FI-1^CITYLAB/2345-7/2",
        "FI-1^CITYLAB/Local test/",
        "FI-1^CITYLAB/2345-7/2#2",
        "FI-1^CITYLAB/ALT1/",
    ]


def test_a_correction_keeps_the_key_and_ids_and_changes_value_and_status() -> None:
    final = parse(OBR, GLUCOSE)
    correction = parse_message(
        message(
            OBR.removesuffix("|F") + "|C",
            GLUCOSE.replace("||95|", "||105|").replace("|N|||F|", "|H|||C|"),
            "NTE|1|L|Corrected after recalibration.",
            msh=MSH.replace("CTRL-1", "CTRL-2").replace("20240102030405", "20240103030405"),
        ),
        SRC,
    )
    before, after = only_result(final), only_result(correction)
    assert before.key == after.key
    assert before.observation.id == after.observation.id
    assert final.reports[0].report.id == correction.reports[0].report.id
    assert final.patient.link == correction.patient.link
    assert (before.status, after.status) == ("F", "C")
    assert after.observation.status == "corrected"
    assert correction.reports[0].report.status == "corrected"
    assert before.observation.value_quantity != after.observation.value_quantity
    assert after.observation.notes == ("Corrected after recalibration.",)


def test_a_redelivery_maps_to_identical_records() -> None:
    assert parse(OBR, GLUCOSE) == parse(OBR, GLUCOSE)


# ---- rejections ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message_type", "code"),
    [
        ("RDS^O13^RDS_O13", "200"),
        ("VXU^V04^VXU_V04", "200"),
        ("ORM^O01", "200"),
        ("OUL^R22^OUL_R22", "200"),
        ("ADT^A01", "200"),
        ("ORU^R30^ORU_R30", "201"),
        ("ORU", "201"),
        ("", "200"),
    ],
)
def test_unsupported_message_types_are_rejected(message_type: str, code: str) -> None:
    msh = MSH.replace("ORU^R01^ORU_R01", message_type)
    error = rejected(message(OBR, GLUCOSE, msh=msh))
    assert (error.ack_code, error.error_code) == ("AR", code)
    assert error.reason.startswith("unsupported message type ")
    assert message_type.split("^", 1)[0] in error.reason


def test_a_message_type_with_odd_characters_is_not_echoed() -> None:
    error = rejected(message(OBR, msh=MSH.replace("ORU^R01^ORU_R01", "Jane Doe^x")))
    assert error.reason == "unsupported message type ?^X"


@pytest.mark.parametrize(
    ("raw", "ack_code", "code"),
    [
        (message(OBR, GLUCOSE, msh=MSH.replace("|CTRL-1|", "||")), "AR", "101"),
        (message(OBR, GLUCOSE, pid=None), "AR", "100"),
        (message(GLUCOSE), "AE", "100"),
        (message(OBR, GLUCOSE) + PID, "AE", "207"),
        (message(OBR) + MSH.replace("CTRL-1", "CTRL-2"), "AR", "100"),
        ("", "AR", "100"),
        (b"\xff\xfe\x00garbage", "AR", "100"),
        ("PID|1||MRN1\rOBR|1", "AR", "100"),
        ("MSH", "AR", "102"),
        ("MSH|", "AR", "102"),
        ("MSH|^~|x", "AR", "102"),
        ("MSHA^~\\&A", "AR", "102"),
        ("MSH|^^\\&|LIS", "AR", "102"),
    ],
)
def test_structural_rejections(raw: str | bytes, ack_code: str, code: str) -> None:
    error = rejected(raw)
    assert (error.ack_code, error.error_code) == (ack_code, code)


def test_rejection_reasons_carry_no_patient_data() -> None:
    phi = ("Doe", "Jane", "MRN1", "999-12-3456", "19800115", "95")
    cases = [
        message(OBR, GLUCOSE, msh=MSH.replace("|CTRL-1|", "||")),
        message(GLUCOSE),
        message(OBR, GLUCOSE) + PID,
        message(OBR, GLUCOSE, msh=MSH.replace("ORU^R01", "VXU^V04")),
        message(OBR, pid="PID|1||^^^X||Doe^Jane||19800115"),
    ]
    for raw in cases:
        reason = rejected(raw).reason
        assert 0 < len(reason) <= 80
        assert not any(value in reason for value in phi), reason


def test_an_internal_error_becomes_an_ae_rejection(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.sources.hl7v2 import mapping

    def boom(*_: object) -> None:
        raise RuntimeError("Jane Doe 999-12-3456")

    monkeypatch.setattr(mapping, "_patient", boom)
    with pytest.raises(MessageRejected) as info:
        parse_message(message(OBR, GLUCOSE), SRC)
    assert (info.value.ack_code, info.value.error_code) == ("AE", "207")
    assert "Jane" not in info.value.reason
    assert isinstance(info.value.__cause__, RuntimeError)


# ---- fuzz ---------------------------------------------------------------------------------

VALID = message(
    "ORC|RE|PL-1^EHR|FI-1^CITYLAB",
    OBR,
    "NTE|1|L|Order \\T\\ note",
    GLUCOSE,
    "NTE|1|L|Result note",
    "OBX|2|SN|2823-3^Potassium^LN||>^5.0|mmol/L^^UCUM|3.5-5.1|H~A|||C|||20240101081500",
    "OBX|3|CWE|5778-6^Color^LN||YEL^Yellow^99CLB~AMB^Amber^L|||N|||F",
    "OBX|4|TX|6742-1^Morphology^LN||Many\\.br\\spherocytes~second|||A|||P",
    "SPM|1|||119364003^Serum specimen^SCT",
    "OBX|1|NM|8310-5^Temp^LN||4|Cel",
)
ALPHABET = "|^~\\&\r\nMSHPIDOBRXNTE0123456789.+-<>_ FCPX\\.br\\"


def outcome(raw: bytes | str) -> LabMessage | MessageRejected:
    result: LabMessage | MessageRejected
    try:
        result = parse_message(raw, SRC)
    except MessageRejected as error:
        result = error
    if isinstance(result, MessageRejected):
        assert result.__cause__ is None, f"internal error: {result.__cause__!r}"
        assert result.ack_code in ("AE", "AR")
    return result


def test_the_fuzz_seed_message_is_valid() -> None:
    msg = parse_message(VALID, SRC)
    assert isinstance(msg, LabMessage)
    assert len(msg.reports[0].results) == 4
    assert msg.skipped == 1


FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_random_bytes(raw: bytes) -> None:
    outcome(raw)
    outcome(b"MSH|^~\\&|" + raw)


@FUZZ
@given(st.text(max_size=400))
def test_fuzz_random_text(raw: str) -> None:
    outcome(raw)
    outcome("MSH|^~\\&|" + raw)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = VALID
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace", "duplicate"]))
        chunk = draw(st.text(alphabet=ALPHABET, min_size=1, max_size=6))
        if action == "insert":
            text = text[:pos] + chunk + text[pos:]
        elif action == "delete":
            text = text[:pos] + text[pos + len(chunk) :]
        elif action == "replace":
            text = text[:pos] + chunk + text[pos + len(chunk) :]
        else:
            end = min(len(text), pos + draw(st.integers(1, 80)))
            text = text[:end] + text[pos:end] + text[end:]
    return text


@FUZZ
@given(mutated())
def test_fuzz_mutations_of_a_valid_message(raw: str) -> None:
    result = outcome(raw)
    if isinstance(result, LabMessage):
        assert result.control_id
        assert result.reports
        for report in result.reports:
            assert report.report.result_ids == tuple(
                r.observation.sources[0].local_id for r in report.results
            )
    outcome(raw.encode("utf-8"))
    outcome(raw.encode("utf-8", "replace")[::-1])
