"""What one entity contributes to a KPI, and the running aggregate of a group: free of Faust so it
can be unit-tested. A contribution is (group values, window start, event time, measure value,
deadline); an aggregate adds and subtracts contributions, so an entity moving between groups is
one subtraction and one addition. Money is summed as Decimal, never as a float."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from contract.kpis import OVERDUE, TS_SOURCE, Kpi, measure_fields, text
from contract.workdays import WIB, WorkCalendar, local_midnight_ms

_UNIT_MS = {"hours": 3_600_000, "days": 86_400_000}
_CENT = Decimal("0.01")
T = TypeVar("T")


def per_kpi(fn: Callable[[Kpi], T]) -> Callable[[Kpi], T]:
    """`fn(kpi)` computed once per KPI object: declarations are immutable once loaded, and these
    derivations ran several times per event. Kpi is not hashable (a dict field), so the cache is
    keyed by id and keeps the KPI itself, which keeps that id from being reused."""
    cache: dict[int, tuple[Kpi, T]] = {}

    def cached(kpi: Kpi) -> T:
        hit = cache.get(id(kpi))
        if hit is None:
            hit = cache[id(kpi)] = (kpi, fn(kpi))
        return hit[1]

    return cached


allowed = per_kpi(Kpi.allowed)
is_money = per_kpi(Kpi.money)


@per_kpi
def _sum_type(kpi: Kpi) -> Any:
    return next(f["type"] for f in measure_fields(kpi) if f["name"] == "sum")


def millis(value: Any) -> int | None:
    """A timestamp as decoded by fastavro (an aware datetime) or already in milliseconds."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value)


def window_bounds(size: str, t_ms: int) -> tuple[int, int]:
    """[start, end) of the tumbling window holding t_ms, on the local calendar (WIB)."""
    moment = datetime.fromtimestamp(t_ms / 1000, WIB)
    if size == "hour":
        start = moment.replace(minute=0, second=0, microsecond=0)
        return int(start.timestamp() * 1000), int((start + timedelta(hours=1)).timestamp() * 1000)
    day = moment.date()
    if size == "day":
        return local_midnight_ms(day), local_midnight_ms(day + timedelta(1))
    first = date(day.year, day.month, 1)
    following = date(day.year + (day.month == 12), day.month % 12 + 1, 1)
    return local_midnight_ms(first), local_midnight_ms(following)


def duration(kpi: Kpi, record: dict[str, Any], calendar: WorkCalendar) -> float | int | None:
    """The time from `from` to `to` in the measure's unit; None while either is missing."""
    m = kpi.spec.measure
    start, end = millis(record.get(m.from_field or "")), millis(record.get(m.to_field or ""))
    if start is None or end is None:
        return None
    if m.unit == "working_days":
        return calendar.working_days_between(start, end)
    return max(0, end - start) / _UNIT_MS[m.unit]


def measure_value(kpi: Kpi, record: dict[str, Any], calendar: WorkCalendar) -> Any:
    """The entity's value for the measure (JSON-safe: money as a string); None: no contribution."""
    m = kpi.spec.measure
    if m.kind == "count":
        return 1
    if m.kind in ("sum", "average") and not m.from_field:
        value = record.get(m.field or "")
        if value is None:
            return None
        return str(value) if isinstance(value, Decimal) else value
    spent = duration(kpi, record, calendar)
    if spent is None:
        return None
    if m.kind == "percentiles":
        return min(int(spent), m.max_bucket)
    if m.kind == "share_within":
        limit = m.limit if m.limit is not None else record.get(m.limit_field or "")
        return None if limit is None else int(spent <= limit)
    return spent  # average of a duration


def deadline_ms(kpi: Kpi, record: dict[str, Any], calendar: WorkCalendar) -> int | None:
    d = kpi.spec.deadline
    if d is None:
        return None
    if d.at is not None:
        return millis(record.get(d.at))
    start = millis(record.get(d.from_field or ""))
    days = d.working_days if d.working_days is not None else record.get(d.working_days_field or "")
    if start is None or days is None:
        return None
    return calendar.overdue_from_ms(start, int(days))


@dataclass(frozen=True)
class Contribution:
    group: tuple[str | None, ...]  # group_by values; None where `overdue` goes (decided when counted)
    window: int | None  # window start, ms; None for a live gauge
    t: int | None  # the event time the window was chosen by
    value: Any
    deadline: int | None

    def dump(self) -> list[Any]:
        return [list(self.group), self.window, self.t, self.value, self.deadline]

    @classmethod
    def load(cls, data: list[Any]) -> Contribution:
        group, window, t, value, deadline = data
        return cls(tuple(group), window, t, value, deadline)


def contribution(kpi: Kpi, record: dict[str, Any], calendar: WorkCalendar) -> Contribution | None:
    """What the entity in state `record` adds to the KPI; None when it is filtered out or its
    measure cannot be computed yet (e.g. no decision date)."""
    for name, values in allowed(kpi).items():
        if text(record.get(name)) not in values:
            return None
    value = measure_value(kpi, record, calendar)
    if value is None:
        return None
    window = t = None
    if kpi.spec.window is not None:
        t = millis(record.get(kpi.spec.window.time if kpi.spec.window.time != TS_SOURCE else TS_SOURCE))
        if t is None:
            return None
        window = window_bounds(kpi.spec.window.size, t)[0]
    group = tuple(None if name == OVERDUE else text(record.get(name)) for name in kpi.spec.group_by)
    return Contribution(group, window, t, value, deadline_ms(kpi, record, calendar))


@dataclass
class Aggregate:
    """One group and window of one KPI."""

    count: int = 0
    total: Any = 0
    within: int = 0
    buckets: Counter[int] = field(default_factory=Counter)

    def add(self, kpi: Kpi, value: Any, sign: int) -> None:
        kind = kpi.spec.measure.kind
        self.count += sign
        if kind in ("sum", "average"):
            amount = Decimal(value) if is_money(kpi) else value
            self.total = (Decimal(self.total) if is_money(kpi) else self.total) + sign * amount
        elif kind == "share_within":
            self.within += sign * int(value)
        elif kind == "percentiles":
            self.buckets[int(value)] += sign
            if self.buckets[int(value)] <= 0:
                del self.buckets[int(value)]

    def percentile(self, p: int) -> int | None:
        """Nearest rank: the smallest bucket holding at least p% of the group."""
        if self.count <= 0:
            return None
        rank, seen = math.ceil(p / 100 * self.count), 0
        for bucket in sorted(self.buckets):
            seen += self.buckets[bucket]
            if seen >= rank:
                return bucket
        return max(self.buckets) if self.buckets else None

    def measures(self, kpi: Kpi) -> dict[str, Any]:
        """The measure's output fields (contract.kpis.measure_fields) for this aggregate."""
        m = kpi.spec.measure
        if m.kind == "sum":
            return {"sum": self._total(kpi)}
        if m.kind == "average":
            total = self._total(kpi)
            if not self.count:
                return {"sum": total, "average": None}
            average = (Decimal(total) / self.count).quantize(_CENT) if is_money(kpi) else float(total) / self.count
            return {"sum": total, "average": average}
        if m.kind == "percentiles":
            return {f"p{p}": self.percentile(p) for p in m.percentiles}
        if m.kind == "share_within":
            return {"within": self.within, "share": self.within / self.count if self.count else None}
        return {}

    def _total(self, kpi: Kpi) -> Any:
        if is_money(kpi):
            return Decimal(self.total).quantize(_CENT)
        return int(self.total) if _sum_type(kpi) == "long" else float(self.total)
