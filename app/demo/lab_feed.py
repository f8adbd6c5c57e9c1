"""The demo's laboratory: "City Lab" sends ORU^R01 v2.5.1 results for the demo population.

For every person the feed holds three kinds of result, so the aggregated view has something to
show in each respect:

- results IDENTICAL to lab Observations the hospital FHIR upstream already holds (same LOINC
  code, effective time to the second, value and UCUM unit): the same fact reaching PatientGraph
  twice, to be recognised as one;
- lab-only results (a metabolic panel with a structured-numeric eGFR, a urinalysis with a coded
  and a text value, notes on orders and results, escape sequences in text);
- a correction: the metabolic panel is sent final, then re-sent later with the potassium result
  corrected (OBR-25 and OBX-11 = C, another value), under the same order number, so both
  versions map to the same result key.

The patient is identified by a City Lab MRN (assigning authority CITYLAB, OID
2.16.840.1.113883.3.1, type MR) and the person's SSN (authority USSSA, type SS), which is what
links the lab's patient to the FHIR upstreams' patients; PID-11 and PID-13 carry the same home
address, phone number (v2.5 area code and local number components) and e-mail as the EHRs.
Only `random.Random` seeded from each person drives the values, so the same population always
yields the same messages; messages come back in the order a lab would send them (by MSH-7),
each with a unique MSH-10.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from app.demo.catalog import LOINC_DISPLAY, PANEL_OF
from app.demo.contacts import contact_of
from app.demo.generator import ANCHOR, DemoPerson, DemoPopulation
from app.sources.hl7v2.syntax import Separators, escape

LAB_AUTHORITY: Final = "CITYLAB"
SENDING_APPLICATION: Final = "CITYLAB-LIS"
# How the demo listener lists this feed in allowed_senders (MSH-3.1 ^ MSH-4.1).
SENDING_PARTY: Final = f"{SENDING_APPLICATION}^{LAB_AUTHORITY}"
LAB_OID: Final = "2.16.840.1.113883.3.1"
VERSION: Final = "2.5.1"
SEPS: Final = Separators()

# (code, display) of lab-only panels and tests; (low, high, decimals) reference ranges in UCUM.
METABOLIC_PANEL: Final = ("24323-8", "Comprehensive metabolic 2000 panel - Serum or Plasma")
URINALYSIS_PANEL: Final = ("24357-6", "Urinalysis macro (dipstick) panel - Urine")
POTASSIUM: Final = ("2823-3", "Potassium [Moles/volume] in Serum or Plasma")
SODIUM: Final = ("2951-2", "Sodium [Moles/volume] in Serum or Plasma")
CREATININE: Final = ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma")
EGFR: Final = (
    "98979-8",
    "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or "
    "Blood by Creatinine-based formula (CKD-EPI 2021)",
)
URINE_COLOR: Final = ("5778-6", "Color of Urine")
URINE_PROTEIN: Final = ("20454-5", "Protein [Presence] in Urine by Test strip")
URINE_COLORS: Final = (("YEL", "Yellow"), ("STR", "Straw"), ("AMB", "Amber"))
SPECIMENS: Final[Mapping[str, tuple[str, str]]] = {
    "blood": ("119297000", "Blood specimen"),
    "serum": ("119364003", "Serum specimen"),
    "urine": ("122575003", "Urine specimen"),
}


@dataclass(frozen=True)
class _Obx:
    value_type: str
    code: tuple[str, str]
    value: str  # already in HL7 form (escaped, components joined)
    unit: str = ""
    reference: str = ""
    flag: str = ""
    status: str = "F"
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Order:
    filler: str
    panel: tuple[str, str]
    drawn: datetime
    issued: datetime
    specimen: str
    results: tuple[_Obx, ...]
    status: str = "F"
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Message:
    sent: datetime
    person: DemoPerson
    mrn: str
    orders: tuple[_Order, ...]


def lab_messages(population: DemoPopulation, *, source_id: str = "citylab") -> list[str]:
    """ORU^R01 v2.5.1 messages (segments terminated by CR) for every demo person."""
    mrns: set[str] = set()
    drafts: list[_Message] = []
    hospital = _hospital_labs(population)
    for number, person in enumerate(population.people, start=1):
        rng = random.Random(f"{source_id}|{person.key}|{person.ssn}")
        mrn = _unique(rng, mrns)
        labs = hospital.get(person.local_ids.get("hospital", ""), [])
        drafts.extend(_person_messages(rng, person, mrn, number, labs))
    drafts.sort(key=lambda m: (m.sent, m.person.key))
    prefix = re.sub(r"[^A-Z0-9]", "", source_id.upper())[:8] or "LAB"
    return [_render(m, f"{prefix}{n:06d}") for n, m in enumerate(drafts, start=1)]


# --- choosing the results -------------------------------------------------------------------------


def _hospital_labs(population: DemoPopulation) -> dict[str, list[Mapping[str, Any]]]:
    """Hospital lab Observations with a quantity, by hospital patient id, oldest first."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for resource in population.upstreams.get("hospital", ()):
        if resource.get("resourceType") != "Observation" or "valueQuantity" not in resource:
            continue
        categories = {c.get("code") for cc in resource.get("category", []) for c in cc["coding"]}
        if "laboratory" not in categories:
            continue
        patient = str(resource["subject"]["reference"]).removeprefix("Patient/")
        out.setdefault(patient, []).append(resource)
    for labs in out.values():
        labs.sort(key=lambda r: (r["effectiveDateTime"], r["id"]))
    return out


