"""What every simulated office shares: the Jakarta clock and office hours, the seeded random streams,
an agenda of timed events, Rupiah amounts, the regency's regions, and a base class with the stream's
positions and bad-record draw.

Every simulator reads the wall clock through `wall_clock()` and `start_of_day()` only, so a test pins
all of them by replacing this module's `datetime`."""

from __future__ import annotations

import calendar
import heapq
import random
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from producers.emitter import Change

JAKARTA = timedelta(hours=7)  # Asia/Jakarta, no daylight saving
OFFICE_HOURS = (8, 16)  # regency and village offices, Monday to Friday
# Fixed-date national holidays (New Year, Labour Day, Pancasila Day, Independence Day, Christmas).
HOLIDAYS = {(1, 1), (5, 1), (6, 1), (8, 17), (12, 25)}
CENT = Decimal("0.01")
UNKNOWN_VILLAGE = "35.22.99.9999"  # the village code bad records carry

# -- clock ------------------------------------------------------------------------------------------


def wall_clock() -> datetime:
    """Now, in UTC: the moment a change is emitted (ts_source)."""
    return datetime.now(UTC)


def start_of_day(utc_hour: int) -> datetime:
    """Today at this hour UTC (0 is 07:00, 1 is 08:00 in Jakarta): a business clock that starts at a
    fixed time of day gives the same records whenever the run starts."""
    return datetime.now(UTC).replace(hour=utc_hour, minute=0, second=0, microsecond=0)


def local(at: datetime) -> datetime:
    """Wall-clock time in Jakarta (carried as a UTC-tagged datetime shifted by 7 hours)."""
    return at + JAKARTA


def utc(year: int, month: int, day: int, hour: int = 0, minute: float = 0.0) -> datetime:
    """A Jakarta local time as UTC."""
    return datetime(year, month, day, hour, tzinfo=UTC) + timedelta(minutes=minute) - JAKARTA


