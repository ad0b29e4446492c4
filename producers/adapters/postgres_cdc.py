"""PostgreSQL log-based change capture: a logical replication slot decoded by the wal2json output
plugin (format-version 2), read with psycopg2's LogicalReplicationConnection.

Catalog `adapter:` fields (kind: postgres_cdc):
  dsn_env         name of an environment variable holding a libpq DSN (password included), e.g.
                  "host=10.0.0.5 port=5432 dbname=perizinan user=cdc password=...". Either this, or:
  host            server address (default 127.0.0.1)
  port            server port (default 5432)
  database        database name (required without dsn_env; also shown as the events' source.database)
  user            role to connect as (required without dsn_env); it needs the REPLICATION attribute (or
                  superuser), SELECT on the tables, and ownership of them if set_replica_identity is on
  password_env    name of the environment variable holding the password (required without dsn_env)
  slot            name of the logical replication slot (required; lowercase letters, digits, '_'); one per
                  system. Created when missing (with the initial snapshot, see below).
  tables          mapping {table: entity}, table as `name` (schema public) or `schema.name`, entity one of
                  this system's catalog entities (required). Column names are the payload's field names;
                  columns the payload does not have are ignored (logged once per table).
  batch_size      most changes emitted before they are acknowledged and checkpointed (default 500)
  batch_seconds   most time a batch collects changes before it is checkpointed (default 0.5)
  snapshot        take an initial snapshot of the tables when the slot is created (default true)
  set_replica_identity  when a table is not REPLICA IDENTITY FULL, set it (ALTER TABLE, needs ownership;
                  default true). With false such a table stops the adapter with a ConfigError.
  census_seconds  seconds between censuses of the tables (row count and key checksum, computed in the
                  database) for the sink's reconciliation; 0 turns them off (default 300; see
                  producers.adapters.census)

REPLICA IDENTITY FULL: PostgreSQL logs the old row of an UPDATE or DELETE only in full when the table's
replica identity is FULL (by default only the primary key, and for updates nothing unless the key
changed). The adapter checks each table at start and sets FULL when allowed, so every `u` carries its
complete `before` (the processor checks status transitions on it) and every `d` carries the deleted row.
Unchanged TOASTed values missing from an update's new row are taken from the old row.

Initial snapshot: when the slot does not exist yet it is created with an exported snapshot, and the
tables are read from that snapshot first (op `r`, snapshot=True); see producers.adapters.postgres_slot.

Positions: `<commit LSN, 16 hex digits>-<index of the change in its transaction, 10 digits>`. The commit
LSN (wal2json's begin message carries it) rather than each change record's own LSN, because changes of
concurrent transactions interleave in the WAL while logical decoding delivers whole transactions in
commit order; with the commit LSN, lexical order of positions is the order in which the changes took
effect, per key and overall. ts_source is the transaction's commit time (wal2json include-timestamp).
An update that changes the key becomes a `d` of the old key and a `c` of the new one.

Checkpoints and the slot: after each batch, `commit()` waits until Kafka acknowledged it and saves
{snapshot_done, lsn (end of the last fully captured transaction), position (last captured change)};
only then is the slot's confirmed flush position advanced (send_feedback(flush_lsn=lsn)). After a crash
the slot (at most at the checkpoint) re-sends whole transactions; changes at or before the checkpoint's
position are skipped, the rest re-sent with the same positions. A TRUNCATE cannot be turned into
per-row deletes and goes to dlq.adapter. While waiting for Kafka the adapter keeps answering the server
(status messages every few seconds), so the walsender neither times out nor interjects keepalives in the
middle of a transaction; psycopg2 advances its flush position on a keepalive when the last message seen
is not beyond the explicitly flushed position, which is only safe between transactions.
"""

from __future__ import annotations

import json
import logging
import select
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extras
from psycopg2 import sql
from pydantic import PositiveFloat, field_validator
from pydantic_core import PydanticCustomError

from backbone import metrics
from backbone.errors import ConfigError, ServiceUnavailable
from backbone.settings import Settings
from contract.catalog import Entity, SourceSystem
from contract.coerce import FieldErrors, coerce_record
from producers.adapters import _sql_common as common
from producers.adapters import postgres_slot
from producers.adapters.base import SourceAdapter
from producers.adapters.census import CensusRunner, postgres_census
from producers.adapters.options import load_options
from producers.adapters.postgres_slot import format_lsn, parse_lsn
from producers.emitter import Change

