"""A system's working hours in its catalog file: the default, and every mistake named by file, line,
field and value (contract/working_hours.py, validated by contract/catalog.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from backbone.errors import InputError
from backbone.settings import PROJECT_ROOT
from contract import working_hours as hours
from contract.catalog import load_system

BASE = yaml.safe_load((PROJECT_ROOT / "catalog" / "licensing.yaml").read_text())


def system_with(tmp_path: Path, value: object):
    doc = {**BASE, "working_hours": value}
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_system(path, PROJECT_ROOT / "schemas")


def test_absent_means_office_hours_in_jakarta(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(BASE, sort_keys=False))
    found = load_system(path, PROJECT_ROOT / "schemas").working_hours
    assert found == hours.DEFAULT
    assert (found.days, found.start_minute, found.end_minute, found.utc_offset_seconds) == (
        frozenset(range(5)), 450, 960, 7 * 3600
    )  # fmt: skip
    # Monday 2026-03-02 08:00 WIB is 01:00 UTC; 16:00 WIB closes; Saturday is closed.
    assert found.is_open(datetime(2026, 3, 2, 1, 0, tzinfo=UTC))
    assert not found.is_open(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    assert not found.is_open(datetime(2026, 3, 7, 1, 0, tzinfo=UTC))


def test_a_round_the_clock_system_and_partial_values(tmp_path):
    always = system_with(tmp_path, {"days": "mon-sun", "from": "00:00", "to": "24:00"}).working_hours
    assert always.days == frozenset(range(7)) and (always.start_minute, always.end_minute) == (0, 1440)
    makassar = system_with(tmp_path, {"days": ["mon", "wed-fri"], "timezone": "Asia/Makassar"}).working_hours
    assert makassar.days == frozenset({0, 2, 3, 4}) and makassar.utc_offset_seconds == 8 * 3600


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"from": "7.30"}, "field 'working_hours.from' has value '7.30': use HH:MM in quotes"),
        ({"from": 730}, "field 'working_hours.from' has value 730: use HH:MM"),
        ({"to": "07:00"}, "field 'working_hours.to' has value '07:00': must be later than from (07:30)"),
        ({"days": "fri-mon"}, "field 'working_hours.days' has value 'fri-mon': range fri-mon runs backwards"),
        ({"days": "weekdays"}, "field 'working_hours.days' has value 'weekdays': use day names"),
        ({"timezone": "Europe/Berlin"}, "'working_hours.timezone' has value 'Europe/Berlin': has daylight saving"),
        ({"timezone": "Asia/Nowhere"}, "has value 'Asia/Nowhere': not an IANA time zone"),
        ({"hours": "8"}, "field 'working_hours.hours' has value '8'"),
        ("always", "field 'working_hours' has value 'always', expected a mapping"),
    ],
)
def test_mistakes_name_the_file_line_field_and_value(tmp_path, value, message):
    with pytest.raises(InputError) as err:
        system_with(tmp_path, value)
    assert message in str(err.value) and str(err.value).startswith(f"{tmp_path / 'x.yaml'}:")
