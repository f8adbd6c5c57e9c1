"""Access patterns for privacy officers, from the trail's events: accesses per user per hour,
after-hours access, break-the-glass uses, denials and unusual volumes, and the alert rules
that flag the same patterns (`patientgraph audit alerts`, the access-pattern page).

Pure functions over `AuditRecord`s, so every rule is tested on seeded events.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from app.domain.audit import AuditRecord
from app.settings import AuditAlertSettings as Rules

STAFF_EXEMPT = frozenset({"patient"})  # a patient reading their own record at night is fine


@dataclass(frozen=True, slots=True)
class Alert:
    rule: str  # after_hours | volume | repeated_denials | break_glass
    subject: str
    at: datetime  # the latest event the alert is about
    count: int  # events (or patients, for volume) behind it
    detail: str


@dataclass(slots=True)
class Patterns:
    per_user_hour: dict[str, dict[str, int]] = field(default_factory=dict)  # hour -> user -> n
    after_hours: dict[str, int] = field(default_factory=dict)  # user -> events
    break_glass: dict[str, int] = field(default_factory=dict)  # user -> uses
    denials: dict[str, int] = field(default_factory=dict)  # user -> denied events
    patients_per_user: dict[str, int] = field(default_factory=dict)  # user -> unique patients
    alerts: list[Alert] = field(default_factory=list)


def _subject(record: AuditRecord) -> str:
    who = record.event["who"]
    return str(who.get("name") or who["subject"])


def _staff(record: AuditRecord) -> bool:
    return not set(record.event["who"]["roles"]) <= STAFF_EXEMPT


def after_hours(record: AuditRecord, rules: Rules) -> bool:
    local = record.at.astimezone(ZoneInfo(rules.timezone))
    return not rules.day_starts <= local.hour < rules.day_ends or local.weekday() >= 5


def patterns(records: Sequence[AuditRecord], since: datetime, rules: Rules) -> Patterns:
    """The patterns of the events at or after `since`; `records` may reach further back (the
    volume rule's baseline), oldest first."""
    out = Patterns()
    recent = [r for r in records if r.at >= since]
    hours: defaultdict[str, Counter[str]] = defaultdict(Counter)
    patients: defaultdict[str, set[str]] = defaultdict(set)
    for record in recent:
        user, outcome = _subject(record), record.event["outcome"]
        if outcome == "denied":
            out.denials[user] = out.denials.get(user, 0) + 1
        if record.event["who"].get("break_glass"):
            out.break_glass[user] = out.break_glass.get(user, 0) + 1
        if not record.disclosed or record.patient_id is None:
            continue
        hour = record.at.replace(minute=0, second=0, microsecond=0).isoformat()
        hours[hour][user] += 1
        patients[user].add(record.patient_id)
        if _staff(record) and after_hours(record, rules):
            out.after_hours[user] = out.after_hours.get(user, 0) + 1
    out.per_user_hour = {hour: dict(users) for hour, users in sorted(hours.items())}
    out.patients_per_user = {user: len(seen) for user, seen in sorted(patients.items())}
    out.alerts = alerts(records, since, rules)
    return out


def alerts(records: Sequence[AuditRecord], since: datetime, rules: Rules) -> list[Alert]:
    recent = [r for r in records if r.at >= since]
    found: list[Alert] = []
    found += _after_hours_alerts(recent, rules)
    found += _volume_alerts(records, rules)
    found += _denial_alerts(recent, rules)
    found += [
        Alert("break_glass", _subject(r), r.at, 1, "emergency access used")
        for r in recent
        if r.event["who"].get("break_glass")
    ]
    return sorted(found, key=lambda a: (a.at, a.rule, a.subject))


def _after_hours_alerts(recent: Iterable[AuditRecord], rules: Rules) -> list[Alert]:
    late: defaultdict[str, list[AuditRecord]] = defaultdict(list)
    for record in recent:
        if record.disclosed and _staff(record) and after_hours(record, rules):
            late[_subject(record)].append(record)
    hours = f"{rules.day_starts:02d}:00-{rules.day_ends:02d}:00 {rules.timezone}"
    return [
        Alert("after_hours", user, seen[-1].at, len(seen), f"patient data read outside {hours}")
        for user, seen in late.items()
    ]


def _volume_alerts(records: Sequence[AuditRecord], rules: Rules) -> list[Alert]:
    """A user whose unique patients over the last day exceed `volume_factor` times their mean
    day over the `baseline_days` before it (and `volume_floor`)."""
    if not records:
        return []
    end = max(r.at for r in records)
    day_start = end - timedelta(days=1)
    base_start = day_start - timedelta(days=rules.baseline_days)
    today: defaultdict[str, set[str]] = defaultdict(set)
    before: defaultdict[str, set[tuple[int, str]]] = defaultdict(set)
    latest: dict[str, datetime] = {}
    for r in records:
        if not r.disclosed or r.patient_id is None:
            continue
        user = _subject(r)
        if r.at > day_start:
            today[user].add(r.patient_id)
            latest[user] = max(latest.get(user, r.at), r.at)
        elif r.at > base_start:
            before[user].add(((day_start - r.at).days, r.patient_id))  # (day back, patient)
    found = []
    for user, seen in today.items():
        usual = len(before[user]) / rules.baseline_days
        if len(seen) >= rules.volume_floor and len(seen) > rules.volume_factor * usual:
            detail = f"{len(seen)} patients in a day; usually {usual:.1f}"
            found.append(Alert("volume", user, latest[user], len(seen), detail))
    return found


def _denial_alerts(recent: Sequence[AuditRecord], rules: Rules) -> list[Alert]:
    by_user: defaultdict[str, list[datetime]] = defaultdict(list)
    for r in recent:
        if r.event["outcome"] == "denied":
            by_user[_subject(r)].append(r.at)
    found = []
    for user, times in by_user.items():
        times.sort()
        start = 0
        for end, moment in enumerate(times):  # a sliding hour
            while moment - times[start] > timedelta(hours=1):
                start += 1
            if end - start + 1 >= rules.denials:
                count = end - start + 1
                found.append(Alert("repeated_denials", user, moment, count, "denied in an hour"))
                break
    return found
