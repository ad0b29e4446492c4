"""Query polling: change capture for systems that grant no replication rights, only SELECT. Each
configured table is read in order of a monotonically increasing column (an updated_at timestamp or a
row version), with the primary key as tie-breaker:

    WHERE <col> > :last_col OR (<col> = :last_col AND <pk> > :last_pk) ORDER BY <col>, <pk> LIMIT :batch

(the row comparison written out, so MariaDB/MySQL and PostgreSQL both use their index), so rows that share
one timestamp are neither missed nor read twice, even when a batch ends in the middle of them. The SQL is
portable: it runs through any DB-API driver; PostgreSQL (psycopg2) and MariaDB/MySQL (PyMySQL) are
supported, placeholders follow the driver's paramstyle and identifiers its quoting.

Catalog `adapter:` fields (kind: query_poll):
  driver            postgres (default), mariadb or mysql
  dsn_env           PostgreSQL only: environment variable holding a libpq DSN (password included). Or:
  host, port        server (default 127.0.0.1; 5432 for postgres, 3306 for mariadb/mysql)
  database, user    database and account (required without dsn_env); SELECT rights are enough
  password_env      environment variable holding the password (required without dsn_env)
  tables            mapping {table: entity} or {table: {entity: ..., and any of the per-table fields
                    below}}; table as `name` or `schema.name` (required). Column names are the payload's
                    field names; other columns (the cursor or soft-delete column if not in the payload)
                    are read but not sent.
  cursor_column     the monotonically increasing column (default updated_at); rows where it is NULL are
                    never read. Per table or for all.
  created_column    optional: a column equal to cursor_column while a row was never updated (e.g.
                    created_at, or submitted_at in licensing). Such rows become op `c`; without it every
                    row is op `u` with before=None (see "Ops" below).
  deleted_column    optional soft-delete column: a boolean flag or a nullable deletion timestamp. A row
                    read with it true / not NULL becomes op `d` with before = the row. The application
                    must advance cursor_column when it sets it (as an update does).
  time_column       column giving the change's time in the source, ts_source (default: cursor_column when
                    it holds timestamps; otherwise the time of the poll)
  reconcile_seconds hard deletes: every so many seconds (0 = never, the default) the table's keys are
                    compared with the keys already sent, and a `d` is emitted for each key that vanished
  batch_size        most rows read (and emitted, then checkpointed) per query (default 500)
  poll_seconds      pause between polls once a table is caught up (default 1.0)
  settle_seconds    read only rows whose timestamp cursor is at least this old by the database's clock
                    (default 0). A transaction that sets updated_at and commits later than a poll that
                    already moved past that timestamp would otherwise be missed; set it above your longest
                    write transaction. Timestamp cursors only.

Ops: a poll cannot tell an insert from an update, so a row is op `c` when created_column is configured
and equals cursor_column, otherwise op `u` with before=None (the processor requires `after` for c/u and
checks lifecycle transitions only when `before` is present, so such updates pass without that check).
Rows read before the table was first caught up are the initial load: source.snapshot=True, with the same
ops. Several changes of one row between two polls arrive as one event with the latest state, and a row
inserted and hard-deleted between polls is never seen.

Positions: `<cursor value>|<key>` with the cursor as a fixed-width UTC timestamp
(YYYY-MM-DDTHH:MM:SS.ffffffZ) or a 20-digit zero-padded integer, key parts zero-padded when integers, so
lexical order is cursor order per key. A re-read row gets the same position (and event id); two versions
of a row with the same cursor value get the same position and collapse into the later one downstream.
Integer cursors must not be negative.

Checkpoint: {tables: {table: {last: [cursor value, key values...] (typed), initial_done}}}, written after
each batch once Kafka acknowledged it. After a crash the rows after the checkpoint are read again.

Known keys (reconcile_seconds > 0 only): a SQLite file next to the checkpoint
(<run_dir>/checkpoints/<system>.keys.sqlite) keeps, per table, every key sent and not deleted, with its
last position and row (a `d` needs the complete previous row). It grows with the number of live rows:
roughly key + position + the row as JSON, so about 0.5-1 KiB per row for licensing (1 GB per million
rows). It is updated before each checkpoint; deletions found by reconciliation are written to it first
(with their detection time), then emitted, then removed once Kafka acknowledged, so a crash re-sends them
with the same position and time. Reconciliation runs only when every table is caught up; it streams the
source's keys through a temporary SQLite table, so memory stays bounded.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from backbone import metrics
from backbone.errors import ConfigError
from backbone.settings import Settings
from contract.catalog import Entity, SourceSystem
from contract.coerce import FieldErrors, coerce_record, coerce_value
from producers.adapters import _sql_common as common
from producers.adapters.base import SourceAdapter
from producers.emitter import Change

log = logging.getLogger(__name__)

TABLE_FIELDS = ("entity", "cursor_column", "created_column", "deleted_column", "time_column", "reconcile_seconds")


def encode_value(value: Any) -> dict[str, Any]:
    """A cursor or key value for the checkpoint, restored with its type by decode_value."""
    if isinstance(value, datetime):
        return {"t": "datetime", "v": value.isoformat()}
    if isinstance(value, date):
        return {"t": "date", "v": value.isoformat()}
    if isinstance(value, bool):
        return {"t": "bool", "v": value}
    if isinstance(value, int):
        return {"t": "int", "v": value}
    if isinstance(value, Decimal):
        return {"t": "decimal", "v": str(value)}
    if isinstance(value, float):
        return {"t": "float", "v": value}
    return {"t": "str", "v": str(value)}


def decode_value(item: dict[str, Any]) -> Any:
    kind, value = item["t"], item["v"]
    if kind == "datetime":
        return datetime.fromisoformat(value)
    if kind == "date":
        return date.fromisoformat(value)
    if kind == "decimal":
        return Decimal(value)
    return value


def position_part(value: Any) -> str:
    """A value's fixed-width text, so that lexical order is value order."""
    if isinstance(value, datetime):
        value = common.utc(value)
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return f"{value:020d}"
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return f"{int(value):020d}"
    return str(value)


