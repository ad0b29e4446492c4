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
  census_seconds    seconds between censuses of the tables' keys for the sink's reconciliation (rows with a
                    cursor value, not soft-deleted, counted in the database; default 300, 0: none); see
                    producers.adapters.census
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

Known keys (reconcile_seconds > 0 only): see producers.adapters.query_poll_keys.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, NonNegativeFloat, PositiveFloat, field_validator

from backbone.errors import ConfigError
from backbone.settings import Settings
from contract.catalog import SourceSystem
from contract.coerce import FieldErrors, coerce_record, coerce_value
from producers.adapters import _sql_common as common
from producers.adapters._sql_common import Identifier
from producers.adapters.base import SourceAdapter
from producers.adapters.census import CensusRunner, query_poll_census
from producers.adapters.options import load_options
from producers.adapters.query_poll_keys import KnownKeys
from producers.adapters.query_poll_sql import PolledTable, PollSql, decode_value, encode_value, position_part
from producers.emitter import Change

log = logging.getLogger(__name__)


class PollColumns(BaseModel):
    """The columns that drive the polling of a table, and how often its keys are reconciled: set for
    every table in `adapter:`, or for one in its `tables` entry."""

    model_config = ConfigDict(strict=True, frozen=True)

    cursor_column: Identifier = "updated_at"
    created_column: Identifier | None = None
    deleted_column: Identifier | None = None
    time_column: Identifier | None = None
    reconcile_seconds: NonNegativeFloat = 0.0


