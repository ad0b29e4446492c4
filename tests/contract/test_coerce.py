"""Value coercion, the first check every adapter applies to hostile input: bounded work per value,
only ValueError (with the value named) for anything it refuses."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.coerce import FieldErrors, coerce_record, coerce_value

MONEY = {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 2}
TS = {"type": "long", "logicalType": "timestamp-millis"}
DATE = {"type": "int", "logicalType": "date"}
ENUM = {"type": "enum", "name": "Status", "symbols": ["submitted", "approved"]}
TYPES = ["int", "long", "double", "boolean", "string", MONEY, TS, DATE, ENUM, ["null", "int"]]


@pytest.mark.parametrize(
    ("avro_type", "value"),
    [
        ("int", "1e1000000"),  # would become a 1,000,000-digit int before the range check
        ("long", "1e1"),
        ("int", "１２３"),  # fullwidth digits
        ("int", "١٢٣"),  # Arabic-Indic digits
        ("long", "9" * 5000),
        ("int", 2**31),
        ("long", 2**63),
        ("int", 1.5),
        ("int", True),
        (MONEY, "1E+30"),  # raised decimal.InvalidOperation before
        (MONEY, "12345678901234567.89"),  # more digits than the precision: was rounded
        (MONEY, "1.234"),
        (MONEY, "NaN"),
        (MONEY, "١٠٠"),
        (MONEY, 1e400),
        ("double", "1e400"),
        ("double", "nan"),
        (TS, "0001-01-01T00:00:00Z"),
        (TS, "1850-06-01T00:00:00+07:00"),
        (TS, "2101-01-01T00:00:00Z"),
        (TS, "9999-12-31T23:59:59Z"),
        (TS, 1e400),
        (DATE, "1850-01-01"),
        (DATE, "9999-01-01"),
        ("string", "\ud800"),  # lone surrogate: fastavro could not encode it
        ("string", "x" * 70_000),
        ("string", {"a": 1}),
        (ENUM, "rejected"),
        ("boolean", "maybe"),
    ],
)
def test_hostile_values_are_refused_with_the_value_named(avro_type, value):
    with pytest.raises(ValueError) as refused:
        coerce_value(avro_type, value)
    assert "value" in str(refused.value)
    assert len(str(refused.value)) < 300


@pytest.mark.parametrize(
    ("avro_type", "value", "expected"),
    [
        ("int", " 42 ", 42),
        ("long", -(2**63), -(2**63)),
        ("int", 7.0, 7),
        (MONEY, "1500000.50", Decimal("1500000.50")),
        (MONEY, "0012.5", Decimal("12.50")),
        (MONEY, 12.5, Decimal("12.50")),
        (MONEY, Decimal("99999999999999.99"), Decimal("99999999999999.99")),
        ("double", "2.5e3", 2500.0),
        (TS, "2026-11-26T08:30:00+07:00", datetime(2026, 11, 26, 1, 30, tzinfo=UTC)),
        (DATE, "1961-02-03", date(1961, 2, 3)),
        ("boolean", "ya", True),
        (["null", "int"], "", None),
        ("string", "Kecamatan Kapas", "Kecamatan Kapas"),
    ],
)
def test_ordinary_values_still_pass(avro_type, value, expected):
    assert coerce_value(avro_type, value) == expected


@settings(max_examples=300, deadline=None)
@given(avro_type=st.sampled_from(TYPES), value=st.one_of(st.text(max_size=200), st.integers(), st.floats(), st.none()))
def test_any_value_is_coerced_or_refused_with_value_error(avro_type, value):
    try:
        coerce_value(avro_type, value)
    except ValueError:
        pass


def test_a_huge_exponent_is_refused_without_writing_out_its_digits():
    """1e999999999 (a JSON number the push endpoint keeps exact) was formatted into a billion digits
    before the length check: about 10 s of CPU and a gigabyte. Refused by its magnitude instead."""
    tracemalloc.start()
    try:
        for value in (Decimal("1e999999999"), Decimal("-1e-999999999")):
            with pytest.raises(ValueError, match="is not a number of at most 64 digits"):
                coerce_value(MONEY, value)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_a_record_collects_every_field_problem():
    schema = {"name": "Permit", "fields": [{"name": "fee", "type": MONEY}, {"name": "n", "type": "int"}]}
    with pytest.raises(FieldErrors) as refused:
        coerce_record(schema, {"fee": "1E+30", "n": "1e1", "extra": 1})
    assert set(refused.value.errors) == {"fee", "n", "extra"}