log = logging.getLogger(__name__)

# Errors that a reconnection will not cure (a broken connection raises OperationalError, or a bare
# DatabaseError when the walsender ends the stream).
_NOT_TRANSIENT = (psycopg2.ProgrammingError, psycopg2.DataError, psycopg2.IntegrityError, psycopg2.NotSupportedError)
KEEPALIVE_SECONDS = 2.0


class PostgresCdcOptions(common.SqlOptions):
    """The `adapter:` fields of kind postgres_cdc (see the module's documentation)."""

    slot: str
    batch_seconds: PositiveFloat = 0.5
    snapshot: bool = True
    set_replica_identity: bool = True

    @field_validator("slot")
    @classmethod
    def _slot_name(cls, value: str) -> str:
        if not value or not all(c.islower() or c.isdigit() or c == "_" for c in value):
            raise PydanticCustomError("slot_name", "use lowercase letters, digits and '_'")
        return value


def _parse_time(text: str) -> datetime:
    return common.utc(datetime.fromisoformat(text))


@dataclass
class _Table:
    schema: str
    name: str
    entity: Entity
    payload: dict[str, Any]
    fields: frozenset[str]
    warned: bool = False

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass
class _Txn:
    commit_lsn: int
    end_lsn: int
    ts: datetime
    index: int = 0


