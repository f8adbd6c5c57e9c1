"""HL7 v2 mapping over the shared third-party messages (`../shared/data/hl7v2`).

1. Every ORU^R01 there is accepted and mapped; every other message type is rejected with AR.
   The folder's quirks (UTF-8 byte-order marks, LF terminators) are asserted to be present, so
   the tests keep exercising them.
2. Spot values, each checked by hand against the message text named in the test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.domain.common import (
    Address,
    CodeableConcept,
    Coding,
    ContactPoint,
    HumanName,
    Identifier,
    Quantity,
)
from app.domain.observations import ReferenceRange
from app.sources.hl7v2.mapping import LabMessage, LabReport, LabResult, MessageRejected, local_id
from app.sources.hl7v2.mapping import parse_message as parse
from app.sources.hl7v2.patient import addresses, telecom
from app.sources.hl7v2.syntax import (
    Reader,
    Segment,
    decode_message,
    parse_segments,
    read_separators,
    split_segments,
)
from tests.shared_data import require_shared_data

pytestmark = pytest.mark.shared_data

SRC = "shared-lab"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
US_SSN = "http://hl7.org/fhir/sid/us-ssn"
BOM = b"\xef\xbb\xbf"

MS = "microsoft-fhir-converter"
ORU_FILES = (
    f"{MS}/LAB-ORU-1.hl7",
    f"{MS}/LAB-ORU-2.hl7",
    f"{MS}/LRI_2.0-NG_CBC_Typ_Message.hl7",
    f"{MS}/ORU-R01-01.hl7",
    f"{MS}/ORU-R01-RMGEAD.hl7",
    "python-hl7/ghh-lab-oru-r01.hl7",
)


def folder() -> Path:
    return require_shared_data() / "hl7v2"


def raw(name: str) -> bytes:
    return (folder() / name).read_bytes()


def load(name: str) -> LabMessage:
    return parse(raw(name), SRC)


def result(report: LabReport, code: str) -> LabResult:
    return next(r for r in report.results if r.observation.code.coding[0].code == code)


def message_type(data: bytes) -> str:
    msh = data.removeprefix(BOM).split(b"\n", 1)[0].split(b"\r", 1)[0].decode()
    return msh.split("|")[8]


# ---- everything in the folder -------------------------------------------------------------


def test_the_folder_holds_the_expected_messages_and_quirks() -> None:
    files = sorted(p.relative_to(folder()).as_posix() for p in folder().rglob("*.hl7"))
    assert len(files) == 23
    oru = [f for f in files if message_type(raw(f)).startswith("ORU^R01")]
    assert sorted(oru) == sorted(ORU_FILES)
    microsoft = [f for f in files if f.startswith(MS)]
    assert sum(raw(f).startswith(BOM) for f in microsoft) == 8
    assert all(b"\r" not in raw(f) and b"\n" in raw(f) for f in microsoft)  # LF only
    assert b"\r" in raw("python-hl7/ghh-lab-oru-r01.hl7")  # CR, as the standard says
    assert any(raw(f).startswith(BOM) for f in ORU_FILES)  # BOM + LF, in an accepted message


@pytest.mark.parametrize("name", ORU_FILES)
def test_every_oru_r01_is_accepted_and_mapped(name: str) -> None:
    msg = load(name)
    assert msg.message_type == "ORU^R01"
    assert msg.control_id
    assert msg.reports
    assert msg.patient.identifiers
    for report in msg.reports:
        assert report.report.sources[0].source_id == SRC
        assert report.report.result_ids == tuple(
            r.observation.sources[0].local_id for r in report.results
        )
        for res in report.results:
            obs = res.observation
            assert obs.category == ("laboratory",)
            assert obs.sources[0].local_id == local_id("obs", res.key)
            assert res.key.startswith(report.key + "/")
    # The same bytes with CR terminators and no BOM map to the same records.
    text = raw(name).removeprefix(BOM).decode("utf-8").replace("\r\n", "\r").replace("\n", "\r")
    assert parse(text, SRC) == msg


def test_every_other_message_type_is_rejected_with_ar() -> None:
    others = [
        p
        for p in sorted(folder().rglob("*.hl7"))
        if p.relative_to(folder()).as_posix() not in ORU_FILES
    ]
    assert len(others) == 17
    for path in others:
        data = path.read_bytes()
        with pytest.raises(MessageRejected) as info:
            parse(data, SRC)
        error = info.value
        code, trigger = message_type(data).split("^")[:2]
        assert (error.ack_code, error.error_code) == ("AR", "200"), path.name
        assert error.reason == f"unsupported message type {code}^{trigger}"
        assert error.__cause__ is None


# ---- values checked by hand ---------------------------------------------------------------


def test_ghh_lab_glucose_python_hl7_sample() -> None:
    """python-hl7/ghh-lab-oru-r01.hl7 (v2.4, CR):
    PID|||555-44-4444||EVERYWOMAN^EVE^E^^^^L|JONES|196203520|F|...
    OBR|1|845439^GHH OE|1045813^GHH LAB|1554-5^GLUCOSE|||200202150730|...  (F in OBR-24)
    OBX|1|SN|1554-5^GLUCOSE^POST 12H CFST:MCNC:PT:SER/PLAS:QN||^182|mg/dl|70_105|H|||F
    OBX|2|FN|1553-5^GLUCOSE^POST 12H CFST:MCNC:PT:SER/PLAS:QN||^182|mg/dl|70_105|H|||F
    """
    msg = load("python-hl7/ghh-lab-oru-r01.hl7")
    assert (msg.control_id, msg.version) == ("CNTRL-3456", "2.4")
    patient = msg.patient
    assert patient.identifiers == (Identifier(None, "555-44-4444", None),)
    assert patient.link.local_id == local_id("pat", "|555-44-4444")
    assert patient.name == HumanName("EVERYWOMAN", ("EVE", "E"), "EVE E EVERYWOMAN")
    assert patient.birth_date is None  # "196203520" is not a date (nine digits, day 52)
    assert patient.gender == "female"

    (report,) = msg.reports
    assert report.key == "1045813^GHH LAB"
    dr = report.report
    assert dr.code == CodeableConcept("GLUCOSE", (Coding(None, "1554-5", "GLUCOSE"),))
    # This copy has one field fewer before the status: "F" sits in OBR-24, OBR-25 is empty.
    assert (dr.status, dr.effective, dr.issued) == (None, "2002-02-15T07:30", None)
    assert dr.meta.last_updated == "2002-02-15T09:30"

    glucose, fn = report.results
    assert (glucose.key, glucose.status) == ("1045813^GHH LAB/1554-5/", "F")
    obs = glucose.observation
    # OBX-3 component 3 is free text, not a coding system name: no system.
    assert obs.code == CodeableConcept("GLUCOSE", (Coding(None, "1554-5", "GLUCOSE"),))
    assert obs.value_quantity == Quantity(182.0, "mg/dl")
    assert obs.reference_range == (
        ReferenceRange(Quantity(70.0, "mg/dl"), Quantity(105.0, "mg/dl"), "70_105"),
    )
    assert (obs.interpretation, obs.status) == (("H",), "final")
    assert obs.effective == "2002-02-15T07:30"  # no OBX-14: OBR-7
    # OBX-2 "FN" is not an observation value type: kept without a value, and counted.
    assert fn.key == "1045813^GHH LAB/1553-5/"
    assert (fn.observation.value_quantity, fn.observation.value_string) == (None, None)
    assert msg.skipped == 1


def test_ghh_lab_glucose_microsoft_variant() -> None:
    """microsoft-fhir-converter/ORU-R01-RMGEAD.hl7: the same message with offsets, a valid DOB
    (19620320) and only the SN OBX."""
    msg = load(f"{MS}/ORU-R01-RMGEAD.hl7")
    assert msg.patient.birth_date == "1962-03-20"
    (report,) = msg.reports
    assert report.report.status == "final"  # OBR-25 F here
    assert report.report.effective == "2002-02-15T07:30:00+06:00"
    assert report.report.meta.last_updated == "2002-02-15T09:30:00+06:00"
    (glucose,) = report.results
    assert glucose.observation.value_quantity == Quantity(182.0, "mg/dl")
    assert glucose.observation.interpretation == ("H",)
    assert msg.skipped == 0
    # Same filler order and code as the python-hl7 sample: the same result, by key and id.
    other = load("python-hl7/ghh-lab-oru-r01.hl7").reports[0].results[0]
    assert (glucose.key, glucose.observation.id) == (other.key, other.observation.id)


def test_nist_lri_cbc() -> None:
    """microsoft-fhir-converter/LRI_2.0-NG_CBC_Typ_Message.hl7 (v2.5.1, BOM, LF):
    PID|1||PATID1234^^^NIST MPI^MR||Jones^William^A||19610615|M||...
    OBR|1|ORD666555^NIST EHR|R-991133^NIST Lab Filler|57021-8^CBC W Auto Differential panel in
      Blood^LN^4456544^CBC^99USI^^^...|||20110103143428-0800|...|20110104170028-0800|||F|...
    OBX|2|NM|718-7^Hemoglobin [Mass/volume] in Blood^LN^...||12.5|g/mL^grams per milliliter^UCUM
      |13 to 18|L|||F|||20110103143428-0800|...
    """
    msg = load(f"{MS}/LRI_2.0-NG_CBC_Typ_Message.hl7")
    assert (msg.control_id, msg.version, msg.skipped) == ("NIST-LRI-NG-002.00", "2.5.1", 0)
    patient = msg.patient
    assert patient.identifiers == (Identifier("urn:hl7v2:authority:NIST%20MPI", "PATID1234", "MR"),)
    assert patient.name == HumanName("Jones", ("William", "A"), "William A Jones")
    assert (patient.birth_date, patient.gender) == ("1961-06-15", "male")

    (report,) = msg.reports
    assert report.key == "R-991133^NIST Lab Filler"
    dr = report.report
    assert dr.code == CodeableConcept(
        "CBC W Auto Differential panel in Blood",
        (
            Coding(LOINC, "57021-8", "CBC W Auto Differential panel in Blood"),
            Coding("urn:hl7v2:local:99USI", "4456544", "CBC"),
        ),
    )
    assert dr.status == "final"
    assert (dr.effective, dr.issued) == ("2011-01-03T14:34:28-08:00", "2011-01-04T17:00:28-08:00")
    assert dr.meta.last_updated == "2011-05-31T14:05:51-05:00"
    assert len(report.results) == 28
    assert {r.status for r in report.results} == {"F"}
    assert {r.observation.effective for r in report.results} == {"2011-01-03T14:34:28-08:00"}

    rbc = result(report, "26453-1").observation
    assert rbc.value_quantity == Quantity(4.41, "10*6/uL", UCUM, "10*6/uL")
    assert rbc.reference_range[0].text == "4.3 to 6.2"
    assert (rbc.reference_range[0].low, rbc.reference_range[0].high) == (
        Quantity(4.3, "10*6/uL", UCUM, "10*6/uL"),
        Quantity(6.2, "10*6/uL", UCUM, "10*6/uL"),
    )
    hgb = result(report, "718-7")
    assert hgb.key == "R-991133^NIST Lab Filler/718-7/"
    assert hgb.observation.value_quantity == Quantity(12.5, "g/mL", UCUM, "g/mL")
    assert hgb.observation.interpretation == ("L",)
    assert hgb.observation.code.text == "Hemoglobin [Mass/volume] in Blood"
    wbc = result(report, "26464-8").observation
    assert wbc.value_quantity == Quantity(105600.0, "{cells}/uL", UCUM, "{cells}/uL")
    assert wbc.interpretation == ("HH",)
    assert wbc.reference_range[0].low == Quantity(4300.0, "{cells}/uL", UCUM, "{cells}/uL")
    assert result(report, "30385-9").observation.value_quantity == Quantity(10.5, "%", UCUM, "%")
    assert result(report, "26449-9").observation.value_quantity == Quantity(
        2.1, "10*3/uL", UCUM, "10*3/uL"
    )
    aniso = result(report, "38892-6").observation
    assert aniso.value_concept == CodeableConcept(
        "Present ++ out of ++++", (Coding(SNOMED, "260348001", "Present ++ out of ++++"),)
    )
    assert aniso.value_string == "Present ++ out of ++++"
    assert aniso.interpretation == ("A",)
    morphology = result(report, "6742-1").observation
    assert morphology.value_string == "Many spherocytes present."
    assert morphology.value_quantity is None
    assert morphology.reference_range == ()


def test_lab_oru_1_preliminary_two_orders_and_pid19_ssn() -> None:
    """microsoft-fhir-converter/LAB-ORU-1.hl7 (v2.5, BOM, LF):
    PID|1||10006579^^^1^MR^1||DUCK^DONALD^D||19241010|M||...|40007716^^^AccMgr^VN^1|123121234|...
    OBR|2|88502218|82503246|24317-0^Hemogram and platelet count, automated^LN|...  (OBR-25 F)
    OBX|1|NM|11156-7^LEUKOCYTES^LN||||||||I|
    OBX|2|NM|11273-0^ERYTHROCYTES^LN||4.06|tera.l-1||N|||P|||20141006062700+0700
    OBR|1|855238581|890775544|26464-8^Differential WBC Count, buffy coat^LN|... (OBR-25 empty)
    """
    msg = load(f"{MS}/LAB-ORU-1.hl7")
    assert (msg.control_id, msg.version, msg.skipped) == ("182", "2.5", 0)
    patient = msg.patient
    assert patient.identifiers == (
        Identifier("urn:hl7v2:authority:1", "10006579", "MR"),
        Identifier(US_SSN, "123121234", "SS"),  # PID-19
    )
    assert patient.name == HumanName("DUCK", ("DONALD", "D"), "DONALD D DUCK")
    assert (patient.birth_date, patient.gender) == ("1924-10-10", "male")
    hemogram, differential = msg.reports
    assert (hemogram.key, differential.key) == ("82503246", "890775544")
    assert hemogram.report.status == "final"
    assert differential.report.status is None
    assert hemogram.report.effective is None  # OBR-7 empty (the times sit in OBR-23)
    wbc = result(hemogram, "11156-7")
    assert (wbc.status, wbc.observation.status, wbc.observation.value_quantity) == (
        "I",
        "registered",
        None,
    )
    rbc = result(hemogram, "11273-0")
    assert rbc.status == "P"
    assert rbc.observation.value_quantity == Quantity(4.06, "tera.l-1")
    assert rbc.observation.effective == "2014-10-06T06:27:00+07:00"
    assert result(hemogram, "11125-2").observation.value_quantity == Quantity(221.0, "giga.l-1")
    assert [r.observation.value_quantity for r in differential.results] == [
        Quantity(v, "%") for v in (72.0, 2.0, 20.0, 6.0, 0.0)
    ]
    assert msg.reports[0].report.meta.last_updated == "2014-10-06T06:45:00+07:00"


def test_lab_oru_2_finalises_the_same_results_under_the_same_keys() -> None:
    """LAB-ORU-2.hl7 re-sends both orders of LAB-ORU-1.hl7 as final, in another order:
    OBX|1|NM|20509-6^HEMOGLOBIN^LN||13.4|g/l-1||N|||F|||20141006083000+0700"""
    first, second = load(f"{MS}/LAB-ORU-1.hl7"), load(f"{MS}/LAB-ORU-2.hl7")
    ids = {r.key: r.observation.id for rep in first.reports for r in rep.results}
    assert ids == {r.key: r.observation.id for rep in second.reports for r in rep.results}
    assert first.patient.link == second.patient.link
    hemogram = next(r for r in second.reports if r.key == "82503246")
    hgb = result(hemogram, "20509-6")
    assert (hgb.status, hgb.observation.status) == ("F", "final")
    assert hgb.observation.value_quantity == Quantity(13.4, "g/l-1")
    assert {r.status for rep in second.reports for r in rep.results} == {"F"}


def test_public_health_oru_with_specimen_and_stray_observations() -> None:
    """microsoft-fhir-converter/ORU-R01-01.hl7 (v2.5.1, LF): two OBX before any OBR (RP, and ED
    without OBX-3), one CWE result with two NTEs, then SPM with two specimen OBX:
    PID|1||14^^^IA PHIMS Stage&2.16.840.1.114222.4.3.3.5.1.2&ISO^PI^...||Finn^Huckleberry^^^^^L
      ||19630815|M|...
    OBR|1|845439^GHH OE|986^IA PHIMS Stage^2.16...^ISO|625-4^Bacteria identified in Stool by
      Culture^XYZ^...|R|202010101700+0215|200202150730+0215|...|200203150730+0215||BLB|F|...
    NTE|1|L|Enteric culture includes testing for ... E.coli O157:H7 \\T\\ other STECs, ...
    OBX|1|CWE|625-4^...^XYZ^^^^2.33^^result1|1|27268008^Salmonella^SCT^^^^^^Salmonella species
      |beats/min^^ISO|70-80|A^A^HL70078^^^^2.5|||P|||20120301|...
    """
    msg = load(f"{MS}/ORU-R01-01.hl7")
    assert msg.skipped == 4  # 2 before the OBR, 2 specimen observations after SPM
    assert msg.patient.identifiers == (
        Identifier("urn:oid:2.16.840.1.114222.4.3.3.5.1.2", "14", "PI"),
    )
    assert msg.patient.name == HumanName("Finn", ("Huckleberry",), "Huckleberry Finn")
    assert (msg.patient.birth_date, msg.patient.gender) == ("1963-08-15", "male")
    (report,) = msg.reports
    assert report.key == "986^IA PHIMS Stage"
    dr = report.report
    assert dr.code.coding[0] == Coding(
        "urn:hl7v2:codesystem:XYZ", "625-4", "Bacteria identified in Stool by Culture"
    )
    assert (dr.status, dr.effective, dr.issued) == (
        "final",
        "2002-02-15T07:30+02:15",
        "2002-03-15T07:30+02:15",
    )
    assert dr.conclusion is not None
    assert "E.coli O157:H7 & other STECs" in dr.conclusion  # \T\ unescaped
    assert dr.conclusion.endswith("\nAllergy to peanuts observed.")
    (culture,) = report.results
    assert (culture.key, culture.status) == ("986^IA PHIMS Stage/625-4/1", "P")
    obs = culture.observation
    assert obs.status == "preliminary"
    assert obs.value_concept == CodeableConcept(
        "Salmonella", (Coding(SNOMED, "27268008", "Salmonella"),)
    )
    assert obs.interpretation == ("A",)
    assert obs.effective == "2012-03-01"
    assert obs.notes == ("Submission of serum", "No Antibodies Detected")
    assert obs.reference_range[0].text == "70-80"
    assert obs.reference_range[0].low == Quantity(70.0, "beats/min")
    assert obs.meta.last_updated == "2012-03-14T12:59-02:15"


# ---- PID-11 address, PID-13 / PID-14 telecom ----------------------------------------------


def test_oru_patient_addresses_and_phones() -> None:
    # ghh-lab-oru-r01.hl7 (v2.4): ...|153 FERNWOOD DR.^^STATESVILLE^OH^35292||(206)3345232|
    # (206)752-121|...
    ghh = load("python-hl7/ghh-lab-oru-r01.hl7").patient
    assert ghh.addresses == (
        Address(None, ("153 FERNWOOD DR.",), "STATESVILLE", "OH", "35292", None),
    )
    assert ghh.telecom == (
        ContactPoint("phone", "(206)3345232", "home"),
        ContactPoint("phone", "(206)752-121", "work"),
    )
    # ORU-R01-01.hl7 (v2.5.1): PID-11 721 SPRING STREET^^GRINNELL^IA^50112^USA^H, no phone.
    public_health = load(f"{MS}/ORU-R01-01.hl7").patient
    assert public_health.addresses == (
        Address("home", ("721 SPRING STREET",), "GRINNELL", "IA", "50112", "USA"),
    )
    assert public_health.telecom == ()
    # LAB-ORU-1.hl7 (v2.3): 111 DUCK ST^^FOWL^CA^999990000^^M (mailing: no use); the same
    # number as home (PID-13) and business (PID-14) phone.
    duck = load(f"{MS}/LAB-ORU-1.hl7").patient
    assert duck.addresses == (Address(None, ("111 DUCK ST",), "FOWL", "CA", "999990000", None),)
    assert duck.telecom == (
        ContactPoint("phone", "8885551212", "home"),
        ContactPoint("phone", "8885551212", "work"),
    )
    # The NIST LRI CBC message sends neither.
    nist = load(f"{MS}/LRI_2.0-NG_CBC_Typ_Message.hl7").patient
    assert (nist.addresses, nist.telecom) == ((), ())


def pid_of(name: str) -> tuple[Reader, Segment]:
    """The PID of any message in the folder (ORU^R01 or not), split by the mapping's syntax."""
    text, _ = decode_message(raw(name))
    separators = read_separators(split_segments(text, text[3])[0])
    assert separators is not None
    segments = parse_segments(split_segments(text, separators.field))
    return Reader(separators), next(s for s in segments if s.name == "PID")


