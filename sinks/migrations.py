"""The store's layout, made by versioned, idempotent migrations: `backbone init` and the sink at its
start run the same `migrate`, which applies what `schema_migrations` does not list yet and records it.

Migrations (a catalog entity's are applied, and recorded, per table; a new entity gets them at the
next run):
  1  dead letters          the dead_letters table and its masked view
  2  reference dimensions  ref_regions, ref_departments and the dim_* views
  3  change log            <table> sorted by (entity_key, event_id); a table of an earlier store
                           (sorted by event_id) is copied into the new layout and swapped in
  4  current state         <table>_state (one row per entity), filled from the change log's latest
                           rows, and <table>_current made a view over it (it was a view over history)
  5  ready views           ready_* per domain (recorded with their revision: a new revision replaces)
  6  quality scorecard     dq_daily_counts, a counting view per change log, the dq_* views
                           (sinks/quality_views.py; recorded with a digest of their SQL)
  7  public views          public_* for the open-data portal and the `public` role (sinks/public_views.py)
  8  data-quality flags    dq_flags Array(LowCardinality(String)) in every change log and state
                           table, `rule` in dead_letters (ALTER ADD COLUMN; old rows: [] and '')
  9  reconciliation        the table of censuses compared with the store (sinks/reconciliation.py)
 10  KPI tables            kpi_<domain>_<name> of every declared KPI (kpis/), from its topic's value
                           schema (the sink would make them at the first KPI message: public views
                           over them need them before), then the public views over KPI tables
What follows the schemas is brought up to date at every run, doing nothing when nothing changed:
columns of a new optional field, column comments from the Avro `doc`, the _current view's columns."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from clickhouse_connect.driver.exceptions import DatabaseError

from backbone.errors import ServiceUnavailable
from backbone.settings import PROJECT_ROOT, Settings
from contract.catalog import Catalog, Entity, catalog_for
from contract.kpis import load_kpis, value_schema
from contract.rules import PayloadRules
from contract.workdays import load_calendar
from sinks import ddl, dimensions, quality_views, reconciliation
from sinks.kpi_tables import table_sql
from sinks.public_views import KPI_PUBLIC_VIEWS, public_views
from sinks.ready_views import READY_VIEWS
from sinks.store import connect

log = logging.getLogger(__name__)

MIGRATIONS_TABLE = "schema_migrations"
MIGRATIONS_DDL = f"""
CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
    version UInt32 COMMENT 'Number of the migration (see sinks/migrations.py).',
    name String COMMENT 'What it did, and to which table or view.',
    applied_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree ORDER BY (version, name)
COMMENT 'Migrations applied to this store.'
"""
# An INSERT ... SELECT of a long history writes one part per month it spans.
COPY_SETTINGS = {"max_partitions_per_insert_block": 0}
REBUILD_SUFFIX = "__rebuild"


def ensure_dead_letters(client: Any, retention_days: int) -> None:
    """dead_letters as today's layout has it, from any earlier store; its retention follows the setting."""
    client.command(ddl.dead_letters_ddl(retention_days))
    columns = {row[0] for row in client.query(f"DESCRIBE TABLE {ddl.DEAD_LETTERS_TABLE}").result_rows}
    if "letter_id" not in columns:
        client.command(ddl.DEAD_LETTERS_ADD_LETTER_ID)
    if "rule" not in columns:  # migration 8 (the masked view below shows it)
        client.command(ddl.DEAD_LETTERS_ADD_RULE)
    # Only when it differs: a MODIFY TTL rewrites the table's parts.
    engine = _scalar(client, "SELECT engine_full FROM system.tables WHERE {where}", ddl.DEAD_LETTERS_TABLE)
    if f"TTL {ddl.dead_letters_ttl(retention_days)} " not in f"{engine} ":
        client.command(ddl.dead_letters_modify_ttl(retention_days))
    masked = [c for c in ddl.DEAD_LETTER_COLUMNS if c not in ("key", "value")]
    if list(_columns(client, ddl.DEAD_LETTERS_MASKED_VIEW)) != masked:
        client.command(ddl.DEAD_LETTERS_MASKED_DDL)


def entity_layout(entity: Entity) -> ddl.TableLayout:
    payload = entity.payload_schema()
    return ddl.layout_for(entity.table, PayloadRules.from_schema(payload).clean_schema(), payload.get("doc", ""))


def adapter_kinds(catalog: Catalog) -> dict[str, str]:
    """table -> the kind of adapter that captures it (what its versions are made from)."""
    return {e.table: str(s.adapter.get("kind", "simulator")) for s in catalog.systems for e in s.entities}


