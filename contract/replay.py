"""Replay of dead letters after a fix: the sealed original bytes of chosen dead letters are opened
and produced again, with their original key, to the topic they came from, so the stage that
refused them sees them again. Event ids are deterministic and storage is idempotent, so a replayed
event that now passes is stored once, and one that still fails is dead-lettered again under the
same letter id (one row in `dead_letters`).

Only the processor's and the sink's dead letters have a topic to go back to; an adapter's dead
letter was never an event (a bad source row, line or request) and is fixed at its source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import Consumer, TopicPartition

from backbone import kafka
from backbone.errors import ConfigError
from backbone.sealing import Sealer, SealError
from backbone.settings import Settings
from contract.catalog import catalog_for
from contract.deadletter import header
from contract.topics import DLQ_ADAPTER, DLQ_PROCESSOR, DLQ_SINK, named

STAGES = {"processor": DLQ_PROCESSOR, "sink": DLQ_SINK, "adapter": DLQ_ADAPTER}


@dataclass
class ReplayReport:
    replayed: dict[str, int] = field(default_factory=dict)  # target topic -> count
    skipped: dict[str, int] = field(default_factory=dict)  # why -> count

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1


def replay(
    settings: Settings,
    stage: str,
    matches: Callable[[str], bool] = lambda _reason: True,
    dry_run: bool = False,
    timeout: float = 30.0,
) -> ReplayReport:
    """Produce again every dead letter of `stage` whose reason `matches`; returns what was done."""
    if stage not in STAGES:
        raise ConfigError(f"stage {stage!r}: expected one of {', '.join(STAGES)}")
    dlq = named(settings, STAGES[stage])
    sealer = Sealer(settings.dead_letter_secret())
    topics = set(settings_topics(settings))
    report = ReplayReport()
    producer = None if dry_run else kafka.make_producer(settings, "capture")
    # A letter that failed again after an earlier replay is in the topic twice: send each input once.
    sent: set[tuple[str, bytes | None, bytes]] = set()
    for message in _read_all(settings, dlq, timeout):
        headers = message.headers()
        if not matches(header(headers, "error.reason")):
            continue
        target = header(headers, "source.topic")
        if target not in topics:
            report.skip("no topic to return to (fix adapter dead letters at their source)")
            continue
        try:
            original = sealer.unseal(message.value() or b"")
        except SealError:
            report.skip("sealed with another key")
            continue
        if (target, message.key(), original) in sent:
            report.skip("the same input again (refused again after an earlier replay)")
            continue
        sent.add((target, message.key(), original))
        if producer is not None:
            kafka.produce(producer, target, original, message.key(), stage="replay")
        report.replayed[target] = report.replayed.get(target, 0) + 1
    if producer is not None and producer.flush(timeout):
        raise ConfigError(f"replayed events to {sorted(report.replayed)} were not all acknowledged by Kafka")
    return report


def settings_topics(settings: Settings) -> list[str]:
    """The cdc.* and clean.* topics of the catalog: the only places a dead letter may go back to."""
    return [t for e in catalog_for(settings).entities for t in (e.cdc_topic, e.clean_topic)]


def _read_all(settings: Settings, topic: str, timeout: float):  # noqa: ANN202 - yields Messages
    """Every message of `topic` from the beginning to its end now, without a consumer group."""
    reader = {"group.id": "backbone-replay", "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    consumer = Consumer(kafka.client_config(settings, **reader))
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        partitions = list(metadata.topics[topic].partitions)
        starts, ends = {}, {}
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if high > low:
                starts[p], ends[p] = low, high
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in ends])
        while ends:
            message = consumer.poll(timeout)
            if message is None:
                break
            if message.error():
                continue
            if message.offset() + 1 >= ends.get(message.partition(), 0):
                ends.pop(message.partition(), None)
            yield message
    finally:
        consumer.close()
