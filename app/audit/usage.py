"""The usage report: per client app, over a period, how many unique patients' data was
disclosed and how many of them more than once (the figures payers report to CMS for their
Patient Access APIs), from the trail's events."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import AsyncIterable
from dataclasses import dataclass
from datetime import datetime

from app.domain.audit import AuditRecord

NO_CLIENT = "(no client id)"


@dataclass(frozen=True, slots=True)
class Usage:
    client: str
    patients: int  # unique patients whose data was disclosed
    repeat_patients: int  # of them, disclosed more than once
    disclosures: int  # events that disclosed a patient's data


async def usage_report(
    records: AsyncIterable[AuditRecord], until: datetime | None = None
) -> list[Usage]:
    """`records` oldest first (from the period's start); those at or after `until` end it."""
    seen: defaultdict[str, Counter[str]] = defaultdict(Counter)
    async for record in records:
        if until is not None and record.at >= until:
            break
        if record.disclosed and record.patient_id is not None:
            seen[record.event["who"]["client"] or NO_CLIENT][record.patient_id] += 1
    return [
        Usage(client, len(counts), sum(1 for n in counts.values() if n > 1), counts.total())
        for client, counts in sorted(seen.items())
    ]