def ensure_entity_tables(client: Any, layout: ddl.TableLayout) -> dict[str, str]:
    """The change log, the state table and the _current view of one entity, up to date with `layout`
    (new columns, comments); returns the change log's column types."""
    client.command(ddl.create_table_sql(layout))
    client.command(ddl.create_state_table_sql(layout))
    for table, columns in ((layout.name, layout.columns), (layout.state_table, layout.state_columns)):
        stored = _columns(client, table)
        missing = [(n, t) for n, t in columns if n not in stored]
        if missing:  # a new optional field in the schema: a new column, old rows get its default
            client.command(ddl.add_columns_sql(layout, missing, table))
        stale = {n: c for n, c in layout.comments.items() if n in stored and stored[n][1] != c}
        if stale:  # a doc string changed
            client.command(ddl.comment_columns_sql(table, stale))
    if list(_columns(client, layout.current_view)) != list(_columns(client, layout.state_table)):
        client.command(ddl.current_view_sql(layout))
    return {n: t for n, (t, _) in _columns(client, layout.name).items()}


def migrate(
    client: Any,
    catalog: Catalog,
    retention_days: int = 28,
    holidays: frozenset[date] | None = None,
    kpi_dir: Path | None = None,
) -> list[str]:
    """Apply what is missing; returns what was applied (empty: the store was up to date). `holidays`:
    the working-day calendar's days off (default: data/holidays_id.csv); `kpi_dir`: the KPI
    declarations (default: kpis/)."""
    if holidays is None:
        holidays = load_calendar(PROJECT_ROOT / "data" / "holidays_id.csv").days_off
    client.command(MIGRATIONS_DDL)
    done = {(v, n) for v, n in client.query(f"SELECT version, name FROM {MIGRATIONS_TABLE}").result_rows}
    applied: list[str] = []

    def step(version: int, name: str, apply: Any) -> None:
        if (version, name) in done:
            return
        apply()
        client.insert(
            MIGRATIONS_TABLE, [[version, name, datetime.now(UTC)]], column_names=["version", "name", "applied_at"]
        )
        done.add((version, name))
        applied.append(name)
        log.warning("store migration %d applied: %s", version, name)

    ensure_dead_letters(client, retention_days)
    step(1, "dead letters", lambda: None)  # made above: its retention follows the setting at every start
    step(8, "dead letter rule", lambda: client.command(ddl.DEAD_LETTERS_ADD_RULE))
    step(9, "reconciliation", lambda: client.command(reconciliation.DDL))  # for `backbone init` and readers
    step(2, "reference dimensions", lambda: _dimensions(client))
    step(2, "holiday calendar", lambda: client.command(dimensions.HOLIDAYS_DDL))
    dimensions.sync_holidays(client, holidays)  # the file may gain a year: kept equal at every run
    kinds = adapter_kinds(catalog)
    for entity in catalog.entities:
        layout = entity_layout(entity)
        step(3, f"change log {layout.name}", lambda it=layout: _change_log(client, it))
        step(4, f"current state {layout.state_table}", lambda it=layout: _state(client, it, kinds[it.name]))
        step(8, f"dq flags {layout.name}", lambda it=layout: _dq_flags(client, it))
        ensure_entity_tables(client, layout)
    tables = {e.table for e in catalog.entities}
    for view in READY_VIEWS:
        if view.tables <= tables:
            step(5, f"ready view {view.name} revision {view.revision}", lambda v=view: client.command(v.sql))
    quality_views.migrate(client, catalog, step)  # 6: the data-quality scorecard
    for view in public_views(catalog):
        if view.tables <= tables:
            step(7, f"public view {view.name} revision {view.revision}", lambda v=view: client.command(v.sql))
    kpi_tables: set[str] = set()
    for kpi in load_kpis(PROJECT_ROOT / "kpis" if kpi_dir is None else kpi_dir, catalog):
        step(10, f"kpi table {kpi.table}", lambda k=kpi: _kpi_table(client, k.table, value_schema(k)))
        kpi_tables.add(kpi.table)
    for kpi_table, view in KPI_PUBLIC_VIEWS:
        if kpi_table in kpi_tables and view.tables <= tables:
            step(10, f"public view {view.name} revision {view.revision}", lambda v=view: client.command(v.sql))
    return applied


def _kpi_table(client: Any, table: str, schema: dict[str, Any]) -> None:
    for statement in table_sql(table, schema):
        client.command(statement)


def _dq_flags(client: Any, layout: ddl.TableLayout) -> None:
    """The failed flag rules of each record, in the change log and the state table of a store made
    before them (old rows read [])."""
    column = [(ddl.DQ_FLAGS, ddl.DQ_FLAGS_TYPE)]
    for table in (layout.name, layout.state_table):
        client.command(ddl.add_columns_sql(layout, column, table))


def _dimensions(client: Any) -> None:
    client.command(dimensions.REGIONS_DDL)
    client.command(dimensions.DEPARTMENTS_DDL)
    for sql in dimensions.DIMENSION_VIEWS.values():
        client.command(sql)


