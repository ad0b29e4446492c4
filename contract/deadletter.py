"""The dead-letter record every stage writes to its `dlq.*` topic: the original bytes, untouched,
with the stage, the reason and the origin in headers. One builder serves the adapters, the
processor and the sink, and one reader serves the sink that stores them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass
class RawEvent:
    """One message as read from a topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None


@dataclass
class Output:
    """One message to produce."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] | None = None


def dead_letter_headers(stage: str, reason: str, origin: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    return [
        ("error.stage", stage.encode()),
        ("error.reason", reason.encode()),
        ("source.topic", origin.encode()),
        ("source.partition", str(partition).encode()),
        ("source.offset", str(offset).encode()),
        ("error.ts", datetime.now(UTC).isoformat().encode()),
    ]


def dead_letter(event: RawEvent, reason: str, stage: str, topic: str) -> Output:
    """The original bytes of `event`, untouched, with the reason and origin in headers."""
    headers = dead_letter_headers(stage, reason, event.topic, event.partition, event.offset)
    return Output(topic, event.key, event.value or b"", headers)


def header(headers: Iterable[tuple[str, bytes | None]] | None, name: str) -> str:
    """A header's value as text ('' when absent)."""
    for key, value in headers or ():
        if key == name:
            return value.decode(errors="replace") if value else ""
    return ""
