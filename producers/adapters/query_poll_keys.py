"""Known keys of the query_poll adapter, for finding hard deletes (reconcile_seconds > 0 only).

A SQLite file next to the checkpoint (<run_dir>/checkpoints/<system>.keys.sqlite) keeps, per table, every
key sent and not deleted, with its last position and row (a `d` needs the complete previous row). It grows
with the number of live rows: roughly key + position + the row as JSON, so about 0.5-1 KiB per row for
licensing (1 GB per million rows). It is updated before each checkpoint; deletions found by reconciliation
are written to it first (with their detection time), then emitted, then removed once Kafka acknowledged,
so a crash re-sends them with the same position and time. Reconciliation runs only when every table is
caught up; it streams the source's keys through a temporary SQLite table, so memory stays bounded.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from producers.adapters import _sql_common as common
from producers.emitter import Change


class KnownKeys:
    """The keys sent and not deleted, per table, in one SQLite file written with full durability."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS known (tbl TEXT NOT NULL, key TEXT NOT NULL, position TEXT NOT NULL, "
            "ts TEXT NOT NULL, row TEXT NOT NULL, deleted_ts TEXT, PRIMARY KEY (tbl, key))"
        )

    def close(self) -> None:
        self.db.close()

    def remember(self, table: str, changes: list[Change]) -> None:
        """Record the changes of one batch: keys deleted are forgotten, the others kept with their row."""
        if not changes:
            return
        db = self.db
        db.execute("BEGIN")
        for change in changes:
            if change.op == "d":
                db.execute("DELETE FROM known WHERE tbl = ? AND key = ?", (table, change.key))
            else:
                db.execute(
                    "INSERT INTO known (tbl, key, position, ts, row, deleted_ts) VALUES (?, ?, ?, ?, ?, NULL) "
                    "ON CONFLICT (tbl, key) DO UPDATE SET position = excluded.position, ts = excluded.ts, "
                    "row = excluded.row, deleted_ts = NULL",
                    (
                        table,
                        change.key,
                        change.position,
                        change.ts_source.isoformat(),
                        common.json_bytes(change.after).decode(),
                    ),
                )
        db.execute("COMMIT")

    def deletes_pending(self, table: str) -> bool:
        """Whether deletions found before are still to be sent."""
        query = "SELECT count(*) FROM known WHERE tbl = ? AND deleted_ts IS NOT NULL"
        return bool(self.db.execute(query, (table,)).fetchone()[0])

    def mark_vanished(self, table: str, present: Iterable[list[str]], stop: threading.Event) -> bool:
        """Mark as deleted (now) every known key of `table` not among the `present` keys (batches of
        the source's keys); False, with nothing marked, when `stop` was set meanwhile."""
        db = self.db
        db.execute("CREATE TEMP TABLE IF NOT EXISTS present (key TEXT PRIMARY KEY)")
        db.execute("DELETE FROM present")
        for keys in present:
            db.execute("BEGIN")
            db.executemany("INSERT OR IGNORE INTO present (key) VALUES (?)", [(k,) for k in keys])
            db.execute("COMMIT")
            if stop.is_set():
                return False
        if stop.is_set():
            return False
        now = datetime.now(UTC)
        db.execute("BEGIN")
        query = "SELECT key, ts FROM known WHERE tbl = ? AND key NOT IN (SELECT key FROM present)"
        for key, ts in db.execute(query, (table,)).fetchall():
            when = max(now, datetime.fromisoformat(ts))
            db.execute("UPDATE known SET deleted_ts = ? WHERE tbl = ? AND key = ?", (when.isoformat(), table, key))
        db.execute("COMMIT")
        db.execute("DELETE FROM present")
        return True

    def deleted(self, table: str, limit: int) -> list[tuple[str, str, str, str]]:
        """Up to `limit` keys marked deleted, with their last position, row (JSON) and deletion time."""
        return self.db.execute(
            "SELECT key, position, row, deleted_ts FROM known WHERE tbl = ? AND deleted_ts IS NOT NULL "
            "ORDER BY key LIMIT ?",
            (table, limit),
        ).fetchall()

    def forget(self, table: str, keys: list[str]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany("DELETE FROM known WHERE tbl = ? AND key = ?", [(table, k) for k in keys])
        self.db.execute("COMMIT")