class PostgresCdcAdapter(SourceAdapter):
    kind = "postgres_cdc"

    def __init__(self, system: SourceSystem, settings: Settings, registry: Any = None) -> None:
        super().__init__(system, settings, registry)
        self.options = options = load_options(PostgresCdcOptions, system)
        self.params = common.connection_params(self, options, "postgres")
        self.slot = options.slot
        self.batch_size = options.batch_size
        self.batch_seconds = options.batch_seconds
        self.take_snapshot = options.snapshot
        self.set_identity = options.set_replica_identity
        self.tables: dict[str, _Table] = {}
        for name, entity_name in options.tables.items():
            schema, table = common.split_table(self, name, "public")
            entity = common.entity_for(self, str(name), entity_name)
            payload = entity.payload_schema()
            self.tables[f"{schema}.{table}"] = _Table(
                schema, table, entity, payload, frozenset(f["name"] for f in payload["fields"])
            )
        self._conn: Any = None
        self._repl: Any = None
        self._cursor: Any = None
        self._last_feedback = 0.0
        self.census = CensusRunner(self, options.census_seconds, lambda: postgres_census(self))

    # -- connections -----------------------------------------------------------------------------
    def _connect(self) -> None:
        name = {"application_name": f"backbone-{self.system.system}"}
        self._conn = common.connect("postgres", self.params, **name)
        self._conn.autocommit = True
        self._repl = common.connect(
            "postgres", self.params, connection_factory=psycopg2.extras.LogicalReplicationConnection, **name
        )
        self._cursor = self._repl.cursor()

    def _close(self) -> None:
        for conn in (self._repl, self._conn):
            if conn is not None:
                try:
                    conn.close()
                except psycopg2.Error:
                    pass
        self._conn = self._repl = self._cursor = None

    def _query(self, statement: Any, args: tuple = ()) -> list[tuple]:
        with self._conn.cursor() as cur:
            cur.execute(statement, args)
            return cur.fetchall() if cur.description else []

    # -- tables ----------------------------------------------------------------------------------
    def _prepare_tables(self) -> None:
        database = self._query("SELECT current_database()")[0][0]
        for table in self.tables.values():
            ident = sql.Identifier(table.schema, table.name)
            rows = self._query(
                "SELECT relreplident FROM pg_class WHERE oid = to_regclass(%s)", (ident.as_string(self._conn),)
            )
            if not rows:
                raise ConfigError(
                    f"{self.system.catalog_file}: field 'adapter.tables' names table {table.qualified!r}, which "
                    f"does not exist in database {database!r}"
                )
            if rows[0][0] != "f":
                if not self.set_identity:
                    raise ConfigError(
                        f"{self.system.catalog_file}: table {table.qualified} is not REPLICA IDENTITY FULL, so "
                        "updates and deletes would lack their full previous row",
                        hint=f"ALTER TABLE {table.qualified} REPLICA IDENTITY FULL",
                    )
                try:
                    self._query(sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(ident))
                except psycopg2.errors.InsufficientPrivilege as exc:
                    raise ConfigError(
                        f"{self.system.catalog_file}: cannot set REPLICA IDENTITY FULL on {table.qualified}: "
                        f"{exc.pgerror.strip() if exc.pgerror else exc}",
                        hint="ask the table owner to run ALTER TABLE ... REPLICA IDENTITY FULL",
                    ) from None
                log.info("%s: set REPLICA IDENTITY FULL on %s", self.system.system, table.qualified)

    # -- rows -> changes -------------------------------------------------------------------------
    def _record(self, table: _Table, raw: dict[str, Any]) -> dict[str, Any]:
        extra = [name for name in raw if name not in table.fields]
        if extra:
            if not table.warned:
                log.info(
                    "%s: ignoring columns of %s not in the payload: %s", self.system.system, table.qualified, extra
                )
                table.warned = True
            raw = {k: v for k, v in raw.items() if k in table.fields}
        return coerce_record(table.payload, raw)

    def _emit_row(
        self,
        table: _Table,
        action: str,
        before_raw: dict[str, Any] | None,
        after_raw: dict[str, Any] | None,
        position: str,
        ts: datetime,
        snapshot: bool = False,
    ) -> None:
        entity = table.entity
        try:
            before = self._record(table, before_raw) if before_raw is not None else None
            after = self._record(table, after_raw) if after_raw is not None else None
        except FieldErrors as exc:
            raw = after_raw if after_raw is not None else before_raw or {}
            key = "|".join(str(raw.get(k)) for k in entity.key)
            original = common.json_bytes(
                {
                    "table": table.qualified,
                    "action": action,
                    "position": position,
                    "before": before_raw,
                    "after": after_raw,
                }
            )
            reason = self.invalid(entity.name, f"invalid row in {table.qualified}", exc.errors, raw)
            self.reject(reason, original, self.pii.key(entity.name, key).encode(), origin=table.qualified)
            return
        name = entity.name
        if action == "I" or snapshot:
            self.emit(
                Change(
                    "r" if snapshot else "c", common.key_of(entity, after), position, ts, None, after, snapshot, name
                )
            )
        elif action == "D":
            self.emit(Change("d", common.key_of(entity, before), position, ts, before, None, False, name))
        elif before is not None and common.key_of(entity, before) != common.key_of(entity, after):
            # The key changed: the old entity is gone, a new one exists.
            self.emit(Change("d", common.key_of(entity, before), position, ts, before, None, False, name))
            self.emit(Change("c", common.key_of(entity, after), position, ts, None, after, False, name))
        else:
            self.emit(Change("u", common.key_of(entity, after), position, ts, before, after, False, name))

    # -- streaming -------------------------------------------------------------------------------
    def _keepalive(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._cursor is not None and (force or now - self._last_feedback >= KEEPALIVE_SECONDS):
            self._cursor.send_feedback(force=True)
            self._last_feedback = now

    def _checkpoint(self, state: dict[str, Any], stop: threading.Event) -> None:
        """Wait for Kafka's acknowledgement (answering the server meanwhile), save the checkpoint, and
        only then confirm the slot's flush position."""
        started = time.monotonic()
        rounds = 0
        while self.unacknowledged():
            for emitter in self.emitters.values():
                emitter.producer.flush(0.5)
            self._dlq.flush(0)
            self._keepalive()
            if self.unacknowledged():
                rounds += 1
                if rounds % 20 == 1:
                    metrics.RETRIES.labels("adapter", "kafka_unavailable").inc()
                    log.warning(
                        "%s: Kafka has not acknowledged %d events; waiting", self.system.system, self.unacknowledged()
                    )
                if stop.is_set() and time.monotonic() - started >= 5:
                    raise ServiceUnavailable(f"{self.system.system}: stopping with events unacknowledged by Kafka")
        self.commit(state, float(state["lsn"]))
        self._cursor.send_feedback(flush_lsn=state["lsn"], force=True)
        self._last_feedback = time.monotonic()

    def _stream(self, state: dict[str, Any], stop: threading.Event) -> None:
        options = {
            "format-version": "2",
            "include-timestamp": "1",
            "include-lsn": "1",
            "include-types": "0",
            "add-tables": ",".join(self.tables),
        }
        self._cursor.start_replication(
            slot_name=self.slot,
            decode=False,
            start_lsn=int(state["lsn"]),
            options=options,
            status_interval=KEEPALIVE_SECONDS,
        )
        log.info("%s: streaming slot %s from %s", self.system.system, self.slot, format_lsn(int(state["lsn"])))
        txn: _Txn | None = None
        last_position = str(state.get("position") or "")
        confirmed_lsn = int(state["lsn"])
        batch = 0
        batch_started = 0.0
        while True:
            if stop.is_set():
                break
            msg = self._cursor.read_message()
            if msg is None:
                if batch or int(state["lsn"]) != confirmed_lsn:
                    if batch == 0 or time.monotonic() - batch_started >= self.batch_seconds:
                        self._checkpoint(state, stop)
                        confirmed_lsn, batch = int(state["lsn"]), 0
                        continue
                # A census as of LSN L is published once every transaction committed before L is captured.
                self.census.poll(max(int(state["lsn"]), self._cursor.wal_end) if txn is None and not batch else None)
                self._keepalive()
                self.heartbeat.beat()
                select.select([self._repl], [], [], 0.2)
                continue
            data = json.loads(msg.payload, parse_float=Decimal)
            action = data.get("action")
            if action == "B":
                txn = _Txn(parse_lsn(data["lsn"]), parse_lsn(data["nextlsn"]), _parse_time(data["timestamp"]))
            elif action == "C":
                state["lsn"] = msg.data_start if txn is None else txn.end_lsn
                state["lsn_text"] = format_lsn(int(state["lsn"]))
                txn = None
            elif action in ("I", "U", "D", "T"):
                if txn is None:
                    raise ServiceUnavailable(f"{self.system.system}: wal2json change outside a transaction: {data}")
                txn.index += 1
                position = f"{txn.commit_lsn:016X}-{txn.index:010d}"
                if position <= last_position:
                    continue  # captured and checkpointed before a restart
                if batch == 0:
                    batch_started = time.monotonic()
                self._change(data, position, txn.ts)
                state["position"] = last_position = position
                batch += 1
            if batch >= self.batch_size or (batch and time.monotonic() - batch_started >= self.batch_seconds):
                self._checkpoint(state, stop)
                confirmed_lsn, batch = int(state["lsn"]), 0
        if batch or int(state["lsn"]) != confirmed_lsn:
            self._checkpoint(state, stop)

    def _change(self, data: dict[str, Any], position: str, ts: datetime) -> None:
        action = data["action"]
        name = f"{data.get('schema')}.{data.get('table')}"
        table = self.tables.get(name)
        if action == "T" or table is None:
            reason = "TRUNCATE cannot be captured row by row" if action == "T" else f"unexpected table {name}"
            self.reject(reason, json.dumps(data, default=str).encode(), None, origin=name)
            return
        columns = {c["name"]: c["value"] for c in data.get("columns") or []}
        identity = {c["name"]: c["value"] for c in data.get("identity") or []} or None
        if action == "I":
            self._emit_row(table, "I", None, columns, position, ts)
        elif action == "D":
            self._emit_row(table, "D", identity, None, position, ts)
        else:
            # Unchanged TOASTed columns are left out of the new row; the old row (identity FULL) has them.
            after = {**identity, **columns} if identity else columns
            self._emit_row(table, "U", identity, after, position, ts)

    # -- main loop -------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        state = self.checkpoints.load() or {}

        def session() -> None:
            nonlocal state
            try:
                self._connect()
                self._prepare_tables()
                state = postgres_slot.ensure_slot(self, state, stop)
                if stop.is_set():
                    return
                self.source_ok()
                self._stream(state, stop)
            finally:
                self._close()

        errors = (psycopg2.DatabaseError, psycopg2.InterfaceError)
        try:
            self.keep_running(stop, session, "PostgreSQL", errors, permanent=_NOT_TRANSIENT, also=(ServiceUnavailable,))
        finally:
            self.census.close()
        log.info("%s: stopped at %s", self.system.system, state.get("position") or state.get("lsn_text"))
