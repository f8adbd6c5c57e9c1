"""Patients: as one source knows them, and as PatientGraph links them into one person."""

from __future__ import annotations

from dataclasses import dataclass

from app.domain.common import Address, ContactPoint, HumanName, Identifier, SourceLink

SSN_SYSTEM = "http://hl7.org/fhir/sid/us-ssn"  # US Social Security number identifiers


@dataclass(frozen=True, slots=True)
class SourcePatient:
    """One upstream's Patient record."""

    link: SourceLink
    identifiers: tuple[Identifier, ...]
    name: HumanName | None
    birth_date: str | None
    gender: str | None
    addresses: tuple[Address, ...] = ()
    telecom: tuple[ContactPoint, ...] = ()


@dataclass(frozen=True, slots=True)
class Patient:
    """One person across every linked upstream record.

    `id` is the PatientGraph id (stable, opaque); `records` keeps each source's view in
    source-priority order so demographics can be chosen, and `sources` keeps every upstream
    record linked in the patient index, fetched or not.
    """

    id: str
    sources: tuple[SourceLink, ...]
    records: tuple[SourcePatient, ...]

    @property
    def identifiers(self) -> tuple[Identifier, ...]:
        seen: dict[tuple[str | None, str], Identifier] = {}
        for record in self.records:
            for ident in record.identifiers:
                seen.setdefault((ident.system, ident.value), ident)
        return tuple(seen.values())

    @property
    def name(self) -> HumanName | None:
        return next((r.name for r in self.records if r.name is not None), None)

    @property
    def birth_date(self) -> str | None:
        return next((r.birth_date for r in self.records if r.birth_date), None)

    @property
    def gender(self) -> str | None:
        return next((r.gender for r in self.records if r.gender), None)

    @property
    def addresses(self) -> tuple[Address, ...]:
        """From the highest-priority source that has any: mixing sources would mix current
        and stale addresses."""
        return next((r.addresses for r in self.records if r.addresses), ())

    @property
    def telecom(self) -> tuple[ContactPoint, ...]:
        return next((r.telecom for r in self.records if r.telecom), ())


@dataclass(frozen=True, slots=True)
class PatientCriteria:
    """`patients(...)` search arguments; all combine with AND."""

    identifier: str | None = None
    family: str | None = None
    given: str | None = None
    birth_date: str | None = None

    def is_empty(self) -> bool:
        return not (self.identifier or self.family or self.given or self.birth_date)
