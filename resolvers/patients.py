"""Finding patients: by PatientGraph id, by search across every source, and `me`."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Sequence

from app.auth.policy import Access
from app.domain.common import Address, Identifier, SourceLink
from app.domain.patients import SSN_SYSTEM, Patient, PatientCriteria, SourcePatient
from app.identity.index import is_patient_id
from resolvers.care_team import bound_to_care_team, on_care_team, on_care_team_each
from resolvers.context import Context
from resolvers.errors import Forbidden, UserInputError
from resolvers.merge import merge_patient
from resolvers.outcomes import gather_sources

Path = tuple[str | int, ...] | None
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
PATIENT = "Patient"


async def patient_by_id(ctx: Context, patient_id: str, path: Path = None) -> Patient | None:
    if not is_patient_id(patient_id):
        raise UserInputError("'id' is not a PatientGraph patient id")
    if not ctx.access.can_read(PATIENT):
        raise Forbidden("Not allowed to read patients")
    if not ctx.access.can_see_patient(patient_id):
        # Same answer whether or not the patient exists: no enumeration through errors.
        raise Forbidden("This patient is outside the caller's access")
    links: tuple[SourceLink, ...] = await ctx.loaders.links.load(patient_id)
    if bound_to_care_team(ctx) and not await on_care_team(ctx, links, path):
        raise Forbidden("This patient is outside the caller's access")
    if not links:
        return None
    records, failed = await _source_patients(ctx, links, path)
    if not records and not failed:
        return None  # every linked upstream record is gone
    ctx.disclosed.add(patient_id)
    return merge_patient(patient_id, links, records, _source_order(ctx))


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
    person, in order of first appearance (sources in priority order)."""
    _validate(criteria)
    if not ctx.access.can_read(PATIENT):
        ctx.denials.add(path, "Not allowed to read patients")  # the connection is non-null
        return []
    sources = ctx.services.patient_sources
    answers, _ = await gather_sources(
        [s.search_patients(criteria) for s in sources], ctx.problems, path
    )
    found = [p for answer in answers.values() for p in answer]
    patient_ids = await ctx.services.index.link(found)
    # A patient-context caller finds only themself; nothing more is fetched for anyone else.
    order = [pid for pid in dict.fromkeys(patient_ids) if ctx.access.can_see_patient(pid)]
    links = await ctx.loaders.links.load_many(order)
    if bound_to_care_team(ctx):
        kept = await on_care_team_each(ctx, links, path)
        order = [pid for pid, keep in zip(order, kept, strict=True) if keep]
        links = [group for group, keep in zip(links, kept, strict=True) if keep]
    records = {p.link: p for p in found}
    missing = [link for group in links for link in group if link not in records]
    extra, _ = await _source_patients(ctx, missing, path)
    records.update(extra)
    source_order = _source_order(ctx)
    ctx.disclosed.update(order)
    return [
        merge_patient(pid, group, records, source_order)
        for pid, group in zip(order, links, strict=True)
    ]


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


def visible_identifiers(patient: Patient, access: Access) -> list[Identifier]:
    """The patient's identifiers as this caller may see them: an SSN in full only for roles
    whose policy says so, else as its last four digits (minimum necessary)."""
    if access.ssn_in_full:
        return list(patient.identifiers)
    return [
        dataclasses.replace(i, value=f"***-**-{_digits(i.value)[-4:]}")
        if i.system == SSN_SYSTEM
        else i
        for i in patient.identifiers
    ]


def _digits(value: str) -> str:
    return "".join(c for c in value if c.isdigit())


def visible_addresses(patient: Patient, access: Access) -> list[Address]:
    """The patient's addresses in full for roles whose policy says so; else only the region:
    city, state, country and the first three ZIP digits (minimum necessary)."""
    if access.address_in_full:
        return list(patient.addresses)
    return [
        Address(
            use=a.use,
            lines=(),
            city=a.city,
            state=a.state,
            postal_code=_zip3(a.postal_code),
            country=a.country,
        )
        for a in patient.addresses
    ]


def _zip3(postal_code: str | None) -> str | None:
    code = (postal_code or "").strip()
    return f"{code[:3]}**" if len(code) >= 5 else None  # a shorter code would show whole
