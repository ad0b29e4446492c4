"""Prometheus metrics shared by every stage. Each long-running process serves them on its own port."""

from __future__ import annotations

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
FRESHNESS = Histogram(
    "backbone_freshness_seconds",
    "End to end: from the change in the source system to the row stored in ClickHouse",
    ["table"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
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
CONSUMER_LAG = Gauge("backbone_consumer_lag", "Messages behind the end of the topic", ["stage", "topic"])
RETRIES = Counter("backbone_retries_total", "Retried operations (broker or store unavailable)", ["stage", "what"])
UP = Gauge("backbone_up", "1 while the stage runs", ["stage"])

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


def serve_metrics(host: str, port: int) -> int:
    """Start the /metrics endpoint in a thread; returns the bound port (port 0 picks a free one)."""
    server, _thread = start_http_server(port, addr=host)
    return server.server_address[1]
