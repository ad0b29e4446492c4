"""Prometheus metrics shared by every stage. Each long-running process serves them on its own port.

Names follow Prometheus conventions: base units in the name (`_seconds`, `_messages`, `_rows`),
counters end in `_total`, and topic and partition are separate labels. Stages update them per batch
or per loop turn, never with a `.labels()` lookup per event: label children are resolved once and
kept (see `Heartbeat`, `ChildCache`)."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Hashable, Iterable, Sequence
from itertools import accumulate
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

EVENTS_IN = Counter("backbone_events_in_total", "Events read by a stage", ["stage", "topic"])
EVENTS_OUT = Counter("backbone_events_out_total", "Events written by a stage", ["stage", "topic"])
EVENTS_FAILED = Counter("backbone_events_failed_total", "Events dead-lettered by a stage", ["stage", "topic", "reason"])
PROCESSING_LATENCY = Histogram(
    "backbone_processing_latency_seconds",
    "From the event's arrival in the stage's input topic to its output being written",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
# Also the bounds the sink counts freshness against in SQL (sinks/avro_ingest.py).
FRESHNESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)
FRESHNESS = Histogram(
    "backbone_freshness_seconds",
    "End to end: from the change in the source system to the row stored in ClickHouse",
    ["table"],
    buckets=FRESHNESS_BUCKETS,
)
SINK_BATCH_SIZE = Histogram(
    "backbone_sink_batch_rows",
    "Rows per ClickHouse insert",
    ["table"],
    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 50000),
)
SINK_INSERT_SECONDS = Histogram(
    "backbone_sink_insert_seconds",
    "Duration of one ClickHouse insert",
    ["table"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
CONSUMER_LAG = Gauge(
    "backbone_consumer_lag_messages",
    "Messages between the consumer's position and the end of the partition",
    ["stage", "topic", "partition"],
)
RETRIES = Counter("backbone_retries_total", "Retried operations (broker or store unavailable)", ["stage", "what"])
UP = Gauge("backbone_up", "1 while the stage runs", ["stage"])
HEARTBEAT = Gauge(
    "backbone_heartbeat_timestamp_seconds",
    "Unix time of the last turn of the stage's work loop (stale while the loop is stuck)",
    ["stage", "system"],
)

# Data quality (the processor): each record's outcome, and each rule a record failed, by severity.
DQ_RECORDS = Counter(
    "backbone_dq_records_total",
    "Records judged by the processor, by outcome (accepted, flagged, rejected)",
    ["system", "entity", "outcome"],
)
DQ_RULE_FAILURES = Counter(
    "backbone_dq_rule_failures_total",
    "Records that failed a data-quality rule (rule id <field>:<kind>)",
    ["system", "entity", "rule", "severity"],
)

# Source adapters (producers/adapters): one label set per departmental system.
ADAPTER_CAPTURED = Counter("backbone_adapter_captured_total", "Changes read from the source", ["system", "entity"])
ADAPTER_REJECTED = Counter(
    "backbone_adapter_rejected_total", "Source records refused (bad input), dead-lettered", ["system", "reason"]
)
ADAPTER_SOURCE_LAG = Gauge(
    "backbone_adapter_source_lag_seconds", "Age of the oldest change captured but not yet acknowledged", ["system"]
)
ADAPTER_CHECKPOINT = Gauge(
    "backbone_adapter_checkpoint_position", "Numeric form of the last checkpointed source position", ["system"]
)
ADAPTER_CHECKPOINT_TIME = Gauge(
    "backbone_adapter_checkpoint_timestamp_seconds", "When the last checkpoint was written", ["system"]
)

# Silent sources and reconciliation, exported by the sink (the stage that sees every system's changes).
SOURCE_LAST_CHANGE = Gauge(
    "backbone_source_last_change_timestamp_seconds",
    "When the system's adapter emitted the newest change the store holds (ts_emitted); time() minus it is "
    "the system's silence",
    ["system"],
)
RECONCILIATION_DIFFERENCE = Gauge(
    "backbone_reconciliation_difference_rows",
    "Rows missing plus rows extra in the store against the source's last census of the entity",
    ["system", "entity"],
)


class Heartbeat:
    """Liveness of one work loop: the loop itself sets the time of its last turn (never the metrics
    thread), so `time() - backbone_heartbeat_timestamp_seconds` grows while the process still answers
    scrapes but its loop is stuck. A loop that only turns when there is work (a Faust agent) marks its
    batches `busy()`/`idle()` and a timer calls `beat_if_idle()`: the timer keeps the beat while the
    agent waits for events, and stops it when a batch never finishes."""

    def __init__(self, stage: str, system: str = "") -> None:
        self._gauge = HEARTBEAT.labels(stage, system)
        self._busy = False
        self.beat()  # from the start: a loop that never turns goes stale like one that stops

    def beat(self) -> None:
        self._gauge.set(time.time())

    def busy(self) -> None:
        self._busy = True
        self.beat()

    def idle(self) -> None:
        self._busy = False
        self.beat()

    def beat_if_idle(self) -> None:
        if not self._busy:
            self.beat()


class ChildCache:
    """Label children of one metric, resolved once per label values (`.labels()` takes a lock and
    hashes every time: too slow per event)."""

    def __init__(self, metric: Any, *fixed: str) -> None:
        self._metric = metric
        self._fixed = fixed
        self._children: dict[Hashable, Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*self._fixed, *values)
        return child


def count_by(items: Any, key: Callable[[Any], str]) -> dict[str, int]:
    """How many items per key: one counter increment per key and batch instead of one per item."""
    counts: dict[str, int] = {}
    for item in items:
        k = key(item)
        counts[k] = counts.get(k, 0) + 1
    return counts


def observe_counted(child: Any, cumulative: Sequence[int], total: float) -> None:
    """Observations counted elsewhere (by the store, in SQL): `cumulative[i]` values at most the i-th
    upper bound (+Inf last), summing to `total`. Adds what that many `observe()` calls would, in one
    call per bucket. prometheus-client keeps per-bucket counts in `_buckets` and the sum in `_sum`
    (the version is pinned; tests/backbone/test_metrics.py compares this with `observe()`)."""
    bounds = child._upper_bounds
    if len(cumulative) != len(bounds):
        raise ValueError(f"{len(cumulative)} counts for {len(bounds)} buckets")
    previous = 0
    for bucket, count in zip(child._buckets, cumulative, strict=True):
        if count > previous:
            bucket.inc(count - previous)
        previous = count
    child._sum.inc(total)


def observe_many(child: Any, values: Iterable[float]) -> None:
    """A batch's observations in one update (observe() takes the child's lock once per value)."""
    bounds = child._upper_bounds
    counts, total = [0] * len(bounds), 0.0
    for value in values:
        counts[bisect_left(bounds, value)] += 1  # the first bucket whose upper bound is >= value
        total += value
    observe_counted(child, list(accumulate(counts)), total)


def serve_metrics(host: str, port: int) -> int:
    """Start the /metrics endpoint in a thread; returns the bound port (port 0 picks a free one)."""
    server, _thread = start_http_server(port, addr=host)
    return server.server_address[1]