def _truthy(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, bool | int):
        return bool(value)
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "f", "n", "no")
    return True  # a deletion timestamp


@dataclass
class _Table:
    name: str  # as configured
    schema: str | None
    table: str
    entity: Entity
    payload: dict[str, Any]
    fields: frozenset[str]
    cursor: str
    created: str | None
    deleted: str | None
    time_column: str | None
    reconcile_seconds: float
    key_types: dict[str, Any] = field(default_factory=dict)


class QueryPollAdapter(SourceAdapter):
    kind = "query_poll"

    def __init__(self, system: SourceSystem, settings: Settings, registry: Any = None) -> None:
        super().__init__(system, settings, registry)
        self.driver = self.setting("driver", "postgres", str)
        if self.driver not in common.DRIVERS:
            raise ConfigError(
                f"{system.catalog_file}: field 'adapter.driver' has value {self.driver!r}: not one of "
                f"{', '.join(common.DRIVERS)}"
            )
        self.params = common.connection_params(self, self.driver)
        self.batch_size = common.int_setting(self, "batch_size", 500, minimum=1)
        self.poll_seconds = common.number_setting(self, "poll_seconds", 1.0)
        self.settle_seconds = common.number_setting(self, "settle_seconds", 0.0, allow_zero=True)
        defaults = {
            "cursor_column": self.setting("cursor_column", "updated_at", str),
            "created_column": self.setting("created_column", None, str),
            "deleted_column": self.setting("deleted_column", None, str),
            "time_column": self.setting("time_column", None, str),
            "reconcile_seconds": common.number_setting(self, "reconcile_seconds", 0.0, allow_zero=True),
        }
        tables = self.setting("tables", kind=dict)
        if not tables:
            raise ConfigError(f"{system.catalog_file}: field 'adapter.tables' is empty")
        self.tables: list[_Table] = []
        for name, value in tables.items():
            self.tables.append(self._table(str(name), value, defaults))
        self.quote = '"' if self.driver == "postgres" else "`"
        self._conn: Any = None
        self._paramstyle = "pyformat"
        self._known: sqlite3.Connection | None = None
        if any(t.reconcile_seconds for t in self.tables):
            path = self.checkpoints.path.with_name(f"{system.system}.keys.sqlite")
            self._known = self._open_known(path)
        self._reconciled: dict[str, float] = {}

    # -- configuration ---------------------------------------------------------------------------
    def _table(self, name: str, value: Any, defaults: dict[str, Any]) -> _Table:
        where = f"{self.system.catalog_file}: field 'adapter.tables.{name}'"
        options = dict(defaults)
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(TABLE_FIELDS))
            if unknown:
                raise ConfigError(f"{where} has unknown fields {unknown} (known: {', '.join(TABLE_FIELDS)})")
            options.update({k: v for k, v in value.items() if k != "entity"})
            entity_name = value.get("entity")
        else:
            entity_name = value
        entity = common.entity_for(self, name, entity_name)
        schema, table = common.split_table(self, name, None)
        for column in ("cursor_column", "created_column", "deleted_column", "time_column"):
            if options[column] is not None:
                common.identifier(self, f"tables.{name}.{column}", options[column])
        reconcile = options["reconcile_seconds"]
        if isinstance(reconcile, bool) or not isinstance(reconcile, int | float) or reconcile < 0:
            raise ConfigError(f"{where}.reconcile_seconds has value {reconcile!r}, expected a number >= 0")
        for key in entity.key:
            common.identifier(self, f"tables.{name}", key)
        payload = entity.payload_schema()
        key_types = {f["name"]: f["type"] for f in payload["fields"] if f["name"] in entity.key}
        return _Table(
            name,
            schema,
            table,
            entity,
            payload,
            frozenset(f["name"] for f in payload["fields"]),
            options["cursor_column"],
            options["created_column"],
            options["deleted_column"],
            options["time_column"],
            float(reconcile),
            key_types,
        )

    # -- SQL -------------------------------------------------------------------------------------
    def _q(self, name: str) -> str:
        return f"{self.quote}{name}{self.quote}"

    def _from(self, table: _Table) -> str:
        return f"{self._q(table.schema)}.{self._q(table.table)}" if table.schema else self._q(table.table)

    def _placeholders(self, count: int, start: int = 0) -> list[str]:
        style = self._paramstyle
        if style == "qmark":
            return ["?"] * count
        if style == "numeric":
            return [f":{i + 1}" for i in range(start, start + count)]
        if style == "named":
            return [f":p{i}" for i in range(start, start + count)]
        return ["%s"] * count

    def _args(self, values: list[Any]) -> Any:
        return {f"p{i}": v for i, v in enumerate(values)} if self._paramstyle == "named" else values

    def poll_sql(self, table: _Table, last: list[Any] | None, bound: Any = None) -> tuple[str, list[Any]]:
        """The batch query after `last` (cursor value, key values), with its parameters."""
        columns = [table.cursor, *table.entity.key]
        where = [f"{self._q(table.cursor)} IS NOT NULL"]
        values: list[Any] = []
        if last is not None:
            alternatives = []
            for i in range(len(columns)):
                terms = [f"{self._q(c)} = {{}}" for c in columns[:i]] + [f"{self._q(columns[i])} > {{}}"]
                alternatives.append("(" + " AND ".join(terms) + ")")
                values.extend(last[: i + 1])
            where.append("(" + " OR ".join(alternatives) + ")")
        if bound is not None:
            where.append(f"{self._q(table.cursor)} <= {{}}")
            values.append(bound)
        text = (
            f"SELECT * FROM {self._from(table)} WHERE {' AND '.join(where)} "
            f"ORDER BY {', '.join(self._q(c) for c in columns)} LIMIT {int(self.batch_size)}"
        )
        return text.format(*self._placeholders(len(values))), values

    # -- connection ------------------------------------------------------------------------------
    def _connect(self) -> None:
        self._conn = common.connect(self.driver, self.params)
        if self.driver == "postgres":
            import psycopg2

            self._paramstyle = psycopg2.paramstyle
        else:
            import pymysql

            self._paramstyle = pymysql.paramstyle

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
        self._conn = None

    def _errors(self) -> tuple[type[BaseException], ...]:
        """Exceptions meaning the database is unreachable (retried), per driver."""
        errors: list[type[BaseException]] = [OSError]
        try:
            import psycopg2

            errors += [psycopg2.OperationalError, psycopg2.InterfaceError]
        except ImportError:
            pass
        try:
            import pymysql

            errors += [pymysql.err.OperationalError, pymysql.err.InterfaceError]
        except ImportError:
            pass
        return tuple(errors)

    def _fetch(self, statement: str, values: list[Any]) -> tuple[list[str], list[tuple]]:
        cur = self._conn.cursor()
        try:
            cur.execute(statement, self._args(values))
            rows = cur.fetchall()
            columns = [d[0] for d in cur.description]
        finally:
            cur.close()
            self._conn.rollback()  # end the read transaction: the next poll sees new commits
        return columns, list(rows)

    def _db_now(self) -> Any:
        _, rows = self._fetch("SELECT CURRENT_TIMESTAMP", [])
        return rows[0][0]

    # -- known keys (reconciliation) -------------------------------------------------------------
    @staticmethod
    def _open_known(path: Path) -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(
            "CREATE TABLE IF NOT EXISTS known (tbl TEXT NOT NULL, key TEXT NOT NULL, position TEXT NOT NULL, "
            "ts TEXT NOT NULL, row TEXT NOT NULL, deleted_ts TEXT, PRIMARY KEY (tbl, key))"
        )
        return db

    def _remember(self, table: _Table, changes: list[Change]) -> None:
        if self._known is None or not table.reconcile_seconds or not changes:
            return
        db = self._known
        db.execute("BEGIN")
        for change in changes:
            if change.op == "d":
                db.execute("DELETE FROM known WHERE tbl = ? AND key = ?", (table.name, change.key))
            else:
                db.execute(
                    "INSERT INTO known (tbl, key, position, ts, row, deleted_ts) VALUES (?, ?, ?, ?, ?, NULL) "
                    "ON CONFLICT (tbl, key) DO UPDATE SET position = excluded.position, ts = excluded.ts, "
                    "row = excluded.row, deleted_ts = NULL",
                    (
                        table.name,
                        change.key,
                        change.position,
                        change.ts_source.isoformat(),
                        common.json_bytes(change.after).decode(),
                    ),
                )
        db.execute("COMMIT")

    def _key_text(self, table: _Table, values: tuple) -> str | None:
        try:
            return "|".join(
                str(coerce_value(table.key_types[k], v)) for k, v in zip(table.entity.key, values, strict=True)
            )
        except ValueError:
            return None

    def _reconcile(self, table: _Table, state: dict[str, Any], stop: threading.Event) -> None:
        """Emit `d` for keys sent before that are no longer in the table."""
        db = self._known
        assert db is not None
        pending = db.execute(
            "SELECT count(*) FROM known WHERE tbl = ? AND deleted_ts IS NOT NULL", (table.name,)
        ).fetchone()[0]
        if not pending:
            db.execute("CREATE TEMP TABLE IF NOT EXISTS present (key TEXT PRIMARY KEY)")
            db.execute("DELETE FROM present")
            cur = self._conn.cursor()
            try:
                keys = ", ".join(self._q(k) for k in table.entity.key)
                cur.execute(f"SELECT {keys} FROM {self._from(table)}")
                while not stop.is_set():
                    rows = cur.fetchmany(5000)
                    if not rows:
                        break
                    db.execute("BEGIN")
                    db.executemany(
                        "INSERT OR IGNORE INTO present (key) VALUES (?)",
                        [(k,) for k in (self._key_text(table, tuple(r)) for r in rows) if k is not None],
                    )
                    db.execute("COMMIT")
            finally:
                cur.close()
                self._conn.rollback()
            if stop.is_set():
                return
            now = datetime.now(UTC)
            db.execute("BEGIN")
            for key, ts in db.execute(
                "SELECT key, ts FROM known WHERE tbl = ? AND key NOT IN (SELECT key FROM present)", (table.name,)
            ).fetchall():
                when = max(now, datetime.fromisoformat(ts))
                db.execute(
                    "UPDATE known SET deleted_ts = ? WHERE tbl = ? AND key = ?", (when.isoformat(), table.name, key)
                )
            db.execute("COMMIT")
            db.execute("DELETE FROM present")
        while True:
            rows = db.execute(
                "SELECT key, position, row, deleted_ts FROM known WHERE tbl = ? AND deleted_ts IS NOT NULL "
                "ORDER BY key LIMIT ?",
                (table.name, self.batch_size),
            ).fetchall()
            if not rows:
                break
            for key, position, row, deleted_ts in rows:
                before = coerce_record(table.payload, json.loads(row))
                when = datetime.fromisoformat(deleted_ts)
                self.emit(Change("d", key, f"{position}|deleted", when, before, None, False, table.entity.name))
            self.commit(state)
            db.execute("BEGIN")
            db.executemany("DELETE FROM known WHERE tbl = ? AND key = ?", [(table.name, r[0]) for r in rows])
            db.execute("COMMIT")
            log.info("%s: %d rows of %s vanished: sent as deletes", self.system.system, len(rows), table.name)

    # -- rows -> changes -------------------------------------------------------------------------
    def _change(self, table: _Table, row: dict[str, Any], snapshot: bool) -> Change | None:
        cursor_value = row[table.cursor]
        key_values = [row[k] for k in table.entity.key]
        position = "|".join(position_part(v) for v in [cursor_value, *key_values])
        time_value = row.get(table.time_column or table.cursor)
        if isinstance(time_value, datetime):
            ts = common.utc(time_value)
        elif table.time_column and time_value is not None:
            try:
                ts = coerce_value({"type": "long", "logicalType": "timestamp-millis"}, time_value)
            except ValueError:
                ts = datetime.now(UTC)
        else:
            ts = datetime.now(UTC)
        raw = {k: v for k, v in row.items() if k in table.fields}
        try:
            record = coerce_record(table.payload, raw)
        except FieldErrors as exc:
            key = "|".join(str(v) for v in key_values)
            self.reject(
                f"invalid row in {table.name}: {exc}",
                common.json_bytes({"table": table.name, "position": position, "row": row}),
                key.encode(),
                origin=table.name,
            )
            return None
        key = common.key_of(table.entity, record)
        name = table.entity.name
        if table.deleted and _truthy(row.get(table.deleted)):
            return Change("d", key, position, ts, record, None, snapshot, name)
        if table.created and row.get(table.created) == cursor_value:
            return Change("c", key, position, ts, None, record, snapshot, name)
        return Change("u", key, position, ts, None, record, snapshot, name)

    def _poll(self, table: _Table, state: dict[str, Any]) -> int:
        """One batch of one table; returns the number of rows read."""
        table_state = state["tables"].setdefault(table.name, {"last": None, "initial_done": False})
        last = [decode_value(v) for v in table_state["last"]] if table_state["last"] else None
        bound = None
        if self.settle_seconds:
            bound = self._db_now() - timedelta(seconds=self.settle_seconds)
        statement, values = self.poll_sql(table, last, bound)
        columns, rows = self._fetch(statement, values)
        missing = [c for c in (table.cursor, *table.entity.key) if c not in columns]
        if missing:
            raise ConfigError(
                f"{self.system.catalog_file}: field 'adapter.tables.{table.name}': table has no column(s) {missing}"
            )
        snapshot = not table_state["initial_done"]
        changes: list[Change] = []
        for values_row in rows:
            row = dict(zip(columns, values_row, strict=True))
            change = self._change(table, row, snapshot)
            if change is not None:
                self.emit(change)
                changes.append(change)
            table_state["last"] = [encode_value(row[c]) for c in (table.cursor, *table.entity.key)]
        if len(rows) < self.batch_size and not table_state["initial_done"]:
            table_state["initial_done"] = True
            log.info("%s: initial load of %s done", self.system.system, table.name)
        if rows or snapshot:
            self._remember(table, changes)
            numeric = None
            if rows:
                cursor_value = rows[-1][columns.index(table.cursor)]
                if isinstance(cursor_value, datetime):
                    numeric = common.utc(cursor_value).timestamp()
                elif isinstance(cursor_value, int | float | Decimal):
                    numeric = float(cursor_value)
            self.commit(state, numeric)
        return len(rows)

    # -- main loop -------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        state = self.checkpoints.load() or {}
        state.setdefault("tables", {})
        delay = 1.0
        errors = self._errors()
        while not stop.is_set():
            try:
                if self._conn is None:
                    self._connect()
                busy = False
                for table in self.tables:
                    if stop.is_set():
                        break
                    if self._poll(table, state) >= self.batch_size:
                        busy = True
                delay = 1.0
                if not busy and not stop.is_set():
                    now = time.monotonic()
                    for table in self.tables:
                        due = self._reconciled.get(table.name, 0.0) + table.reconcile_seconds
                        if table.reconcile_seconds and now >= due:
                            self._reconcile(table, state, stop)
                            self._reconciled[table.name] = time.monotonic()
                    stop.wait(self.poll_seconds)
            except errors as exc:
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                metrics.RETRIES.labels("adapter", "source_unavailable").inc()
                log.warning("%s: database unavailable (%s); retrying in %.0fs", self.system.system, message, delay)
                self._close()
                stop.wait(delay)
                delay = min(delay * 2, 30.0)
        self._close()
        if self._known is not None:
            self._known.close()
