"""MariaDB (and MySQL) change capture from the row-based binary log.

First a consistent snapshot of every configured table (op 'r', snapshot=True), read inside
START TRANSACTION WITH CONSISTENT SNAPSHOT, whose binlog coordinates MariaDB reports
(Binlog_snapshot_file/position); then the binary log from exactly those coordinates with the
`mysql-replication` library (inserts 'c', updates 'u' with before and after, deletes 'd').

Catalog (`adapter:` of the system's file):

    adapter:
      kind: mariadb_binlog
      host: 127.0.0.1             # server address (default 127.0.0.1)
      port: 3306                  # server port (default 3306)
      database: licensing         # the schema holding the tables
      user: backbone_cdc          # needs REPLICATION SLAVE, REPLICATION CLIENT and SELECT on the database
      password_env: MARIADB_LICENSING_PASSWORD   # environment variable holding the password
      server_id: 5401             # this replication client's id: unique among the server's replicas, not
                                  # the server's own
      tables:                     # table name -> entity name (of this file's `entities`)
        permit_application: permit_application
      batch_size: 500             # changes per checkpoint (and rows per snapshot query); default 500
      heartbeat_seconds: 1        # the server's heartbeat while idle, how soon a stop is noticed; default 1
      census_seconds: 300         # seconds between censuses of the tables for reconciliation (row count and
                                  # key checksum computed in the database, producers.adapters.census); 0: none

The server must run with log_bin, binlog_format=ROW, binlog_row_image=FULL and binlog_row_metadata=FULL
(column names travel in the log, so rows decode correctly after an ALTER TABLE); the adapter checks them.

Rows become the entity's payload by column name: columns that are not fields are ignored (with a
warning at start), values are coerced with contract.coerce (DATETIME columns hold UTC); a row that
does not fit goes to dlq.adapter with the reason and the row as JSON.

Positions: "<binlog file index, 8 digits>:<end position of the rows event, 10 digits>:<row in the
event, 6 digits>", so their lexical order is the binlog's order. Snapshot rows carry the snapshot's
binlog coordinates with row 000000 (every later event ends after them).

ts_source is the binlog event's timestamp (whole seconds), kept monotonic along the log (never
earlier than a change before it, nor than the snapshot second), so the newest state by ts_source
is the newest by position also when a transaction began before an earlier one committed.

Checkpoint (saved only after Kafka acknowledged everything before it, at transaction boundaries):
{"snapshot_done", "binlog_file", "binlog_pos", "gtid", "ts_floor", "snapshot": progress while it
runs}. The snapshot's coordinates are saved before its first row is emitted, and its progress (last
key per table) with every batch: after a kill -9 it resumes after the last committed key with the
same positions, then reads the binlog from the snapshot's coordinates, so nothing is lost and a
re-sent change carries the same position (and event id)."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pymysql
from pydantic import PositiveFloat, PositiveInt
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import (
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XidEvent,
)
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from backbone.errors import ConfigError
from contract.catalog import Entity
from contract.coerce import FieldErrors, coerce_record
from producers.adapters import _sql_common as common
from producers.adapters.base import SourceAdapter
from producers.adapters.census import CensusRunner, mariadb_census
from producers.adapters.mariadb_snapshot import file_index as file_index  # re-exported
from producers.adapters.mariadb_snapshot import format_position, numeric_position, take_snapshot
from producers.adapters.options import load_options
from producers.emitter import Change

log = logging.getLogger(__name__)

REQUIRED_SERVER_SETTINGS = {
    "log_bin": "ON",
    "binlog_format": "ROW",
    "binlog_row_image": "FULL",
    "binlog_row_metadata": "FULL",
}
# Errors that mean "the server is not reachable right now": wait and reconnect.
SOURCE_ERRORS = (pymysql.err.OperationalError, pymysql.err.InterfaceError, ConnectionError, TimeoutError)


class SourceLost(Exception):
    """The replication stream ended (the server closed it)."""


class MariaDbOptions(common.SqlOptions):
    """The `adapter:` fields of kind mariadb_binlog (see the module's documentation)."""

    port: PositiveInt = 3306
    database: str
    user: str
    password_env: str
    server_id: PositiveInt
    heartbeat_seconds: PositiveFloat = 1.0


class MariaDbBinlogAdapter(SourceAdapter):
    kind = "mariadb_binlog"

    def __init__(self, system, settings, registry=None) -> None:  # noqa: ANN001 - as the base class
        super().__init__(system, settings, registry)
        self.options = options = load_options(MariaDbOptions, system)
        self.params = common.connection_params(self, options, "mariadb")
        self.host, self.port = options.host, self.params["port"]
        self.database, self.user, self.password = options.database, options.user, self.params["password"]
        self.server_id = options.server_id
        self.batch_size = options.batch_size
        self.heartbeat_seconds = options.heartbeat_seconds  # not `heartbeat`: the base class owns that
        self.tables: dict[str, Entity] = {t: common.entity_for(self, t, e) for t, e in options.tables.items()}
        self.schemas = {t: e.payload_schema() for t, e in self.tables.items()}
        self.fields = {t: [f["name"] for f in s["fields"]] for t, s in self.schemas.items()}
        self.census = CensusRunner(self, options.census_seconds, lambda: mariadb_census(self))

    # -- connections ---------------------------------------------------------------------------
    def _connection_settings(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "passwd": self.password,
            "charset": "utf8mb4",
            "connect_timeout": 10,
            # Heartbeats arrive every `heartbeat` seconds; silence much longer than that is a dead server.
            "read_timeout": max(10, int(self.heartbeat_seconds * 5)),
        }

    def _connect(self) -> pymysql.connections.Connection:
        return common.connect("mariadb", self.params, read_timeout=300)

    def _check_server(self, conn: pymysql.connections.Connection) -> None:
        """The server logs what we need, and every configured table exists with the entity's fields."""
        where = self.system.catalog_file
        with conn.cursor() as cur:
            names = ", ".join(f"'{n}'" for n in REQUIRED_SERVER_SETTINGS)
            cur.execute(f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({names})")
            found = {name.lower(): str(value).upper() for name, value in cur.fetchall()}
            wrong = {n: found.get(n) for n, v in REQUIRED_SERVER_SETTINGS.items() if found.get(n) != v}
            if wrong:
                raise ConfigError(
                    f"MariaDB at {self.host}:{self.port} (system {self.system.system}) has "
                    + ", ".join(f"{n}={v or 'unset'}" for n, v in wrong.items())
                    + "; the binlog adapter needs "
                    + ", ".join(f"{n}={REQUIRED_SERVER_SETTINGS[n]}" for n in wrong)
                )
            for table, fields in self.fields.items():
                cur.execute(
                    "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                    (self.database, table),
                )
                columns = {row[0] for row in cur.fetchall()}
                if not columns:
                    raise ConfigError(
                        f"{where}: field 'adapter.tables' names table {table!r}, which does not exist in database "
                        f"{self.database!r} (or {self.user} may not read it)"
                    )
                schema = self.schemas[table]
                needed = [f["name"] for f in schema["fields"] if f["name"] not in columns and "default" not in f]
                if needed:
                    raise ConfigError(
                        f"{where}: table {self.database}.{table} lacks column(s) {', '.join(needed)} "
                        f"of entity {self.tables[table].name}"
                    )
                extra = sorted(columns - set(fields))
                if extra:
                    log.warning("%s: columns %s of %s are not fields of the entity; ignored", where, extra, table)

    # -- rows to changes -----------------------------------------------------------------------
    def _key(self, table: str, row: dict[str, Any]) -> str:
        return "|".join(str(row.get(k)) for k in self.tables[table].key)

    def _payload(self, table: str, row: dict[str, Any]) -> dict[str, Any]:
        raw = {}
        for name in self.fields[table]:
            if name in row:
                value = row[name]
                if isinstance(value, bytes | bytearray):
                    try:
                        value = bytes(value).decode("utf-8")
                    except UnicodeDecodeError:
                        pass
                raw[name] = value
        return coerce_record(self.schemas[table], raw)

    def _change(
        self,
        table: str,
        op: str,
        position: str,
        ts: float,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        snapshot: bool = False,
    ) -> Change | None:
        """A Change from raw row images, or None after dead-lettering a row that does not fit."""
        image = after if after is not None else before
        key = self._key(table, image)
        try:
            change = Change(
                op,
                key,
                position,
                datetime.fromtimestamp(ts, UTC),
                before=self._payload(table, before) if before is not None else None,
                after=self._payload(table, after) if after is not None else None,
                snapshot=snapshot,
                entity=self.tables[table].name,
            )
        except FieldErrors as exc:
            original = json.dumps({"op": op, "before": before, "after": after}, default=str).encode()
            name = self.tables[table].name
            reason = self.invalid(name, "invalid row", exc.errors, image)
            where = f"{self.database}.{table}@{position}"
            self.reject(reason, original, self.pii.key(name, key).encode(), origin=where)
            return None
        # The key as the entity's typed values give it (e.g. decimals with their scale).
        change.key = self._key(table, change.after if change.after is not None else change.before)
        return change

    # -- binlog --------------------------------------------------------------------------------
    def _stream(self, stop: threading.Event, state: dict[str, Any]) -> dict[str, Any]:
        """Reads the binlog from the checkpoint until stop; returns the last committed state."""
        conn = self._connect()
        try:
            self._check_server(conn)
        finally:
            conn.close()
        self.source_ok()
        reader = BinLogStreamReader(
            connection_settings=self._connection_settings(),
            server_id=self.server_id,
            resume_stream=True,
            blocking=True,
            log_file=state["binlog_file"],
            log_pos=int(state["binlog_pos"]),
            only_events=[
                WriteRowsEvent,
                UpdateRowsEvent,
                DeleteRowsEvent,
                XidEvent,
                QueryEvent,
                RotateEvent,
                MariadbGtidEvent,
                HeartbeatLogEvent,
            ],
            only_schemas=[self.database],
            only_tables=list(self.tables),
            slave_heartbeat=self.heartbeat_seconds,
            enable_logging=False,
        )
        committed = dict(state)
        boundary = dict(state)  # the state after the last complete transaction
        ts_floor = float(state.get("ts_floor") or 0)
        in_tx = False
        gtid = state.get("gtid")
        pending = 0  # changes emitted since the last checkpoint
        last_commit = time.monotonic()
        stop_seen: float | None = None
        log.info("%s: reading the binlog from %s:%s", self.system.system, state["binlog_file"], state["binlog_pos"])
        try:
            while True:
                event = reader.fetchone()
                if event is None:
                    raise SourceLost(f"{self.host}:{self.port} closed the replication stream")
                if isinstance(event, RotateEvent):
                    if not in_tx:
                        boundary = {**boundary, "binlog_file": event.next_binlog, "binlog_pos": int(event.position)}
                elif isinstance(event, MariadbGtidEvent):
                    in_tx, gtid = True, event.gtid
                elif isinstance(event, WriteRowsEvent | UpdateRowsEvent | DeleteRowsEvent):
                    in_tx = True
                    ts_floor = max(ts_floor, float(event.timestamp))
                    pending += self._rows(event, reader.log_file, ts_floor)
                elif isinstance(event, XidEvent) or (
                    isinstance(event, QueryEvent) and event.query.strip().upper() != "BEGIN"
                ):
                    # COMMIT of a transaction, or a DDL statement (its own transaction).
                    in_tx = False
                    boundary = {
                        **boundary,
                        "snapshot_done": True,
                        "binlog_file": reader.log_file,
                        "binlog_pos": int(event.packet.log_pos),
                        "gtid": gtid,
                        "ts_floor": ts_floor,
                    }
                idle = isinstance(event, HeartbeatLogEvent)
                if idle:
                    self.heartbeat.beat()
                if stop.is_set() and stop_seen is None:
                    stop_seen = time.monotonic()
                if not in_tx and boundary != committed:
                    due = pending >= self.batch_size or idle or time.monotonic() - last_commit >= 1.0
                    if due or stop_seen is not None:
                        self.commit(boundary, numeric_position(boundary["binlog_file"], boundary["binlog_pos"]))
                        committed, pending, last_commit = dict(boundary), 0, time.monotonic()
                # A census as of binlog coordinates is published once the reader passed them, all committed.
                idle_at = (file_index(reader.log_file), int(reader.log_pos or 0))
                self.census.poll(idle_at if not in_tx and boundary == committed else None)
                if stop_seen is not None and (not in_tx or time.monotonic() - stop_seen > 3):
                    # Mid-transaction at a stop: its emitted rows are re-sent after the restart, same positions.
                    if boundary != committed:
                        self.commit(boundary, numeric_position(boundary["binlog_file"], boundary["binlog_pos"]))
                    return boundary
        finally:
            reader.close()

    def _rows(self, event: Any, binlog_file: str, ts: float) -> int:
        table = event.table
        if table not in self.tables:
            return 0
        emitted = 0
        end = int(event.packet.log_pos)
        for i, row in enumerate(event.rows):
            position = format_position(binlog_file, end, i)
            if isinstance(event, WriteRowsEvent):
                change = self._change(table, "c", position, ts, None, row["values"])
            elif isinstance(event, UpdateRowsEvent):
                change = self._change(table, "u", position, ts, row["before_values"], row["after_values"])
            else:
                change = self._change(table, "d", position, ts, row["values"], None)
            if change is not None and self.emit(change):
                emitted += 1
        return emitted

    # -- loop ----------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        def session() -> None:
            # From the last checkpoint: what was emitted since is re-sent with the same positions.
            state = self.checkpoints.load() or {}
            if not state.get("snapshot_done"):
                state = take_snapshot(self, stop, state)
                if not state.get("snapshot_done"):
                    return  # stopped during the snapshot
            self._stream(stop, state)

        try:
            self.keep_running(stop, session, f"MariaDB at {self.host}:{self.port}", (*SOURCE_ERRORS, SourceLost))
        finally:
            self.census.close()
