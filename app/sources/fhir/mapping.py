"""FHIR R4 JSON -> domain records: the anti-corruption layer for FHIR.

Tolerant of real-world data: every optional element may be missing, choice types
(`effective[x]`, `value[x]`, `onset[x]`, `medication[x]`, ...) are read whichever variant is
present, unknown codes pass through as data, extensions are ignored. A resource whose shape is
wrong (not an object, no id) raises `MappingError`; the source counts and reports it.

References are kept as data and never fetched. The one exception read for meaning is the
practitioner identifier of an Encounter participant or a CareTeam member (for the care-team
rule): the reference's `identifier` or a conditional reference
`Practitioner?identifier=system|value`; any other reference (a literal `Practitioner/123`,
`urn:uuid:...`) identifies no one outside its own server.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from app.domain.allergies import Allergy
from app.domain.care_teams import CareTeam
from app.domain.common import (
    Address,
    CodeableConcept,
    Coding,
    ContactPoint,
    HumanName,
    Identifier,
    Quantity,
    RecordMeta,
    SourceLink,
)
from app.domain.conditions import Condition
from app.domain.diagnostic_reports import DiagnosticReport
from app.domain.encounters import Encounter
from app.domain.immunizations import Immunization
from app.domain.medications import Medication, MedicationKind
from app.domain.observations import Observation, ObservationComponent, ReferenceRange
from app.domain.patients import SourcePatient
from app.domain.procedures import Procedure

Json = Mapping[str, Any]
EMPTY_CONCEPT = CodeableConcept(text=None)
NO_META = RecordMeta()


class MappingError(ValueError):
    """A resource too malformed to map (the message holds no data from it)."""


# ---- primitives ---------------------------------------------------------------------------


def _obj(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _objs(value: Any) -> list[Json]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return None


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    return float(value) if isinstance(value, (int, float)) else None


def coding(data: Json) -> Coding:
    return _coding(_str(data.get("system")), _str(data.get("code")), _str(data.get("display")))


def concept(data: Any) -> CodeableConcept:
    if not isinstance(data, dict):
        return _concept(None, ())
    raw = data.get("coding")
    codes = (
        tuple(
            (_str(c.get("system")), _str(c.get("code")), _str(c.get("display")))
            for c in raw
            if isinstance(c, dict)
        )
        if isinstance(raw, list)
        else ()
    )
    return _concept(_str(data.get("text")), codes)


# The same few codes (LOINC, SNOMED, units) recur in every bundle: one immutable instance per
# distinct value saves most of the allocation in mapping. `_concept` is keyed by the strings
# (hashed in C), so a cache hit builds no Coding at all.
@functools.lru_cache(maxsize=8192)
def _coding(system: str | None, code: str | None, display: str | None) -> Coding:
    return Coding(system, code, display)


@functools.lru_cache(maxsize=8192)
def _concept(
    text: str | None, codes: tuple[tuple[str | None, str | None, str | None], ...]
) -> CodeableConcept:
    codings = tuple(_coding(*c) for c in codes)
    return CodeableConcept(text or next((c.display for c in codings if c.display), None), codings)


def _concept_or_none(data: Any) -> CodeableConcept | None:
    return concept(data) if isinstance(data, dict) else None


def _codes(data: Any) -> tuple[str, ...]:
    """The codes of a repeating CodeableConcept (e.g. `category`), for filtering and display."""
    if not isinstance(data, list):
        return ()
    return tuple(
        code for cc in data if isinstance(cc, dict) for c in concept(cc).coding if (code := c.code)
    )


def _status_code(data: Any) -> str | None:
    """`clinicalStatus` and friends: a CodeableConcept whose first code is the status."""
    cc = concept(data)
    return next((c.code for c in cc.coding if c.code), cc.text)


def quantity(data: Any) -> Quantity | None:
    if not isinstance(data, dict):
        return None
    code = _str(data.get("code"))
    return Quantity(
        _num(data.get("value")),
        _str(data.get("unit")) or code,
        _str(data.get("system")),
        code,
        _str(data.get("comparator")),
    )


def meta(resource: Json) -> RecordMeta:
    data = resource.get("meta")
    if not isinstance(data, dict):
        return NO_META
    security = data.get("security")
    return RecordMeta(
        _str(data.get("lastUpdated")),
        _str(data.get("versionId")),
        tuple(coding(c) for c in security if isinstance(c, dict))
        if isinstance(security, list)
        else (),
    )


def _period_start(data: Any) -> str | None:
    data = _obj(data)
    return _str(data.get("start")) or _str(data.get("end"))


def choice_time(resource: Json, prefix: str) -> str | None:
    """A `prefix[x]` time as one ISO 8601 string: DateTime/Instant as is, Period by its start,
    Timing by its first event, Age/String/Range as text."""
    keys = _CHOICE_KEYS.get(prefix) or _choice_keys(prefix)
    for key in keys.instants:
        value = _str(resource.get(key))
        if value:
            return value
    if (period := resource.get(keys.period)) is not None:
        return _period_start(period)
    if (timing := resource.get(keys.timing)) is not None:
        events = _obj(timing).get("event")
        return _str(events[0]) if isinstance(events, list) and events else None
    age = quantity(resource.get(keys.age))
    if age is not None and age.value is not None:
        return f"{age.value:g} {age.unit or ''}".strip()
    return _range_text(resource.get(keys.range))


@dataclass(frozen=True, slots=True)
class _ChoiceKeys:
    instants: tuple[str, ...]  # DateTime, Instant, String, Date: the first non-empty wins
    period: str
    timing: str
    age: str
    range: str


def _choice_keys(prefix: str) -> _ChoiceKeys:
    keys = _ChoiceKeys(
        tuple(prefix + s for s in ("DateTime", "Instant", "String", "Date")),
        prefix + "Period",
        prefix + "Timing",
        prefix + "Age",
        prefix + "Range",
    )
    _CHOICE_KEYS[prefix] = keys
    return keys


_CHOICE_KEYS: dict[str, _ChoiceKeys] = {}


def _reference_text(data: Any) -> str | None:
    data = _obj(data)
    return _str(data.get("display")) or _str(data.get("reference"))


def _notes(data: Any) -> tuple[str, ...]:
    """`note` (Annotation, repeating): the texts in order; author and time are not kept."""
    return tuple(t for n in _objs(data) if (t := _str(n.get("text"))) and not t.isspace())


def link(source_id: str, resource: Json) -> SourceLink:
    # Every mapper calls this first, so a non-object resource raises MappingError here
    # rather than an AttributeError from the first `.get`.
    if not isinstance(resource, dict):
        raise MappingError("resource is not a JSON object")
    resource_type, local_id = resource.get("resourceType"), resource.get("id")
    if not isinstance(resource_type, str) or not isinstance(local_id, str) or not local_id:
        raise MappingError("resource without resourceType or id")
    return SourceLink(source_id, local_id, resource_type)


# ---- patients -----------------------------------------------------------------------------


def _human_name(data: Json) -> HumanName:
    # A bare string would otherwise iterate as characters, and null would raise.
    given = tuple(g for g in _list(data.get("given")) if isinstance(g, str) and g)
    family = _str(data.get("family"))
    text = _str(data.get("text")) or " ".join([*given, family or ""]).strip() or None
    return HumanName(family, given, text)


def _official_name(names: list[Json]) -> HumanName | None:
    """`official` (then `usual`, then the first current name) per FHIR guidance; a name with a
    `period.end` or `use: old` is no longer in use, taken only when there is nothing else."""
    current = [n for n in names if n.get("use") != "old" and "end" not in _obj(n.get("period"))]
    for use in ("official", "usual", None):
        for name in current:
            if use is None or name.get("use") == use:
                return _human_name(name)
    return _human_name(names[0]) if names else None


def identifier(data: Json) -> Identifier | None:
    value = _str(data.get("value"))
    if value is None:
        return None
    return Identifier(_str(data.get("system")), value, concept(data.get("type")).text)


def address(data: Json) -> Address | None:
    """An Address with at least one part; `line` keeps only its non-empty strings. Every
    address is kept, with its `use` (`old` ones included: the domain has no period)."""
    lines = tuple(x for x in _list(data.get("line")) if isinstance(x, str) and x.strip())
    found = Address(
        use=_str(data.get("use")),
        lines=lines,
        city=_str(data.get("city")),
        state=_str(data.get("state")),
        postal_code=_str(data.get("postalCode")),
        country=_str(data.get("country")),
        text=_str(data.get("text")),
    )
    parts = (found.city, found.state, found.postal_code, found.country, found.text)
    return found if lines or any(parts) else None


def contact_point(data: Json) -> ContactPoint | None:
    """A ContactPoint with a string `value` (anything else reaches no one)."""
    value = data.get("value")
    if not isinstance(value, str) or not value.strip():
        return None
    return ContactPoint(_str(data.get("system")), value, _str(data.get("use")))


def patient(source_id: str, resource: Json) -> SourcePatient:
    source = link(source_id, resource)
    idents = (identifier(i) for i in _objs(resource.get("identifier")))
    addresses = (address(a) for a in _objs(resource.get("address")))
    telecom = (contact_point(t) for t in _objs(resource.get("telecom")))
    return SourcePatient(
        link=source,
        identifiers=tuple(i for i in idents if i is not None),
        name=_official_name(_objs(resource.get("name"))),
        birth_date=_str(resource.get("birthDate")),
        gender=_str(resource.get("gender")),
        addresses=tuple(a for a in addresses if a is not None),
        telecom=tuple(t for t in telecom if t is not None),
    )


# ---- clinical records ---------------------------------------------------------------------


def _value(resource: Json) -> tuple[Quantity | None, CodeableConcept | None, str | None]:
    """`value[x]`: Quantity and Integer as a quantity, CodeableConcept as a concept, the rest
    as text (String, Boolean, DateTime, Time, Period, Range, Ratio)."""
    if (q := quantity(resource.get("valueQuantity"))) is not None:
        return q, None, None
    if isinstance(resource.get("valueInteger"), int):
        return Quantity(_num(resource["valueInteger"]), None), None, None
    if (cc := _concept_or_none(resource.get("valueCodeableConcept"))) is not None:
        return None, cc, cc.text
    for key in ("valueString", "valueBoolean", "valueDateTime", "valueTime"):
        if (text := _str(resource.get(key))) is not None:
            return None, None, text
    return None, None, _range_or_ratio_text(resource)


def _range_or_ratio_text(resource: Json) -> str | None:
    if (period := resource.get("valuePeriod")) is not None:
        return _period_start(period)
    if (text := _range_text(resource.get("valueRange"))) is not None:
        return text
    if isinstance(ratio := resource.get("valueRatio"), dict):
        numerator, denominator = ratio.get("numerator"), ratio.get("denominator")
        return f"{_qtext(quantity(numerator))}/{_qtext(quantity(denominator))}"
    return None


def _range_text(rng: Any) -> str | None:
    """A Range as `low-high` (an open end left empty); None when neither end has a value."""
    if not isinstance(rng, dict):
        return None
    low, high = _qtext(quantity(rng.get("low"))), _qtext(quantity(rng.get("high")))
    return f"{low}-{high}" if low or high else None


def _qtext(q: Quantity | None) -> str:
    if q is None or q.value is None:
        return ""
    return f"{q.value:g} {q.unit}" if q.unit else f"{q.value:g}"


def _reference_range(data: Json) -> ReferenceRange:
    return ReferenceRange(
        quantity(data.get("low")), quantity(data.get("high")), _str(data.get("text"))
    )


def _component(data: Json) -> ObservationComponent:
    q, cc, text = _value(data)
    return ObservationComponent(concept(data.get("code")), q, text if cc is None else cc.text)


def observation(source_id: str, r: Json) -> Observation:
    source = link(source_id, r)
    q, cc, text = _value(r)
    return Observation(
        sources=(source,),
        meta=meta(r),
        status=_str(r.get("status")),
        category=_codes(r.get("category")),
        code=concept(r.get("code")),
        effective=choice_time(r, "effective"),
        issued=_str(r.get("issued")),
        value_quantity=q,
        value_concept=cc,
        value_string=text,
        interpretation=_codes(r.get("interpretation")),
        reference_range=tuple(_reference_range(x) for x in _objs(r.get("referenceRange"))),
        components=tuple(_component(c) for c in _objs(r.get("component"))),
        notes=_notes(r.get("note")),
    )


def condition(source_id: str, r: Json) -> Condition:
    return Condition(
        sources=(link(source_id, r),),
        meta=meta(r),
        code=concept(r.get("code")),
        clinical_status=_status_code(r.get("clinicalStatus")) if "clinicalStatus" in r else None,
        verification_status=(
            _status_code(r.get("verificationStatus")) if "verificationStatus" in r else None
        ),
        category=_codes(r.get("category")),
        onset=choice_time(r, "onset"),
        abatement=choice_time(r, "abatement"),
        recorded_date=_str(r.get("recordedDate")),
        notes=_notes(r.get("note")),
    )


def allergy(source_id: str, r: Json) -> Allergy:
    source = link(source_id, r)
    category = r.get("category")
    return Allergy(
        sources=(source,),
        meta=meta(r),
        code=concept(r.get("code")),
        clinical_status=_status_code(r.get("clinicalStatus")) if "clinicalStatus" in r else None,
        verification_status=(
            _status_code(r.get("verificationStatus")) if "verificationStatus" in r else None
        ),
        type=_str(r.get("type")),
        category=tuple(c for c in category if isinstance(c, str))
        if isinstance(category, list)
        else (),
        criticality=_str(r.get("criticality")),
        onset=choice_time(r, "onset"),
        recorded_date=_str(r.get("recordedDate")),
        reactions=tuple(
            concept(m)
            for reaction in _objs(r.get("reaction"))
            for m in _objs(reaction.get("manifestation"))
        ),
    )


def _medication_concept(r: Json) -> CodeableConcept:
    """`medication[x]`: a CodeableConcept, or a Reference resolved only when it is contained
    (`#id`); any other reference is kept as its display text, never fetched."""
    if (cc := _concept_or_none(r.get("medicationCodeableConcept"))) is not None:
        return cc
    ref = _obj(r.get("medicationReference"))
    target = _str(ref.get("reference")) or ""
    if target.startswith("#"):
        for contained in _objs(r.get("contained")):
            if contained.get("resourceType") == "Medication" and contained.get("id") == target[1:]:
                resolved = concept(contained.get("code"))
                # A contained Medication may carry only ingredients: keep the display then.
                if resolved.text or resolved.coding:
                    return resolved
                break
    return CodeableConcept(_str(ref.get("display")))


def _dosage_text(r: Json, key: str) -> tuple[str, ...]:
    return tuple(t for d in _objs(r.get(key)) if (t := _str(d.get("text"))))


def medication_request(source_id: str, r: Json) -> Medication:
    return Medication(
        sources=(link(source_id, r),),
        meta=meta(r),
        kind=MedicationKind.ORDER,
        medication=_medication_concept(r),
        status=_str(r.get("status")),
        intent=_str(r.get("intent")),
        authored_on=_str(r.get("authoredOn")),
        effective=None,
        dosage=_dosage_text(r, "dosageInstruction"),
        requester=_reference_text(r.get("requester")),
        notes=_notes(r.get("note")),
    )


def medication_statement(source_id: str, r: Json) -> Medication:
    return Medication(
        sources=(link(source_id, r),),
        meta=meta(r),
        kind=MedicationKind.STATEMENT,
        medication=_medication_concept(r),
        status=_str(r.get("status")),
        intent=None,
        authored_on=_str(r.get("dateAsserted")),
        effective=choice_time(r, "effective"),
        dosage=_dosage_text(r, "dosage"),
        requester=_reference_text(r.get("informationSource")),
        notes=_notes(r.get("note")),
    )


def immunization(source_id: str, r: Json) -> Immunization:
    source = link(source_id, r)
    primary = r.get("primarySource")
    return Immunization(
        sources=(source,),
        meta=meta(r),
        vaccine=concept(r.get("vaccineCode")),
        status=_str(r.get("status")),
        occurrence=choice_time(r, "occurrence"),
        primary_source=primary if isinstance(primary, bool) else None,
        lot_number=_str(r.get("lotNumber")),
    )


_CONDITIONAL_PRACTITIONER = "Practitioner?"
_UNESCAPED_BAR = re.compile(r"(?<!\\)\|")
_UNESCAPED_COMMA = re.compile(r"(?<!\\),")
_SEARCH_ESCAPE = re.compile(r"\\([\\|,$])")  # FHIR search escapes: \\ \| \, \$


def _conditional_identifier(reference: str) -> Identifier | None:
    """`Practitioner?identifier=system|value` (URL-encoded or not) as an Identifier; None for
    any other reference, or when the query does not name exactly one identifier token."""
    if not reference.startswith(_CONDITIONAL_PRACTITIONER):
        return None
    query = reference[len(_CONDITIONAL_PRACTITIONER) :]
    tokens = [
        unquote(value)
        for name, _, value in (p.partition("=") for p in query.split("&"))
        if unquote(name) == "identifier"
    ]
    if len(tokens) != 1 or _UNESCAPED_COMMA.search(tokens[0]):  # none, or "any of several"
        return None
    token = tokens[0]
    bar = _UNESCAPED_BAR.search(token)
    system, value = (token[: bar.start()], token[bar.end() :]) if bar else ("", token)
    system, value = _SEARCH_ESCAPE.sub(r"\1", system), _SEARCH_ESCAPE.sub(r"\1", value)
    return Identifier(system or None, value) if value.strip() else None


def _participant_identifier(reference: Any) -> Identifier | None:
    """The practitioner identifier of a Reference (Encounter `participant.individual`,
    CareTeam `participant.member`): its `identifier`, else a conditional reference's."""
    data = _obj(reference)
    if isinstance(ident := data.get("identifier"), dict) and (found := identifier(ident)):
        return found
    target = data.get("reference")
    return _conditional_identifier(target) if isinstance(target, str) else None


