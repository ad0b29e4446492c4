"""A dlq.* message as a row of the dead_letters table (sinks/ddl.py DEAD_LETTER_COLUMNS)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Message

from backbone.sealing import MAGIC, Sealer
from contract.deadletter import RULE_HEADER, header

# DateTime64's range: a header outside it is replaced by the time of storing.
_TS_MIN, _TS_MAX = datetime(1900, 1, 1, tzinfo=UTC), datetime(2299, 12, 31, tzinfo=UTC)


def dead_letter_row(msg: Message, now: datetime, sealer: Sealer) -> list[Any]:
    """A dlq.* message as a dead_letters row. Headers come from other processes: a malformed
    one must not stop the sink, so every value is made to fit its column."""
    headers = msg.headers()
    origin = header(headers, "source.topic")
    partition = _int(header(headers, "source.partition"), 31)
    offset = _int(header(headers, "source.offset"), 63)
    letter_id = header(headers, "source.id") or f"{origin}:{partition}:{offset}:{msg.topic()}:{msg.offset()}"
    value = msg.value() or b""
    if not value.startswith(MAGIC):  # the stages seal what they dead-letter; never store clear bytes
        value = sealer.seal(value)
    return [
        header(headers, "error.stage"),
        header(headers, "error.reason"),
        origin,
        partition,
        offset,
        letter_id,
        header(headers, RULE_HEADER) or f"{header(headers, 'error.stage') or 'unknown'}:unspecified",
        (msg.key() or b"").decode(errors="replace"),
        value,
        _parse_ts(header(headers, "error.ts")) or now,
        msg.topic(),
        msg.partition(),
        msg.offset(),
        now,
    ]


def _int(value: str, bits: int) -> int:
    """A header's number, or -1 when it is not one or does not fit a signed column of `bits` + 1 bits."""
    try:
        number = int(value)
    except ValueError:
        return -1
    return number if -(1 << bits) <= number < (1 << bits) else -1


def _parse_ts(value: str) -> datetime | None:
    try:
        ts = datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
    if ts is not None and ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts if ts is None or _TS_MIN <= ts <= _TS_MAX else None
