"""Date and DateTime as FHIR and clinicians write them (ISO 8601 strings).

Output passes upstream values through unchanged, because FHIR allows partial dates (`1974`,
`1974-12`) that a strict date type would have to invent days for. Input is validated strictly.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import NewType

import strawberry
from strawberry.types.scalar import ScalarDefinition

DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _parse_date(value: object) -> str:
    if not isinstance(value, str) or not DATE.fullmatch(value):
        raise ValueError("Date must be YYYY-MM-DD")
    datetime.strptime(value, "%Y-%m-%d")  # rejects 2024-02-30
    return value


def _parse_datetime(value: object) -> str:
    if not isinstance(value, str) or len(value) < 10:
        raise ValueError("DateTime must be ISO 8601, e.g. 2024-05-01T00:00:00Z")
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("DateTime must be ISO 8601, e.g. 2024-05-01T00:00:00Z") from None
    return value


Date = NewType("Date", str)
DateTime = NewType("DateTime", str)

SCALAR_MAP: dict[object, ScalarDefinition] = {
    Date: strawberry.scalar(
        name="Date",
        description="A calendar date, ISO 8601. Output may be partial as FHIR allows (`1974`, "
        "`1974-12`); input must be a full date `YYYY-MM-DD`.",
        serialize=str,
        parse_value=_parse_date,
    ),
    DateTime: strawberry.scalar(
        name="DateTime",
        description="An ISO 8601 date-time such as `2024-05-01T08:30:00Z` (a date alone means "
        "its midnight UTC).",
        serialize=str,
        parse_value=_parse_datetime,
    ),
}
