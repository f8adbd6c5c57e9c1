"""FHIR R4 resources -> domain records: the anti-corruption layer for FHIR, one mapper per
resource type, and the adapter's one table of which resource types serve each record kind.

Choice types (`value[x]`, `medication[x]`, ...) are read whichever variant is present. References
are kept as data and never fetched. The one exception read for meaning is the practitioner
identifier of an Encounter participant or a CareTeam member (for the care-team rule): the
reference's `identifier` or a conditional reference `Practitioner?identifier=system|value`; any
other reference (a literal `Practitioner/123`, `urn:uuid:...`) identifies no one outside its own
server.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

from app.domain import records as kinds
from app.domain.allergies import Allergy
from app.domain.care_teams import CareTeam
from app.domain.common import CodeableConcept, Identifier, Quantity
from app.domain.conditions import Condition
from app.domain.diagnostic_reports import DiagnosticReport
from app.domain.encounters import Encounter
from app.domain.immunizations import Immunization
from app.domain.medications import Medication, MedicationKind
from app.domain.observations import Observation, ObservationComponent, ReferenceRange
from app.domain.patients import SourcePatient
from app.domain.procedures import Procedure
from app.domain.records import RecordKind
from app.sources.fhir.datatypes import (
    Json,
    address,
    annotation_texts,
    boolean,
    choice_time,
    codes_of,
    concept,
    concept_or_none,
    contact_point,
    date,
    date_time,
    gender,
    identifier,
    instant,
    link,
    meta,
    number,
    obj,
    objs,
    official_name,
    period_start,
    quantity,
    quantity_text,
    range_text,
    reference_text,
    status_code,
    string,
    time,
)

Mapper = Callable[[str, Json], Any]


def patient(source_id: str, resource: Json) -> SourcePatient:
    source = link(source_id, resource)
    idents = (identifier(i) for i in objs(resource.get("identifier")))
    addresses = (address(a) for a in objs(resource.get("address")))
    telecom = (contact_point(t) for t in objs(resource.get("telecom")))
    return SourcePatient(
        link=source,
        identifiers=tuple(i for i in idents if i is not None),
        name=official_name(objs(resource.get("name"))),
        birth_date=date(resource.get("birthDate")),
        gender=gender(resource.get("gender")),
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
        return Quantity(number(resource["valueInteger"]), None), None, None
    if (cc := concept_or_none(resource.get("valueCodeableConcept"))) is not None:
        return None, cc, cc.text
    for key, read in _TEXT_VALUES:
        if (text := read(resource.get(key))) is not None:
            return None, None, text
    return None, None, _range_or_ratio_text(resource)


_TEXT_VALUES = (
    ("valueString", string),
    ("valueBoolean", boolean),
    ("valueDateTime", date_time),
    ("valueTime", time),
)


def _range_or_ratio_text(resource: Json) -> str | None:
    if (period := resource.get("valuePeriod")) is not None:
        return period_start(period)
    if (text := range_text(resource.get("valueRange"))) is not None:
        return text
    if isinstance(ratio := resource.get("valueRatio"), dict):
        numerator, denominator = ratio.get("numerator"), ratio.get("denominator")
        return f"{quantity_text(quantity(numerator))}/{quantity_text(quantity(denominator))}"
    return None


def _reference_range(data: Json) -> ReferenceRange:
    return ReferenceRange(
        quantity(data.get("low")), quantity(data.get("high")), string(data.get("text"))
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
        status=string(r.get("status")),
        category=codes_of(r.get("category")),
        code=concept(r.get("code")),
        effective=choice_time(r, "effective"),
        issued=instant(r.get("issued")),
        value_quantity=q,
        value_concept=cc,
        value_string=text,
        interpretation=codes_of(r.get("interpretation")),
        reference_range=tuple(_reference_range(x) for x in objs(r.get("referenceRange"))),
        components=tuple(_component(c) for c in objs(r.get("component"))),
        notes=annotation_texts(r.get("note")),
    )


def condition(source_id: str, r: Json) -> Condition:
    return Condition(
        sources=(link(source_id, r),),
        meta=meta(r),
        code=concept(r.get("code")),
        clinical_status=status_code(r.get("clinicalStatus")) if "clinicalStatus" in r else None,
        verification_status=(
            status_code(r.get("verificationStatus")) if "verificationStatus" in r else None
        ),
        category=codes_of(r.get("category")),
        onset=choice_time(r, "onset"),
        abatement=choice_time(r, "abatement"),
        recorded_date=date_time(r.get("recordedDate")),
        notes=annotation_texts(r.get("note")),
    )


def allergy(source_id: str, r: Json) -> Allergy:
    source = link(source_id, r)
    category = r.get("category")
    return Allergy(
        sources=(source,),
        meta=meta(r),
        code=concept(r.get("code")),
        clinical_status=status_code(r.get("clinicalStatus")) if "clinicalStatus" in r else None,
        verification_status=(
            status_code(r.get("verificationStatus")) if "verificationStatus" in r else None
        ),
        type=string(r.get("type")),
        category=tuple(c for c in category if isinstance(c, str))
        if isinstance(category, list)
        else (),
        criticality=string(r.get("criticality")),
        onset=choice_time(r, "onset"),
        recorded_date=date_time(r.get("recordedDate")),
        reactions=tuple(
            concept(m)
            for reaction in objs(r.get("reaction"))
            for m in objs(reaction.get("manifestation"))
        ),
    )


def _medication_concept(r: Json) -> CodeableConcept:
    """`medication[x]`: a CodeableConcept, or a Reference resolved only when it is contained
    (`#id`); any other reference is kept as its display text, never fetched."""
    if (cc := concept_or_none(r.get("medicationCodeableConcept"))) is not None:
        return cc
    ref = obj(r.get("medicationReference"))
    target = string(ref.get("reference")) or ""
    if target.startswith("#"):
        for contained in objs(r.get("contained")):
            if contained.get("resourceType") == "Medication" and contained.get("id") == target[1:]:
                resolved = concept(contained.get("code"))
                # A contained Medication may carry only ingredients: keep the display then.
                if resolved.text or resolved.coding:
                    return resolved
                break
    return CodeableConcept(string(ref.get("display")))


def _dosage_text(r: Json, key: str) -> tuple[str, ...]:
    return tuple(t for d in objs(r.get(key)) if (t := string(d.get("text"))))


def medication_request(source_id: str, r: Json) -> Medication:
    return Medication(
        sources=(link(source_id, r),),
        meta=meta(r),
        kind=MedicationKind.ORDER,
        medication=_medication_concept(r),
        status=string(r.get("status")),
        intent=string(r.get("intent")),
        authored_on=date_time(r.get("authoredOn")),
        effective=None,
        dosage=_dosage_text(r, "dosageInstruction"),
        requester=reference_text(r.get("requester")),
        notes=annotation_texts(r.get("note")),
    )


def medication_statement(source_id: str, r: Json) -> Medication:
    return Medication(
        sources=(link(source_id, r),),
        meta=meta(r),
        kind=MedicationKind.STATEMENT,
        medication=_medication_concept(r),
        status=string(r.get("status")),
        intent=None,
        authored_on=date_time(r.get("dateAsserted")),
        effective=choice_time(r, "effective"),
        dosage=_dosage_text(r, "dosage"),
        requester=reference_text(r.get("informationSource")),
        notes=annotation_texts(r.get("note")),
    )


def immunization(source_id: str, r: Json) -> Immunization:
    source = link(source_id, r)
    primary = r.get("primarySource")
    return Immunization(
        sources=(source,),
        meta=meta(r),
        vaccine=concept(r.get("vaccineCode")),
        status=string(r.get("status")),
        occurrence=choice_time(r, "occurrence"),
        primary_source=primary if isinstance(primary, bool) else None,
        lot_number=string(r.get("lotNumber")),
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
    data = obj(reference)
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
    period = obj(r.get("period"))
    klass = r.get("class")
    class_code = string(obj(klass).get("code")) if isinstance(klass, dict) else None
    individuals = [p.get("individual") for p in objs(r.get("participant"))]
    return Encounter(
        sources=(source,),
        meta=meta(r),
        status=string(r.get("status")),
        class_code=class_code,
        type=tuple(concept(t) for t in objs(r.get("type"))),
        start=date_time(period.get("start")),
        end=date_time(period.get("end")),
        reason=tuple(concept(c) for c in objs(r.get("reasonCode"))),
        service_provider=reference_text(r.get("serviceProvider")),
        participants=tuple(t for i in individuals if (t := reference_text(i))),
        participant_identifiers=_participant_identifiers(individuals),
    )


def care_team(source_id: str, r: Json) -> CareTeam:
    source = link(source_id, r)
    period = obj(r.get("period"))
    members = [p.get("member") for p in objs(r.get("participant"))]
    return CareTeam(
        sources=(source,),
        meta=meta(r),
        status=string(r.get("status")),
        name=string(r.get("name")),
        category=codes_of(r.get("category")),
        start=date_time(period.get("start")),
        end=date_time(period.get("end")),
        participants=tuple(t for m in members if (t := reference_text(m))),
        participant_identifiers=_participant_identifiers(members),
    )


def procedure(source_id: str, r: Json) -> Procedure:
    return Procedure(
        sources=(link(source_id, r),),
        meta=meta(r),
        code=concept(r.get("code")),
        status=string(r.get("status")),
        performed=choice_time(r, "performed"),
    )


def diagnostic_report(source_id: str, r: Json) -> DiagnosticReport:
    return DiagnosticReport(
        sources=(link(source_id, r),),
        meta=meta(r),
        code=concept(r.get("code")),
        status=string(r.get("status")),
        category=codes_of(r.get("category")),
        effective=choice_time(r, "effective"),
        issued=instant(r.get("issued")),
        conclusion=string(r.get("conclusion")),
        result_ids=tuple(t for x in objs(r.get("result")) if (t := string(x.get("reference")))),
    )


# The FHIR adapter's one table: the resource types that serve each record kind (all searchable
# by `patient`, US Core) and how each maps; everything else about FHIR resources derives from it.
RECORD_RESOURCES: Mapping[RecordKind[Any], tuple[tuple[str, Mapper], ...]] = {
    kinds.OBSERVATIONS: (("Observation", observation),),
    kinds.CONDITIONS: (("Condition", condition),),
    kinds.ALLERGIES: (("AllergyIntolerance", allergy),),
    kinds.MEDICATIONS: (
        ("MedicationRequest", medication_request),
        ("MedicationStatement", medication_statement),
    ),
    kinds.IMMUNIZATIONS: (("Immunization", immunization),),
    kinds.ENCOUNTERS: (("Encounter", encounter),),
    kinds.PROCEDURES: (("Procedure", procedure),),
    kinds.DIAGNOSTIC_REPORTS: (("DiagnosticReport", diagnostic_report),),
    kinds.CARE_TEAMS: (("CareTeam", care_team),),
}
# Resource type -> mapper, Patient included.
MAPPERS: Mapping[str, Mapper] = {
    "Patient": patient,
    **{t: mapper for pairs in RECORD_RESOURCES.values() for t, mapper in pairs},
}
