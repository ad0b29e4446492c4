"""The emitter on the real stack: the envelope written with the union branch named reads back as the
plain encoding does, and an emitter that asks for failure reports only still counts exactly what
Kafka acknowledged (and what it did not, when the broker is unreachable)."""

from __future__ import annotations

import io

import fastavro
import pytest
from confluent_kafka import Consumer, TopicPartition

from backbone import metrics
from backbone.errors import ServiceUnavailable
from backbone.net import free_port
from contract.bootstrap import bootstrap
from contract.catalog import catalog_for
from contract.codec import Registry, encode
from contract.reference import load_regions, villages
from producers.emitter import ChangeEmitter
from simulators.licensing import LicensingOffice


def licensing(settings):
    return next(e for e in catalog_for(settings).entities if e.table == "licensing_permit_application")


def changes(settings, n: int):
    office = LicensingOffice(villages(load_regions(settings.regions_csv)), seed=11, start_seq=900_000)
    stream = office.changes()
    return [next(stream) for _ in range(n)]


def messages_on(settings, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "test-emitter-count"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)
    finally:
        consumer.close()


def test_branch_named_encoding_reads_back_as_the_plain_one(make_settings):
    settings = make_settings()
    bootstrap(settings)
    emitter = ChangeEmitter(licensing(settings), settings, Registry.for_settings(settings))
    batch = changes(settings, 60)
    assert {c.op for c in batch} >= {"c", "u"}
    for change in batch:
        now = emitter.envelope(change)["ts_emitted"]
        plain = encode(emitter.schema_id, emitter.parsed, emitter.envelope(change, now))
        named = emitter.encoded(change)
        read = [fastavro.schemaless_reader(io.BytesIO(v[5:]), emitter.parsed, None) for v in (plain, named)]
        read[1]["ts_emitted"] = read[0]["ts_emitted"]  # the emitter stamps its own time
        assert read[0] == read[1]


def test_failure_reports_only_still_count_every_acknowledged_event(make_settings):
    settings = make_settings()
    bootstrap(settings)
    entity = licensing(settings)
    emitter = ChangeEmitter(entity, settings, Registry.for_settings(settings), each_delivery=False)
    out = metrics.EVENTS_OUT.labels("producer", entity.cdc_topic)
    before = out._value.get()
    for change in changes(settings, 1300):  # more than two poll intervals, and a remainder
        emitter.emit(change)
    emitter.flush()
    assert emitter.produced == emitter.delivered == 1300
    assert out._value.get() - before == 1300
    assert messages_on(settings, entity.cdc_topic) == 1300


def test_failure_reports_only_count_nothing_when_the_broker_is_unreachable(make_settings):
    settings = make_settings()
    bootstrap(settings)
    entity = licensing(settings)
    away = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"})
    emitter = ChangeEmitter(entity, away, Registry.for_settings(settings), each_delivery=False)
    for change in changes(settings, 600):
        emitter.emit(change)
    with pytest.raises(ServiceUnavailable, match="600 events .* not acknowledged"):
        emitter.flush(timeout=2)
    assert emitter.delivered == 0
