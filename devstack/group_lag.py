"""Consumer-group lag for every group of the cluster, as the broker sees it (the stages export their
own lag; this covers every group: the KPI worker's, Faust's, the registry's, a replay's, an analyst's
tool), from committed offsets and high watermarks, served for Prometheus by `backbone lag-exporter`:

    backbone_consumer_group_lag_messages{group, topic, partition}
    backbone_consumer_group_lag_scrape_timestamp_seconds   (when the last pass over the groups ended)

A group with no committed offset on a partition has no lag there (nothing to measure against)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from prometheus_client import Gauge, start_http_server

from backbone import kafka
from backbone.settings import Settings

log = logging.getLogger(__name__)
LAG = Gauge(
    "backbone_consumer_group_lag_messages",
    "Messages a consumer group has yet to read: high watermark minus committed offset",
    ["group", "topic", "partition"],
)
PASS = Gauge("backbone_consumer_group_lag_scrape_timestamp_seconds", "When the last pass over every group ended")
TIMEOUT = 15.0


def group_lags(admin: AdminClient, groups: Iterable[str] | None = None) -> dict[tuple[str, str, int], int]:
    """{(group, topic, partition): lag} for the given groups (default: every group of the cluster)."""
    if groups is None:
        listed = admin.list_consumer_groups(request_timeout=TIMEOUT).result(TIMEOUT)
        groups = [g.group_id for g in listed.valid]
    committed: dict[tuple[str, str, int], int] = {}
    for group in groups:
        future = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=TIMEOUT)
        for result in future.values():
            for tp in result.result(TIMEOUT).topic_partitions:
                if tp.offset >= 0 and tp.error is None:
                    committed[(group, tp.topic, tp.partition)] = tp.offset
    partitions = {(topic, partition) for _, topic, partition in committed}
    if not partitions:
        return {}
    latest = admin.list_offsets(
        {TopicPartition(t, p): OffsetSpec.latest() for t, p in partitions}, request_timeout=TIMEOUT
    )
    high = {(tp.topic, tp.partition): f.result(TIMEOUT).offset for tp, f in latest.items()}
    return {key: max(high[(key[1], key[2])] - offset, 0) for key, offset in committed.items()}


def export_once(admin: AdminClient, seen: set[tuple[str, str, str]]) -> None:
    lags = group_lags(admin)
    current = {(g, t, str(p)) for g, t, p in lags}
    for gone in seen - current:  # a deleted group or topic leaves no stale series behind
        LAG.remove(*gone)
    for (group, topic, partition), lag in lags.items():
        LAG.labels(group, topic, str(partition)).set(lag)
    seen.clear()
    seen.update(current)
    PASS.set(time.time())


def run_lag_exporter(settings: Settings, interval: float = 15.0, stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    start_http_server(settings.lag_exporter_port, addr=settings.bind_host)
    admin = AdminClient(kafka.client_config(settings))
    seen: set[tuple[str, str, str]] = set()
    log.warning("consumer-group lag on http://%s:%d/metrics", settings.bind_host, settings.lag_exporter_port)
    while not stop.is_set():
        try:
            export_once(admin, seen)
        except Exception:  # noqa: BLE001 - a broker outage: the next pass tries again, the timestamp ages
            log.exception("reading consumer-group offsets failed; retrying in %.0f s", interval)
        stop.wait(interval)
