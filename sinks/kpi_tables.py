"""KPI tables: each kpi.<domain>.<name> topic stored as kpi_<domain>_<name>, one row per group and
window, `ReplacingMergeTree(version)` ordered by the group key: with FINAL (or after merges) the
row with the highest update sequence is the KPI's current value. Columns come from the topic's
Avro schema (contract/kpis.py value_schema), with the KPI's title as the table comment."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Message

from backbone import metrics
from backbone.settings import Settings
from contract.catalog import Catalog
from contract.codec import Registry, UndecodableMessage, decode, schema_id_of
from contract.deadletter import Output
from contract.kpis import kpis_for

log = logging.getLogger(__name__)
STAGE = "sink"
DeadLetter = Callable[[Message, str, str], Output]


def column_type(avro_type: Any) -> str:
    """The ClickHouse type of a KPI value field (the few types value_schema uses)."""
    if isinstance(avro_type, list):
        inner = [t for t in avro_type if t != "null"]
        return f"Nullable({column_type(inner[0])})"
    if isinstance(avro_type, dict):
        if avro_type.get("logicalType") == "timestamp-millis":
            return "DateTime64(3, 'UTC')"
        if avro_type.get("logicalType") == "decimal":
            return f"Decimal({avro_type['precision']}, {avro_type['scale']})"
        return column_type(avro_type["type"])
    return {"string": "String", "long": "Int64", "int": "Int32", "double": "Float64", "boolean": "Bool"}[avro_type]


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def table_sql(table: str, schema: dict[str, Any]) -> list[str]:
    """CREATE TABLE for a KPI schema, then one ADD COLUMN per field (a field added to the schema
    later becomes a column; existing ones are left alone)."""
    columns = []
    for f in schema["fields"]:
        comment = f" COMMENT {_quote(f['doc'])}" if f.get("doc") else ""
        columns.append((f["name"], column_type(f["type"]), comment))
    columns.append(("ts_stored", "DateTime64(3, 'UTC')", " COMMENT 'When the sink stored the row.'"))
    body = ",\n  ".join(f"`{n}` {t}{c}" for n, t, c in columns)
    statements = [
        f"CREATE TABLE IF NOT EXISTS `{table}` (\n  {body}\n) ENGINE = ReplacingMergeTree(version)\n"
        f"ORDER BY group_key\nCOMMENT {_quote(schema.get('doc') or table)}"
    ]
    statements += [f"ALTER TABLE `{table}` ADD COLUMN IF NOT EXISTS `{n}` {t}{c}" for n, t, c in columns]
    return statements


class KpiTables:
    """Collects the KPI messages of a sink batch and stores them, one insert per table."""

    def __init__(self, client: Any, registry: Registry, settings: Settings, catalog: Catalog) -> None:
        self.client = client
        self.registry = registry
        self.tables = {k.topic: k.table for k in kpis_for(settings, catalog)}
        self.topics = list(self.tables)
        self.ready: dict[tuple[str, int], list[str]] = {}  # (table, schema id) -> column names
        self.batch: list[Message] = []

    def take(self, msg: Message) -> bool:
        """Keep a message of a KPI topic for `flush`; False for any other topic."""
        if msg.topic() not in self.tables:
            return False
        self.batch.append(msg)
        return True

    def _columns(self, table: str, schema_id: int) -> list[str]:
        names = self.ready.get((table, schema_id))
        if names is None:
            schema, _ = self.registry.schema_by_id(schema_id)
            for statement in table_sql(table, schema):
                self.client.command(statement)
            names = self.ready[(table, schema_id)] = [f["name"] for f in schema["fields"]] + ["ts_stored"]
        return names

    def flush(self, dead_letter: DeadLetter) -> list[Output]:
        """Insert what `take` kept; returns the dead letters of messages that cannot be stored."""
        batch, self.batch = self.batch, []
        now = datetime.now(UTC)
        rows: dict[tuple[str, int], list[list[Any]]] = {}
        letters: list[Output] = []
        for msg in batch:
            try:
                schema_id = schema_id_of(msg.value())
                _, record = decode(self.registry, msg.value())
            except UndecodableMessage as exc:
                letters.append(dead_letter(msg, f"undecodable: {exc}", "undecodable"))
                continue
            table = self.tables[msg.topic()]
            record["ts_stored"] = now
            rows.setdefault((table, schema_id), []).append([record.get(n) for n in self._columns(table, schema_id)])
        for (table, schema_id), values in rows.items():
            self.client.insert(table, values, column_names=self.ready[(table, schema_id)])
            metrics.EVENTS_OUT.labels(STAGE, table).inc(len(values))
        return letters
