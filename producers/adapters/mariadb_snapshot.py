"""The consistent snapshot of the mariadb_binlog adapter: every configured table read inside
START TRANSACTION WITH CONSISTENT SNAPSHOT, whose binlog coordinates MariaDB reports
(Binlog_snapshot_file/position); the binlog is then read from exactly those coordinates. The coordinates
are checkpointed before the first row is emitted, and the progress (last key per table) with every batch,
so a restart resumes after the last committed key with the same positions. Positions (snapshot and
binlog alike) are binlog coordinates, see format_position."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Any

import pymysql

from backbone.errors import ConfigError

if TYPE_CHECKING:
    from producers.adapters.mariadb_binlog import MariaDbBinlogAdapter

log = logging.getLogger(__name__)


def file_index(binlog_file: str) -> int:
    """binlog.000012 -> 12."""
    try:
        return int(binlog_file.rsplit(".", 1)[1])
    except (IndexError, ValueError):
        raise ValueError(f"binlog file name {binlog_file!r} has no numeric suffix") from None


def format_position(binlog_file: str, pos: int, row: int = 0) -> str:
    """<file index, 8 digits>:<position, 10 digits>:<row in the event, 6 digits>: lexical order is log order."""
    return f"{file_index(binlog_file):08d}:{pos:010d}:{row:06d}"


def numeric_position(binlog_file: str, pos: int) -> float:
    return float(file_index(binlog_file) * 10_000_000_000 + pos)


def take_snapshot(adapter: MariaDbBinlogAdapter, stop: threading.Event, state: dict[str, Any]) -> dict[str, Any]:
    """The snapshot, resumed from `state`'s progress; returns the state (snapshot_done unless stopped)."""
    conn = adapter._connect()
    try:
        adapter._check_server(conn)
        with conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("SET SESSION time_zone = '+00:00'")
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            snap = state.get("snapshot")
            if snap is None:
                cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
                status = {r["Variable_name"].lower(): r["Value"] for r in cur.fetchall()}
                if not status.get("binlog_snapshot_file"):
                    raise ConfigError(
                        f"{adapter.host}:{adapter.port} reports no Binlog_snapshot_file: the adapter needs MariaDB "
                        "with the binary log on"
                    )
                file, pos = status["binlog_snapshot_file"], int(status["binlog_snapshot_position"])
                # Whole seconds: binlog timestamps are whole seconds, and later changes must not look older.
                ts = float(math.floor(time.time()))
                snap = {"file": file, "pos": pos, "ts": ts, "tables_done": [], "table": None, "after": None}
                state = {
                    "snapshot_done": False,
                    "binlog_file": file,
                    "binlog_pos": pos,
                    "gtid": None,
                    "ts_floor": ts,
                    "snapshot": snap,
                }
                # Durable before the first row: a restart re-uses these coordinates, hence the same positions.
                adapter.commit(state, numeric_position(file, pos))
                log.info("%s: snapshot at %s:%d", adapter.system.system, file, pos)
            position = format_position(snap["file"], snap["pos"])
            for table in adapter.tables:
                if table in snap["tables_done"]:
                    continue
                after = snap["after"] if snap["table"] == table else None
                keys = adapter.tables[table].key
                order = ", ".join(f"`{k}`" for k in keys)
                while True:
                    if stop.is_set():
                        return state
                    where, args = "", []
                    if after is not None:
                        where = f"WHERE ({order}) > ({', '.join(['%s'] * len(keys))}) "
                        args = list(after)
                    cur.execute(
                        f"SELECT * FROM `{table}` {where}ORDER BY {order} LIMIT {adapter.batch_size}",
                        args,
                    )
                    rows = cur.fetchall()
                    for row in rows:
                        change = adapter._change(table, "r", position, snap["ts"], None, row, snapshot=True)
                        if change is not None:
                            adapter.emit(change)
                    if rows:
                        after = [rows[-1][k] for k in keys]
                        snap["table"], snap["after"] = table, after
                        # json round trip: the state as it will be read back after a restart.
                        state = json.loads(json.dumps(state, default=str))
                        snap = state["snapshot"]
                        adapter.commit(state, numeric_position(snap["file"], snap["pos"]))
                    if len(rows) < adapter.batch_size:
                        break
                snap["tables_done"].append(table)
                snap["table"], snap["after"] = None, None
                adapter.commit(state, numeric_position(snap["file"], snap["pos"]))
            state["snapshot_done"] = True
            state.pop("snapshot", None)
            adapter.commit(state, numeric_position(state["binlog_file"], state["binlog_pos"]))
            log.info("%s: snapshot done", adapter.system.system)
            return state
    finally:
        try:
            conn.rollback()
            conn.close()
        except pymysql.MySQLError:
            pass