def _person_messages(
    rng: random.Random,
    person: DemoPerson,
    mrn: str,
    number: int,
    labs: Sequence[Mapping[str, Any]],
) -> list[_Message]:
    filler = iter(f"CL{number:03d}{k:03d}" for k in range(1, 1000))
    messages = []
    # 1. The same facts as the hospital: one order per copied Observation, sent when issued.
    for resource in rng.sample(list(labs), min(2, len(labs))):
        order = _copy_of(resource, next(filler))
        messages.append(_Message(order.issued, person, mrn, (order,)))
    # 2. Lab-only results: a metabolic panel and a urinalysis from one draw, in one message.
    drawn = _office_hours(rng, ANCHOR - timedelta(days=rng.randint(30, 700)))
    issued = drawn + timedelta(hours=rng.randint(3, 20), minutes=rng.choice((0, 15, 30, 45)))
    panel = _metabolic(rng, next(filler), drawn, issued)
    urine = _urinalysis(rng, next(filler), drawn, issued)
    messages.append(_Message(issued, person, mrn, (panel, urine)))
    # 3. The correction: the whole panel again, potassium corrected, a day or three later.
    corrected_at = issued + timedelta(days=rng.randint(1, 3), hours=rng.randint(1, 6))
    messages.append(_Message(corrected_at, person, mrn, (_corrected(rng, panel),)))
    return messages


def _copy_of(resource: Mapping[str, Any], filler: str) -> _Order:
    code = resource["code"]["coding"][0]["code"]
    quantity = resource["valueQuantity"]
    reference = (resource.get("referenceRange") or [{}])[0]
    low, high = (reference.get(k, {}).get("value") for k in ("low", "high"))
    flag = (resource.get("interpretation") or [{"coding": [{}]}])[0]["coding"][0].get("code")
    obx = _Obx(
        "NM",
        (code, LOINC_DISPLAY[code]),
        _number(quantity["value"]),
        quantity.get("code") or quantity["unit"],
        _range(low, high),
        flag or "",
    )
    panel = PANEL_OF.get(code, code)
    drawn = datetime.fromisoformat(resource["effectiveDateTime"])
    issued = datetime.fromisoformat(resource.get("issued") or resource["effectiveDateTime"])
    return _Order(filler, (panel, LOINC_DISPLAY[panel]), drawn, issued, "blood", (obx,))


def _metabolic(rng: random.Random, filler: str, drawn: datetime, issued: datetime) -> _Order:
    creatinine = round(rng.uniform(0.6, 1.4), 2)
    egfr = ">^90" if creatinine < 1.0 else f"^{rng.randint(60, 89)}"
    results = (
        _measured(POTASSIUM, round(rng.uniform(3.4, 5.3), 1), "mmol/L", 3.5, 5.1),
        _measured(SODIUM, rng.randint(134, 146), "mmol/L", 136, 145),
        _measured(CREATININE, creatinine, "mg/dL", 0.6, 1.3),
        _Obx("SN", EGFR, egfr, "mL/min/{1.73_m2}", ">60", "N"),
    )
    note = "Fasting specimen, drawn at 08:00 & centrifuged within 30 min."
    return _Order(filler, METABOLIC_PANEL, drawn, issued, "serum", results, notes=(note,))


def _urinalysis(rng: random.Random, filler: str, drawn: datetime, issued: datetime) -> _Order:
    code, text = rng.choice(URINE_COLORS)
    color = _Obx("CWE", URINE_COLOR, f"{code}^{text}^99CLB", flag="N")
    protein = _Obx(
        "ST",
        URINE_PROTEIN,
        "Negative",
        flag="N",
        notes=("Dipstick read visually; trace values confirmed by sulfosalicylic acid test.",),
    )
    return _Order(filler, URINALYSIS_PANEL, drawn, issued, "urine", (color, protein))


def _corrected(rng: random.Random, panel: _Order) -> _Order:
    first, *rest = panel.results
    before = float(first.value)
    after = round(before + rng.choice((-1, 1)) * rng.uniform(0.3, 0.8), 1)
    if after == before or after <= 0:
        after = round(before + 0.5, 1)
    fixed = _measured(
        POTASSIUM,
        after,
        "mmol/L",
        3.5,
        5.1,
        status="C",
        notes=("Corrected result: specimen re-analysed after a hemolysis check.",),
    )
    return _Order(
        panel.filler,
        panel.panel,
        panel.drawn,
        panel.issued,
        panel.specimen,
        (fixed, *rest),
        status="C",
        notes=panel.notes,
    )


