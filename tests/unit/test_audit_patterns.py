"""The access-pattern alert rules (issue 13): each fires on a seeded anomaly and stays quiet on
normal traffic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from app.audit.patterns import alerts, patterns
from app.domain.audit import AuditRecord
from app.settings import AuditAlertSettings

RULES = AuditAlertSettings(timezone="America/New_York", volume_floor=10, denials=4)
# A Wednesday, 10:00 in New York (business hours).
NOON = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
_seq = iter(range(1, 1_000_000))


def record(
    at: datetime,
    user: str = "dr-a",
    patient: str | None = "pg-1",
    *,
    outcome: str = "success",
    roles: tuple[str, ...] = ("clinician",),
    break_glass: str | None = None,
) -> AuditRecord:
    event: dict[str, Any] = {
        "outcome": outcome,
        "who": {"subject": user, "name": None, "roles": list(roles), "break_glass": break_glass},
    }
    return AuditRecord(next(_seq), at, patient, event)


def normal_traffic() -> list[AuditRecord]:
    """Three weeks of office hours: three clinicians reading 6 patients a day each, a patient
    reading their record at night, and the odd denial."""
    out = []
    for day in range(21):
        start = NOON - timedelta(days=20 - day)
        if start.weekday() >= 5:
            continue
        for user in ("dr-a", "dr-b", "dr-c"):
            for n in range(6):
                out.append(record(start + timedelta(minutes=10 * n), user, f"pg-{(day + n) % 30}"))
        out.append(record(start + timedelta(minutes=5), "dr-b", None, outcome="denied"))
        out.append(record(start + timedelta(hours=12), "me", "pg-7", roles=("patient",)))
    return sorted(out, key=lambda r: r.at)


def rules_fired(records: list[AuditRecord]) -> list[tuple[str, str]]:
    since = NOON - timedelta(days=1, hours=12)
    return [(a.rule, a.subject) for a in alerts(records, since, RULES)]


def test_normal_traffic_raises_no_alert() -> None:
    assert rules_fired(normal_traffic()) == []


def test_after_hours_access_by_staff_is_flagged() -> None:
    late = record(NOON + timedelta(hours=10), "dr-c", "pg-3")  # 01:00 in New York
    assert rules_fired([*normal_traffic(), late]) == [("after_hours", "dr-c")]


def test_a_weekend_read_is_after_hours() -> None:
    saturday = datetime(2026, 12, 5, 15, 0, tzinfo=UTC)
    assert rules_fired([*normal_traffic(), record(saturday, "dr-a")]) == [("after_hours", "dr-a")]


def test_a_user_reading_far_more_patients_than_usual_is_flagged() -> None:
    spree = [record(NOON + timedelta(minutes=n), "dr-a", f"pg-x{n}") for n in range(40)]
    assert rules_fired(normal_traffic() + spree) == [("volume", "dr-a")]
    # The same day's work at the user's usual volume is not.
    usual = [record(NOON + timedelta(minutes=n), "dr-a", f"pg-{n}") for n in range(6)]
    assert rules_fired(normal_traffic() + usual) == []


def test_repeated_denials_within_an_hour_are_flagged() -> None:
    tries = [
        record(NOON + timedelta(minutes=5 * n), "dr-b", None, outcome="denied") for n in range(4)
    ]
    assert rules_fired(normal_traffic() + tries) == [("repeated_denials", "dr-b")]
    spread = [
        record(NOON + timedelta(hours=n - 3), "dr-b", None, outcome="denied") for n in range(4)
    ]
    assert rules_fired(normal_traffic() + spread) == []


def test_every_break_the_glass_use_is_flagged() -> None:
    emergency = record(NOON, "dr-a", "pg-9", break_glass="unconscious in the ED")
    assert rules_fired([*normal_traffic(), emergency]) == [("break_glass", "dr-a")]


def test_patterns_count_per_user_and_hour() -> None:
    records = [
        record(NOON, "dr-a", "pg-1"),
        record(NOON + timedelta(minutes=5), "dr-a", "pg-2"),
        record(NOON + timedelta(minutes=70), "dr-b", "pg-1"),
        record(NOON, "dr-b", None, outcome="denied"),
        record(NOON + timedelta(hours=10), "dr-b", "pg-2", break_glass="code blue"),
    ]
    found = patterns(records, NOON - timedelta(hours=1), RULES)
    assert found.per_user_hour == {
        "2026-12-02T15:00:00+00:00": {"dr-a": 2},
        "2026-12-02T16:00:00+00:00": {"dr-b": 1},
        "2026-12-03T01:00:00+00:00": {"dr-b": 1},
    }
    assert found.patients_per_user == {"dr-a": 2, "dr-b": 2}
    assert (found.denials, found.break_glass, found.after_hours) == (
        {"dr-b": 1},
        {"dr-b": 1},
        {"dr-b": 1},
    )
