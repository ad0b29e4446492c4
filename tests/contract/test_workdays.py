"""The working-day calendar: weekends, national holidays and joint leave days are not counted."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from backbone.settings import PROJECT_ROOT
from contract.workdays import load_calendar

CALENDAR = load_calendar(PROJECT_ROOT / "data" / "holidays_id.csv")
WIB = timezone(timedelta(hours=7))


def ms(year: int, month: int, day: int, hour: int = 9) -> int:
    return int(datetime(year, month, day, hour, tzinfo=WIB).timestamp() * 1000)


def test_the_calendar_lists_2024_to_2027_with_the_idulfitri_leave() -> None:
    assert CALENDAR.first == date(2024, 1, 1) and CALENDAR.last.year == 2027
    for day in (date(2026, 3, 20), date(2026, 3, 23), date(2026, 3, 24), date(2025, 4, 7)):
        assert not CALENDAR.is_working_day(day)
    assert CALENDAR.is_working_day(date(2026, 3, 25))


def test_working_days_skip_weekends() -> None:
    assert CALENDAR.working_days_between(ms(2026, 11, 2), ms(2026, 11, 2, 16)) == 0  # same day
    assert CALENDAR.working_days_between(ms(2026, 11, 6), ms(2026, 11, 9)) == 1  # Friday to Monday
    assert CALENDAR.working_days_between(ms(2026, 11, 16), ms(2026, 11, 24)) == 6


def test_working_days_skip_holidays_and_joint_leave() -> None:
    # 17 March 2026 to 26 March: Nyepi and its leave, Idulfitri and its leave, a weekend: 2 days.
    assert CALENDAR.working_days_between(ms(2026, 3, 17), ms(2026, 3, 26)) == 2


def test_a_service_level_is_missed_at_the_local_midnight_after_its_due_date() -> None:
    assert CALENDAR.due_date(ms(2026, 11, 2), 5) == date(2026, 11, 9)
    assert CALENDAR.due_date(ms(2026, 12, 22), 3) == date(2026, 12, 29)  # 24-25 December off
    overdue = CALENDAR.overdue_from_ms(ms(2026, 11, 2), 5)
    assert overdue == int(datetime(2026, 11, 10, tzinfo=WIB).timestamp() * 1000)


def test_local_dates_are_wib_not_utc() -> None:
    # 20:00 UTC on 5 November is already 6 November in Bojonegoro.
    start = int(datetime(2026, 11, 5, 20, tzinfo=UTC).timestamp() * 1000)
    assert CALENDAR.working_days_between(start, ms(2026, 11, 6, 15)) == 0
