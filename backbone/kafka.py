"""The one place that configures Kafka producers and handles a full local queue.

Profiles name what a producer is for; each stage asks for one instead of repeating settings:
- `capture`: adapters' and simulators' change events: never time a message out (it waits in the
  bounded queue while Kafka is down) and block when the queue is full (backpressure);
- `dead_letters`: the same guarantee for dead letters;
- `processor`: clean records, a larger queue and a short linger for throughput;
- `reference`: reference data published at start.
Every profile is idempotent with acks=all, so a retried send never duplicates or reorders.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from confluent_kafka import Producer

from backbone import metrics

_COMMON = {"enable.idempotence": True, "acks": "all"}

PROFILES: dict[str, dict[str, Any]] = {
    "capture": {
        "linger.ms": 10,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 200_000,
        "message.timeout.ms": 0,
    },
    "dead_letters": {"message.timeout.ms": 0},
    "processor": {"linger.ms": 5, "compression.type": "lz4", "queue.buffering.max.messages": 500_000},
    "reference": {"linger.ms": 20},
}


def producer_config(bootstrap: str, profile: str, **overrides: Any) -> dict[str, Any]:
    return {"bootstrap.servers": bootstrap, **_COMMON, **PROFILES[profile], **overrides}


def make_producer(bootstrap: str, profile: str, **overrides: Any) -> Producer:
    return Producer(producer_config(bootstrap, profile, **overrides))


def produce(
    producer: Producer,
    topic: str,
    value: bytes | None,
    key: bytes | None = None,
    headers: list[tuple[str, bytes]] | None = None,
    on_delivery: Callable[..., None] | None = None,
    stage: str = "producer",
) -> None:
    """Produce, waiting (never dropping) while librdkafka's local queue is full."""
    while True:
        try:
            producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
            return
        except BufferError:
            metrics.RETRIES.labels(stage, "queue_full").inc()
            producer.poll(0.05)
