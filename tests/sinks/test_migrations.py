"""Store migrations on the embedded engine (chDB): every table and view of the catalog from nothing,
recorded and not applied twice; a store made by the earlier layout (change log sorted by event_id,
_current a view over history) moved forward without losing a row; the change log's sorting and
partitions at work (EXPLAIN indexes = 1); the data dictionary from the Avro docs; the KPI tables and
the public views over them."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import clickhouse_connect
import pytest

from backbone.settings import PROJECT_ROOT, load_settings
from contract.catalog import load_catalog
from contract.kpis import load_kpis, value_schema
from sinks import ddl, migrations
from sinks.public_views import KPI_PUBLIC_VIEWS
from sinks.table_writer import TableWriter
from tests.sinks.test_ddl import CLEAN, PAYLOAD, T0, TABLE, insert, record

CATALOG = load_catalog(PROJECT_ROOT / "catalog", PROJECT_ROOT / "schemas")


@pytest.fixture
def client(tmp_path):
    c = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path}/ch")
    yield c
    c.close()


def tables(client) -> dict[str, str]:
    sql = "SELECT name, engine FROM system.tables WHERE database = currentDatabase()"
    return dict(client.query(sql).result_rows)


def test_migrate_creates_every_table_and_view_and_a_second_run_does_nothing(client):
    applied = migrations.migrate(client, CATALOG)
    engines = tables(client)
    for entity in CATALOG.entities:
        assert engines[entity.table] == "ReplacingMergeTree"
        assert engines[entity.table + "_state"] == "ReplacingMergeTree"
        assert engines[entity.table + "_current"] == "View"
    for name in ("dead_letters", "ref_regions", "ref_departments", "schema_migrations"):
        assert engines[name] == "ReplacingMergeTree"
    for name in ("dead_letters_masked", "dim_kecamatan", "dim_village", "dim_department"):
        assert engines[name] == "View"
    assert "change log licensing_permit_application" in applied
    assert "current state licensing_permit_application_state" in applied
    recorded = client.query("SELECT count() FROM schema_migrations FINAL").result_rows[0][0]
    assert recorded == len(applied)

    created = client.query("SELECT name, metadata_modification_time FROM system.tables").result_rows
    assert migrations.migrate(client, CATALOG) == []
    assert client.query("SELECT count() FROM schema_migrations FINAL").result_rows[0][0] == recorded
    assert client.query("SELECT name, metadata_modification_time FROM system.tables").result_rows == created


def test_every_kpi_table_and_the_public_views_over_them_are_made_once(client):
    """Step 10: the KPI tables exist before the stream's first KPI message (the public views over them
    need them), with the columns the sink would make from the topic's schema; a second run applies
    nothing."""
    kpis = load_kpis(PROJECT_ROOT / "kpis", CATALOG)
    applied = migrations.migrate(client, CATALOG)
    engines = tables(client)
    for kpi in kpis:
        assert engines[kpi.table] == "ReplacingMergeTree", kpi.table
        assert f"kpi table {kpi.table}" in applied
        columns = [row[0] for row in client.query(f"DESCRIBE TABLE {kpi.table}").result_rows]
        assert columns == [f["name"] for f in value_schema(kpi)["fields"]] + ["ts_stored"]
    assert KPI_PUBLIC_VIEWS
    for kpi_table, view in KPI_PUBLIC_VIEWS:
        assert kpi_table in engines and engines[view.name] == "View"
        assert f"public view {view.name} revision {view.revision}" in applied
        assert client.query(f"SELECT count() FROM {view.name}").result_rows == [(0,)]  # no KPI message yet
    assert migrations.migrate(client, CATALOG) == []


def test_kpi_public_views_need_their_kpi_table(client, tmp_path):
    """Without KPI declarations there is no KPI table, and no view over one."""
    applied = migrations.migrate(client, CATALOG, kpi_dir=tmp_path / "no-kpis")
    assert not [a for a in applied if a.startswith("kpi table")]
    assert not {view.name for _, view in KPI_PUBLIC_VIEWS} & set(tables(client))


def test_a_new_entity_gets_its_tables_at_the_next_run(client):
    licensing = load_catalog(PROJECT_ROOT / "catalog", PROJECT_ROOT / "schemas")
    licensing.systems = [s for s in licensing.systems if s.domain == "licensing"]
    migrations.migrate(client, licensing)
    assert "health_visit" not in tables(client)
    applied = migrations.migrate(client, CATALOG)
    assert "change log health_visit" in applied and "change log licensing_permit_application" not in applied
    assert tables(client)["health_visit_state"] == "ReplacingMergeTree"


# What the earlier code made: the change log sorted by event_id, _current a view over the history.
OLD_CHANGE_LOG = """CREATE TABLE `{t}` ({columns}) ENGINE = ReplacingMergeTree(ts_stored)
PARTITION BY toYYYYMM(ts_source) ORDER BY event_id"""
OLD_CURRENT = """CREATE OR REPLACE VIEW `{t}_current` AS SELECT * FROM (
    SELECT * FROM `{t}` FINAL ORDER BY entity_key, ts_source DESC, source_position DESC LIMIT 1 BY entity_key
) WHERE NOT is_deleted"""


def test_a_store_of_the_earlier_layout_is_migrated_without_losing_a_row(client):
    layout = ddl.layout_for(TABLE, CLEAN)
    client.command(OLD_CHANGE_LOG.format(t=TABLE, columns=", ".join(f"`{n}` {t}" for n, t in layout.columns)))
    client.command(OLD_CURRENT.format(t=TABLE))
    rows = [record(f"M-{i}", "c", i, T0 - timedelta(days=40 * i)) for i in range(30)]  # across 3 years
    rows += [record("M-1", "u", 100, T0 + timedelta(days=1), status="VERIFIED"), record("M-2", "d", 101, T0)]
    rows.append(rows[0])  # a duplicate delivery: one row under FINAL
    names = layout.names
    values = [{**r, "_topic": "t", "_partition": 0, "_offset": i, "ts_stored": T0} for i, r in enumerate(rows)]
    client.insert(TABLE, [[v.get(n) for n in names] for v in values], column_names=names)
    before = client.query(f"SELECT count() FROM {TABLE}").result_rows
    before_final = client.query(f"SELECT count() FROM {TABLE} FINAL").result_rows
    current_before = client.query(f"SELECT entity_key, status FROM {TABLE}_current ORDER BY entity_key").result_rows

    applied = migrations.migrate(client, CATALOG)

    assert f"change log {TABLE}" in applied and f"current state {TABLE}_state" in applied
    sorting = "SELECT sorting_key FROM system.tables WHERE name = {t:String}"
    assert client.query(sorting, parameters={"t": TABLE}).result_rows == [("entity_key, event_id",)]
    assert client.query(f"SELECT count() FROM {TABLE}").result_rows == before
    assert client.query(f"SELECT count() FROM {TABLE} FINAL").result_rows == before_final == [(32,)]
    current = client.query(f"SELECT entity_key, status FROM {TABLE}_current ORDER BY entity_key").result_rows
    assert current == current_before and ("M-1", "VERIFIED") in current and len(current) == 29
    assert client.query(f"SELECT count() FROM {TABLE}_state FINAL").result_rows == [(29,)]
    assert f"{TABLE}__rebuild" not in tables(client)
    # From now on the sink feeds the state table: a later change of a migrated entity wins.
    writer = TableWriter(client)
    insert(writer, 1, CLEAN, [record("M-1", "u", 200, T0 + timedelta(days=2), status="REJECTED")])
    assert client.query(f"SELECT status FROM {TABLE}_current WHERE entity_key = 'M-1'").result_rows == [("REJECTED",)]
    assert migrations.migrate(client, CATALOG) == []


def explain(client, sql: str) -> str:
    return "\n".join(row[0] for row in client.query(f"EXPLAIN indexes = 1 {sql}").result_rows)


def granules(plan: str) -> tuple[int, int]:
    """(granules read, granules in the table) in an EXPLAIN indexes = 1 plan: the first index step
    starts from every granule, the last one leaves those read."""
    counts = [line.split(":")[1].strip().split("/") for line in plan.splitlines() if "Granules:" in line]
    return int(counts[-1][0]), int(counts[1][1])


def test_a_filter_on_entity_key_or_on_time_reads_a_small_part_of_the_change_log(client):
    migrations.migrate(client, CATALOG)
    # 600,000 changes of 30,000 permits over six months, generated in the engine.
    client.command(
        f"INSERT INTO {TABLE} (event_id, op, entity_key, source_position, ts_source, fee, investment_value) "
        "SELECT hex(MD5(toString(number))), 'u', concat('P-', toString(number % 30000)), toString(number), "
        "toDateTime64('2025-01-01 00:00:00', 3, 'UTC') + toIntervalSecond(number * 26), 0, 0 "
        "FROM numbers(600000)",
        settings={"max_partitions_per_insert_block": 0},
    )
    client.command(f"OPTIMIZE TABLE {TABLE} FINAL")
    by_key = explain(client, f"SELECT * FROM {TABLE} WHERE entity_key = 'P-17'")
    selected, total = granules(by_key)
    assert selected <= 7 and selected * 10 <= total  # about one granule per monthly partition
    by_time = explain(
        client, f"SELECT count() FROM {TABLE} WHERE ts_source >= '2025-03-01' AND ts_source < '2025-04-01'"
    )
    selected, total = granules(by_time)
    assert selected * 5 <= total  # one month of six


def test_columns_and_tables_carry_the_avro_docs(client):
    migrations.migrate(client, CATALOG)
    comments = dict(
        client.query(
            "SELECT name, comment FROM system.columns WHERE table = {t:String}", parameters={"t": TABLE}
        ).result_rows
    )
    docs = {f["name"]: f["doc"] for f in PAYLOAD["fields"] if f.get("doc") and not f.get("pii")}
    assert docs and all(comments[name] == doc for name, doc in docs.items())
    assert comments["applicant_nik"] == "Pseudonymised (keyed hash) personal data."
    assert comments["kecamatan_name"] == "kecamatan name of village_code, from ref.regions."
    assert comments["event_id"] == ddl.STANDARD_DOCS["event_id"]
    table_comments = dict(client.query("SELECT name, comment FROM system.tables").result_rows)
    assert PAYLOAD["doc"] in table_comments[TABLE] and table_comments[TABLE].startswith("Change log")
    assert PAYLOAD["doc"] in table_comments[f"{TABLE}_state"]
    state_comments = dict(
        client.query(
            "SELECT name, comment FROM system.columns WHERE table = {t:String}", parameters={"t": f"{TABLE}_state"}
        ).result_rows
    )
    assert state_comments["version"] == ddl.STANDARD_DOCS["version"] and state_comments["fee"] == docs["fee"]


def test_a_changed_doc_updates_the_comment(client):
    writer = TableWriter(client)
    writer.layout(TABLE, 1, CLEAN)
    changed = {
        **CLEAN,
        "fields": [{**f, "doc": "Retribution, Rupiah."} if f["name"] == "fee" else f for f in CLEAN["fields"]],
    }
    writer.layout(TABLE, 2, changed)
    for table in (TABLE, f"{TABLE}_state"):
        sql = "SELECT comment FROM system.columns WHERE table = {t:String} AND name = 'fee'"
        assert client.query(sql, parameters={"t": table}).result_rows == [("Retribution, Rupiah.",)]


def test_backbone_init_migrates_the_store_once_and_leaves_a_store_held_by_the_sink_to_it(tmp_path):
    settings = load_settings(run_dir=tmp_path / "run")
    assert migrations.migrate_store(settings).startswith("store migrations applied: ")
    assert migrations.migrate_store(settings) == "store up to date"
    # The running sink holds an embedded store (one process per folder): init says so and goes on.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_STORE, settings.effective_clickhouse_dsn],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        message = migrations.migrate_store(settings)
        assert message.startswith("store not migrated now") and "the sink migrates it when it starts" in message
    finally:
        holder.communicate("", timeout=60)


HOLD_STORE = """
import sys, clickhouse_connect
client = clickhouse_connect.get_client(dsn=sys.argv[1])
client.query("SELECT 1")
print("open", flush=True)
sys.stdin.read()
"""