def _change_log(client: Any, layout: ddl.TableLayout) -> None:
    """Create the change log, or move an earlier store's (sorted by event_id) to the new sorting key:
    copy every row into a table of the new layout, check the count, swap the two atomically, drop the
    old. A crash anywhere leaves every row in `<table>` (the copy is dropped and redone next time)."""
    rebuild = layout.name + REBUILD_SUFFIX
    client.command(f"DROP TABLE IF EXISTS `{rebuild}`")
    sorting = _scalar(client, "SELECT sorting_key FROM system.tables WHERE {where}", layout.name)
    if sorting is None:
        client.command(ddl.create_table_sql(layout))
        return
    if sorting.replace(" ", "") == ddl.CHANGE_LOG_ORDER_BY.strip("()").replace(" ", ""):
        return
    # The same columns (an old table may have more than today's schema), the new engine clause.
    engine = ddl.create_table_sql(layout).split(" ENGINE = ", 1)[1]
    client.command(f"CREATE TABLE `{rebuild}` AS `{layout.name}` ENGINE = {engine}")
    client.command(f"INSERT INTO `{rebuild}` SELECT * FROM `{layout.name}`", settings=COPY_SETTINGS)
    before, after = (_scalar(client, f"SELECT count() FROM `{t}`") for t in (layout.name, rebuild))
    if before != after:
        raise RuntimeError(f"migrating {layout.name}: {after} rows copied of {before}; nothing changed")
    try:
        client.command(f"EXCHANGE TABLES `{layout.name}` AND `{rebuild}`")
        client.command(f"DROP TABLE `{rebuild}`")
    except DatabaseError as exc:
        if "ACCESS_DENIED" not in str(exc):
            raise
        # The sink's writer user may not drop tables: an earlier store is moved by an administrator.
        raise ServiceUnavailable(
            f"{layout.name} is in the earlier layout and this ClickHouse user may not swap or drop tables",
            hint="run `backbone init` once with an administrator's BACKBONE_CLICKHOUSE_DSN",
        ) from None
    log.warning("change log %s: %d rows moved to the sorting key %s", layout.name, after, ddl.CHANGE_LOG_ORDER_BY)


def _state(client: Any, layout: ddl.TableLayout, kind: str) -> None:
    """The state table, filled with each entity's latest row of the change log (as the old _current
    view chose it: newest source time, then position) and its version; _current then reads it."""
    client.command(ddl.create_state_table_sql(layout))
    wanted = {n for n, _ in layout.columns}
    names = [n for n in _columns(client, layout.name) if n in wanted]  # columns both tables have
    # In slices of about 100,000 entities (chDB allows no insert while a result is streamed).
    slices = max(1, int(_scalar(client, f"SELECT uniq(entity_key) FROM `{layout.name}`") or 0) // 100_000 + 1)
    for part in range(slices):
        latest = client.query(
            f"SELECT {', '.join(f'`{n}`' for n in names)} FROM `{layout.name}` FINAL "
            f"WHERE cityHash64(entity_key) % {slices} = {part} "
            "ORDER BY entity_key, ts_source DESC, source_position DESC LIMIT 1 BY entity_key"
        )
        columns = [list(c) for c in latest.result_columns]
        if columns and columns[0]:
            client.insert(
                layout.state_table,
                [*columns, ddl.version_column(kind, names, columns)],
                column_names=[*names, "version"],
                column_oriented=True,
            )
    client.command(ddl.current_view_sql(layout))


def _columns(client: Any, table: str) -> dict[str, tuple[str, str]]:
    """name -> (type, comment) of a table or view; empty when it does not exist."""
    rows = client.query(
        "SELECT name, type, comment FROM system.columns WHERE database = currentDatabase() AND table = {t:String} "
        "ORDER BY position",
        parameters={"t": table},
    ).result_rows
    return {name: (type_, comment) for name, type_, comment in rows}


def _scalar(client: Any, sql: str, table: str | None = None) -> Any:
    """The first value of a query (None without rows); {where} is the table's row in system.tables."""
    if table is not None:
        sql = sql.replace("{where}", "database = currentDatabase() AND name = {t:String}")
    rows = client.query(sql, parameters={"t": table} if table is not None else None).result_rows
    return rows[0][0] if rows else None


def migrate_store(settings: Settings) -> str:
    """`backbone init`'s part in the store: what it applied, in one line."""
    try:
        client = connect(settings)
    except ServiceUnavailable as exc:
        if urlparse(settings.effective_clickhouse_dsn).scheme != "chdb":
            raise
        # Only one process may open an embedded store: the running sink, which migrates at its start.
        return f"store not migrated now ({exc.args[0] if exc.args else exc}); the sink migrates it when it starts"
    try:
        holidays = load_calendar(settings.holidays_csv).days_off
        catalog = catalog_for(settings)
        applied = migrate(client, catalog, settings.dead_letter_retention_days, holidays, settings.kpi_dir)
    finally:
        client.close()
    return f"store migrations applied: {len(applied)}" if applied else "store up to date"
