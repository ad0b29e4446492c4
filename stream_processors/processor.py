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
from backbone.sealing import Sealer
from backbone.settings import Settings
from contract.bootstrap import preflight
from contract.catalog import catalog_for
from contract.codec import Registry
from contract.deadletter import Output, RawEvent
from contract.topics import DLQ_PROCESSOR, REF_REGIONS, named
from stream_processors.cleaning import DEFAULT_MAX_MESSAGE_BYTES, STAGE, Cleaner
from stream_processors.offsets import OffsetLedger, committed_offsets_lookup

log = logging.getLogger(__name__)


class ReferenceTable(GlobalTable):
    """A global table whose changelog is a topic we own (ref.regions).

    Faust 0.15's assignor looks global changelogs up by the default name
    (<app>-<table>-changelog) and stalls when the changelog topic is custom; naming it here fixes that."""

    def _changelog_topic_name(self) -> str:
        return self.changelog_topic.get_topic_name()


def build_app(settings: Settings) -> faust.App:
    if not settings.kafka_bootstrap:
        raise ServiceUnavailable("no Kafka address", hint="set BACKBONE_KAFKA_BOOTSTRAP or run `backbone demo`")
    preflight(settings)
    catalog = catalog_for(settings)
    registry = Registry.for_settings(settings)
    app = faust.App(
        settings.processor_app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=kafka.faust_credentials(settings),
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        topic_partitions=settings.topic_partitions,
        web_enabled=False,
        datadir=str(settings.run_dir / "faust"),
        stream_buffer_maxsize=4 * settings.processor_batch_size,
        broker_max_poll_records=settings.processor_batch_size,
        broker_commit_every=10_000,
        broker_commit_interval=1.0,
    )
    regions = app.tables.add(
        ReferenceTable(
            app=app,
            name="regions",
            key_type=str,
            value_type=None,
            partitions=1,
            changelog_topic=app.topic(
                named(settings, REF_REGIONS),
                key_serializer="json",
                value_serializer="json",
                partitions=1,
                compacting=True,
            ),
        )
    )
    producer = kafka.make_producer(settings, "processor")
    sealer = Sealer(settings.dead_letter_secret())
    # Outputs are bounded by the producer's own limit: a larger one would stop the batch at produce().
    max_bytes = int(kafka.PROFILES["processor"].get("message.max.bytes", DEFAULT_MAX_MESSAGE_BYTES))
    cleaner = Cleaner(
        catalog,
        registry,
        regions,
        settings.pii_secret(),
        named(settings, DLQ_PROCESSOR),
        sealer=sealer,
        max_message_bytes=max_bytes,
    )
    cdc_topics = [e.cdc_topic for e in catalog.entities]
    # acks=False: Faust does not commit these offsets; the ledger below does (see offsets.py).
    source = app.topic(*cdc_topics, value_serializer="raw", key_serializer="raw", acks=False)
    ledger = OffsetLedger(committed_offsets_lookup(settings, settings.processor_app_id))
    delivery_errors: list[str] = []

    def on_delivery(err, _msg) -> None:  # noqa: ANN001 - librdkafka callback
        if err is not None:
            delivery_errors.append(err.str())

    def emit(out: Output) -> None:
        kafka.produce(producer, out.topic, out.value, out.key, out.headers, on_delivery, STAGE)

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
                cleaner.process(batch, emit)
                # Outputs acknowledged before the batch's events are acked (and their offsets committed).
                await loop.run_in_executor(None, flush_outputs)
            except Exception:
                # Not committed: the ledger stays behind and `unstick` re-reads the batch.
                log.exception("a batch of %d events failed; it will be read again", len(batch))
                continue
            # Inputs committed only now, and only up to the first offset not processed.
            rewinds = await loop.run_in_executor(
                None, ledger.observe, [((e.topic, e.partition), e.offset) for e in batch]
            )
            for (topic, partition), offset in rewinds.items():
                metrics.RETRIES.labels(STAGE, "skipped_offset").inc()
                log.warning("offset %s of %s[%s] was skipped by the consumer; re-reading", offset, topic, partition)
                await app.consumer.seek(TP(topic, partition), offset)

    @app.timer(interval=1.0)
    async def commit_inputs() -> None:
        # Committed from a timer, not from the agent: a commit waits while the group rebalances,
        # and Faust's rebalance waits for the agent, so committing in the agent can deadlock.
        assigned = {(tp.topic, tp.partition) for tp in app.consumer.assignment()}
        offsets = {tp: o for tp, o in ledger.committable().items() if tp in assigned}
        if not offsets:
            return
        try:
            await asyncio.wait_for(
                app.consumer._commit({TP(t, p): o for (t, p), o in offsets.items()}),  # noqa: SLF001
                timeout=10,
            )
        except Exception as exc:  # noqa: BLE001 - retried at the next tick; events are re-read at worst
            metrics.RETRIES.labels(STAGE, "commit").inc()
            log.warning("commit of input offsets failed (%s); retrying", exc)
            ledger.retry(offsets)

    stalled_since: dict[tuple[str, int], tuple[int, float]] = {}

    @app.timer(interval=5.0)
    async def unstick() -> None:
        # A partition whose ledger stands still below the end of the log for 15 s is sought back
        # to the ledger's offset: whatever Faust lost (a skipped event, a crashed batch) is re-read.
        loop = asyncio.get_running_loop()
        now = loop.time()
        for tp in app.consumer.assignment():
            if tp.topic not in cdc_topics:
                continue
            key = (tp.topic, tp.partition)
            try:
                high = app.consumer.highwater(tp)
                expected = ledger.expected.get(key)
                if expected is None:
                    expected = await loop.run_in_executor(None, ledger.starting_offset, key)
            except Exception:  # noqa: BLE001 - best effort while partitions move
                continue
            if high is None or expected >= high:
                stalled_since.pop(key, None)
                continue
            seen = stalled_since.get(key)
            if seen is None or seen[0] != expected:
                stalled_since[key] = (expected, now)
            elif now - seen[1] >= 15:
                metrics.RETRIES.labels(STAGE, "stalled_partition").inc()
                log.warning("%s[%s] stalled at offset %s below %s; re-reading", *key, expected, high)
                try:
                    await app.consumer.seek(tp, expected)
                except Exception as exc:  # noqa: BLE001 - retried at the next tick
                    log.warning("seek failed: %s", exc)
                stalled_since[key] = (expected, now)

    @app.on_partitions_revoked.connect
    async def _revoked(app_, revoked, **kwargs) -> None:  # noqa: ANN001 - Faust signal
        ledger.forget((tp.topic, tp.partition) for tp in revoked)

    @app.timer(interval=2.0)
    async def report_lag() -> None:
        consumer = app.consumer
        for tp in consumer.assignment():
            if tp.topic in cdc_topics:
                try:
                    high = consumer.highwater(tp)
                    read = consumer._read_offset.get(tp)  # noqa: SLF001 - Faust exposes no public reader position
                except Exception:  # noqa: BLE001 - lag is best effort while partitions move
                    continue
                if high is not None:
                    metrics.CONSUMER_LAG.labels(STAGE, f"{tp.topic}[{tp.partition}]").set(
                        max(0, high - ((read + 1) if read is not None else 0))
                    )

    app.cleaner = cleaner  # for tests and the bench
    return app


def run_worker(settings: Settings) -> None:
    """Run the worker until SIGTERM or SIGINT (Faust stops the agent, flushes and commits)."""
    app = build_app(settings)
    metrics.UP.labels(STAGE).set(1)
    # Faust is chatty: its info log only when ours is at debug.
    loglevel = "info" if settings.log_level == "debug" else "warn"
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
