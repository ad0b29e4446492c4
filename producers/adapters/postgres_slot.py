"""The replication slot of the postgres_cdc adapter and its initial snapshot.

Initial snapshot: when the slot does not exist yet, it is created with an exported snapshot; each table
is read inside a REPEATABLE READ transaction that uses that snapshot (SET TRANSACTION SNAPSHOT), so the
snapshot rows (op `r`, snapshot=True) plus the changes the slot streams afterwards are exactly the
tables' history from that moment, nothing missed and nothing twice. Snapshot rows carry the position
`0000000000000000-snapshot` (before every streamed position) and, as ts_source, the server's clock just
before the slot was created (every streamed change commits later). If the adapter dies during the
snapshot, the slot is dropped and the snapshot taken again at restart: rows already sent get the same
position, hence the same event ids, and collapse downstream. A slot that vanished after the snapshot
(dropped by an operator) is recreated with a new snapshot, logged as a warning.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any

from psycopg2 import sql

from backbone.errors import ConfigError, ServiceUnavailable
from producers.adapters import _sql_common as common

if TYPE_CHECKING:
    from producers.adapters.postgres_cdc import PostgresCdcAdapter

log = logging.getLogger(__name__)

SNAPSHOT_POSITION = f"{0:016X}-snapshot"
PLUGIN = "wal2json"


def parse_lsn(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def slot_info(adapter: PostgresCdcAdapter) -> tuple[str, str, int | None] | None:
    """(plugin, database, active pid) of the adapter's slot, or None when it does not exist."""
    rows = adapter._query(
        "SELECT plugin, database, active_pid FROM pg_replication_slots WHERE slot_name = %s", (adapter.slot,)
    )
    return rows[0] if rows else None


def drop_slot(adapter: PostgresCdcAdapter) -> None:
    info = slot_info(adapter)
    if info and info[2] is not None:
        raise ServiceUnavailable(f"replication slot {adapter.slot} is in use by process {info[2]}")
    if info:
        adapter._query("SELECT pg_drop_replication_slot(%s)", (adapter.slot,))


def ensure_slot(adapter: PostgresCdcAdapter, state: dict[str, Any], stop: threading.Event) -> dict[str, Any]:
    """The checkpoint state to stream from: `state` when its slot exists and its snapshot is done;
    otherwise a new slot (and snapshot). {} when stopped during the snapshot."""
    system = adapter.system.system
    info = slot_info(adapter)
    database = adapter._query("SELECT current_database()")[0][0]
    if info and (info[0] != PLUGIN or info[1] != database):
        raise ConfigError(
            f"{adapter.system.catalog_file}: field 'adapter.slot': slot {adapter.slot!r} exists for plugin "
            f"{info[0]!r} in database {info[1]!r}, not {PLUGIN!r} in {database!r}"
        )
    if state.get("snapshot_done") and info:
        return state
    if state.get("snapshot_done"):
        log.warning(
            "%s: replication slot %s is gone (dropped?); changes since the last checkpoint may be missing, "
            "taking a new snapshot",
            system,
            adapter.slot,
        )
    elif info:
        log.info("%s: slot %s has no completed snapshot; starting over", system, adapter.slot)
    drop_slot(adapter)
    snapshot_ts = common.utc(adapter._query("SELECT clock_timestamp()")[0][0])
    export = "EXPORT_SNAPSHOT" if adapter.take_snapshot else "NOEXPORT_SNAPSHOT"
    adapter._cursor.execute(f'CREATE_REPLICATION_SLOT "{adapter.slot}" LOGICAL {PLUGIN} {export}')
    _slot, consistent_point, snapshot_name, _plugin = adapter._cursor.fetchone()
    lsn = parse_lsn(consistent_point)
    log.info("%s: created slot %s at %s", system, adapter.slot, consistent_point)
    if adapter.take_snapshot:
        take_snapshot(adapter, snapshot_name, snapshot_ts, lsn, stop)
        if stop.is_set():
            return {}  # not done: the snapshot is taken again at the next start
    state = {"snapshot_done": True, "lsn": lsn, "lsn_text": consistent_point, "position": "", "slot": adapter.slot}
    adapter.commit(state, float(lsn))
    return state


def take_snapshot(
    adapter: PostgresCdcAdapter, snapshot_name: str, ts: datetime, lsn: int, stop: threading.Event
) -> None:
    """Every table's rows as of the exported snapshot, checkpointed (as not done) after each batch."""
    name = f"backbone-{adapter.system.system}-snapshot"
    conn = common.connect("postgres", adapter.params, application_name=name)
    rows_done = 0
    try:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION SNAPSHOT %s", (snapshot_name,))
        for table in adapter.tables.values():
            with conn.cursor(name=f"backbone_snapshot_{table.name}") as cur:
                cur.itersize = adapter.batch_size
                cur.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table.schema, table.name)))
                while not stop.is_set():
                    rows = cur.fetchmany(adapter.batch_size)
                    if not rows:
                        break
                    columns = [d.name for d in cur.description]
                    for row in rows:
                        after = dict(zip(columns, row, strict=True))
                        adapter._emit_row(table, "R", None, after, SNAPSHOT_POSITION, ts, True)
                    rows_done += len(rows)
                    progress = {"snapshot_done": False, "snapshot_rows": rows_done, "slot": adapter.slot, "lsn": lsn}
                    adapter.commit(progress, float(lsn))
            if stop.is_set():
                return
        conn.rollback()
    finally:
        conn.close()
    log.info("%s: snapshot of %d rows sent", adapter.system.system, rows_done)
