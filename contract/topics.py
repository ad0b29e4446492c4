"""Every topic, created explicitly with its partitions and cleanup policy before anything produces
(auto-creation would give one partition and Faust would then refuse its tables)."""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

from backbone import kafka
from backbone.errors import ServiceUnavailable
from backbone.net import port_open
from backbone.settings import Settings
from contract.catalog import Catalog
from contract.kpis import kpis_for

REF_REGIONS = "ref.regions"
REF_DEPARTMENTS = "ref.departments"
STATE_LIFECYCLE = "state.lifecycle"
STATE_REFERENCES = "state.references"
DLQ_ADAPTER = "dlq.adapter"
DLQ_PROCESSOR = "dlq.processor"
DLQ_SINK = "dlq.sink"
ALERTS = "alerts"
# Adapters' counts of their sources (contract/census.py), reconciled by the sink.
CENSUS = "census"
WEEK_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def named(settings: Settings, base: str) -> str:
    """A shared topic's name under the configured prefix."""
    return settings.topic_prefix + base


def topic_plan(catalog: Catalog, settings: Settings) -> list[TopicSpec]:
    n = settings.topic_partitions
    plan = [
        TopicSpec(named(settings, REF_REGIONS), 1, {"cleanup.policy": "compact"}),
        # The processor's last lifecycle state per entity, partitioned like the cdc topics.
        TopicSpec(named(settings, STATE_LIFECYCLE), n, {"cleanup.policy": "compact"}),
        # Which referenced entities exist (the processor's reference table, read by every worker whole).
        TopicSpec(named(settings, STATE_REFERENCES), 1, {"cleanup.policy": "compact"}),
        TopicSpec(named(settings, REF_DEPARTMENTS), 1, {"cleanup.policy": "compact"}),
        # Dead letters are kept four weeks: long enough for a department to fix and replay.
        TopicSpec(named(settings, DLQ_ADAPTER), 1, {"retention.ms": str(4 * WEEK_MS)}),
        TopicSpec(named(settings, DLQ_PROCESSOR), 1, {"retention.ms": str(4 * WEEK_MS)}),
        TopicSpec(named(settings, DLQ_SINK), 1, {"retention.ms": str(4 * WEEK_MS)}),
        TopicSpec(named(settings, ALERTS), 1, {"retention.ms": str(WEEK_MS)}),
        TopicSpec(named(settings, CENSUS), 1, {"retention.ms": str(WEEK_MS)}),
    ]
    for entity in catalog.entities:
        plan.append(TopicSpec(entity.cdc_topic, n, {"retention.ms": str(WEEK_MS)}))
        plan.append(TopicSpec(entity.clean_topic, n, {"retention.ms": str(WEEK_MS)}))
    # One compacted record per KPI group and window: the latest value of each is kept.
    plan += [TopicSpec(kpi.topic, 1, {"cleanup.policy": "compact"}) for kpi in kpis_for(settings, catalog)]
    return plan


def admin_client(settings: Settings, **extra: object) -> AdminClient:
    return AdminClient(kafka.client_config(settings, **{"socket.timeout.ms": 10000, **extra}))


def check_broker(settings: Settings, timeout: float = 10.0) -> None:
    """Fail fast, in one line, when the broker cannot be reached (librdkafka would retry forever)."""
    bootstrap = settings.kafka_bootstrap
    if not bootstrap:
        raise ServiceUnavailable("no Kafka address", hint="set BACKBONE_KAFKA_BOOTSTRAP or run `backbone demo`")
    hosts = [h.strip().rsplit(":", 1) for h in bootstrap.split(",") if h.strip()]
    if hosts and not any(len(h) == 2 and h[1].isdigit() and port_open(h[0], int(h[1])) for h in hosts):
        # Nothing listens at all: say so at once rather than after librdkafka's retries.
        raise ServiceUnavailable(
            f"Kafka at {bootstrap} is unreachable: connection refused",
            hint="check BACKBONE_KAFKA_BOOTSTRAP and that the broker runs",
        )
    quiet = admin_client(settings, log_level=2)
    try:
        quiet.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise ServiceUnavailable(
            f"Kafka at {bootstrap} is unreachable: {exc.args[0].str() if exc.args else exc}",
            hint="check BACKBONE_KAFKA_BOOTSTRAP, BACKBONE_KAFKA_SECURITY_PROTOCOL and the SASL user",
        ) from None


def ensure_topics(settings: Settings, plan: list[TopicSpec], replication: int = 1) -> list[str]:
    """Create missing topics and grow partitions where the plan asks for more. Returns created names."""
    check_broker(settings)
    admin = admin_client(settings)
    existing = admin.list_topics(timeout=10).topics
    created = []
    new = [TopicSpec(s.name, s.partitions, s.config) for s in plan if s.name not in existing]
    if new:
        futures = admin.create_topics(
            [NewTopic(s.name, s.partitions, replication, config=s.config) for s in new], operation_timeout=30
        )
        for name, future in futures.items():
            try:
                future.result()
                created.append(name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise ServiceUnavailable(f"cannot create topic {name}: {exc.args[0].str()}") from None
    grow = [
        NewPartitions(s.name, s.partitions)
        for s in plan
        if s.name in existing and len(existing[s.name].partitions) < s.partitions
    ]
    if grow:
        for future in admin.create_partitions(grow).values():
            future.result()
    return created


def topic_message_counts(settings: Settings, topics: list[str]) -> dict[str, int | None] | None:
    """Messages per topic (sum of end offsets); None per missing topic; None overall if no broker."""
    if not settings.kafka_bootstrap:
        return None
    from confluent_kafka import Consumer, TopicPartition

    try:
        metadata = admin_client(settings).list_topics(timeout=5)
    except KafkaException:
        return None
    consumer = Consumer(kafka.client_config(settings, **{"group.id": "backbone-status"}))
    try:
        counts: dict[str, int | None] = {}
        for topic in topics:
            if topic not in metadata.topics:
                counts[topic] = None
                continue
            counts[topic] = sum(
                consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1]
                for p in metadata.topics[topic].partitions
            )
        return counts
    finally:
        consumer.close()
