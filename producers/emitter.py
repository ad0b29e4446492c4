"""Emits change events for one catalog entity: the envelope encoded with fastavro in the Confluent
wire format, keyed by the entity key, produced with idempotence and acknowledged by all replicas."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import fastavro
from confluent_kafka import KafkaError, KafkaException

from backbone import kafka, metrics
from backbone.errors import ServiceUnavailable
from backbone.settings import Settings
from contract.catalog import Entity
from contract.codec import Registry, encode, subject_for
from contract.rules import event_id
from contract.subjects import entity_value_schema

# librdkafka's message.max.bytes (the default, which backbone.kafka's profiles keep), less room for the
# record overhead and headers: a larger message is refused by the client before it reaches the broker.
MAX_MESSAGE_BYTES = 1_000_000 - 4096


class TooLarge(ValueError):
    """An event too large for the broker (librdkafka MSG_SIZE_TOO_LARGE): refuse that one source record,
    never the batch or file around it."""

    def __init__(self, size: int, limit: int = MAX_MESSAGE_BYTES) -> None:
        super().__init__(f"record too large: the event is {size} bytes, Kafka takes at most {limit}")
        self.size = size
        self.limit = limit


def check_size(key: bytes | None, value: bytes | None) -> None:
    """TooLarge when a message of this key and value cannot be produced."""
    size = len(key or b"") + len(value or b"")
    if size > MAX_MESSAGE_BYTES:
        raise TooLarge(size)


def canonical_bytes(change: Change) -> bytes:
    """A change as JSON (what a dead letter keeps of an event that could not be produced)."""
    data = {k: getattr(change, k) for k in ("op", "key", "position", "ts_source", "before", "after", "entity")}
    return json.dumps(data, default=str, ensure_ascii=False).encode("utf-8", errors="surrogatepass")


def is_too_large(exc: BaseException) -> bool:
    """Whether a produce() error is librdkafka's MSG_SIZE_TOO_LARGE."""
    if not isinstance(exc, KafkaException) or not exc.args:
        return False
    err = exc.args[0]
    return isinstance(err, KafkaError) and err.code() == KafkaError.MSG_SIZE_TOO_LARGE


@dataclass
class Change:
    """One change as a source adapter sees it."""

    op: str  # c, u, d, r
    key: str
    position: str
    ts_source: datetime
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    snapshot: bool = False
    entity: str | None = None  # which of the system's entities; None: its only one


def payload_identity(entity: Entity) -> tuple[str, int]:
    """(full name, version) of the entity's payload schema, as the envelope carries them."""
    payload = entity.payload_schema()
    return f"{payload.get('namespace', '')}.{payload['name']}".lstrip("."), int(payload.get("version", 1))


