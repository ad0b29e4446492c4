"""KPI tables in the embedded ClickHouse engine: made from the KPI's Avro schema, the row with the
highest version is the current one, and a later field becomes a column."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal

import clickhouse_connect
import pytest

from backbone.settings import PROJECT_ROOT
from contract.catalog import load_catalog
from contract.kpis import load_kpis, value_schema
from sinks.kpi_tables import column_type, table_sql

KPIS = {
    k.qualified: k
    for k in load_kpis(PROJECT_ROOT / "kpis", load_catalog(PROJECT_ROOT / "catalog", PROJECT_ROOT / "schemas"))
}


@pytest.fixture
def client(tmp_path):
    c = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path}/ch")
    yield c
    c.close()


def test_column_types() -> None:
    assert column_type(["null", "string"]) == "Nullable(String)"
    assert (
        column_type(["null", {"type": "long", "logicalType": "timestamp-millis"}]) == "Nullable(DateTime64(3, 'UTC'))"
    )
    assert column_type({"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 2}) == "Decimal(38, 2)"


def test_the_highest_version_is_the_current_row(client) -> None:
    kpi = KPIS["licensing.approved_fees"]
    schema = value_schema(kpi)
    for statement in table_sql(kpi.table, schema):
        client.command(statement)
    names = [f["name"] for f in schema["fields"]] + ["ts_stored"]
    now = datetime.now(UTC)
    day = datetime(2026, 11, 5, 17, tzinfo=UTC)
    old = ['["NIB",1]', "NIB", day, day, 2, Decimal("200.00"), 7, now, now]
    new = ['["NIB",1]', "NIB", day, day, 1, Decimal("100.50"), 9, now, now]
    client.insert(kpi.table, [new], column_names=names)
    client.insert(kpi.table, [old], column_names=names)  # arrives later, but an older version
    assert client.query(f"SELECT count, sum FROM {kpi.table} FINAL").result_rows == [(1, Decimal("100.50"))]
    comment = client.query(f"SELECT comment FROM system.tables WHERE name = '{kpi.table}'").result_rows[0][0]
    assert comment == kpi.spec.title


def test_a_new_field_becomes_a_column(client) -> None:
    kpi = KPIS["licensing.permits_by_status"]
    schema = value_schema(kpi)
    for statement in table_sql(kpi.table, schema):
        client.command(statement)
    evolved = copy.deepcopy(schema)
    evolved["fields"].insert(-2, {"name": "office", "type": ["null", "string"], "default": None})
    for statement in table_sql(kpi.table, evolved):
        client.command(statement)
    columns = [row[0] for row in client.query(f"DESCRIBE TABLE {kpi.table}").result_rows]
    assert "office" in columns
