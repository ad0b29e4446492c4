"""The Faust worker: reads every cdc.* topic of the catalog, cleans events in batches, writes
clean.* topics and dead letters. Region names come from ref.regions, read as a global table.

Throughput choices (Faust is slow per event): batches from `take_events`, outputs produced by
librdkafka (confluent-kafka) rather than aiokafka, and one flush per batch. Input offsets are
committed by an OffsetLedger (offsets.py) only after the batch's outputs were acknowledged, and only
as far as every event was processed, so delivery is at least once."""

from __future__ import annotations

import asyncio
import logging

import faust
from faust.tables import GlobalTable
from faust.types import TP

from backbone import kafka, metrics
from backbone.errors import ServiceUnavailable
from backbone.retry import retrying
from backbone.sealing import Sealer
from backbone.settings import Settings
from contract.bootstrap import preflight
from contract.catalog import catalog_for
from contract.codec import Registry
from contract.deadletter import Output, RawEvent
from contract.topics import DLQ_PROCESSOR, REF_REGIONS, STATE_LIFECYCLE, STATE_REFERENCES, named
from stream_processors.cleaning import DEFAULT_MAX_MESSAGE_BYTES, STAGE, Cleaner
from stream_processors.faust_app import install_ledger_timers, new_app, run_until_stopped, seek
from stream_processors.lifecycle import LifecycleState, read_partition
from stream_processors.offsets import committed_offsets_lookup
from stream_processors.references import HoldingLedger, ReferenceTable

log = logging.getLogger(__name__)


class TopicTable(GlobalTable):
    """A global table whose changelog is a topic we own (ref.regions).

    Faust 0.15's assignor looks global changelogs up by the default name
    (<app>-<table>-changelog) and stalls when the changelog topic is custom; naming it here fixes that."""

    def _changelog_topic_name(self) -> str:
        return self.changelog_topic.get_topic_name()


def _global_table(app: faust.App, name: str, topic: str) -> TopicTable:
    """A table every worker reads whole from a compacted topic of JSON keys and values."""
    changelog = app.topic(topic, key_serializer="json", value_serializer="json", partitions=1, compacting=True)
    return app.tables.add(
        TopicTable(app=app, name=name, key_type=str, value_type=None, partitions=1, changelog_topic=changelog)
    )


