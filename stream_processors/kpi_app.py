"""The KPI worker (`backbone kpi`): a Faust app over the clean.* topics that have KPIs declared in
kpis/ (contract/kpis.py), writing one compacted kpi.<domain>.<name> topic per KPI, keyed by group
and window, with Avro values registered like every other topic. No code per domain or KPI.

State: each entity's version and last contributions (kpi_state.py) in a Faust table on RocksDB
(rocksdict) with a changelog topic, written to the partition of the event that changed it. The
aggregates are derived from that table: rebuilt in memory from it at start (not from the
beginning of the clean topics), after which every group is sent again and any group the topic
still shows but the state no longer holds is sent with a count of 0, so the topic agrees with the
state whatever a crash interrupted.

Delivery: as the processor (processor.py, offsets.py), input offsets are committed by an
OffsetLedger only after the batch's changelog records and KPI values were acknowledged; a crash
re-reads the tail, and the per-entity version makes the re-read events no-ops. One worker holds
every group (the groups of a KPI span every partition of its topic)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from typing import Any

import fastavro
import faust
from confluent_kafka import Consumer, TopicPartition
from faust.streams import _current_event
from faust.types import TP

from backbone import kafka, metrics
from backbone.errors import ServiceUnavailable
from backbone.settings import Settings
from contract.bootstrap import preflight
from contract.catalog import catalog_for
from contract.codec import Registry, UndecodableMessage, decode, encode, subject_for
from contract.kpis import Kpi, kpis_for, value_schema
from contract.workdays import load_calendar
from stream_processors.faust_app import install_ledger_timers, new_app, run_until_stopped, seek
from stream_processors.kpi_measures import Aggregate
from stream_processors.kpi_state import AggKey, KpiEngine, slot
from stream_processors.offsets import OffsetLedger, committed_offsets_lookup

log = logging.getLogger(__name__)
STAGE = "kpi"
DEADLINE_CHECK_SECONDS = 10.0


class KpiOutput:
    """Encodes and produces KPI rows through librdkafka (one schema id per KPI topic)."""

    def __init__(self, settings: Settings, registry: Registry, kpis: list[Kpi]) -> None:
        self.producer = kafka.make_producer(settings, "processor")
        self.schemas: dict[str, tuple[int, Any]] = {}
        for kpi in kpis:
            schema = value_schema(kpi)
            self.schemas[kpi.topic] = (registry.register(subject_for(kpi.topic), schema), fastavro.parse_schema(schema))
        # Counter children looked up once: a label lookup takes a lock, and rows are sent per group.
        self.sent = {kpi.topic: metrics.EVENTS_OUT.labels(STAGE, kpi.topic) for kpi in kpis}
        self.errors: list[str] = []

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.errors.append(err.str())

    def send(self, rows: list[tuple[Kpi, str, dict[str, Any]]]) -> None:
        for kpi, key, value in rows:
            schema_id, parsed = self.schemas[kpi.topic]
            kafka.produce(
                self.producer, kpi.topic, encode(schema_id, parsed, value), key.encode(), None, self._delivered, STAGE
            )
            self.sent[kpi.topic].inc()

    def flush(self) -> None:
        for _ in range(120):  # bounded: an unreachable broker stops the worker rather than hang
            if self.producer.flush(1.0) == 0:
                break
            metrics.RETRIES.labels(STAGE, "flush").inc()
        if len(self.producer) or self.errors:
            errors, self.errors = self.errors[:3], []
            raise ServiceUnavailable(f"KPI values not acknowledged by Kafka ({len(self.producer)} pending, {errors})")


def emitted_groups(settings: Settings, registry: Registry, topics: list[str]) -> dict[str, set[str]]:
    """Topic -> keys whose latest value on the (compacted) KPI topic has a count above 0."""
    consumer = Consumer(
        kafka.client_config(settings, **{"group.id": f"{settings.kpi_app_id}-reconcile", "enable.auto.commit": False})
    )
    found: dict[str, dict[str, bool]] = {t: {} for t in topics}
    try:
        ends: dict[tuple[str, int], int] = {}
        for topic in topics:
            for partition in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                if high > low:
                    ends[(topic, partition)] = high
        consumer.assign([TopicPartition(t, p, 0) for t, p in ends])  # offset 0: from the earliest kept
        while ends:
            for msg in consumer.consume(500, timeout=1.0):
                if msg.error() is not None:
                    continue
                key = (msg.key() or b"").decode()
                try:
                    found[msg.topic()][key] = bool(msg.value()) and decode(registry, msg.value())[1]["count"] > 0
                except UndecodableMessage:
                    found[msg.topic()][key] = True
                if msg.offset() + 1 >= ends.get((msg.topic(), msg.partition()), 0):
                    ends.pop((msg.topic(), msg.partition()), None)
    finally:
        consumer.close()
    return {t: {k for k, live in keys.items() if live} for t, keys in found.items()}


def build_app(settings: Settings) -> faust.App:
    if not settings.kafka_bootstrap:
        raise ServiceUnavailable("no Kafka address", hint="set BACKBONE_KAFKA_BOOTSTRAP or run `backbone demo`")
    preflight(settings)
    catalog = catalog_for(settings)
    kpis = kpis_for(settings, catalog)
    engine = KpiEngine.for_catalog(kpis, load_calendar(settings.holidays_csv), catalog)
    registry = Registry.for_settings(settings)
    output = KpiOutput(settings, registry, kpis)
    app = new_app(settings, settings.kpi_app_id, "rocksdb://", "kpi")
    # entity id -> {"v": version of the last change applied, "c": {KPI slot: contribution}}, as
    # UTF-8 and JSON bytes (the app's serializers are raw).
    entities = app.Table("entities", key_type=bytes, value_type=bytes, partitions=settings.topic_partitions)
    if not engine.topics:
        raise ServiceUnavailable(f"no KPI declared for any entity of the catalog (in {settings.kpi_dir})")
    # acks=False: Faust does not commit these offsets; the ledger does, after outputs are acknowledged.
    source = app.topic(*engine.topics, value_serializer="raw", key_serializer="raw", acks=False)
    ledger = OffsetLedger(committed_offsets_lookup(settings, settings.kpi_app_id))
    ready = {"rebuilt": False}
    rebuilding = asyncio.Lock()  # the agent and the deadline timer may both find the state not rebuilt

    async def send_and_flush(rows: list[tuple[Kpi, str, dict[str, Any]]]) -> None:
        output.send(rows)
        await app.producer.flush()  # the table's changelog records
        await asyncio.get_running_loop().run_in_executor(None, output.flush)

    async def ensure_rebuilt() -> None:
        async with rebuilding:
            if not ready["rebuilt"]:
                await rebuild()

    async def rebuild() -> None:
        # A batch writes up to one changelog record per event at its end, then flushes them: above
        # Faust's default of 100 pending, every message fetched meanwhile waits for the buffer to ebb.
        app.producer.buffer.max_messages = settings.processor_batch_size
        now_ms = int(time.time() * 1000)
        states = ((key.decode(), json.loads(value)) for key, value in entities.items())
        count = engine.rebuild(states, now_ms)
        rows = engine.take_rows(now_ms)
        live = engine.group_keys()
        shown = await asyncio.get_running_loop().run_in_executor(
            None, emitted_groups, settings, registry, [k.topic for k in kpis]
        )
        for kpi in kpis:  # groups the topic shows but the state no longer has: now empty
            for key in sorted(shown.get(kpi.topic, set()) - live.get(kpi.topic, set())):
                rows.append((kpi, key, engine.row(kpi, _key_tuple(kpi, key), Aggregate(), now_ms)[1]))
        await send_and_flush(rows)
        ready["rebuilt"] = True
        log.info("KPI state rebuilt from %d entities; %d groups sent", count, len(rows))

    heartbeat = metrics.Heartbeat(STAGE)

    @app.agent(source, name="kpi")
    async def compute(stream):  # noqa: ANN001 - a Faust stream
        loop = asyncio.get_running_loop()
        async for events in stream.take_events(settings.processor_batch_size, within=settings.processor_batch_seconds):
            heartbeat.busy()
            # Counted per batch (one increment per topic), not per event: label lookups take a lock.
            for topic, n in metrics.count_by(events, lambda e: e.message.topic).items():
                metrics.EVENTS_IN.labels(STAGE, topic).inc(n)
            try:
                await ensure_rebuilt()
                now_ms = int(time.time() * 1000)
                changed: dict[bytes, tuple[Any, dict[str, Any]]] = {}
                for event in events:
                    apply_event(event, now_ms, changed)
                write_states(changed)
                await send_and_flush(engine.take_rows(now_ms))
            except Exception:
                log.exception("a batch of %d events failed; it will be read again", len(events))
                ready["rebuilt"] = False  # the memory may hold half a batch: derive it again
                heartbeat.idle()
                continue
            heartbeat.idle()
            rewinds = await loop.run_in_executor(
                None, ledger.observe, [((e.message.topic, e.message.partition), e.message.offset) for e in events]
            )
            for (topic, partition), offset in rewinds.items():
                metrics.RETRIES.labels(STAGE, "skipped_offset").inc()
                await seek(app, TP(topic, partition), offset)

    def apply_event(event: Any, now_ms: int, changed: dict[bytes, tuple[Any, dict[str, Any]]]) -> None:
        """Applies the event to the engine; the entity's new state goes to `changed` (entity key ->
        (its latest event, state)), written to the table once per batch by write_states."""
        topic = event.message.topic
        try:
            _, record = decode(registry, event.value)
        except UndecodableMessage as exc:  # clean topics carry only what the processor encoded
            metrics.EVENTS_FAILED.labels(STAGE, topic, "undecodable").inc()
            log.error("%s[%d]@%d skipped: %s", topic, event.message.partition, event.message.offset, exc)
            return
        key = engine.entity_id(topic, record).encode()
        if key in changed:  # changed earlier in this batch: the table does not hold it yet
            previous: dict[str, Any] | None = changed[key][1]
        else:
            stored = entities.get(key)
            previous = json.loads(stored) if stored else None
        state = engine.apply(topic, record, previous, now_ms)
        if state is not None:
            changed[key] = (event, state)
        elif previous is not None and previous["v"] == engine.version(topic, record):
            # Re-read after a crash: the local store had it, the changelog may not; send it again.
            changed[key] = (event, previous)

    def write_states(changed: dict[bytes, tuple[Any, dict[str, Any]]]) -> None:
        # One table write (and changelog record) per entity per batch, not per event: the batch's
        # offsets are committed only after all of them are acknowledged, as before.
        for key, (event, state) in changed.items():
            # Faust writes a table key to the partition of the current event: the entity's last one
            # (every event of an entity is on the partition of its key).
            token = _current_event.set(weakref.ref(event))
            try:
                entities[key] = json.dumps(state, separators=(",", ":")).encode()
            finally:
                _current_event.reset(token)

    @app.timer(interval=DEADLINE_CHECK_SECONDS)
    async def deadlines() -> None:
        # Deadlines pass without events: permits and complaints become overdue here. Beats while
        # the agent waits for events; a batch that never finishes stops the beat.
        heartbeat.beat_if_idle()
        if not ready["rebuilt"]:
            if app.tables.recovery.completed.is_set() and app.consumer.assignment():
                await ensure_rebuilt()
            return
        now_ms = int(time.time() * 1000)
        if engine.flip_due(now_ms):
            await send_and_flush(engine.take_rows(now_ms))

    install_ledger_timers(app, ledger, engine.by_topic, STAGE)

    @app.on_partitions_revoked.connect
    async def _revoked(app_, revoked, **kwargs) -> None:  # noqa: ANN001 - Faust signal
        ready["rebuilt"] = False

    app.kpi_engine = engine  # for tests
    return app


def _key_tuple(kpi: Kpi, key: str) -> AggKey:
    values = json.loads(key)
    return slot(kpi), tuple(values[:-1]), values[-1]


def run_kpi_worker(settings: Settings) -> None:
    """Run the worker until SIGTERM or SIGINT."""
    run_until_stopped(build_app(settings), settings, STAGE)
