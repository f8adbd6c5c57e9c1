"""Deterministic pharmacy fills for the demo population: what a medication history network
would answer about each person.

Per person: fills for all but one of the medications their EHRs record (the same RxNorm code
and the same description text as the EHR's medication display, plus an NDC), chronic drugs
refilled several times, and at least one drug only the pharmacy knows (prescribed outside the
two demo EHRs), itself refilled. Dates hang off the generator's ANCHOR; only
`random.Random(<string seed>)` drives the choices, so the same population always yields the
same fills.

Invented on purpose: pharmacy names and NCPDP ids, prescriber names, and NDCs (11-digit 5-4-2
shape under the never-assigned labeler 00000, so none names a real product). Every NPI fails
its Luhn check digit, so it can never be a real provider's (like the generator's 999 SSNs).
RxNorm codes and descriptions are real.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from types import MappingProxyType
from typing import Any, Final

from app.demo.catalog import CLINICIANS, RXNORM
from app.demo.generator import ANCHOR, UPSTREAMS, DemoPerson, DemoPopulation

FillKey = tuple[str, str, str]  # (family, first given name, birth date)

TABLET: Final = "C48542"  # NCPDP QuantityUnitOfMeasure (NCI Thesaurus) codes
CAPSULE: Final = "C48480"
GRAM: Final = "C48155"


@dataclass(frozen=True)
class Drug:
    ndc: str
    unit: str  # NCI code
    per_day: float  # units a day; 0: a fixed package (inhalers)
    package: float  # units per fill when per_day is 0
    days: tuple[int, ...]  # days supply choices
    chronic: bool


def _tablets(ndc: str, per_day: float = 1, days: tuple[int, ...] = (30, 90)) -> Drug:
    return Drug(ndc, TABLET, per_day, 0, days, True)


# RxNorm code -> how pharmacies dispense it (codes of the generator's MEDICATIONS).
DRUGS: Final[Mapping[str, Drug]] = MappingProxyType(
    {
        "860975": _tablets("00000086001"),
        "314076": _tablets("00000314101"),
        "197361": _tablets("00000197301"),
        "310798": _tablets("00000310701"),
        "259255": _tablets("00000259201"),
        "895994": Drug("00000895901", GRAM, 0, 10.6, (30,), True),  # 120 actuations
        "745679": Drug("00000745601", GRAM, 0, 18, (25,), True),  # 200 actuations, as needed
        "308182": Drug("00000308101", CAPSULE, 3, 0, (10,), False),
        "834061": Drug("00000834001", TABLET, 4, 0, (10,), False),
        "313782": Drug("00000313701", TABLET, 8, 0, (12,), False),
    }
)
# Drugs only the pharmacy knows: (RxNorm code, description, sig, how dispensed).
PHARMACY_ONLY: Final = (
    (
        "312941",
        "sertraline 50 MG Oral Tablet",
        "Take 1 tablet by mouth once daily",
        _tablets("00000312901"),
    ),
    (
        "966221",
        "levothyroxine sodium 0.05 MG Oral Tablet",
        "Take 1 tablet by mouth every morning on an empty stomach",
        _tablets("00000966201"),
    ),
    (
        "979492",
        "losartan potassium 50 MG Oral Tablet",
        "Take 1 tablet by mouth once daily",
        _tablets("00000979401"),
    ),
    (
        "311372",
        "Loratadine 10 MG Oral Tablet",
        "Take 1 tablet by mouth once daily for allergies",
        _tablets("00000311301", days=(30,)),
    ),
)
PHARMACIES: Final = (  # (NCPDP id, business name)
    ("0512346", "Riverbend Community Pharmacy"),
    ("0534871", "Maple Street Drug"),
    ("0598120", "Harborview Apothecary"),
)
MAIL_ORDER: Final = ("0577215", "Northgate Mail Service Pharmacy")  # 90-day supplies
OUTSIDE_PRESCRIBERS: Final = ("Dr. Tobias Wren", "Dr. Lena Hartwell", "Dr. Priya Raman")


@dataclass(frozen=True)
class Order:
    """A medication one of the person's EHRs records."""

    code: str
    display: str
    sig: str
    written: date
    prescriber: str


def pharmacy_fills(population: DemoPopulation) -> dict[FillKey, list[dict[str, Any]]]:
    """Fills per person, keyed by (family, first given name, birth date), oldest first."""
    orders = _orders_by_person(population)
    fills: dict[FillKey, list[dict[str, Any]]] = {}
    for person in population.people:
        rng = random.Random(f"pharmacy:{person.key}")
        key = (person.family, person.given[0], person.birth_date)
        fills.setdefault(key, []).extend(_person_fills(rng, orders.get(person.key, [])))
    for person_fills in fills.values():
        person_fills.sort(key=lambda f: (f["last_fill_date"], f["drug_description"]))
    return fills


