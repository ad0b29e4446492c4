"""The sink: clean.* and dlq.* topics -> ClickHouse, in batches with columnar inserts.

Offsets are committed only after the insert of the whole batch succeeded; a crash replays the
uncommitted tail, and ReplacingMergeTree on event_id makes the replay invisible to analysts
reading through FINAL or the *_current views. A message that cannot be decoded or stored (a
decimal wider than its column, a value the client cannot convert) becomes a dead letter on the
sink's dlq topic and the rest of its batch is stored: one message never stops the sink."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.exceptions import DataError
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from backbone import kafka, metrics
from backbone.errors import ServiceUnavailable
from backbone.retry import retrying
from backbone.sealing import Sealer
from backbone.settings import Settings
from contract.bootstrap import preflight
from contract.catalog import Catalog, catalog_for
from contract.codec import Registry, UndecodableMessage, decode, schema_id_of
from contract.deadletter import Output, RawEvent, dead_letter
from contract.rules import DQ_FLAGS
from contract.topics import CENSUS, DLQ_ADAPTER, DLQ_PROCESSOR, DLQ_SINK, named
from contract.workdays import load_calendar
from sinks import ddl, dimensions, migrations
from sinks.avro_ingest import AvroIngest
from sinks.dead_letter_rows import dead_letter_row
from sinks.kpi_tables import KpiTables
from sinks.reconciliation import Reconciler
from sinks.source_activity import SourceActivity
from sinks.store import connect
from sinks.table_writer import TableWriter

STAGE = "sink"
_TRY_AGAIN = {
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NETWORK_EXCEPTION,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
}
_LOST_ASSIGNMENT = {KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID}


class _RetriableCommit(Exception):
    """A commit the broker asked to try again (coordinator loading or moving, a timeout)."""


log = logging.getLogger(__name__)

# What the client raises when it cannot turn a value into its column's type: the same on every
# attempt, so not retried; the rows that cause it are found and dead-lettered instead.
_VALUE_ERRORS = (DataError, ValueError, TypeError, ArithmeticError)


class Sink:
    def __init__(self, settings: Settings, catalog: Catalog | None = None, client: Any = None) -> None:
        self.client = client or connect(settings)  # first: a wrong DSN is a settings mistake
        preflight(settings)
        self.settings = settings
        self.catalog = catalog or catalog_for(settings)
        self.registry = Registry.for_settings(settings)
        self.writer = TableWriter(self.client, settings.dead_letter_retention_days)
        # The engine decodes the clean topics itself, unless the registry needs a password or private CA.
        plain_registry = not settings.registry_password.get_secret_value() and settings.registry_ca_file is None
        self.fast = AvroIngest(self.client, settings.registry_url, settings.sink_engine_decodes and plain_registry)
        # Every table and view exists before the first event (the same migrations as `backbone init`).
        holidays = load_calendar(settings.holidays_csv).days_off
        migrations.migrate(self.client, self.catalog, settings.dead_letter_retention_days, holidays, settings.kpi_dir)
        self.dlq_topics = tuple(named(settings, t) for t in (DLQ_PROCESSOR, DLQ_SINK, DLQ_ADAPTER))
        self.reference = {named(settings, topic): table for topic, table in dimensions.REFERENCE_TABLES.items()}
        self.topics = [e.clean_topic for e in self.catalog.entities] + list(self.dlq_topics) + list(self.reference)
        self.tables = {e.clean_topic: e.table for e in self.catalog.entities}
        self.kpi_tables = KpiTables(self.client, self.registry, settings, self.catalog)
        self.topics += self.kpi_tables.topics
        self.kinds = migrations.adapter_kinds(self.catalog)
        # Censuses of the sources (sinks/reconciliation.py) and each system's last change (silent sources).
        grace = settings.reconcile_grace_seconds
        self.reconciler = Reconciler(self.client, self.catalog, self.kinds, named(settings, CENSUS), grace)
        self.topics.append(self.reconciler.topic)
        self.activity = SourceActivity(self.client, self.catalog)
        self.docs = {e.clean_topic: e.payload_schema().get("doc", "") for e in self.catalog.entities}
        self.consumer = Consumer(
            kafka.client_config(
                settings,
                **{
                    "group.id": settings.sink_group_id,
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "auto.offset.reset": "earliest",
                    "isolation.level": "read_committed",
                    "fetch.min.bytes": 1,
                    "queued.max.messages.kbytes": 65536,
                },
            )
        )
        self.dlq = kafka.make_producer(settings, "dead_letters")
        self.sealer = Sealer(settings.dead_letter_secret())
        self.stopping = threading.Event()
        self.stored = 0

    # -- one batch -------------------------------------------------------------------------------
    def _poll_batch(self) -> list[Message]:
        """Up to sink_batch_size messages within sink_batch_seconds. The window adapts to the load: a
        backlog fills whole batches at once; once caught up (a read returns fewer messages than asked
        for within the linger) the batch is written at once instead of waiting out the window."""
        batch: list[Message] = []
        size, linger = self.settings.sink_batch_size, self.settings.sink_linger_seconds
        deadline = time.monotonic() + self.settings.sink_batch_seconds
        while len(batch) < size and not self.stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            wanted = size - len(batch)
            # consume() returns when it has `wanted` messages or at the timeout: never wait longer
            # than the linger, or a partial batch would sit out the whole window.
            messages = self.consumer.consume(wanted, timeout=min(remaining, linger))
            for msg in messages:
                err = msg.error()
                if err is None:
                    batch.append(msg)
                elif err.code() != KafkaError._PARTITION_EOF:
                    if err.fatal():
                        raise ServiceUnavailable(f"Kafka consumer failed: {err.str()}")
                    metrics.RETRIES.labels(STAGE, "consume").inc()
                    log.warning("consumer error: %s", err.str())
            if batch and len(messages) < wanted:  # caught up: write what there is
                break
        return batch

    def write_batch(self, batch: list[Message]) -> int:
        """Insert a batch (one insert per table), dead-lettering what cannot be decoded or stored:
        one bad message never stops the sink, and its batch neighbours are stored."""
        now = datetime.now(UTC)
        entities: dict[tuple[str, int], list[Message]] = {}  # (clean topic, schema id) -> its messages
        dead_rows: list[list[Any]] = []
        dead_messages: list[Message] = []
        dead_letters_out: list[Output] = []
        reference_rows: dict[str, tuple[list[list[Any]], list[Message]]] = {}
        for topic, n in metrics.count_by(batch, lambda m: m.topic()).items():
            metrics.EVENTS_IN.labels(STAGE, topic).inc(n)
        for msg in batch:
            topic = msg.topic()
            if topic in self.tables:  # most messages: grouped for one write per entity and schema
                try:
                    schema_id = schema_id_of(msg.value())
                except UndecodableMessage as exc:
                    dead_letters_out.append(self._dead_letter(msg, f"undecodable: {exc}", "undecodable"))
                    continue
                entities.setdefault((topic, schema_id), []).append(msg)
                continue
            if topic in self.dlq_topics:
                dead_rows.append(dead_letter_row(msg, now, self.sealer))
                dead_messages.append(msg)
                continue
            if self.kpi_tables.take(msg) or self.reconciler.take(msg):
                continue
            if topic in self.reference:
                table = self.reference[topic]
                try:
                    row = dimensions.reference_row(
                        table, msg.key(), msg.value(), topic, msg.partition(), msg.offset(), now
                    )
                except ValueError as exc:
                    dead_letters_out.append(
                        self._dead_letter(msg, f"unstorable: reference record: {exc}", "unstorable")
                    )
                    continue
                reference_rows.setdefault(table, ([], []))[0].append(row)
                reference_rows[table][1].append(msg)
        for (topic, schema_id), messages in entities.items():
            dead_letters_out += self._write_entity(topic, schema_id, messages, now)
        dead_letters_out += self.kpi_tables.flush(self._dead_letter)
        for table, (rows, messages) in reference_rows.items():
            columns = [list(column) for column in zip(*rows, strict=True)]
            dead_letters_out += self._insert(table, dimensions.COLUMNS[table], columns, messages, now)
        if dead_rows:
            dead_columns = [list(column) for column in zip(*dead_rows, strict=True)]
            dead_letters_out += self._insert(
                ddl.DEAD_LETTERS_TABLE, ddl.DEAD_LETTER_COLUMNS, dead_columns, dead_messages, now
            )
        for out in dead_letters_out:
            kafka.produce(self.dlq, out.topic, out.value, out.key, out.headers, stage=STAGE)
        if dead_letters_out and self.dlq.flush(30):
            raise ServiceUnavailable("dead letters not acknowledged by Kafka")
        return len(batch)

    def _write_entity(self, topic: str, schema_id: int, messages: list[Message], now: datetime) -> list[Output]:
        """One entity's messages of one clean schema: decoded by the engine (sinks/avro_ingest.py), or
        here when the engine cannot take them exactly; the dead letters of what cannot be stored."""
        table = self.tables[topic]
        try:
            clean_schema, _ = self.registry.schema_by_id(schema_id)
        except UndecodableMessage as exc:
            return [self._dead_letter(msg, f"undecodable: {exc}", "undecodable") for msg in messages]
        layout = self.writer.layout(table, schema_id, clean_schema, self.docs.get(topic, ""))
        if table in self.kinds and self.fast.serves(table, schema_id, layout, clean_schema):
            stored = self.fast.write(table, schema_id, layout, messages, now)
            if stored is not None:
                metrics.observe_counted(metrics.FRESHNESS.labels(table), stored.fresh_within, stored.fresh_seconds)
                self._stored(table, topic, stored.fresh_within[-1], [stored.newest_emitted])
                return []
        out: list[Output] = []
        names, columns, kept = layout.names, [[] for _ in layout.names], []
        for msg in messages:
            try:
                _, record = decode(self.registry, msg.value())
            except UndecodableMessage as exc:
                out.append(self._dead_letter(msg, f"undecodable: {exc}", "undecodable"))
                continue
            problem = layout.row_problem(record)
            if problem:  # e.g. a decimal wider than its column: never rounded, never stops the batch
                out.append(self._dead_letter(msg, f"unstorable: {problem}", "unstorable"))
                continue
            if record.get(DQ_FLAGS) is None:  # a record of a clean schema from before dq_flags
                record[DQ_FLAGS] = []
            record["_topic"], record["_partition"], record["_offset"], record["ts_stored"] = (
                topic,
                msg.partition(),
                msg.offset(),
                now,
            )
            for name, column in zip(names, columns, strict=True):
                column.append(record.get(name))
            kept.append(msg)
        return out + self._insert(table, names, columns, kept, now)

    def _dead_letter(self, msg: Message, reason: str, kind: str) -> Output:
        metrics.EVENTS_FAILED.labels(STAGE, msg.topic(), kind).inc()
        log.info("dead letter from %s[%d]@%d: %s", msg.topic(), msg.partition(), msg.offset(), reason)
        raw = RawEvent(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value())
        return dead_letter(raw, reason, STAGE, self.dlq_topics[1], self.sealer, f"record:{kind}")

    def _insert(
        self, table: str, names: list[str], columns: list[list[Any]], messages: list[Message], now: datetime
    ) -> list[Output]:
        """Insert rows (retried: store unavailable or rejecting); the dead letters of the rows the
        client cannot convert, found by halving the rows until the bad ones are alone."""
        if not columns or not columns[0]:
            return []
        problem = self._store(table, names, columns)
        if problem is None:
            if table in self.kinds:  # entities (not dead letters or reference data)
                freshness, now_s = metrics.FRESHNESS.labels(table), now.timestamp()
                for ts in columns[names.index("ts_source")]:
                    freshness.observe(max(0.0, now_s - ts.timestamp()))
                self._stored(
                    table, columns[names.index("_topic")][0], len(columns[0]), columns[names.index("ts_emitted")]
                )
            return []
        reason = f"unstorable: {str(problem).splitlines()[0] if str(problem) else type(problem).__name__}"
        if len(messages) == 1:
            msg = messages[0]
            if msg.topic() == self.dlq_topics[1] and table == ddl.DEAD_LETTERS_TABLE:
                # The sink's own dead letter cannot be stored either: dead-lettering it again would loop.
                metrics.EVENTS_FAILED.labels(STAGE, msg.topic(), "dropped").inc()
                log.error(
                    "dropped the sink's dead letter %s[%d]@%d: %s", msg.topic(), msg.partition(), msg.offset(), reason
                )
                return []
            return [self._dead_letter(msg, reason, "unstorable")]
        half = len(messages) // 2
        return self._insert(table, names, [c[:half] for c in columns], messages[:half], now) + self._insert(
            table, names, [c[half:] for c in columns], messages[half:], now
        )

    def _store(self, table: str, names: list[str], columns: list[list[Any]]) -> Exception | None:
        """One insert (an entity's rows: into its state table, then its change log), retried (6
        attempts in all) while the store fails, then the sink stops without committing. Returns the
        client's error when it cannot convert a value (not retried). The state goes first: once the
        change log shows a change, the current state has it too (both inserts are idempotent)."""
        problem: Exception | None = None
        try:
            for attempt in retrying("store", stage=STAGE, what="insert"):
                with attempt:
                    try:
                        if table in self.kinds:
                            self.writer.insert_state(table, names, columns, self.kinds[table])
                        self.writer.insert(table, names, columns)
                    except _VALUE_ERRORS as exc:
                        problem = exc
        except Exception as exc:  # noqa: BLE001 - any failure of the last attempt
            raise ServiceUnavailable(f"insert into {table} failed 6 times: {str(exc).splitlines()[0]}") from None
        return problem

    def _stored(self, table: str, topic: str, rows: int, emitted: list[datetime]) -> None:
        """Counters of stored entity rows, and the system's last change (silent sources)."""
        metrics.EVENTS_OUT.labels(STAGE, topic).inc(rows)
        self.activity.stored(table, emitted)
        self.stored += rows

    def commit(self, batch: list[Message]) -> None:
        offsets: dict[tuple[str, int], int] = {}
        for msg in batch:
            offsets[(msg.topic(), msg.partition())] = msg.offset() + 1
        positions = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        # A broker restart answers "coordinator loading" for a while: wait for it (the rows are stored).
        for attempt in retrying("kafka", stage=STAGE, what="commit", on=_RetriableCommit, stop_event=self.stopping):
            with attempt:
                try:
                    self.consumer.commit(offsets=positions, asynchronous=False)
                except KafkaException as exc:
                    error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                    if error is not None and (error.retriable() or error.code() in _TRY_AGAIN):
                        raise _RetriableCommit(error.str()) from None
                    if error is not None and error.code() in _LOST_ASSIGNMENT:
                        # The partitions moved to another member, which re-reads from the last commit:
                        # stored again idempotently, nothing lost.
                        log.warning("commit refused after a rebalance (%s); the new owner re-reads", error.str())
                        return
                    raise

    def report_lag(self) -> None:
        assignment = self.consumer.assignment()
        if not assignment:
            return
        for tp in self.consumer.position(assignment):
            try:
                # Cached: the high watermark of the last fetch response, no round trip per partition.
                _low, high = self.consumer.get_watermark_offsets(tp, timeout=1, cached=True)
            except Exception:  # noqa: BLE001 - lag is best effort
                continue
            if high < 0:  # not fetched yet
                continue
            position = tp.offset if tp.offset >= 0 else _low
            metrics.CONSUMER_LAG.labels(STAGE, tp.topic, str(tp.partition)).set(max(0, high - position))

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> None:
        self.consumer.subscribe(self.topics)
        metrics.UP.labels(STAGE).set(1)
        heartbeat = metrics.Heartbeat(STAGE)
        last_lag = 0.0
        try:
            while not self.stopping.is_set():
                heartbeat.beat()
                batch = self._poll_batch()
                if batch:
                    self.write_batch(batch)
                    self.commit(batch)
                self.reconciler.check()
                if time.monotonic() - last_lag > 2:
                    self.report_lag()
                    last_lag = time.monotonic()
        finally:
            metrics.UP.labels(STAGE).set(0)
            self.consumer.close()

    def stop(self) -> None:
        self.stopping.set()


def open_sink(settings: Settings) -> Sink:
    return Sink(settings, catalog_for(settings))
