"""The dead-letter record every stage writes to its `dlq.*` topic: the original bytes sealed
(encrypted, see backbone.sealing: they may hold personal data and are kept only for replay), with
the stage, the reason, the rule it broke (a machine-readable id, `error.rule`: "<field>:<kind>" or
e.g. envelope:schema, key:mismatch), the origin and a stable letter id in headers. The id is the same each time
the same input is rejected again (after a crash and a re-read), and different for every other
input, so the store keeps one row per rejected input, never collapsed. One builder serves the
adapters, the processor and the sink, and one reader serves the sink that stores them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from backbone.sealing import Sealer


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
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None
    partition: int | None = None  # None: by key, as the producer's partitioner chooses


RULE_HEADER = "error.rule"


def dead_letter_headers(
    stage: str, reason: str, origin: str, partition: int, offset: int, letter_id: str = "", rule: str = ""
) -> list[tuple[str, bytes]]:
    return [
        ("error.stage", stage.encode()),
        ("error.reason", reason.encode()),
        (RULE_HEADER, (rule or f"{stage}:unspecified").encode()),
        ("source.topic", origin.encode()),
        ("source.partition", str(partition).encode()),
        ("source.offset", str(offset).encode()),
        ("source.id", (letter_id or f"{origin}:{partition}:{offset}").encode()),
        ("error.ts", datetime.now(UTC).isoformat().encode()),
    ]


def input_letter_id(origin: str, original: bytes) -> str:
    """A stable id for an input that has no Kafka position (an adapter's source row, file line or
    request item): the same input gives the same id, any other input another."""
    return hashlib.blake2b(origin.encode() + b"\0" + original, digest_size=16).hexdigest()


def dead_letter(event: RawEvent, reason: str, stage: str, topic: str, sealer: Sealer, rule: str = "") -> Output:
    """The original bytes of `event`, sealed, with the reason, rule id and origin in headers."""
    headers = dead_letter_headers(stage, reason, event.topic, event.partition, event.offset, rule=rule)
    return Output(topic, event.key, sealer.seal(event.value or b""), headers)


def header(headers: Iterable[tuple[str, bytes | None]] | None, name: str) -> str:
    """A header's value as text ('' when absent)."""
    for key, value in headers or ():
        if key == name:
            return value.decode(errors="replace") if value else ""
    return ""