# --- the EHR side ---------------------------------------------------------------------------------


def _orders_by_person(population: DemoPopulation) -> dict[str, list[Order]]:
    """Each person's distinct EHR medications (by RxNorm code), in code order."""
    owner = {f"Patient/{p.local_ids[u]}": p for p in population.people for u in UPSTREAMS}
    found: dict[str, dict[str, Order]] = {}
    for upstream in UPSTREAMS:
        for resource in population.upstreams[upstream]:
            person = owner.get(resource.get("subject", {}).get("reference", ""))
            order = _order(resource, person) if person is not None else None
            if person is not None and order is not None:
                found.setdefault(person.key, {}).setdefault(order.code, order)
    return {key: [by_code[c] for c in sorted(by_code)] for key, by_code in found.items()}


def _order(resource: Mapping[str, Any], person: DemoPerson) -> Order | None:
    kind = resource.get("resourceType")
    if kind not in ("MedicationRequest", "MedicationStatement"):
        return None
    concept = resource.get("medicationCodeableConcept") or resource["contained"][0]["code"]
    coding = next(c for c in concept["coding"] if c["system"] == RXNORM)
    if kind == "MedicationRequest":
        when, sig = resource["authoredOn"], resource["dosageInstruction"][0]["text"]
        prescriber = resource["requester"]["display"]
    else:
        when, sig = resource["effectivePeriod"]["start"], resource["dosage"][0]["text"]
        prescriber = CLINICIANS[sum(map(ord, person.key)) % len(CLINICIANS)]
    return Order(coding["code"], coding["display"], sig, date.fromisoformat(when[:10]), prescriber)


# --- the pharmacy side ----------------------------------------------------------------------------


def _person_fills(rng: random.Random, orders: list[Order]) -> list[dict[str, Any]]:
    home = rng.choice(PHARMACIES)
    skipped = rng.randrange(len(orders)) if len(orders) > 1 else None  # one order never filled
    fills = [
        fill
        for i, order in enumerate(orders)
        if i != skipped
        for fill in _fills(rng, order, DRUGS[order.code], home)
    ]
    code, display, sig, drug = rng.choice(PHARMACY_ONLY)
    written = ANCHOR.date() - timedelta(days=rng.randint(150, 330))
    outside = Order(code, display, sig, written, rng.choice(OUTSIDE_PRESCRIBERS))
    return fills + list(_fills(rng, outside, drug, home, at_least=3))


def _fills(
    rng: random.Random, order: Order, drug: Drug, home: tuple[str, str], at_least: int = 2
) -> Iterator[dict[str, Any]]:
    """The first fill a few days after the prescription is written, then refills for chronic
    drugs about one supply apart, never after the anchor."""
    days = rng.choice(drug.days)
    pharmacy = MAIL_ORDER if days >= 90 else home
    count = rng.randint(at_least, at_least + 3) if drug.chronic else 1
    filled = order.written + timedelta(days=rng.randint(0, 3))
    for _ in range(count):
        if filled > ANCHOR.date():
            return
        yield _fill(order, drug, days, filled, pharmacy)
        filled += timedelta(days=days + rng.randint(-3, 6))


def _fill(
    order: Order, drug: Drug, days: int, filled: date, pharmacy: tuple[str, str]
) -> dict[str, Any]:
    first, _, last = order.prescriber.removeprefix("Dr. ").rpartition(" ")
    return {
        "drug_description": order.display,
        "rxnorm": order.code,
        "rxnorm_qualifier": "SCD",  # RxNorm semantic clinical drug
        "ndc": drug.ndc,
        "quantity": round(drug.per_day * days, 1) if drug.per_day else drug.package,
        "quantity_unit": drug.unit,
        "days_supply": days,
        "written_date": order.written.isoformat(),
        "last_fill_date": filled.isoformat(),
        "pharmacy_ncpdpid": pharmacy[0],
        "pharmacy_name": pharmacy[1],
        "prescriber_first": first,
        "prescriber_last": last,
        "prescriber_npi": unissuable_npi(order.prescriber),
        "sig": order.sig,
    }


def unissuable_npi(name: str) -> str:
    """A 10-digit NPI for `name` whose check digit is deliberately wrong: the Luhn check over
    the prefix 80840 + the first nine digits (CMS NPI rule) fails, so it is never issued."""
    rng = random.Random(f"npi:{name}")
    body = "1" + "".join(str(rng.randrange(10)) for _ in range(8))
    return body + str((npi_check_digit(body) + 5) % 10)


def npi_check_digit(first_nine: str) -> int:
    digits = [int(d) for d in "80840" + first_nine]
    total = 0
    for position, digit in enumerate(reversed(digits)):
        doubled = digit * 2 if position % 2 == 0 else digit
        total += doubled - 9 if doubled > 9 else doubled
    return (10 - total % 10) % 10
