"""Loose values (CSV cells, JSON, source rows) to the Python values fastavro expects for a payload
schema, with an error per field that names the field and the value. Shared by every adapter.

Every value is hostile until checked, so each check is bounded before any conversion: text length,
plain ASCII numerals only (no exponents, no fullwidth or Arabic-Indic digits, which Python's int()
and Decimal() would accept), digits counted against the declared precision before a Decimal is
quantized, and dates and times within a plausible window."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal, localcontext
from typing import Any

_TRUE = {"true", "1", "yes", "y", "ya"}
_FALSE = {"false", "0", "no", "n", "tidak"}

MAX_TEXT_CHARS = 65_536  # one field; a record is bounded by its fields
_MAX_NUMERAL_CHARS = 64
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?", re.ASCII)
_LIMITS = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
# Changes happen between 1970 and 2100; dates (births, budget years) between 1900 and 2100.
TIMESTAMP_WINDOW = (datetime(1970, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
DATE_WINDOW = (date(1900, 1, 1), date(2100, 12, 31))


def _numeral(value: Any, pattern: re.Pattern[str], what: str) -> str:
    """The text of a number, refused unless it is a plain ASCII numeral of bounded length."""
    text = value if isinstance(value, str) else str(value)
    text = text.strip()
    if len(text) > _MAX_NUMERAL_CHARS or not pattern.fullmatch(text):
        raise ValueError(f"value {_short(value)} is not {what}")
    return text


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


class FieldErrors(ValueError):
    """All problems of one record: {field: message}."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"field {k!r}: {v}" for k, v in errors.items()))
        self.errors = errors


def _branches(avro_type: Any) -> tuple[bool, Any]:
    if isinstance(avro_type, list):
        rest = [t for t in avro_type if t != "null"]
        return "null" in avro_type, rest[0] if len(rest) == 1 else rest
    return False, avro_type


class _OutsideWindow(ValueError):
    pass


def _timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        parsed = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        parsed = datetime.fromtimestamp(value / 1000, UTC)
    else:
        text = str(value).strip().replace("Z", "+00:00")
        if len(text) > _MAX_NUMERAL_CHARS:
            raise ValueError("too long")
        parsed = datetime.fromisoformat(text)
        # A time without zone is read as UTC: sources must send UTC or an explicit offset.
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if not TIMESTAMP_WINDOW[0] <= parsed < TIMESTAMP_WINDOW[1]:
        raise _OutsideWindow(f"{TIMESTAMP_WINDOW[0]:%Y} to {TIMESTAMP_WINDOW[1]:%Y}")
    return parsed


def _date(value: Any) -> date:
    if isinstance(value, datetime):
        parsed = value.date()
    elif isinstance(value, date):
        parsed = value
    else:
        text = str(value).strip()
        if len(text) > _MAX_NUMERAL_CHARS:
            raise ValueError("too long")
        parsed = date.fromisoformat(text)
    if not DATE_WINDOW[0] <= parsed <= DATE_WINDOW[1]:
        raise _OutsideWindow(f"{DATE_WINDOW[0]:%Y} to {DATE_WINDOW[1]:%Y}")
    return parsed


