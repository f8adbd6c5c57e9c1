"""Value types shared by every record: codes, quantities, identifiers, provenance, paging."""

from __future__ import annotations

from typing import Generic, TypeVar

import strawberry

T = TypeVar("T")


@strawberry.type(description="A code from a code system (LOINC, SNOMED CT, RxNorm, ...).")
class Coding:
    system: str | None = strawberry.field(description="Code system URI, e.g. http://loinc.org.")
    code: str | None = strawberry.field(description="The code within the system.")
    display: str | None = strawberry.field(description="Human-readable text for the code.")


@strawberry.type(description="A concept: free text plus any number of codes for it.")
class CodeableConcept:
    text: str | None = strawberry.field(description="Text as entered, or the first display.")
    coding: list[Coding] = strawberry.field(description="Codes that represent the concept.")


@strawberry.type(description="A measured amount with its unit (UCUM where the source says).")
class Quantity:
    value: float | None = strawberry.field(description="Numeric value.")
    unit: str | None = strawberry.field(description="Unit as displayed, e.g. mg/dL.")
    system: str | None = strawberry.field(description="Unit system URI (usually UCUM).")
    code: str | None = strawberry.field(description="Coded unit.")
    comparator: str | None = strawberry.field(description="<, <=, >= or > when not exact.")


@strawberry.type(description="An identifier such as an MRN or SSN.")
class Identifier:
    system: str | None = strawberry.field(description="Namespace URI of the identifier.")
    value: str = strawberry.field(description="The identifier value.")
    type_text: str | None = strawberry.field(
        name="type", description="Kind of identifier, as text (e.g. Medical Record Number)."
    )


@strawberry.type(description="A person's name.")
class HumanName:
    family: str | None = strawberry.field(description="Family name (surname).")
    given: list[str] = strawberry.field(description="Given names, in order.")
    text: str | None = strawberry.field(description="The full name as displayed.")


@strawberry.type(description="A postal address.")
class Address:
    use: str | None = strawberry.field(description="home, work, temp, old or billing.")
    lines: list[str] = strawberry.field(description="Street lines (empty when masked).")
    city: str | None = strawberry.field(description="City or town.")
    state: str | None = strawberry.field(description="State or province (abbreviation).")
    postal_code: str | None = strawberry.field(
        description="ZIP or postal code; only its first three digits when masked (`021**`)."
    )
    country: str | None = strawberry.field(description="Country (ISO 3166 code or name).")
    text: str | None = strawberry.field(
        description="The whole address as written (null when masked)."
    )


@strawberry.type(description="A way to reach someone: phone, e-mail, ...")
class ContactPoint:
    system: str | None = strawberry.field(description="phone, fax, email, pager, url, sms, other.")
    value: str = strawberry.field(description="The number or address.")
    use: str | None = strawberry.field(description="home, work, temp, old or mobile.")


@strawberry.type(description="Provenance: one upstream record behind this data.")
class SourceLink:
    source_id: str = strawberry.field(description="Configured id of the upstream source.")
    local_id: str = strawberry.field(description="The record's id within that source.")
    resource_type: str = strawberry.field(description="Upstream record type, e.g. Observation.")


@strawberry.type(description="Upstream bookkeeping of a record.")
class RecordMeta:
    last_updated: str | None = strawberry.field(description="When the upstream last changed it.")
    version_id: str | None = strawberry.field(description="Upstream version id, if any.")


@strawberry.type(description="Where a page of results ends and whether more follow.")
class PageInfo:
    has_next_page: bool = strawberry.field(description="True when another page follows.")
    end_cursor: str | None = strawberry.field(
        description="Pass as `after` to get the next page; null on an empty page."
    )


@strawberry.type(
    description="A page of results. `first` defaults to 20 and may be at most 100 "
    "(server configuration `[graphql] default_page_size`, `max_page_size`)."
)
class Connection(Generic[T]):
    nodes: list[T] = strawberry.field(description="The items on this page, newest first.")
    page_info: PageInfo = strawberry.field(description="Paging position.")
    total_count: int | None = strawberry.field(description="Number of items across all pages.")
    withheld: int = strawberry.field(
        description="How many records the caller's access policy holds back as sensitive "
        "(restricted labels or sensitive codes). Never which: they are not in `totalCount`."
    )