class PollTable(PollColumns):
    """One entry of `tables` given as a mapping: the entity, and the columns of this table (those left
    out are the adapter-wide ones)."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    entity: str


class QueryPollOptions(common.SqlOptions, PollColumns):
    """The `adapter:` fields of kind query_poll (see the module's documentation)."""

    driver: Literal["postgres", "mariadb", "mysql"] = "postgres"
    tables: dict[str, PollTable]  # type: ignore[assignment]  # a table: entity name or its own settings
    poll_seconds: PositiveFloat = 1.0
    settle_seconds: NonNegativeFloat = 0.0

    @field_validator("tables", mode="before")
    @classmethod
    def _entity_names(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {"entity": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    def for_table(self, table: PollTable) -> dict[str, Any]:
        """The columns and reconcile_seconds of one table: its own where given, else the adapter's."""
        return {n: getattr(table if n in table.model_fields_set else self, n) for n in PollColumns.model_fields}


def _truthy(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, bool | int):
        return bool(value)
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "f", "n", "no")
    return True  # a deletion timestamp


class QueryPollAdapter(SourceAdapter):
    kind = "query_poll"

    def __init__(self, system: SourceSystem, settings: Settings, registry: Any = None) -> None:
        super().__init__(system, settings, registry)
        self.options = options = load_options(QueryPollOptions, system)
        self.driver = options.driver
        self.params = common.connection_params(self, options, self.driver)
        self.batch_size = options.batch_size
        self.poll_seconds = options.poll_seconds
        self.settle_seconds = options.settle_seconds
        self.tables = [self._table(name, table) for name, table in options.tables.items()]
        self.sql = PollSql(self.driver, self.batch_size)
        self._conn: Any = None
        self._known: KnownKeys | None = None
        if any(t.reconcile_seconds for t in self.tables):
            self._known = KnownKeys(
                self.checkpoints.path.with_name(f"{system.system}.keys.sqlite"), self.sealer, self._stored_key
            )
        self._reconciled: dict[str, float] = {}
        self.census = CensusRunner(self, options.census_seconds, lambda: query_poll_census(self))

    def _stored_key(self, table: str, key: str) -> str:
        """A key as the known-keys file keeps it: the keyed hash when the entity's key has a pii field."""
        entity = next(t.entity.name for t in self.tables if t.name == table)
        return self.pii.keyed_hash(key) if self.pii.key_is_pii(entity) else key

    # -- configuration ---------------------------------------------------------------------------
    def _table(self, name: str, settings: PollTable) -> PolledTable:
        entity = common.entity_for(self, name, settings.entity)
        schema, table = common.split_table(self, name, None)
        for key in entity.key:
            common.identifier(self, f"tables.{name}", key)
        columns = self.options.for_table(settings)
        payload = entity.payload_schema()
        key_types = {f["name"]: f["type"] for f in payload["fields"] if f["name"] in entity.key}
        return PolledTable(
            name,
            schema,
            table,
            entity,
            payload,
            frozenset(f["name"] for f in payload["fields"]),
            columns["cursor_column"],
            columns["created_column"],
            columns["deleted_column"],
            columns["time_column"],
            columns["reconcile_seconds"],
            key_types,
        )

    # -- connection ------------------------------------------------------------------------------
    def _connect(self) -> None:
        self._conn = common.connect(self.driver, self.params)
        if self.driver == "postgres":
            import psycopg2

            self.sql.paramstyle = psycopg2.paramstyle
        else:
            import pymysql

            self.sql.paramstyle = pymysql.paramstyle

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
            cur.execute(statement, self.sql.args(values))
            rows = cur.fetchall()
            columns = [d[0] for d in cur.description]
        finally:
            cur.close()
            self._conn.rollback()  # end the read transaction: the next poll sees new commits
        return columns, list(rows)

    def _db_now(self) -> Any:
        _, rows = self._fetch("SELECT CURRENT_TIMESTAMP", [])
        return rows[0][0]

    # -- reconciliation (hard deletes) ----------------------------------------------------------
    def _key_text(self, table: PolledTable, values: tuple) -> str | None:
        try:
            return "|".join(
                str(coerce_value(table.key_types[k], v)) for k, v in zip(table.entity.key, values, strict=True)
            )
        except ValueError:
            return None

    def _source_keys(self, table: PolledTable, stop: threading.Event) -> Iterator[list[str]]:
        """The table's keys in the source, in batches, until `stop` is set."""
        cur = self._conn.cursor()
        try:
            cur.execute(self.sql.keys(table))
            while not stop.is_set():
                rows = cur.fetchmany(5000)
                if not rows:
                    break
                yield [k for k in (self._key_text(table, tuple(r)) for r in rows) if k is not None]
        finally:
            cur.close()
            self._conn.rollback()

    def _reconcile(self, table: PolledTable, state: dict[str, Any], stop: threading.Event) -> None:
        """Emit `d` for keys sent before that are no longer in the table."""
        known = self._known
        assert known is not None
        if not known.deletes_pending(table.name) and not known.mark_vanished(
            table.name, self._source_keys(table, stop), stop
        ):
            return  # stopped
        while rows := known.deleted(table.name, self.batch_size):
            for _stored, position, row, deleted_ts in rows:
                before = coerce_record(table.payload, json.loads(row))
                key = common.key_of(table.entity, before)  # the clear key, from the row (the file may hash it)
                when = datetime.fromisoformat(deleted_ts)
                self.emit(Change("d", key, f"{position}|deleted", when, before, None, False, table.entity.name))
            self.commit(state)
            known.forget(table.name, [r[0] for r in rows])
            log.info("%s: %d rows of %s vanished: sent as deletes", self.system.system, len(rows), table.name)

    # -- rows -> changes -------------------------------------------------------------------------
    def _change(self, table: PolledTable, row: dict[str, Any], snapshot: bool) -> Change | None:
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
            name = table.entity.name
            self.reject(
                self.invalid(name, f"invalid row in {table.name}", exc.errors, raw),
                common.json_bytes({"table": table.name, "position": position, "row": row}),
                self.pii.key(name, key).encode(),
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

    def _poll(self, table: PolledTable, state: dict[str, Any]) -> int:
        """One batch of one table; returns the number of rows read."""
        table_state = state["tables"].setdefault(table.name, {"last": None, "initial_done": False})
        last = [decode_value(v) for v in table_state["last"]] if table_state["last"] else None
        bound = None
        if self.settle_seconds:
            bound = self._db_now() - timedelta(seconds=self.settle_seconds)
        statement, values = self.sql.poll(table, last, bound)
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
            if self._known is not None and table.reconcile_seconds:
                self._known.remember(table.name, changes)
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
        try:
            self.keep_running(stop, lambda: self._session(state, stop), "database", self._errors())
        finally:
            self._close()
            self.census.close()
            if self._known is not None:
                self._known.close()

    def _session(self, state: dict[str, Any], stop: threading.Event) -> None:
        """Poll every table until `stop` is set; reconcile the keys of caught-up tables when due."""
        self._close()
        self._connect()
        while not stop.is_set():
            busy = False
            for table in self.tables:
                if stop.is_set():
                    break
                if self._poll(table, state) >= self.batch_size:
                    busy = True
            self.source_ok()
            if not busy and not stop.is_set():
                self.census.poll(True)  # caught up: a census of the source now (mode current)
                now = time.monotonic()
                for table in self.tables:
                    due = self._reconciled.get(table.name, 0.0) + table.reconcile_seconds
                    if table.reconcile_seconds and now >= due:
                        self._reconcile(table, state, stop)
                        self._reconciled[table.name] = time.monotonic()
                stop.wait(self.poll_seconds)