def _decimal(base: dict[str, Any], value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValueError(f"value {value!r} is not a number")
    if isinstance(value, Decimal):
        # Written out with "f", 1e999999999 is a billion digits (seconds of CPU, a gigabyte): refuse
        # a magnitude beyond any numeral we take before formatting it.
        if value.is_finite() and abs(value.adjusted()) > _MAX_NUMERAL_CHARS:
            raise ValueError(f"value {_short(str(value))} is not a number of at most {_MAX_NUMERAL_CHARS} digits")
        value = format(value, "f") if value.is_finite() else str(value)
    elif isinstance(value, float):
        value = repr(value)
    text = _numeral(value, _DECIMAL, "a number")
    precision, scale = int(base["precision"]), int(base.get("scale", 0))
    whole, _, fraction = text.lstrip("+-").partition(".")
    if len(fraction.rstrip("0")) > scale:
        raise ValueError(f"value {value!r} has more than {scale} decimal places")
    if len(whole.lstrip("0")) > precision - scale:
        raise ValueError(f"value {value!r} has more than {precision} digits")
    with localcontext() as context:
        context.prec = precision + 2
        return Decimal(text).quantize(Decimal(1).scaleb(-scale))


def _integer(kind: str, value: Any) -> int:
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        raise ValueError(f"value {_short(value)} is not a whole number")
    if isinstance(value, float):
        value = int(value)
    text = str(value) if isinstance(value, int) else value
    result = int(_numeral(text, _INTEGER, "a whole number"))
    low, high = _LIMITS[kind]
    if not low <= result <= high:
        raise ValueError(f"value {_short(value)} is out of range")
    return result


def _float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"value {value!r} is not a number")
    text = repr(value) if isinstance(value, float) else value
    if isinstance(value, int):
        text = str(value)
    result = float(_numeral(text, _FLOAT, "a number"))
    if result in (float("inf"), float("-inf")):
        raise ValueError(f"value {_short(value)} is out of range")
    return result


def _text(value: Any) -> str:
    if isinstance(value, dict | list):
        raise ValueError(f"value {_short(value)} is not text")
    text = str(value)
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"value {_short(value)} is longer than {MAX_TEXT_CHARS} characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"value {_short(value)} is not valid Unicode text (lone surrogate)") from None
    return text


def coerce_value(avro_type: Any, value: Any) -> Any:
    """One value; raises ValueError with a readable reason."""
    nullable, base = _branches(avro_type)
    if value is None or (isinstance(value, str) and value.strip() == "" and base != "string"):
        if nullable:
            return None
        raise ValueError("is required")
    logical = base.get("logicalType") if isinstance(base, dict) else None
    kind = base.get("type") if isinstance(base, dict) else base
    if logical == "decimal":
        return _decimal(base, value)
    if logical in ("timestamp-millis", "timestamp-micros"):
        try:
            return _timestamp(value)
        except _OutsideWindow as window:
            raise ValueError(f"value {_short(value)} is outside the plausible years {window}") from None
        except (ValueError, OverflowError, OSError):
            raise ValueError(
                f"value {_short(value)} is not a timestamp (ISO 8601, e.g. 2026-11-26T08:30:00+07:00)"
            ) from None
    if logical == "date":
        try:
            return _date(value)
        except _OutsideWindow as window:
            raise ValueError(f"value {_short(value)} is outside the plausible years {window}") from None
        except (ValueError, OverflowError):
            raise ValueError(f"value {_short(value)} is not a date (YYYY-MM-DD)") from None
    if kind == "enum":
        symbol = _text(value).strip()
        if symbol not in base["symbols"]:
            raise ValueError(f"value {_short(value)} is not one of {', '.join(base['symbols'])}")
        return symbol
    if kind in ("int", "long"):
        return _integer(kind, value)
    if kind in ("float", "double"):
        return _float(value)
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        text = _text(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"value {_short(value)} is not true or false")
    if kind == "string":
        return _text(value)
    return value


def coerce_record(payload_schema: dict[str, Any], raw: dict[str, Any], strict: bool = True) -> dict[str, Any]:
    """A whole record; collects every field's problem. `strict` refuses unknown fields."""
    errors: dict[str, str] = {}
    record: dict[str, Any] = {}
    known = {f["name"] for f in payload_schema["fields"]}
    if strict:
        for name in raw:
            if name not in known:
                errors[name] = "is not a field of " + payload_schema["name"]
    for f in payload_schema["fields"]:
        name = f["name"]
        if name not in raw:
            if "default" in f:
                record[name] = f["default"]
                continue
            errors[name] = "is missing"
            continue
        try:
            record[name] = coerce_value(f["type"], raw[name])
        except ValueError as exc:
            errors[name] = str(exc)
    if errors:
        raise FieldErrors(errors)
    return record
