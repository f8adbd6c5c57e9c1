"""The demo FHIR server's search parameters: which ones each resource type supports, of which
kind (token, string, date, reference), and where each one looks in a resource.

`params_for(resource_type)` is what `fhir_search.parse_query` honours and the
CapabilityStatement lists; a type without a table of its own (one of `EXTRA_TYPES`, or any other)
gets the common clinical parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

Resource = Mapping[str, Any]
Extractor = Callable[[Resource], Iterator[Any]]


# --- where each search parameter looks in a resource ----------------------------------------------


def _walk(node: Any, keys: Sequence[str]) -> Iterator[Any]:
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, keys)
    elif not keys:
        if node is not None:
            yield node
    elif isinstance(node, Mapping) and keys[0] in node:
        yield from _walk(node[keys[0]], keys[1:])


def _at(*paths: str) -> Extractor:
    split = [path.split(".") for path in paths]

    def extract(resource: Resource) -> Iterator[Any]:
        for keys in split:
            yield from _walk(resource, keys)

    return extract


def _medication_code(resource: Resource) -> Iterator[Any]:
    """medicationCodeableConcept, or the code of a contained Medication (`#med1`)."""
    yield from _walk(resource, ["medicationCodeableConcept"])
    reference = resource.get("medicationReference", {}).get("reference", "")
    if reference.startswith("#"):
        for contained in resource.get("contained", []):
            if contained.get("id") == reference[1:]:
                yield from _walk(contained, ["code"])


@dataclass(frozen=True, slots=True)
class Param:
    kind: str  # token | string | date | reference
    extract: Extractor


def _token(*paths: str) -> Param:
    return Param("token", _at(*paths))


def _date(*paths: str) -> Param:
    return Param("date", _at(*paths))


REFERENCE = Param("reference", _at("subject.reference", "patient.reference"))
_COMMON: Final = {"_id": _token("id"), "identifier": _token("identifier")}
_CLINICAL: Final = {
    **_COMMON,
    "patient": REFERENCE,
    "subject": REFERENCE,
    "status": _token("status"),
}
_OBSERVED = _date("effectiveDateTime", "effectivePeriod.start", "effectiveInstant")
_MEDICATION_CODE = Param("token", _medication_code)

SEARCH_PARAMS: Final[Mapping[str, Mapping[str, Param]]] = {
    "Patient": {
        **_COMMON,
        "name": Param(
            "string", _at("name.family", "name.given", "name.text", "name.prefix", "name.suffix")
        ),
        "family": Param("string", _at("name.family")),
        "given": Param("string", _at("name.given")),
        "birthdate": _date("birthDate"),
        "gender": _token("gender"),
    },
    "Observation": {
        **_CLINICAL,
        "category": _token("category"),
        "code": _token("code"),
        "date": _OBSERVED,
    },
    "Condition": {
        **_CLINICAL,
        "category": _token("category"),
        "code": _token("code"),
        "clinical-status": _token("clinicalStatus"),
        "date": _date("onsetDateTime", "onsetPeriod.start"),
        "onset-date": _date("onsetDateTime", "onsetPeriod.start"),
    },
    "AllergyIntolerance": {
        **_CLINICAL,
        "category": _token("category"),
        "code": _token("code"),
        "clinical-status": _token("clinicalStatus"),
        "date": _date("recordedDate"),
    },
    "MedicationRequest": {
        **_CLINICAL,
        "code": _MEDICATION_CODE,
        "intent": _token("intent"),
        "category": _token("category"),
        "date": _date("authoredOn"),
        "authoredon": _date("authoredOn"),
    },
    "MedicationStatement": {
        **_CLINICAL,
        "code": _MEDICATION_CODE,
        "category": _token("category"),
        "date": _date("effectiveDateTime", "effectivePeriod.start"),
        "effective": _date("effectiveDateTime", "effectivePeriod.start"),
    },
    "Immunization": {
        **_CLINICAL,
        "code": _token("vaccineCode"),
        "vaccine-code": _token("vaccineCode"),
        "date": _date("occurrenceDateTime"),
    },
    "Encounter": {
        **_CLINICAL,
        "class": _token("class"),
        "type": _token("type"),
        "date": _date("period.start"),
    },
    "Procedure": {
        **_CLINICAL,
        "code": _token("code"),
        "date": _date("performedDateTime", "performedPeriod.start"),
    },
    "DiagnosticReport": {
        **_CLINICAL,
        "category": _token("category"),
        "code": _token("code"),
        "date": _OBSERVED,
    },
    "CareTeam": {
        **_CLINICAL,
        "category": _token("category"),
        "date": _date("period.start"),
    },
}
# Searchable (empty) even when the data holds none, like a real server that supports the type.
EXTRA_TYPES: Final = frozenset(
    {
        "DocumentReference",
        "Coverage",
        "Goal",
        "CarePlan",
        "Practitioner",
        "Organization",
        "Location",
        "Medication",
        "Provenance",
        "Device",
        "ServiceRequest",
    }
)


def params_for(resource_type: str) -> Mapping[str, Param]:
    """The search parameters of a resource type (the clinical defaults for an unlisted one)."""
    return SEARCH_PARAMS.get(resource_type, _CLINICAL)
