"""How records from several sources become one view.

Patients: one `Patient` per PatientGraph id; demographics come from the first source (in
configured priority order) that has them; identifiers are the union. Clinical records: the
union of every linked source's records, newest first (records without a date last).
De-duplication of the same fact reported by several sources arrives with issue 3.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from app.domain.common import SourceLink
from app.domain.patients import Patient, SourcePatient

R = TypeVar("R")


def merge_patient(
    patient_id: str,
    links: Sequence[SourceLink],
    records: Mapping[SourceLink, SourcePatient],
    source_order: Sequence[str],
) -> Patient:
    rank = {source_id: i for i, source_id in enumerate(source_order)}
    ordered = sorted(links, key=lambda link: (rank.get(link.source_id, len(rank)), link.local_id))
    return Patient(
        id=patient_id,
        sources=tuple(ordered),
        records=tuple(records[link] for link in ordered if link in records),
    )


# The date each kind of record is ordered by (ISO 8601 strings sort chronologically).
RECORD_DATES: Mapping[str, Callable[[Any], str | None]] = {
    "observations": lambda r: r.effective or r.issued,
    "conditions": lambda r: r.onset or r.recorded_date,
    "allergies": lambda r: r.recorded_date or r.onset,
    "medications": lambda r: r.authored_on or r.effective,
    "immunizations": lambda r: r.occurrence,
    "encounters": lambda r: r.start,
    "procedures": lambda r: r.performed,
    "diagnostic_reports": lambda r: r.effective or r.issued,
}


def combine_records(kind_name: str, per_source: Iterable[Sequence[R]]) -> list[R]:
    date_of = RECORD_DATES[kind_name]
    combined = [record for records in per_source for record in records]
    dated = [r for r in combined if date_of(r)]
    undated = [r for r in combined if not date_of(r)]
    dated.sort(key=lambda r: date_of(r) or "", reverse=True)
    return dated + undated