def to_millis(at: datetime) -> datetime:
    """What Avro timestamp-millis keeps, so a replayed record compares equal."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def working_days(year: int, month: int, first: int, last: int) -> list[int]:
    """Weekdays of the month from `first` to `last` (clipped to the month) that are not holidays."""
    last = min(last, calendar.monthrange(year, month)[1])
    return [d for d in range(first, last + 1) if calendar.weekday(year, month, d) < 5 and (month, d) not in HOLIDAYS]


def into_office_hours(moment: datetime, rng: random.Random) -> datetime:
    """The moment, moved forward into office hours (08:00-16:00 Jakarta, weekdays but holidays),
    at a random minute of the hour it opens."""
    at = local(moment)
    if at.hour >= 16:
        at = (at + timedelta(days=1)).replace(hour=8, minute=rng.randint(0, 59))
    elif at.hour < 8:
        at = at.replace(hour=8, minute=rng.randint(0, 59))
    while at.weekday() >= 5 or (at.month, at.day) in HOLIDAYS:
        at = (at + timedelta(days=1)).replace(hour=8, minute=rng.randint(0, 59))
    return (at - JAKARTA).replace(microsecond=0)


def in_office_hours(at: datetime) -> bool:
    moment = local(at)
    return moment.weekday() < 5 and OFFICE_HOURS[0] <= moment.hour < OFFICE_HOURS[1]


def after_working(at: datetime, working_hours: float) -> datetime:
    """`at` moved on by this much office time (08:00-16:00, Monday to Friday, in Jakarta); from
    outside office hours it counts from the next opening."""
    first, last = OFFICE_HOURS
    minutes = working_hours * 60
    while True:
        moment = local(at)
        if moment.weekday() >= 5 or moment.hour >= last:
            day = moment.date() + timedelta(days=1)
            while day.weekday() >= 5:
                day += timedelta(days=1)
            at = utc(day.year, day.month, day.day, first)
            continue
        if moment.hour < first:
            at = utc(moment.year, moment.month, moment.day, first)
            continue
        week = 5 * (last - first) * 60
        if minutes >= week:  # whole working weeks at once: the same time a week later
            weeks = int(minutes // week)
            at += timedelta(days=7 * weeks)
            minutes -= weeks * week
            continue
        left = (moment.replace(hour=last, minute=0, second=0, microsecond=0) - moment).total_seconds() / 60
        if minutes < left:
            return at + timedelta(minutes=minutes)
        minutes -= left
        at += timedelta(minutes=left)


def next_in_hourly_process(t: datetime, rate_at: Callable[[datetime], float], rng: random.Random) -> datetime:
    """The next event after t of a Poisson process whose rate (events per hour, from the Jakarta
    time) is constant within each hour; hours with rate 0 are skipped."""
    while True:
        moment = local(t)
        boundary = moment.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1) - JAKARTA
        rate = rate_at(moment)
        if rate > 0:
            candidate = t + timedelta(hours=rng.expovariate(rate))
            if candidate < boundary:
                return to_millis(candidate)
        t = boundary


class Agenda:
    """Timed events, earliest first; events at the same time keep the order they were added in."""

    def __init__(self) -> None:
        self._events: list[tuple[datetime, int, str, Any]] = []
        self._added = 0

    def add(self, at: datetime, kind: str, data: Any = None) -> None:
        self._added += 1
        heapq.heappush(self._events, (at, self._added, kind, data))

    def pop(self) -> tuple[datetime, str, Any]:
        at, _, kind, data = heapq.heappop(self._events)
        return at, kind, data


# -- money ------------------------------------------------------------------------------------------


def skewed(rng: random.Random, low: float, high: float, skew: float) -> float:
    """Between low and high, most near low and a few large: the shape of public spending."""
    return low + (high - low) * rng.random() ** skew


def rupiah(rng: random.Random, low: int, high: int, skew: float = 3.0, unit: int = 1000) -> Decimal:
    """A skewed amount, rounded down to whole `unit`s of Rupiah, with two decimal places."""
    return Decimal(int(skewed(rng, low, high, skew) / unit) * unit).quantize(CENT)


def thousands(value: Decimal | float) -> Decimal:
    """Rounded down to whole thousands of Rupiah, with two decimal places."""
    return Decimal(int(Decimal(str(value)) / 1000) * 1000).quantize(CENT)


# -- regions ----------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def region_names() -> dict[str, str]:
    """Names of the real regions for display names; codes only if the reference data is unavailable."""
    try:
        from backbone.settings import get_settings
        from contract.reference import load_regions

        return {code: info["name"] for code, info in load_regions(get_settings().regions_csv).items()}
    except Exception:  # names are cosmetic: fall back to codes
        return {}


def kecamatan_of(village: str) -> str:
    return village.rsplit(".", 1)[0]


def is_town(village: str) -> bool:
    """A kelurahan (urban village): its own number starts with 1."""
    return village.rsplit(".", 1)[1].startswith("1")


def by_kecamatan(villages: Sequence[str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for village in villages:
        grouped.setdefault(kecamatan_of(village), []).append(village)
    return grouped


def seat_of(villages: list[str], kecamatan_name: str | None, names: dict[str, str]) -> str:
    """The village at the centre of a kecamatan: the one named like it, else a kelurahan, else the first."""
    for village in villages:
        if kecamatan_name and names.get(village) == kecamatan_name:
            return village
    towns = [v for v in villages if is_town(v)]
    return (towns or villages)[0]


# -- the simulator ----------------------------------------------------------------------------------


def impossible_next(rng: random.Random, states: Sequence[str], current: str, allowed: Sequence[str]) -> str:
    """A state the lifecycle does not allow after `current`: for the bad records."""
    return rng.choice([s for s in states if s != current and s not in allowed])


class Simulator:
    """A deterministic stream of changes: the same seed, start and clock start give the same changes.

    Two seeded streams: `rng` for the records and `clock_rng` for the timeline, so the records do not
    depend on when in the day the run starts. `seq` is the source position of the last change. An
    office sets up its own state in `_start`; `clock_start` (default: today) starts its timeline."""

    def __init__(
        self,
        villages: list[str],
        seed: int = 1,
        start_seq: int = 0,
        bad_ratio: float = 0.0,
        clock_start: datetime | None = None,
    ) -> None:
        self.rng = random.Random(seed * 1_000_003 + start_seq)
        self.clock_rng = random.Random(seed * 7_919 + start_seq)
        self.villages = villages
        self.seed = seed
        self.seq = start_seq
        self.bad_ratio = bad_ratio
        self.snapshot_due = start_seq == 0
        self._start(clock_start)

    def _start(self, clock_start: datetime | None) -> None:
        raise NotImplementedError

    def _next_position(self) -> str:
        self.seq += 1
        return f"{self.seq:012d}"

    def changes(self) -> Iterator[Change]:
        """Endless. With probability `bad_ratio` a change is a bad record, for the processor to
        dead-letter; it never enters the office's state, so later changes stay valid."""
        yield from self._opening()
        while True:
            yield self._bad() if self._bad_turn() else self._next_change()

    # The entity of the reference records a fresh stream (from position 0) starts with, if any.
    snapshot_entity: str | None = None

    def _reference_records(self) -> dict[str, dict]:
        """The records of `snapshot_entity` by key, as they are now."""
        return {}

    def _opening(self) -> Iterator[Change]:
        """A fresh stream starts with a snapshot (op 'r') of the reference records."""
        if self.snapshot_due and self.snapshot_entity:
            self.snapshot_due = False
            for key, record in self._reference_records().items():
                position = self._next_position()
                yield Change(
                    "r", key, position, wall_clock(), after=dict(record), snapshot=True, entity=self.snapshot_entity
                )

    def _next_change(self) -> Change:
        raise NotImplementedError

    def _bad(self) -> Change:
        raise NotImplementedError

    def _bad_turn(self) -> bool:
        """Whether the next change is a bad record (draws from `rng` only when bad records are asked)."""
        return bool(self.bad_ratio) and self.rng.random() < self.bad_ratio
