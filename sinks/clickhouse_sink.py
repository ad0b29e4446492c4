"""The sink: clean.* and dlq.* topics -> ClickHouse, in batches with columnar inserts.

Offsets are committed only after the insert of the whole batch succeeded; a crash replays the
uncommitted tail, and ReplacingMergeTree on event_id makes the replay invisible to analysts
reading through FINAL or the *_current views."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from backbone import kafka, metrics
from backbone.errors import ServiceUnavailable
from backbone.retry import retrying
from backbone.sealing import Sealer
from backbone.settings import Settings
from contract.bootstrap import preflight
from contract.catalog import Catalog, catalog_for
from contract.codec import Registry, UndecodableMessage, decode, schema_id_of
from contract.deadletter import RawEvent, dead_letter, header
from contract.topics import DLQ_ADAPTER, DLQ_PROCESSOR, DLQ_SINK, named
from sinks import ddl
from sinks.store import connect

STAGE = "sink"
log = logging.getLogger(__name__)


class TableWriter:
    """Creates and evolves the tables, and turns decoded records into columns."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.layouts: dict[tuple[str, int], ddl.TableLayout] = {}
        self.known_columns: dict[str, set[str]] = {}
        self.client.command(ddl.DEAD_LETTERS_DDL)
        columns = self.client.query(
            "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = {table:String}",
            parameters={"table": ddl.DEAD_LETTERS_TABLE},
        )
        if "letter_id" not in {row[0] for row in columns.result_rows}:
            self.client.command(ddl.DEAD_LETTERS_ADD_LETTER_ID)

    def layout(self, table: str, schema_id: int, clean_schema: dict[str, Any]) -> ddl.TableLayout:
        layout = self.layouts.get((table, schema_id))
        if layout is not None:
            return layout
        layout = ddl.layout_for(table, clean_schema)
        self.client.command(ddl.create_table_sql(layout))
        existing = {row[0] for row in self.client.query(f"DESCRIBE TABLE `{table}`").result_rows}
        missing = [(n, t) for n, t in layout.columns if n not in existing]
        if missing:  # a new optional field in the schema: a new column, old rows get its default
            self.client.command(ddl.add_columns_sql(layout, missing))
        self.client.command(ddl.current_view_sql(layout))
        self.layouts[(table, schema_id)] = layout
        return layout

    def insert(self, table: str, names: list[str], columns: list[list[Any]]) -> None:
        started = time.perf_counter()
        self.client.insert(table, columns, column_names=names, column_oriented=True)
        metrics.SINK_INSERT_SECONDS.labels(table).observe(time.perf_counter() - started)
        metrics.SINK_BATCH_SIZE.labels(table).observe(len(columns[0]) if columns else 0)


