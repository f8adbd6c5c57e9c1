"""FHIR search parameters: validated, escaped, comma-joined (a comma means OR).

Values are escaped per FHIR search rules (`\\`, `,`, `$`, `|` inside a value); httpx then
URL-encodes every parameter. Ids that are not valid FHIR ids are rejected before any request
is built, so nothing a client sends can change the shape of the upstream URL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from app.domain.patients import PatientCriteria

# FHIR R4 `id` datatype: [A-Za-z0-9\-\.]{1,64}
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
FHIR_DATE = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?")


class InvalidSearchValue(ValueError):
    """A value that cannot be sent upstream (the message holds no client data)."""


def is_fhir_id(value: str) -> bool:
    return FHIR_ID.fullmatch(value) is not None


def escape(value: str) -> str:
    """Escape FHIR search special characters inside one value."""
    return re.sub(r"([\\,$|])", r"\\\1", value)


def id_list(ids: Iterable[str]) -> str:
    """`a,b,c` for `_id=` or `patient=`; raises on an invalid FHIR id."""
    ids = list(dict.fromkeys(ids))
    for local_id in ids:
        if not is_fhir_id(local_id):
            raise InvalidSearchValue("not a valid FHIR id")
    return ",".join(ids)


def token(value: str) -> str:
    """A token parameter: `system|code` keeps its one separating bar; both parts escaped."""
    if "|" in value:
        system, _, code = value.partition("|")
        return f"{escape(system)}|{escape(code)}"
    return escape(value)


def chunks(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def patient_search_params(criteria: PatientCriteria) -> dict[str, str]:
    params: dict[str, str] = {}
    if criteria.identifier:
        params["identifier"] = token(criteria.identifier)
    if criteria.family:
        params["family"] = escape(criteria.family)
    if criteria.given:
        params["given"] = escape(criteria.given)
    if criteria.birth_date:
        if not FHIR_DATE.fullmatch(criteria.birth_date):
            raise InvalidSearchValue("birthDate must be YYYY-MM-DD")
        params["birthdate"] = criteria.birth_date
    return params