def _measured(
    code: tuple[str, str],
    value: float,
    unit: str,
    low: float | None,
    high: float | None,
    *,
    status: str = "F",
    notes: tuple[str, ...] = (),
) -> _Obx:
    flag = (
        "H"
        if high is not None and value > high
        else "L"
        if low is not None and value < low
        else "N"
    )
    return _Obx("NM", code, _number(value), unit, _range(low, high), flag, status, notes)


# --- HL7 text -------------------------------------------------------------------------------------


def _render(message: _Message, control_id: str) -> str:
    person = message.person
    given = person.given[0] if person.given else ""
    middle = " ".join(person.given[1:])
    contact = contact_of(person)  # the address, phone and e-mail the EHRs have too
    address = [contact.street, contact.unit or "", contact.city, contact.state]
    address += [contact.postal_code, "USA", "H"]
    phone = f"^PRN^PH^^^{contact.area_code}^{contact.local_number}"
    segments = [
        _segment(
            "MSH",
            {
                3: SENDING_APPLICATION,
                4: f"{LAB_AUTHORITY}^{LAB_OID}^ISO",
                5: "PATIENTGRAPH",
                6: "PATIENTGRAPH",
                7: _ts(message.sent),
                9: "ORU^R01^ORU_R01",
                10: control_id,
                11: "P",
                12: VERSION,
            },
        ),
        _segment(
            "PID",
            {
                1: "1",
                3: f"{message.mrn}^^^{LAB_AUTHORITY}&{LAB_OID}&ISO^MR~{person.ssn}^^^USSSA^SS",
                5: f"{_esc(person.family)}^{_esc(given)}^{_esc(middle)}^^^^L",
                7: person.birth_date.replace("-", ""),
                8: {"female": "F", "male": "M"}.get(person.gender, "U"),
                11: "^".join(_esc(part) for part in address),
                13: f"{phone}~^NET^Internet^{_esc(contact.email)}",
            },
        ),
        _segment("PV1", {1: "1", 2: "O"}),
    ]
    for order in message.orders:
        segments.extend(_order_segments(order))
    return "\r".join(segments) + "\r"


def _order_segments(order: _Order) -> list[str]:
    placer = f"{order.filler.replace('CL', 'PG', 1)}^PATIENTGRAPH"
    filler = f"{order.filler}^{LAB_AUTHORITY}"
    panel_code, panel_text = order.panel
    out = [
        _segment("ORC", {1: "RE", 2: placer, 3: filler}),
        _segment(
            "OBR",
            {
                1: "1",
                2: placer,
                3: filler,
                4: f"{panel_code}^{_esc(panel_text)}^LN",
                7: _ts(order.drawn),
                22: _ts(order.issued),
                25: order.status,
            },
        ),
    ]
    out.extend(
        _segment("NTE", {1: str(n), 2: "L", 3: _esc(note)}) for n, note in enumerate(order.notes, 1)
    )
    for n, obx in enumerate(order.results, start=1):
        code, display = obx.code
        units = f"{_esc(obx.unit)}^{_esc(obx.unit)}^UCUM" if obx.unit else ""
        out.append(
            _segment(
                "OBX",
                {
                    1: str(n),
                    2: obx.value_type,
                    3: f"{code}^{_esc(display)}^LN",
                    5: obx.value,
                    6: units,
                    7: _esc(obx.reference),
                    8: obx.flag,
                    11: obx.status,
                    14: _ts(order.drawn),
                },
            )
        )
        out.extend(
            _segment("NTE", {1: str(k), 2: "L", 3: _esc(note)})
            for k, note in enumerate(obx.notes, 1)
        )
    specimen_code, specimen_text = SPECIMENS[order.specimen]
    out.append(
        _segment("SPM", {1: "1", 4: f"{specimen_code}^{specimen_text}^SCT", 17: _ts(order.drawn)})
    )
    return out


def _segment(name: str, fields: Mapping[int, str]) -> str:
    """A segment from {field number: HL7 text} (MSH-1 and MSH-2 are implied)."""
    first = 3 if name == "MSH" else 1
    values = [fields.get(n, "") for n in range(first, max(fields) + 1)]
    if name == "MSH":
        return SEPS.field.join(["MSH" + SEPS.field + SEPS.encoding_characters, *values])
    return SEPS.field.join([name, *values])


def _esc(text: str) -> str:
    return escape(text, SEPS)


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%S") + "+0000"


def _number(value: float) -> str:
    return str(value)


def _range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"{_number(low)}-{_number(high)}"
    if high is not None:
        return f"<{_number(high)}"
    return f">{_number(low)}" if low is not None else ""


def _office_hours(rng: random.Random, day: datetime) -> datetime:
    start = day.replace(hour=0, minute=0, second=0, microsecond=0)
    return start + timedelta(minutes=rng.randrange(7 * 60, 16 * 60, 5))


def _unique(rng: random.Random, taken: set[str]) -> str:
    """A City Lab MRN no other demo person has."""
    while (value := f"CL{rng.randint(100_000, 999_999)}") in taken:
        pass
    taken.add(value)
    return value
