"""Avro -> ClickHouse types, and TableWriter on the embedded engine (chDB): create, insert, dedupe, evolve."""

from __future__ import annotations

import copy
import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import clickhouse_connect
import pytest

from backbone.settings import PROJECT_ROOT
from contract.reference import load_regions, villages
from contract.rules import PayloadRules, clean_event, event_id
from simulators.licensing import LicensingOffice
from sinks import ddl
from sinks.table_writer import TableWriter

PAYLOAD = json.loads((PROJECT_ROOT / "schemas" / "licensing" / "permit_application.avsc").read_text())
CLEAN = PayloadRules.from_schema(PAYLOAD).clean_schema()
RULES = PayloadRules.from_schema(PAYLOAD)
REGIONS = load_regions(PROJECT_ROOT / "data" / "bojonegoro_regions.csv")
TABLE = "licensing_permit_application"
ENUM = {"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN"]}
T0 = datetime(2025, 3, 3, 2, 0, tzinfo=UTC)

TYPES = [
    ({"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 2}, "Decimal(18, 2)"),
    (["null", {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 0}], "Nullable(Decimal(9, 0))"),
    ({"type": "long", "logicalType": "timestamp-millis"}, "DateTime64(3, 'UTC')"),
    (["null", {"type": "long", "logicalType": "timestamp-millis"}], "Nullable(DateTime64(3, 'UTC'))"),
    (ENUM, "LowCardinality(String)"),
    (["null", "string"], "Nullable(String)"),
    (["null", ENUM], "LowCardinality(Nullable(String))"),
    ({"type": "array", "items": {"type": "array", "items": "long"}}, "Array(Array(Int64))"),
    (["null", {"type": "array", "items": "int"}], "Array(Int32)"),
    ({"type": "map", "values": "double"}, "Map(String, Float64)"),
    ({"type": "int", "logicalType": "date"}, "Date32"),
    ("boolean", "Bool"),
    ("long", "Int64"),
    ("string", "String"),
]


@pytest.fixture
def client(tmp_path):
    c = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path}/ch")
    yield c
    c.close()


@pytest.mark.parametrize(("avro", "expected"), TYPES, ids=[t for _, t in TYPES])
def test_avro_to_clickhouse_type(avro, expected):
    assert ddl.clickhouse_type(avro) == expected


def test_mapped_types_are_accepted_by_clickhouse(client):
    cols = ", ".join(f"c{i} {expected}" for i, (_, expected) in enumerate(TYPES))
    client.command(f"CREATE TABLE types ({cols}) ENGINE = Memory")
    described = [row[1] for row in client.query("DESCRIBE TABLE types").result_rows]
    assert described == [expected for _, expected in TYPES]


@pytest.mark.parametrize(
    ("avro", "expected"),
    [
        ({"type": "array", "items": ["null", "string"]}, "Array(Nullable(String))"),
        ({"type": "map", "values": ["null", "long"]}, "Map(String, Nullable(Int64))"),
    ],
)
def test_array_and_map_of_nullable_values(avro, expected):
    assert ddl.clickhouse_type(avro) == expected


def test_layout_of_the_licensing_clean_schema():
    layout = ddl.layout_for(TABLE, CLEAN)
    types = dict(layout.columns)
    assert layout.names == [f["name"] for f in CLEAN["fields"]] + [n for n, _ in ddl.INGEST_COLUMNS]
    assert types["fee"] == "Decimal(18, 2)"
    assert types["permit_type"] == types["status"] == "LowCardinality(String)"
    assert types["applicant_phone"] == types["village_name"] == "Nullable(String)"
    assert types["decided_at"] == "Nullable(DateTime64(3, 'UTC'))"
    assert types["is_deleted"] == "Bool" and types["ts_source"] == "DateTime64(3, 'UTC')"


# -- TableWriter on chDB -------------------------------------------------------------------------

BASE = next(LicensingOffice(villages(REGIONS), seed=1).changes()).after


def record(key: str, op: str, position: int, ts: datetime, **state: Any) -> dict[str, Any]:
    """A clean record as the processor makes it."""
    body = {**BASE, "application_id": key, **state}
    pos = f"{position:012d}"
    event = {
        "event_id": event_id("sim-licensing", "permit_application", key, pos),
        "op": op,
        "key": key,
        "before": body if op == "d" else ({**BASE, "application_id": key} if op == "u" else None),
        "after": None if op == "d" else body,
        "source": {"system": "sim-licensing", "department": "DPMPTSP", "entity": "permit_application", "position": pos},
        "ts_source": ts,
        "ts_emitted": ts,
        "payload_version": 1,
    }
    return clean_event(event, RULES, REGIONS, b"k", ("application_id",))


def insert(writer: TableWriter, schema_id: int, schema: dict[str, Any], records: list[dict[str, Any]]) -> None:
    layout = writer.layout(TABLE, schema_id, schema)
    offsets = itertools.count()
    rows = [
        {
            **r,
            "_topic": "clean.licensing.permit_application",
            "_partition": 0,
            "_offset": next(offsets),
            "ts_stored": datetime.now(UTC),
        }
        for r in records
    ]
    columns = [[row.get(n) for row in rows] for n in layout.names]
    writer.insert(TABLE, layout.names, columns)
    writer.insert_state(TABLE, layout.names, columns, "simulator")  # as the sink does, same batch


def test_table_writer_creates_the_table_from_the_clean_schema(client):
    writer = TableWriter(client)
    layout = writer.layout(TABLE, 1, CLEAN)
    described = [(r[0], r[1]) for r in client.query(f"DESCRIBE TABLE {TABLE}").result_rows]
    assert described == layout.columns
    sql = "SELECT name, engine FROM system.tables WHERE database = currentDatabase()"
    engines = dict(client.query(sql).result_rows)
    assert engines[TABLE] == "ReplacingMergeTree"
    assert engines[f"{TABLE}_current"] == "View" and engines["dead_letters"] == "ReplacingMergeTree"


def test_inserted_rows_read_back(client):
    writer = TableWriter(client)
    rows = [record(f"A-{i}", "c", i, T0 + timedelta(minutes=i)) for i in range(5)]
    insert(writer, 1, CLEAN, rows)
    got = client.query(f"SELECT entity_key, fee, village_name, status FROM {TABLE} ORDER BY entity_key").result_rows
    assert got == [(r["entity_key"], r["fee"], r["village_name"], r["status"]) for r in rows]


def test_current_view_shows_latest_non_deleted_state(client):
    writer = TableWriter(client)
    t = [T0 + timedelta(minutes=m) for m in range(4)]
    rows = [
        record("A", "c", 1, t[0]),
        record("A", "u", 5, t[2], status="VERIFIED"),
        record("B", "c", 2, t[0]),
        record("B", "d", 6, t[3]),
        record("C", "c", 3, t[1]),
        record("D", "c", 4, t[1]),
        record("D", "u", 7, t[1], status="REJECTED"),  # same ts: position decides
    ]
    insert(writer, 1, CLEAN, list(reversed(rows)))
    got = client.query(f"SELECT entity_key, status FROM {TABLE}_current ORDER BY entity_key").result_rows
    assert got == [("A", "VERIFIED"), ("C", "SUBMITTED"), ("D", "REJECTED")]


def test_same_event_id_twice_shows_once_under_final(client):
    writer = TableWriter(client)
    rows = [record(f"K-{i}", "c", i, T0) for i in range(4)]
    insert(writer, 1, CLEAN, rows)
    insert(writer, 1, CLEAN, rows)  # a replay after a crash
    assert client.query(f"SELECT count() FROM {TABLE}").result_rows == [(8,)]
    assert client.query(f"SELECT count(), uniqExact(event_id) FROM {TABLE} FINAL").result_rows == [(4, 4)]


def evolved(field: dict[str, Any]) -> dict[str, Any]:
    schema = copy.deepcopy(CLEAN)
    schema["fields"].append(field)
    return schema


def test_added_optional_field_adds_a_column_and_old_rows_read_null(client):
    writer = TableWriter(client)
    insert(writer, 1, CLEAN, [record("OLD", "c", 1, T0)])
    v2 = evolved({"name": "permit_number", "type": ["null", "string"], "default": None})
    insert(writer, 2, v2, [{**record("NEW", "c", 2, T0), "permit_number": "503/17/2025"}])
    described = dict((r[0], r[1]) for r in client.query(f"DESCRIBE TABLE {TABLE}").result_rows)
    assert described["permit_number"] == "Nullable(String)"
    got = client.query(f"SELECT entity_key, permit_number FROM {TABLE} ORDER BY entity_key").result_rows
    assert got == [("NEW", "503/17/2025"), ("OLD", None)]


def test_added_field_with_default_old_rows_read_the_avro_default(client):
    writer = TableWriter(client)
    insert(writer, 1, CLEAN, [record("OLD", "c", 1, T0)])
    writer.layout(TABLE, 2, evolved({"name": "channel", "type": "string", "default": "counter"}))
    assert client.query(f"SELECT channel FROM {TABLE}").result_rows == [("counter",)]


def test_current_view_exposes_an_added_column(client):
    writer = TableWriter(client)
    insert(writer, 1, CLEAN, [record("OLD", "c", 1, T0)])
    v2 = evolved({"name": "permit_number", "type": ["null", "string"], "default": None})
    insert(writer, 2, v2, [{**record("NEW", "c", 2, T0), "permit_number": "503/17/2025"}])
    got = client.query(f"SELECT entity_key, permit_number FROM {TABLE}_current ORDER BY entity_key").result_rows
    assert got == [("NEW", "503/17/2025"), ("OLD", None)]
