"""A departmental system's working hours (catalog `working_hours:`): when its silence is an incident.

A system that changes nothing for longer than its `freshness_seconds` is "silent" (adapter stopped,
database unreachable, an office that stopped uploading); the alert BackboneSourceSilent fires only
inside the system's working hours, so a quiet night or weekend is not an incident.

    working_hours:
      days: mon-fri          # day names (mon tue wed thu fri sat sun): a range "mon-fri", a list
                             # "mon,wed,fri" or a YAML list; "mon-sun" for every day
      from: "07:30"          # local opening time, HH:MM (quote it: YAML reads 07:30 as a number)
      to: "16:00"            # local closing time, HH:MM, later than `from`; "24:00" is midnight
      timezone: Asia/Jakarta # IANA zone without daylight saving time (Asia/Jakarta WIB, Asia/Makassar
                             # WITA, Asia/Jayapura WIT, UTC): Prometheus rules use its fixed offset

Default when the file has no `working_hours`: DEFAULT, the regency offices' hours, Monday to Friday
07:30-16:00 WIB (Asia/Jakarta). A 24-hour service (a hospital) writes `{days: mon-sun, from: "00:00",
to: "24:00"}`. Each field may be left out and takes the default's value. A mistake is reported by the
catalog as file, line, field and value (e.g. `field 'working_hours.from' has value '7.30': use HH:MM`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")


class WorkingHoursError(ValueError):
    """A bad value: `field` (under working_hours), the value and what is wrong."""

    def __init__(self, field: str, value: Any, problem: str) -> None:
        super().__init__(f"field 'working_hours.{field}' has value {value!r}: {problem}")
        self.field, self.value, self.problem = field, value, problem


@dataclass(frozen=True)
class WorkingHours:
    days: frozenset[int]  # 0 = Monday ... 6 = Sunday (Python's weekday())
    start_minute: int  # local minutes after midnight
    end_minute: int  # exclusive; 1440 = midnight
    timezone: str
    utc_offset_seconds: int

    def is_open(self, moment: datetime) -> bool:
        """Whether `moment` (aware) falls inside the working hours."""
        local = moment.astimezone(ZoneInfo(self.timezone))
        minute = local.hour * 60 + local.minute
        return local.weekday() in self.days and self.start_minute <= minute < self.end_minute


def days_of(value: Any) -> frozenset[int]:
    parts: list[Any] | None = None
    if isinstance(value, list):
        parts = value
    elif isinstance(value, str):
        parts = value.replace(" ", "").split(",")
    if not parts:
        raise WorkingHoursError("days", value, "use day names like mon-fri or mon,wed,fri")
    days: set[int] = set()
    for part in parts:
        first, _, last = str(part).lower().partition("-")
        if first not in DAY_NAMES or (last and last not in DAY_NAMES):
            raise WorkingHoursError("days", value, f"use day names ({', '.join(DAY_NAMES)}), a range like mon-fri")
        a, b = DAY_NAMES.index(first), DAY_NAMES.index(last or first)
        if b < a:
            raise WorkingHoursError("days", value, f"range {part} runs backwards")
        days.update(range(a, b + 1))
    return frozenset(days)


def minute_of(field: str, value: Any) -> int:
    match = _TIME.match(value) if isinstance(value, str) else None
    if not match or (match.group(1) == "24" and match.group(2) != "00"):
        raise WorkingHoursError(field, value, 'use HH:MM in quotes, e.g. "07:30"')
    return int(match.group(1)) * 60 + int(match.group(2))


def fixed_offset(zone: str) -> int:
    """The zone's UTC offset in seconds; WorkingHoursError for an unknown zone or one with DST."""
    try:
        info = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise WorkingHoursError("timezone", zone, "not an IANA time zone such as Asia/Jakarta") from None
    offsets = {datetime(2025, month, 1, tzinfo=info).utcoffset() for month in (1, 7)}
    if len(offsets) != 1:
        raise WorkingHoursError("timezone", zone, "has daylight saving time; use a zone with a fixed offset")
    (offset,) = offsets
    return int(offset.total_seconds()) if offset is not None else 0


DEFAULT_SPEC = {"days": "mon-fri", "from": "07:30", "to": "16:00", "timezone": "Asia/Jakarta"}


def parse(value: Any) -> WorkingHours:
    """The catalog's `working_hours` mapping (None: DEFAULT) as WorkingHours; WorkingHoursError otherwise."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise WorkingHoursError("", value, "expected a mapping with days, from, to and timezone")
    unknown = sorted(set(value) - set(DEFAULT_SPEC))
    if unknown:
        raise WorkingHoursError(unknown[0], value[unknown[0]], "not a field (days, from, to, timezone)")
    spec = {**DEFAULT_SPEC, **value}
    zone = spec["timezone"]
    if not isinstance(zone, str):
        raise WorkingHoursError("timezone", zone, "expected a zone name such as Asia/Jakarta")
    start, end = minute_of("from", spec["from"]), minute_of("to", spec["to"])
    if start >= 1440:
        raise WorkingHoursError("from", spec["from"], "use a time before 24:00")
    if end <= start:
        raise WorkingHoursError("to", spec["to"], f"must be later than from ({spec['from']})")
    return WorkingHours(days_of(spec["days"]), start, end, zone, fixed_offset(zone))


DEFAULT = parse(None)


def _broken(problem: str) -> PydanticCustomError:
    """As contract.catalog reports a rule: `field 'working_hours.<field>' has value X: <problem>`."""
    return PydanticCustomError("rule", "{rule}", {"rule": problem})


class WorkingHoursEntry(BaseModel):
    """`working_hours:` as the catalog file has it (validated field by field, so a mistake names its
    line and field); a field left out takes the default's value. `parse` makes WorkingHours of it."""

    model_config = ConfigDict(strict=True, extra="forbid", validate_default=True)

    days: Any = DEFAULT_SPEC["days"]
    start: Annotated[Any, Field(alias="from")] = DEFAULT_SPEC["from"]
    to: Any = DEFAULT_SPEC["to"]
    timezone: Any = DEFAULT_SPEC["timezone"]

    @field_validator("days", "start", "to", "timezone")
    @classmethod
    def _valid(cls, value: Any, info: ValidationInfo) -> Any:
        try:
            if info.field_name == "days":
                days_of(value)
            elif info.field_name == "timezone":
                fixed_offset(value if isinstance(value, str) else repr(value))
            else:
                minute = minute_of("from" if info.field_name == "start" else "to", value)
                start = info.data.get("start")
                if info.field_name == "start" and minute >= 24 * 60:
                    raise _broken("use a time before 24:00")
                if info.field_name == "to" and isinstance(start, str) and minute <= minute_of("from", start):
                    raise _broken(f"must be later than from ({start})")
        except WorkingHoursError as exc:
            raise _broken(exc.problem) from None
        return value