def build_app(settings: Settings) -> faust.App:
    if not settings.kafka_bootstrap:
        raise ServiceUnavailable("no Kafka address", hint="set BACKBONE_KAFKA_BOOTSTRAP or run `backbone demo`")
    preflight(settings)
    catalog = catalog_for(settings)
    registry = Registry.for_settings(settings)
    app = new_app(
        settings,
        settings.processor_app_id,
        "memory://",
        "faust",
        stream_buffer_maxsize=4 * settings.processor_batch_size,
    )
    regions = _global_table(app, "regions", named(settings, REF_REGIONS))
    # Which referenced entities exist: state.references, read whole by every worker.
    known = _global_table(app, "references", named(settings, STATE_REFERENCES))
    producer = kafka.make_producer(settings, "processor")
    sealer = Sealer(settings.dead_letter_secret())
    # Outputs are bounded by the producer's own limit: a larger one would stop the batch at produce().
    max_bytes = int(kafka.PROFILES["processor"].get("message.max.bytes", DEFAULT_MAX_MESSAGE_BYTES))
    lifecycle = LifecycleState(named(settings, STATE_LIFECYCLE))
    cleaner = Cleaner(
        catalog,
        registry,
        regions,
        settings.pii_secret(),
        named(settings, DLQ_PROCESSOR),
        sealer=sealer,
        max_message_bytes=max_bytes,
        lifecycle=lifecycle,
        references=ReferenceTable(named(settings, STATE_REFERENCES), known),
        reference_wait_seconds=settings.processor_reference_wait_seconds,
        dq_rules=settings.processor_dq_rules,
    )
    cdc_topics = [e.cdc_topic for e in catalog.entities]
    # acks=False: Faust does not commit these offsets; the ledger below does (see offsets.py).
    source = app.topic(*cdc_topics, value_serializer="raw", key_serializer="raw", acks=False)
    ledger = HoldingLedger(committed_offsets_lookup(settings, settings.processor_app_id))
    ledger.room = cleaner.waiting  # no offset committed past a record that waits for its reference
    batch_lock = asyncio.Lock()  # the agent's batches and the release timer take turns
    delivery_errors: list[str] = []
    heartbeat = metrics.Heartbeat(STAGE)

    def on_delivery(err, _msg) -> None:  # noqa: ANN001 - librdkafka callback
        if err is not None:
            delivery_errors.append(err.str())

    def emit(out: Output) -> None:
        kafka.produce(producer, out.topic, out.value, out.key, out.headers, on_delivery, STAGE, out.partition)

    def flush_outputs() -> None:
        # Bounded retries: an unreachable broker stops the worker (no commit) rather than hanging forever.
        for _ in range(120):
            if producer.flush(1.0) == 0:
                break
            metrics.RETRIES.labels(STAGE, "flush").inc()
        if len(producer) or delivery_errors:
            errors = delivery_errors[:3]
            delivery_errors.clear()
            raise ServiceUnavailable(f"outputs not acknowledged by Kafka ({len(producer)} pending, errors {errors})")

    @app.agent(source, name="clean")
    async def clean(stream):  # noqa: ANN001 - a Faust stream
        loop = asyncio.get_running_loop()
        async for events in stream.take_events(settings.processor_batch_size, within=settings.processor_batch_seconds):
            heartbeat.busy()
            batch = [
                RawEvent(
                    e.message.topic,
                    e.message.partition,
                    e.message.offset,
                    e.message.key,
                    e.value,
                    int(e.message.timestamp * 1000) if e.message.timestamp else None,
                )
                for e in events
            ]
            try:
                async with batch_lock:
                    cleaner.process(batch, emit)
                    # Outputs acknowledged before the batch's events are acked (and their offsets committed).
                    await loop.run_in_executor(None, flush_outputs)
                    cleaner.acknowledged()
            except Exception:
                # Not committed: the ledger stays behind and `unstick` re-reads the batch.
                log.exception("a batch of %d events failed; it will be read again", len(batch))
                heartbeat.idle()
                continue
            # Inputs committed only now, and only up to the first offset not processed.
            rewinds = await loop.run_in_executor(
                None, ledger.observe, [((e.topic, e.partition), e.offset) for e in batch]
            )
            for (topic, partition), offset in rewinds.items():
                metrics.RETRIES.labels(STAGE, "skipped_offset").inc()
                log.warning("offset %s of %s[%s] was skipped by the consumer; re-reading", offset, topic, partition)
                await seek(app, TP(topic, partition), offset)
            heartbeat.idle()

    install_ledger_timers(app, ledger, cdc_topics, STAGE)

    @app.timer(interval=0.5)
    async def release_waiting() -> None:
        # Records waiting for a referenced entity are judged again without waiting for a batch.
        if not len(cleaner.waiting):
            return
        loop = asyncio.get_running_loop()
        async with batch_lock:
            try:
                cleaner.release(emit)
                await loop.run_in_executor(None, flush_outputs)
                cleaner.acknowledged()
            except Exception:  # noqa: BLE001 - not acknowledged: their offsets stay uncommitted
                log.exception("releasing waiting records failed; they are read again after a restart")

    @app.on_partitions_revoked.connect
    async def _drop_waiting(app_, revoked, **kwargs) -> None:  # noqa: ANN001 - Faust signal
        # Their offsets were not committed: the partitions' next owner reads them again.
        cleaner.waiting.drop((tp.topic, tp.partition) for tp in revoked)
        if cleaner.references is not None:
            cleaner.references.forget_local()

    @app.on_partitions_assigned.connect
    async def _assigned(app_, assigned, **kwargs) -> None:  # noqa: ANN001 - Faust signal
        # The lifecycle state of the assigned partitions, merged from its topic (the later event's
        # state wins). Not dropped on revocation: the state of a batch still in flight stays.
        mine = {(tp.topic, tp.partition) for tp in assigned if tp.topic in cdc_topics}
        lifecycle.keep_only(mine)
        loop = asyncio.get_running_loop()
        for partition in sorted({p for _, p in mine}):
            try:
                records = await loop.run_in_executor(None, load_state_partition, partition)
            except Exception as exc:  # noqa: BLE001 - a crash here would stop the worker; no state only means no check
                log.warning(
                    "lifecycle state of partition %s not loaded (%s): its updates without before go unchecked",
                    partition,
                    exc,
                )
                continue
            lifecycle.load(partition, records, {t for t, p in mine if p == partition})

    def load_state_partition(partition: int) -> list[tuple[bytes | None, bytes | None]]:
        # A topic created a moment ago may not be known to every broker yet: retried for about 30 s.
        for attempt in retrying("kafka", stage=STAGE, what="state_load", attempts=6):
            with attempt:
                return read_partition(settings, lifecycle.topic, partition)
        return []

    @app.timer(interval=2.0)
    async def report_lag() -> None:
        # Beats while the agent waits for events; a batch that never finishes stops the beat.
        heartbeat.beat_if_idle()
        consumer = app.consumer
        for tp in consumer.assignment():
            if tp.topic in cdc_topics:
                try:
                    high = consumer.highwater(tp)
                    read = consumer._read_offset.get(tp)  # noqa: SLF001 - Faust exposes no public reader position
                except Exception:  # noqa: BLE001 - lag is best effort while partitions move
                    continue
                if high is not None:
                    metrics.CONSUMER_LAG.labels(STAGE, tp.topic, str(tp.partition)).set(
                        max(0, high - ((read + 1) if read is not None else 0))
                    )

    app.cleaner = cleaner  # for tests and the bench
    return app


def run_worker(settings: Settings) -> None:
    """Run the worker until SIGTERM or SIGINT."""
    run_until_stopped(build_app(settings), settings, STAGE)