def test_pid_contact_details_of_the_other_message_types() -> None:
    # VXU.hl7 (v2.5.1): 9200 Wellington Trail^^Bozeman^MT^59715^USA^P and
    # ^PRN^PH^^^406^5557896~^NET^^Elise.Wong@isp.com: area code and number, e-mail in XTN-4.
    r, pid = pid_of(f"{MS}/VXU.hl7")
    assert addresses(r, pid) == (
        Address("home", ("9200 Wellington Trail",), "Bozeman", "MT", "59715", "USA"),
    )
    assert telecom(r, pid) == (
        ContactPoint("phone", "(406) 555-7896", "home"),
        ContactPoint("email", "Elise.Wong@isp.com", "home"),
    )
    # RDE-O11-01.hl7: 1000&Hospital Lane^Ste. 123^Ann Arbor ^MI^99999^USA^M^^&W^... (SAD
    # split into number and street name), PID-13 78788788^^CP^5555^^^1111^...~12121212^^CP
    # (cell phones; "5555" in XTN-4 is no e-mail), PID-14 7777^^CP~1111^^TDD.
    r, pid = pid_of(f"{MS}/RDE-O11-01.hl7")
    assert addresses(r, pid) == (
        Address(None, ("1000 Hospital Lane", "Ste. 123"), "Ann Arbor", "MI", "99999", "USA"),
    )
    assert telecom(r, pid) == (
        ContactPoint("phone", "78788788", "mobile"),
        ContactPoint("phone", "12121212", "mobile"),
        ContactPoint("phone", "7777", "mobile"),
        ContactPoint("other", "1111", "work"),
    )


def test_every_pid_in_the_folder_maps_its_contact_details() -> None:
    with_address = with_phone = 0
    for path in sorted(folder().rglob("*.hl7")):
        r, pid = pid_of(path.relative_to(folder()).as_posix())
        found, points = addresses(r, pid), telecom(r, pid)
        assert all(a.lines or a.city or a.postal_code for a in found), path.name
        assert all(p.value and p.system in ("phone", "email", "other") for p in points)
        with_address += bool(found)
        with_phone += any(p.system == "phone" for p in points)
    assert (with_address, with_phone) == (22, 21)  # not NIST LRI; nor ORU-R01-01 phones
