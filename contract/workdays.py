"""Working days of the regency's offices: Monday to Friday, except national public holidays and
joint leave days (data/holidays_id.csv). Service levels (a permit's `sla_days`) count these days,
on the local calendar (WIB, UTC+7, no daylight saving)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path

from backbone.errors import InputError

WIB = timezone(timedelta(hours=7), "WIB")
DAY_MS = 86_400_000


def local_date(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, WIB).date()


def local_midnight_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=WIB).timestamp() * 1000)


@dataclass(frozen=True)
class WorkCalendar:
    days_off: frozenset[date]
    first: date  # the calendar knows holidays from `first` to `last`
    last: date

    def is_working_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self.days_off

    def working_days_between(self, start_ms: int, end_ms: int) -> int:
        """Working days after the start's local date, up to and including the end's: a permit
        decided on the day it was submitted took 0 working days, on the next working day 1."""
        start, end = local_date(start_ms), local_date(end_ms)
        if end <= start:
            return 0
        return sum(1 for n in range(1, (end - start).days + 1) if self.is_working_day(start + timedelta(n)))

    def due_date(self, start_ms: int, working_days: int) -> date:
        """The local date of the `working_days`-th working day after the start's date."""
        day, left = local_date(start_ms), max(0, working_days)
        while left:
            day += timedelta(1)
            if self.is_working_day(day):
                left -= 1
        return day

    def overdue_from_ms(self, start_ms: int, working_days: int) -> int:
        """The instant a service level of `working_days` from `start_ms` is missed: the local
        midnight after its due date."""
        return local_midnight_ms(self.due_date(start_ms, working_days) + timedelta(1))


def _read(path: Path) -> WorkCalendar:
    days: list[date] = []
    try:
        lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    except OSError as exc:
        raise InputError(f"{path}: cannot read the holiday calendar: {exc.strerror}") from None
    for row in csv.DictReader(lines):
        try:
            days.append(date.fromisoformat(row["date"]))
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{path}: row {row!r}: expected an ISO date in column 'date'") from None
    if not days:
        raise InputError(f"{path}: no holidays listed")
    days.sort()
    return WorkCalendar(frozenset(days), days[0], days[-1])


@lru_cache(maxsize=4)
def load_calendar(path: Path) -> WorkCalendar:
    return _read(path)
