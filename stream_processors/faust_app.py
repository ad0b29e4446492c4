"""What the processor and the KPI worker share of Faust: the app's settings, and the timers that go
with an OffsetLedger (offsets.py): commit what the ledger allows, and read again a partition that
stands still below the end of its log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection

import faust
from faust.types import TP

from backbone import kafka, logs, metrics
from backbone.gc_tuning import tune_garbage_collector
from backbone.settings import Settings
from stream_processors.offsets import OffsetLedger

log = logging.getLogger(__name__)

STALL_SECONDS = 15


def new_app(settings: Settings, app_id: str, store: str, datadir: str, **extra: object) -> faust.App:
    """A Faust app on the configured (and secured) Kafka, raw keys and values, no web server, and
    batches of `processor_batch_size`; offsets are the ledger's business (commit settings are Faust's
    fallbacks only)."""
    return faust.App(
        app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=kafka.faust_credentials(settings),
        value_serializer="raw",
        key_serializer="raw",
        store=store,
        topic_partitions=settings.topic_partitions,
        web_enabled=False,
        datadir=str(settings.run_dir / datadir),
        broker_max_poll_records=settings.processor_batch_size,
        broker_commit_every=10_000,
        broker_commit_interval=1.0,
        **extra,
    )


async def seek(app: faust.App, tp: TP, offset: int) -> None:
    """Read `tp` again from `offset`, on the consumer's own thread. Faust's `consumer.seek` calls
    aiokafka from the event loop's thread while the consumer thread may be fetching; aiokafka's fetcher
    is not thread-safe, and that race crashed the worker (KeyError in `fetched_records`) when a
    cold start's rewinds seeked several times a second."""
    consumer = app.consumer
    thread = getattr(consumer, "_thread", None)
    if thread is None:  # a consumer that is not delegated to a thread
        await consumer.seek(tp, offset)
        return
    await thread.call_thread(thread.seek, tp, offset)
    consumer._read_offset[tp] = offset if offset else None  # noqa: SLF001 - what Faust's seek() also sets


def install_ledger_timers(app: faust.App, ledger: OffsetLedger, topics: Collection[str], stage: str) -> None:
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
            metrics.RETRIES.labels(stage, "commit").inc()
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
            if tp.topic not in topics:
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
            elif now - seen[1] >= STALL_SECONDS:
                metrics.RETRIES.labels(stage, "stalled_partition").inc()
                log.warning("%s[%s] stalled at offset %s below %s; re-reading", *key, expected, high)
                try:
                    await seek(app, tp, expected)
                except Exception as exc:  # noqa: BLE001 - retried at the next tick
                    log.warning("seek failed: %s", exc)
                stalled_since[key] = (expected, now)

    @app.on_partitions_revoked.connect
    async def _forget_revoked(app_, revoked, **kwargs) -> None:  # noqa: ANN001 - Faust signal
        ledger.forget((tp.topic, tp.partition) for tp in revoked)


def run_until_stopped(app: faust.App, settings: Settings, stage: str) -> None:
    """Run a Faust worker until SIGTERM or SIGINT (Faust stops the agents, flushes and commits)."""
    metrics.UP.labels(stage).set(1)
    logs.configure(settings.log_level, settings.log_format, stage)
    # Faust is chatty: its info log only when ours is at debug.
    for library in ("faust", "mode", "aiokafka"):
        logging.getLogger(library).setLevel(logging.INFO if settings.log_level == "debug" else logging.WARNING)
    # Our handler and format, not Faust's (override_logging=False keeps what `configure` set).
    worker = faust.Worker(app, quiet=True, redirect_stdouts=False, override_logging=False)
    worker.spinner = None  # no terminal spinner: its cursor codes would land in the log files
    tune_garbage_collector()  # the app and its tables exist now
    worker.execute_from_commandline()
