"""Value objects used by every kind of record."""

from __future__ import annotations

import base64
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Coding:
    system: str | None
    code: str | None
    display: str | None = None


@dataclass(frozen=True, slots=True)
class CodeableConcept:
    text: str | None
    coding: tuple[Coding, ...] = ()

    def has_code(self, code: str) -> bool:
        """True for `code` or `system|code` matching any coding (FHIR token semantics)."""
        system, _, value = code.rpartition("|")
        return any(c.code == value and (not system or c.system == system) for c in self.coding)


@dataclass(frozen=True, slots=True)
class Quantity:
    value: float | None
    unit: str | None
    system: str | None = None
    code: str | None = None
    comparator: str | None = None


@dataclass(frozen=True, slots=True)
class Identifier:
    system: str | None
    value: str
    type_text: str | None = None


@dataclass(frozen=True, slots=True)
class HumanName:
    family: str | None
    given: tuple[str, ...]
    text: str | None


@dataclass(frozen=True, slots=True)
class Address:
    """A postal address (FHIR Address): `lines` are street lines, `text` the whole as written."""

    use: str | None
    lines: tuple[str, ...]
    city: str | None
    state: str | None
    postal_code: str | None
    country: str | None
    text: str | None = None


@dataclass(frozen=True, slots=True)
class ContactPoint:
    """A phone number, e-mail address or other way to reach someone (FHIR ContactPoint)."""

    system: str | None  # phone | fax | email | pager | url | sms | other
    value: str
    use: str | None = None  # home | work | temp | old | mobile


@dataclass(frozen=True, slots=True)
class SourceLink:
    """Provenance: which upstream said it, under which local id."""

    source_id: str
    local_id: str
    resource_type: str


@dataclass(frozen=True, slots=True)
class RecordMeta:
    """Upstream bookkeeping kept for provenance and (later) security labels."""

    last_updated: str | None = None
    version_id: str | None = None
    security: tuple[Coding, ...] = ()


def record_id(link: SourceLink) -> str:
    """Opaque, stable id of a record: URL-safe base64 of its first source link."""
    raw = f"{link.source_id}/{link.resource_type}/{link.local_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class Sourced:
    """Mixin for records: every record has provenance, and its id derives from it."""

    __slots__ = ()
    sources: tuple[SourceLink, ...]

    @property
    def id(self) -> str:
        return record_id(self.sources[0])
