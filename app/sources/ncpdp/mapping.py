"""An NCPDP SCRIPT medication element -> `MedicationDispense`.

`MedicationDispensed` (RxHistoryResponse) and `MedicationPrescribed` (NewRx, RxRenewal...) share
their building blocks (SCRIPT 2017071): `DrugDescription`; `DrugCoded/ProductCode` with
`Qualifier` ND (NDC) and `DrugCoded/DrugDBCode` with a drug database `Qualifier`; `Quantity`
(`Value`, `CodeListQualifier`, `QuantityUnitOfMeasure/Code`, an NCI Thesaurus code);
`DaysSupply`; `WrittenDate` and `LastFillDate` (`Date` or `DateTime`); `Pharmacy`
(`Identification` NCPDPID/NPI, `BusinessName`); `Prescriber` (`NonVeterinarian` or
`Veterinarian`: `Identification/NPI`, `Name`); `Sig/SigText`.

Codes come in two shapes in real traffic: child elements as in the 2017071 XSD
(`<ProductCode><Code>…</Code><Qualifier>ND</Qualifier></ProductCode>`) and a `Qualifier`
attribute on the code element (`<ProductCode Qualifier="ND">…</ProductCode>`); both are read.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final
from xml.etree.ElementTree import Element

from app.domain.common import CodeableConcept, Coding, Quantity, RecordMeta, SourceLink
from app.domain.medications import MedicationDispense
from app.sources.ncpdp.xml import child, text

RESOURCE_TYPE: Final = "MedicationDispense"
NDC: Final = "http://hl7.org/fhir/sid/ndc"
RXNORM: Final = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED: Final = "http://snomed.info/sct"
NCI_THESAURUS: Final = "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl"  # HL7 THO URI

# ProductCode qualifier ND: National Drug Code (11 digits, no dashes, in SCRIPT).
NDC_QUALIFIER: Final = "ND"
# DrugDBCode qualifiers naming RxNorm term types (SCD/SBD clinical/branded drug, GPK/BPK
# generic/branded pack); "RXNORM" is what some senders write instead.
DB_CODE_SYSTEMS: Final[Mapping[str, str]] = {
    "SCD": RXNORM,
    "SBD": RXNORM,
    "GPK": RXNORM,
    "BPK": RXNORM,
    "RXNORM": RXNORM,
    "SCT": SNOMED,
    "SNOMED": SNOMED,
}
# Common NCPDP QuantityUnitOfMeasure terms (NCI Thesaurus subset C89510) and units.
NCI_UNITS: Final[Mapping[str, str]] = {
    "C48480": "capsule",
    "C48542": "tablet",
    "C64696": "caplet",
    "C28254": "mL",
    "C48155": "g",
    "C28253": "mg",
    "C64933": "each",
    "C62412": "applicator",
    "C54564": "blister",
    "C38046": "unspecified",
}
_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}(T[0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?")
_COUNT: Final = re.compile(r"\d{1,5}")


class MappingError(ValueError):
    """The element cannot become a record (e.g. it names no drug at all)."""


@dataclass
class Mapped:
    """Records mapped from a batch of elements, and how many could not be (never dropped
    silently: the caller counts and logs `skipped`)."""

    records: list[MedicationDispense] = field(default_factory=list)
    skipped: int = 0


def map_dispensed(
    source_id: str, elements: Iterable[Element], *, parties: Element | None = None
) -> Mapped:
    mapped = Mapped()
    for element in elements:
        try:
            mapped.records.append(medication_dispense(source_id, element, parties=parties))
        except MappingError:
            mapped.skipped += 1
    return mapped


def medication_dispense(
    source_id: str, element: Element, *, parties: Element | None = None
) -> MedicationDispense:
    """Map one medication element. `parties` is where `Pharmacy` and `Prescriber` are found:
    the element itself for `MedicationDispensed` (the default); the transaction for a NewRx,
    whose pharmacy and prescriber sit beside `MedicationPrescribed`. (An RxHistoryResponse's
    own `Prescriber` is the requester, never the fill's prescriber: do not pass it.)"""
    medication = _medication(element)
    scope = element if parties is None else parties
    pharmacy_id, pharmacy = _pharmacy(scope)
    prescriber, prescriber_npi = _prescriber(scope)
    written, last_fill = _date(element, "WrittenDate"), _date(element, "LastFillDate")
    local_id = fill_id(pharmacy_id, _rx_number(element), _drug_key(medication), last_fill, written)
    return MedicationDispense(
        sources=(SourceLink(source_id, local_id, RESOURCE_TYPE),),
        meta=RecordMeta(),
        medication=medication,
        quantity=_quantity(element),
        days_supply=_count(text(element, "DaysSupply")),
        written_date=written,
        last_fill_date=last_fill,
        pharmacy=pharmacy,
        pharmacy_id=pharmacy_id,
        prescriber=prescriber,
        prescriber_npi=prescriber_npi,
        # Sig/SigText is the 2017071 free text; a few senders put it in Directions.
        sig=text(element, "Sig", "SigText") or text(element, "Directions"),
    )


def fill_id(
    pharmacy_id: str | None,
    rx_number: str | None,
    drug: str,
    last_fill_date: str | None,
    written_date: str | None,
) -> str:
    """Stable local id of one fill: the same fill reported again gets the same id. FHIR-id safe
    (`[a-z0-9-]`, 43 characters)."""
    parts = (pharmacy_id, rx_number, drug, last_fill_date, written_date)
    material = "\x1f".join(p or "" for p in parts)
    return "rx-" + hashlib.sha256(material.encode()).hexdigest()[:40]


# --- the drug -------------------------------------------------------------------------------------


def _medication(element: Element) -> CodeableConcept:
    description = text(element, "DrugDescription")
    coded = child(element, "DrugCoded")
    codings = tuple(c for c in (_product_code(coded), _db_code(coded)) if c is not None)
    if description is None and not codings:
        raise MappingError("no DrugDescription and no drug code")
    return CodeableConcept(text=description, coding=codings)


def _qualified(element: Element | None) -> tuple[str | None, str | None]:
    """(code, qualifier) in either shape: `<X><Code/><Qualifier/></X>` or `<X Qualifier="">`."""
    if element is None:
        return None, None
    code = text(element, "Code") or text(element)
    qualifier = text(element, "Qualifier") or (element.get("Qualifier") or "").strip() or None
    return code, qualifier


def _product_code(coded: Element | None) -> Coding | None:
    code, qualifier = _qualified(child(coded, "ProductCode"))
    if code is None or qualifier != NDC_QUALIFIER:
        return None
    return Coding(NDC, ndc11(code))


def ndc11(code: str) -> str:
    """SCRIPT sends NDCs as 11 digits; a dashed 10-digit form (4-4-2, 5-3-2, 5-4-1) is padded
    segment by segment to 5-4-2 (the FDA's 11-digit conversion), never by guessing."""
    segments = code.split("-")
    if len(segments) == 3 and all(s.isdigit() for s in segments):
        labeler, product, package = segments
        return labeler.zfill(5) + product.zfill(4) + package.zfill(2)
    return code


def _db_code(coded: Element | None) -> Coding | None:
    code, qualifier = _qualified(child(coded, "DrugDBCode"))
    system = DB_CODE_SYSTEMS.get((qualifier or "").upper())
    if code is None or system is None:
        return None  # a proprietary database code (Medi-Span, FDB...): no public system
    return Coding(system, code)


def _drug_key(medication: CodeableConcept) -> str:
    codes = [f"{c.system}|{c.code}" for c in medication.coding]
    return codes[0] if codes else f"text|{medication.text}"


def _rx_number(element: Element) -> str | None:
    """The prescription number when the sender includes one."""
    return text(element, "RxReferenceNumber") or text(element, "PrescriberOrderNumber")


# --- amounts and dates ----------------------------------------------------------------------------


def _quantity(element: Element) -> Quantity | None:
    quantity = child(element, "Quantity")
    if quantity is None:
        return None
    value = _number(text(quantity, "Value"))
    unit_element = child(quantity, "QuantityUnitOfMeasure")
    code = text(unit_element, "Code")
    if code is not None:
        return Quantity(value, NCI_UNITS.get(code), NCI_THESAURUS, code)
    unit = text(unit_element)  # a free-text unit some senders write in place of the code
    return None if value is None and unit is None else Quantity(value, unit)


def _number(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) and number >= 0 else None


def _count(value: str | None) -> int | None:
    return int(value) if value is not None and _COUNT.fullmatch(value) else None


def _date(element: Element, name: str) -> str | None:
    """`<X><Date>…</Date></X>`, `<X><DateTime>…</DateTime></X>` or `<X>…</X>`; only ISO 8601."""
    node = child(element, name)
    value = text(node, "Date") or text(node, "DateTime") or text(node)
    return value if value is not None and _DATE.fullmatch(value) else None


# --- the parties ----------------------------------------------------------------------------------


def _pharmacy(scope: Element) -> tuple[str | None, str | None]:
    pharmacy = child(scope, "Pharmacy")
    ident = child(pharmacy, "Identification")
    return text(ident, "NCPDPID") or text(ident, "NPI"), text(pharmacy, "BusinessName")


def _prescriber(scope: Element) -> tuple[str | None, str | None]:
    prescriber = child(scope, "Prescriber")
    who = prescriber
    for kind in ("NonVeterinarian", "Veterinarian"):
        if (found := child(prescriber, kind)) is not None:
            who = found
            break
    last, first = text(who, "Name", "LastName"), text(who, "Name", "FirstName")
    name = ", ".join(part for part in (last, first) if part) or None
    return name, text(who, "Identification", "NPI")