def envelope_for(
    entity: Entity,
    change: Change,
    database: str = "simulator",
    now: datetime | None = None,
    identity: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """The change-event envelope (schemas/envelope.avsc) of one change of `entity`. Pass `identity`
    (payload_identity) on hot paths, so the schema file is not read per event."""
    payload_name, payload_version = identity or payload_identity(entity)
    return {
        "event_id": event_id(entity.system, entity.name, change.key, change.position),
        "op": change.op,
        "key": change.key,
        "before": change.before,
        "after": change.after,
        "source": {
            "system": entity.system,
            "department": entity.department,
            "database": database,
            "entity": entity.name,
            "position": change.position,
            "snapshot": change.snapshot,
        },
        "ts_source": change.ts_source,
        "ts_emitted": now or datetime.now(UTC),
        "source_tz": "Asia/Jakarta",
        "payload_schema": payload_name,
        "payload_version": payload_version,
    }


def payload_branch(parsed_envelope: dict[str, Any]) -> str:
    """The full name of the payload record in the envelope's `before` union, as fastavro parsed it."""
    before = next(f for f in parsed_envelope["fields"] if f["name"] == "before")
    return next(t["name"] if isinstance(t, dict) else t for t in before["type"] if t != "null")


# Messages produced between two polls of the producer when only failures are reported (see ChangeEmitter).
_POLL_EVERY = 512


class ChangeEmitter:
    """Encodes and produces one entity's changes. `each_delivery` (adapters): a callback per message
    acknowledged, for callers that act on each acknowledgement; off (simulators): librdkafka reports
    failures only, and what was acknowledged is what was produced less what is still queued or failed,
    counted every few hundred messages and at flush."""

    def __init__(
        self,
        entity: Entity,
        settings: Settings,
        registry: Registry,
        database: str = "simulator",
        each_delivery: bool = True,
    ) -> None:
        self.entity = entity
        self.database = database
        schema = entity_value_schema(entity, settings)
        # Registering first means an incompatible schema stops us before anything is produced.
        self.schema_id = registry.register(subject_for(entity.cdc_topic), schema)
        self.parsed = fastavro.parse_schema(schema)
        # Unions given as (branch, value): fastavro then skips matching the whole payload against the
        # union's branches, a third of an event's encoding time.
        self.branch = payload_branch(self.parsed)
        self.identity = payload_identity(entity)
        self.each_delivery = each_delivery
        # Never gives up on a message: while Kafka is down it waits in the bounded queue, and
        # produce_raw() blocks (backpressure) when the queue is full.
        extra = {} if each_delivery else {"delivery.report.only.error": True}
        self.producer = kafka.make_producer(settings, "capture", **extra)
        self.delivered = 0
        self.produced = 0
        self.failed: list[str] = []
        self._out = metrics.EVENTS_OUT.labels("producer", entity.cdc_topic)  # resolved once: inc per delivery

    def _on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        if err is None:
            self.delivered += 1
            self._out.inc()
        else:
            self.failed.append(err.str())

    def _count_delivered(self) -> None:
        """Failures-only mode: whatever left the queue without a failure was acknowledged."""
        delivered = self.produced - len(self.producer) - len(self.failed)
        if delivered > self.delivered:  # a counter never goes down (a failure reported late lowers the count)
            self._out.inc(delivered - self.delivered)
        self.delivered = delivered

    def envelope(self, change: Change, now: datetime | None = None) -> dict[str, Any]:
        return envelope_for(self.entity, change, self.database, now, self.identity)

    def encoded(self, change: Change) -> bytes:
        """The change's envelope in the Confluent wire format."""
        envelope = self.envelope(change)
        for side in ("before", "after"):
            if envelope[side] is not None:
                envelope[side] = (self.branch, envelope[side])
        return encode(self.schema_id, self.parsed, envelope)

    def emit(self, change: Change) -> None:
        """Encode and produce one change; TooLarge (nothing produced) when the event exceeds the broker's limit."""
        self.produce_raw(change.key.encode(), self.encoded(change))

    def produce_raw(self, key: bytes | None, value: bytes) -> None:
        """Produce bytes as they are; waits (never drops) while the local queue is full. TooLarge when
        the message is larger than Kafka takes (checked first, and librdkafka's own refusal too)."""
        check_size(key, value)
        try:
            kafka.produce(
                self.producer, self.entity.cdc_topic, value, key, on_delivery=self._on_delivery, stage="producer"
            )
        except KafkaException as exc:
            if is_too_large(exc):
                raise TooLarge(len(key or b"") + len(value)) from None
            raise
        self.produced += 1
        if self.each_delivery:
            self.producer.poll(0)
        elif self.produced % _POLL_EVERY == 0:
            self.producer.poll(0)
            self._count_delivered()

    def flush(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.producer) and time.monotonic() < deadline:
            self.producer.flush(min(1.0, max(0.0, deadline - time.monotonic())))
        if not self.each_delivery:
            self.producer.poll(0)  # the last failure reports
            self._count_delivered()
        if len(self.producer) or self.failed:
            raise ServiceUnavailable(
                f"{len(self.producer)} events to {self.entity.cdc_topic} not acknowledged by Kafka"
                + (f"; errors: {self.failed[:3]}" if self.failed else ""),
                hint="check BACKBONE_KAFKA_BOOTSTRAP",
            )