def _participant_identifiers(references: list[Any]) -> tuple[Identifier, ...]:
    """The distinct practitioner identifiers among `references`, in order."""
    found = (_participant_identifier(r) for r in references)
    return tuple(dict.fromkeys(i for i in found if i is not None))


def encounter(source_id: str, r: Json) -> Encounter:
    source = link(source_id, r)
    period = _obj(r.get("period"))
    klass = r.get("class")
    class_code = _str(_obj(klass).get("code")) if isinstance(klass, dict) else None
    individuals = [p.get("individual") for p in _objs(r.get("participant"))]
    return Encounter(
        sources=(source,),
        meta=meta(r),
        status=_str(r.get("status")),
        class_code=class_code,
        type=tuple(concept(t) for t in _objs(r.get("type"))),
        start=_str(period.get("start")),
        end=_str(period.get("end")),
        reason=tuple(concept(c) for c in _objs(r.get("reasonCode"))),
        service_provider=_reference_text(r.get("serviceProvider")),
        participants=tuple(t for i in individuals if (t := _reference_text(i))),
        participant_identifiers=_participant_identifiers(individuals),
    )


def care_team(source_id: str, r: Json) -> CareTeam:
    source = link(source_id, r)
    period = _obj(r.get("period"))
    members = [p.get("member") for p in _objs(r.get("participant"))]
    return CareTeam(
        sources=(source,),
        meta=meta(r),
        status=_str(r.get("status")),
        name=_str(r.get("name")),
        category=_codes(r.get("category")),
        start=_str(period.get("start")),
        end=_str(period.get("end")),
        participants=tuple(t for m in members if (t := _reference_text(m))),
        participant_identifiers=_participant_identifiers(members),
    )


def procedure(source_id: str, r: Json) -> Procedure:
    return Procedure(
        sources=(link(source_id, r),),
        meta=meta(r),
        code=concept(r.get("code")),
        status=_str(r.get("status")),
        performed=choice_time(r, "performed"),
    )


def diagnostic_report(source_id: str, r: Json) -> DiagnosticReport:
    return DiagnosticReport(
        sources=(link(source_id, r),),
        meta=meta(r),
        code=concept(r.get("code")),
        status=_str(r.get("status")),
        category=_codes(r.get("category")),
        effective=choice_time(r, "effective"),
        issued=_str(r.get("issued")),
        conclusion=_str(r.get("conclusion")),
        result_ids=tuple(t for x in _objs(r.get("result")) if (t := _str(x.get("reference")))),
    )


MAPPERS: Mapping[str, Callable[[str, Json], object]] = {
    "Patient": patient,
    "Observation": observation,
    "Condition": condition,
    "AllergyIntolerance": allergy,
    "MedicationRequest": medication_request,
    "MedicationStatement": medication_statement,
    "Immunization": immunization,
    "Encounter": encounter,
    "Procedure": procedure,
    "DiagnosticReport": diagnostic_report,
    "CareTeam": care_team,
}
