"""Working days in the ready views' SQL (sinks/ready_views.py), counted as contract/workdays.py counts
them: Monday to Friday except the days off of ref_holidays, after the start's local date up to and
including the end's. A walk over the calendar days of every row checks each day against the holidays
(seconds on millions of permits); here each row costs arithmetic and two array look-ups instead.

Day numbers (toRelativeDayNum: 0 is Thursday 1970-01-01). The weekdays from Monday 1969-12-29 up to
day x, less one, have a closed form W(x) = 5 * full weeks + least(days into x's week, 4); F(x) = W(x) minus
the weekday holidays up to x counts the working days up to x, so the working days from s to e are
F(e) - F(s). The holidays up to x come from a cumulative array over the days the calendar spans (wd_lo,
the day before its first, to wd_hi, a week after its last), clamped: 0 before it, all of them after.
The k-th working day inverts F: W's inverse plus the holidays before that day, from an array by
working-day index over the same span (clamped alike: none before it, all after it)."""

from __future__ import annotations

TZ = "'Asia/Jakarta'"


def calendar(days_off: str) -> str:
    """The WITH clause's constants (computed once per query) from `days_off`, an array of Dates."""
    return f"""{days_off} AS days_off,
    arraySort(arrayDistinct(arrayMap(d -> toRelativeDayNum(d), arrayFilter(d -> toDayOfWeek(d) <= 5, days_off))))
        AS wd_off,
    if(empty(wd_off), 0, toInt64(wd_off[1]) - 1) AS wd_lo,
    if(empty(wd_off), 0, toInt64(wd_off[-1]) + 7) AS wd_hi,
    arrayCumSum(arrayMap(x -> toInt64(has(wd_off, x)), range(wd_lo, wd_hi + 1))) AS wd_off_upto,
    arrayFilter(x -> {_weekday("x")} AND NOT has(wd_off, x), range(wd_lo + 1, wd_hi + 1)) AS wd_span,
    arrayConcat([toInt64(0)], arrayMap(x -> {_off_upto("x")}, wd_span)) AS wd_off_before"""


def _weekday(x: str) -> str:
    return f"(({x}) + 3) % 7 < 5"


def _off_upto(x: str) -> str:
    """Weekday holidays on or before day number `x`."""
    return f"wd_off_upto[least(greatest(({x}) - wd_lo, 0), wd_hi - wd_lo) + 1]"


def _count(x: str) -> str:
    """F(x): working days on or before day number `x` (since 1969-12-29)."""
    return f"(5 * intDiv(({x}) + 3, 7) + least((({x}) + 3) % 7, 4) - {_off_upto(x)})"


def _day(start: str) -> str:
    return f"toInt64(toRelativeDayNum(toDate({start}, {TZ})))"


def working_days(start: str, end: str) -> str:
    """Working days from `start` to `end` (0 when decided on the day of submission or before)."""
    s, e = _day(start), _day(end)
    return f"toUInt64(if({e} > {s}, {_count(e)} - {_count(s)}, 0))"


def due_date(start: str, sla: str) -> str:
    """The local date of the `sla`-th working day after `start` (its date itself for 0)."""
    s = _day(start)
    k = f"({_count(s)} + ({sla}))"  # F of the day sought
    index = f"least(greatest({k} - {_count('wd_lo')}, 0), length(wd_span)) + 1"
    c = f"({k} + wd_off_before[{index}])"  # W of the day sought
    day = f"(7 * intDiv({c}, 5) + {c} % 5 - 3)"
    return f"addDays(toDate({start}, {TZ}), if(({sla}) <= 0, 0, {day} - {s}))"
