"""Finding patients: by PatientGraph id, by search across every source, and `me`."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Sequence

from app.domain.common import SourceLink
from app.domain.patients import Patient, PatientCriteria, SourcePatient
from app.identity.index import is_patient_id
from resolvers import access
from resolvers.context import Context
from resolvers.errors import UserInputError
from resolvers.fan_out import gather_sources
from resolvers.merge import merge_patient
from resolvers.pagination import Page, paginate

Path = tuple[str | int, ...] | None
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
DEMOGRAPHICS = "demographics"  # the Patient itself, as the audit trail names it


async def patient_by_id(ctx: Context, patient_id: str, path: Path = None) -> Patient | None:
    if not is_patient_id(patient_id):
        raise UserInputError("'id' is not a PatientGraph patient id")
    links = await access.admit_patient(ctx, patient_id, path)
    if not links:
        return None
    records, failed = await _source_patients(ctx, links, path)
    links, records = await _still_linked(ctx, patient_id, links, records)
    if not records and not failed:
        return None  # every linked upstream record is gone
    patient = merge_patient(patient_id, links, records, _source_order(ctx))
    _disclose(ctx, patient)
    return patient


async def my_patient(ctx: Context, path: Path = None) -> Patient | None:
    """The patient of a patient-context token; null for any other token."""
    patient_id = ctx.principal.patient
    if patient_id is None or not is_patient_id(patient_id):
        return None
    return await patient_by_id(ctx, patient_id, path)


async def search_patients(
    ctx: Context, criteria: PatientCriteria, path: Path = None
) -> list[Patient]:
    """Search every source concurrently, link what they return, and answer one Patient per
    person the caller may see, in order of first appearance (sources in priority order)."""
    _validate(criteria)
    if not access.may_search_patients(ctx, path):
        return []  # the connection is non-null: empty, with FORBIDDEN at its path
    sources = ctx.services.patient_sources
    answers, _ = await gather_sources(
        [ctx.loaders.bounded(s.id, s.search_patients(criteria)) for s in sources],
        ctx.problems,
        path,
    )
    found = [p for answer in answers.values() for p in answer]
    index = ctx.services.index
    ids = await index.link(found)
    admitted = await access.admit_patients(ctx, ids, path)
    stale = _moved(found, ids, admitted)
    if stale:  # another worker moved a record this one remembered: decide those afresh
        index.forget(stale)
        admitted = await access.admit_patients(ctx, await index.link(found), path)
    records = {p.link: p for p in found}
    missing = [link for _, group in admitted for link in group if link not in records]
    extra, _ = await _source_patients(ctx, missing, path)
    records.update(extra)
    source_order = _source_order(ctx)
    ctx.disclosures.related.update(pid for pid, _ in admitted)
    return [merge_patient(pid, group, records, source_order) for pid, group in admitted]


def page_of_patients(
    ctx: Context, found: Sequence[Patient], first: int | None, after: str | None
) -> Page[Patient]:
    """One page of a search: the patients on it are what the response discloses."""
    page = paginate(found, first, after, ctx.services.page_limits)
    for patient in page.nodes:
        _disclose(ctx, patient)
    return page


def _disclose(ctx: Context, patient: Patient) -> None:
    sources = {record.link.source_id for record in patient.records}
    ctx.disclosures.add(patient.id, DEMOGRAPHICS, 1, sources)


async def _source_patients(
    ctx: Context, links: Sequence[SourceLink], path: Path
) -> tuple[dict[SourceLink, SourcePatient], bool]:
    """Each linked record's current demographics, batched per source."""
    calls: list[Awaitable[SourcePatient | None]] = []
    asked: list[SourceLink] = []
    for link in links:
        source = ctx.services.patient_source(link.source_id)
        if source is not None:
            calls.append(ctx.loaders.patients(source).load(link.local_id))
            asked.append(link)
    results, failed = await gather_sources(calls, ctx.problems, path)
    return {asked[i]: r for i, r in results.items() if r is not None}, failed


async def _still_linked(
    ctx: Context,
    patient_id: str,
    links: tuple[SourceLink, ...],
    records: dict[SourceLink, SourcePatient],
) -> tuple[tuple[SourceLink, ...], dict[SourceLink, SourcePatient]]:
    """The records read for a patient, shown to the index first: one whose demographics now
    contradict the patient's other records (or were never checked: a link from before the
    matcher) is moved to a patient of its own there, and left out of this answer."""
    read = list(records)
    ids = await ctx.services.index.link([records[link] for link in read])
    moved = {link for link, pid in zip(read, ids, strict=True) if pid != patient_id}
    if not moved:
        return links, records
    return tuple(link for link in links if link not in moved), {
        link: p for link, p in records.items() if link not in moved
    }


def _moved(
    found: Sequence[SourcePatient],
    ids: Sequence[str],
    admitted: Sequence[tuple[str, tuple[SourceLink, ...]]],
) -> list[tuple[str, str]]:
    """Found records the index said were an admitted patient's but whose stored links no
    longer say so (it remembered a link an administrator has since changed)."""
    groups = dict(admitted)
    return [
        (p.link.source_id, p.link.local_id)
        for p, pid in zip(found, ids, strict=True)
        if pid in groups
        and SourceLink(p.link.source_id, p.link.local_id, "Patient") not in groups[pid]
    ]


def _source_order(ctx: Context) -> list[str]:
    return [s.id for s in ctx.services.patient_sources]


def _validate(criteria: PatientCriteria) -> None:
    if criteria.birth_date is not None and not DATE.fullmatch(criteria.birth_date):
        raise UserInputError("'birthDate' must be a date YYYY-MM-DD")
    for name, value in (
        ("identifier", criteria.identifier),
        ("family", criteria.family),
        ("given", criteria.given),
    ):
        if value is not None and not (0 < len(value) <= 200):
            raise UserInputError(f"'{name}' must be 1 to 200 characters")
    if criteria.identifier is not None and criteria.identifier.endswith("|"):
        raise UserInputError("'identifier' must be 'system|value' or 'value'")
