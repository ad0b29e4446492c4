"""Loose values (CSV cells, JSON) to the Python values fastavro expects for a payload schema, with
an error per field that names the field and the value. Shared by the file-drop and push adapters."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

_TRUE = {"true", "1", "yes", "y", "ya"}
_FALSE = {"false", "0", "no", "n", "tidak"}


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


def _timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC)
    text = str(value).strip().replace("Z", "+00:00")
    parsed = datetime.fromisoformat(text)
    # A time without zone is read as UTC: sources must send UTC or an explicit offset.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


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
        if isinstance(value, float):
            value = repr(value)
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError(f"value {value!r} is not a number") from None
        scale = int(base.get("scale", 0))
        if not number.is_finite():
            raise ValueError(f"value {value!r} is not a finite number")
        quantized = number.quantize(Decimal(1).scaleb(-scale))
        if quantized != number:
            raise ValueError(f"value {value!r} has more than {scale} decimal places")
        if len(quantized.as_tuple().digits) > int(base["precision"]):
            raise ValueError(f"value {value!r} has more than {base['precision']} digits")
        return quantized
    if logical in ("timestamp-millis", "timestamp-micros"):
        try:
            return _timestamp(value)
        except (ValueError, OverflowError, OSError):
            raise ValueError(f"value {value!r} is not a timestamp (ISO 8601, e.g. 2026-11-26T08:30:00+07:00)") from None
    if logical == "date":
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value).strip())
        except ValueError:
            raise ValueError(f"value {value!r} is not a date (YYYY-MM-DD)") from None
    if kind == "enum":
        symbol = str(value).strip()
        if symbol not in base["symbols"]:
            raise ValueError(f"value {value!r} is not one of {', '.join(base['symbols'])}")
        return symbol
    if kind in ("int", "long"):
        if isinstance(value, bool):
            raise ValueError(f"value {value!r} is not a whole number")
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError(f"value {value!r} is not a whole number") from None
        if number != number.to_integral_value():
            raise ValueError(f"value {value!r} is not a whole number")
        result = int(number)
        if kind == "int" and not -(2**31) <= result < 2**31:
            raise ValueError(f"value {value!r} is out of range")
        return result
    if kind in ("float", "double"):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"value {value!r} is not a number") from None
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"value {value!r} is not true or false")
    if kind == "string":
        if isinstance(value, dict | list):
            raise ValueError(f"value {value!r} is not text")
        return str(value)
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