class Sink:
    def __init__(self, settings: Settings, catalog: Catalog | None = None, client: Any = None) -> None:
        self.client = client or connect(settings)  # first: a wrong DSN is a settings mistake
        preflight(settings)
        self.settings = settings
        self.catalog = catalog or catalog_for(settings)
        self.registry = Registry(settings.registry_url)
        self.writer = TableWriter(self.client)
        self.dlq_topics = tuple(named(settings, t) for t in (DLQ_PROCESSOR, DLQ_SINK, DLQ_ADAPTER))
        self.topics = [e.clean_topic for e in self.catalog.entities] + list(self.dlq_topics)
        self.tables = {e.clean_topic: e.table for e in self.catalog.entities}
        self.consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                "group.id": settings.sink_group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "fetch.min.bytes": 1,
                "queued.max.messages.kbytes": 65536,
            }
        )
        self.dlq = kafka.make_producer(settings.kafka_bootstrap, "dead_letters")
        self.sealer = Sealer(settings.dead_letter_secret())
        self.stopping = threading.Event()
        self.stored = 0

    # -- one batch -------------------------------------------------------------------------------
    def _poll_batch(self) -> list[Message]:
        batch: list[Message] = []
        deadline = time.monotonic() + self.settings.sink_batch_seconds
        while len(batch) < self.settings.sink_batch_size and not self.stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for msg in self.consumer.consume(self.settings.sink_batch_size - len(batch), timeout=remaining):
                err = msg.error()
                if err is None:
                    batch.append(msg)
                elif err.code() != KafkaError._PARTITION_EOF:
                    if err.fatal():
                        raise ServiceUnavailable(f"Kafka consumer failed: {err.str()}")
                    metrics.RETRIES.labels(STAGE, "consume").inc()
                    log.warning("consumer error: %s", err.str())
        return batch

    def write_batch(self, batch: list[Message]) -> int:
        """Insert a batch (one insert per table), dead-lettering what cannot be decoded."""
        now = datetime.now(UTC)
        tables: dict[str, tuple[list[str], list[list[Any]]]] = {}
        dead: list[list[Any]] = [[] for _ in range(len(ddl.DEAD_LETTER_COLUMNS))]
        dead_letters_out = []
        for msg in batch:
            topic = msg.topic()
            metrics.EVENTS_IN.labels(STAGE, topic).inc()
            if topic in self.dlq_topics:
                headers = msg.headers()
                origin = header(headers, "source.topic")
                # Headers come from other processes: a malformed one must not stop the sink.
                partition, offset = _int(header(headers, "source.partition")), _int(header(headers, "source.offset"))
                letter_id = header(headers, "source.id") or f"{origin}:{partition}:{offset}:{topic}:{msg.offset()}"
                row = [
                    header(headers, "error.stage"),
                    header(headers, "error.reason"),
                    origin,
                    partition,
                    offset,
                    letter_id,
                    (msg.key() or b"").decode(errors="replace"),
                    msg.value() or b"",
                    _parse_ts(header(headers, "error.ts")) or now,
                    topic,
                    msg.partition(),
                    msg.offset(),
                    now,
                ]
                for column, value in zip(dead, row, strict=True):
                    column.append(value)
                continue
            try:
                schema_id = schema_id_of(msg.value())
                clean_schema, _ = self.registry.schema_by_id(schema_id)
                _, record = decode(self.registry, msg.value())
            except UndecodableMessage as exc:
                raw = RawEvent(topic, msg.partition(), msg.offset(), msg.key(), msg.value())
                dead_letters_out.append(dead_letter(raw, f"undecodable: {exc}", STAGE, self.dlq_topics[1], self.sealer))
                metrics.EVENTS_FAILED.labels(STAGE, topic, "undecodable").inc()
                continue
            table = self.tables[topic]
            layout = self.writer.layout(table, schema_id, clean_schema)
            names, columns = tables.setdefault(table, (layout.names, [[] for _ in layout.names]))
            if names != layout.names:  # the batch spans a schema change: flush what we have first
                self._insert(table, names, columns, now)
                names, columns = layout.names, [[] for _ in layout.names]
                tables[table] = (names, columns)
            record["_topic"], record["_partition"], record["_offset"], record["ts_stored"] = (
                topic,
                msg.partition(),
                msg.offset(),
                now,
            )
            for name, column in zip(names, columns, strict=True):
                column.append(record.get(name))
        for table, (names, columns) in tables.items():
            self._insert(table, names, columns, now)
        if dead[0]:
            self.writer.insert(ddl.DEAD_LETTERS_TABLE, ddl.DEAD_LETTER_COLUMNS, dead)
        for out in dead_letters_out:
            kafka.produce(self.dlq, out.topic, out.value, out.key, out.headers, stage=STAGE)
        if dead_letters_out and self.dlq.flush(30):
            raise ServiceUnavailable("dead letters not acknowledged by Kafka")
        return len(batch)

    def _insert(self, table: str, names: list[str], columns: list[list[Any]], now: datetime) -> None:
        if not columns or not columns[0]:
            return
        # Store unavailable or rejecting: retried (6 attempts in all), then the sink stops without committing.
        try:
            for attempt in retrying("store", stage=STAGE, what="insert"):
                with attempt:
                    self.writer.insert(table, names, columns)
        except Exception as exc:  # noqa: BLE001 - any failure of the last attempt
            raise ServiceUnavailable(f"insert into {table} failed 6 times: {str(exc).splitlines()[0]}") from None
        ts_index = names.index("ts_source")
        freshness = metrics.FRESHNESS.labels(table)
        now_s = now.timestamp()
        for ts in columns[ts_index]:
            freshness.observe(max(0.0, now_s - ts.timestamp()))
        topic = columns[names.index("_topic")][0]
        metrics.EVENTS_OUT.labels(STAGE, topic).inc(len(columns[0]))
        self.stored += len(columns[0])

    def commit(self, batch: list[Message]) -> None:
        offsets: dict[tuple[str, int], int] = {}
        for msg in batch:
            offsets[(msg.topic(), msg.partition())] = msg.offset() + 1
        self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)

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
            metrics.CONSUMER_LAG.labels(STAGE, f"{tp.topic}[{tp.partition}]").set(max(0, high - position))

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> None:
        self.consumer.subscribe(self.topics)
        metrics.UP.labels(STAGE).set(1)
        last_lag = 0.0
        try:
            while not self.stopping.is_set():
                batch = self._poll_batch()
                if batch:
                    self.write_batch(batch)
                    self.commit(batch)
                if time.monotonic() - last_lag > 2:
                    self.report_lag()
                    last_lag = time.monotonic()
        finally:
            metrics.UP.labels(STAGE).set(0)
            self.consumer.close()

    def stop(self) -> None:
        self.stopping.set()


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return -1


def _parse_ts(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def open_sink(settings: Settings) -> Sink:
    return Sink(settings, catalog_for(settings))
