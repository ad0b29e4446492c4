"""Known keys of the query_poll adapter, for finding hard deletes (reconcile_seconds > 0 only).

A SQLite file next to the checkpoint (<run_dir>/checkpoints/<system>.keys.sqlite) keeps, per table, every
key sent and not deleted, with its last position and row (a `d` needs the complete previous row). It grows
with the number of live rows: roughly key + position + the row as JSON, so about 0.5-1 KiB per row for
licensing (1 GB per million rows). It is updated before each checkpoint; deletions found by reconciliation
are written to it first (with their detection time), then emitted, then removed once Kafka acknowledged,
so a crash re-sends them with the same position and time. Reconciliation runs only when every table is
caught up; it streams the source's keys through a temporary SQLite table, so memory stays bounded.

No personal data in clear: the file is private (0600, in the 0700 checkpoint folder), each row is kept
sealed (backbone.sealing, the dead-letter key), and the key of a table whose entity key has a pii field is
kept as its keyed hash (`stored_key`, the processor's pseudonymisation); the clear key of a vanished row is
taken from its unsealed row. A file of an older version (clear keys and rows) is converted when opened.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from backbone.sealing import Sealer
from producers.adapters import _sql_common as common
from producers.emitter import Change

FORMAT = "sealed-1"


def _clear_key(_table: str, key: str) -> str:
    return key


class KnownKeys:
    """The keys sent and not deleted, per table, in one SQLite file written with full durability."""

    def __init__(self, path: Path, sealer: Sealer, stored_key: Callable[[str, str], str] = _clear_key) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        old = os.umask(0o077)  # the database and its -wal/-shm files are created private
        try:
            for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                if name.exists():
                    os.chmod(name, 0o600)
            self.db = sqlite3.connect(path, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
        finally:
            os.umask(old)
        self.sealer = sealer
        self.stored_key = stored_key
        self.db.execute("PRAGMA synchronous=FULL")
        fresh = not self.db.execute("SELECT name FROM sqlite_master WHERE name = 'known'").fetchone()
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS known (tbl TEXT NOT NULL, key TEXT NOT NULL, position TEXT NOT NULL, "
            "ts TEXT NOT NULL, row TEXT NOT NULL, deleted_ts TEXT, PRIMARY KEY (tbl, key))"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
        found = self.db.execute("SELECT value FROM meta WHERE name = 'format'").fetchone()
        if found is None:
            if not fresh:
                self._convert()
            self.db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('format', ?)", (FORMAT,))

    def _convert(self) -> None:
        """A file of the older version: seal its rows and hash its pii keys, in one transaction."""
        db = self.db
        db.execute("BEGIN")
        rows = db.execute("SELECT rowid, tbl, key, row FROM known").fetchall()
        for rowid, table, key, row in rows:
            sealed = row if isinstance(row, bytes) else self._seal(row)
            db.execute(
                "UPDATE known SET key = ?, row = ? WHERE rowid = ?", (self.stored_key(table, key), sealed, rowid)
            )
        db.execute("COMMIT")

    def _seal(self, row_json: str) -> bytes:
        return self.sealer.seal(row_json.encode("utf-8", errors="surrogatepass"))

    def row(self, stored: bytes | str) -> str:
        """The JSON of a kept row (unsealed)."""
        if isinstance(stored, str):
            return stored
        return self.sealer.unseal(stored).decode("utf-8", errors="surrogatepass")

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
                db.execute("DELETE FROM known WHERE tbl = ? AND key = ?", (table, self.stored_key(table, change.key)))
            else:
                db.execute(
                    "INSERT INTO known (tbl, key, position, ts, row, deleted_ts) VALUES (?, ?, ?, ?, ?, NULL) "
                    "ON CONFLICT (tbl, key) DO UPDATE SET position = excluded.position, ts = excluded.ts, "
                    "row = excluded.row, deleted_ts = NULL",
                    (
                        table,
                        self.stored_key(table, change.key),
                        change.position,
                        change.ts_source.isoformat(),
                        self._seal(common.json_bytes(change.after).decode()),
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
            stored = [(self.stored_key(table, k),) for k in keys]
            db.executemany("INSERT OR IGNORE INTO present (key) VALUES (?)", stored)
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
        """Up to `limit` keys marked deleted (as stored: see `forget`), with their last position, row
        (JSON, unsealed) and deletion time."""
        rows = self.db.execute(
            "SELECT key, position, row, deleted_ts FROM known WHERE tbl = ? AND deleted_ts IS NOT NULL "
            "ORDER BY key LIMIT ?",
            (table, limit),
        ).fetchall()
        return [(key, position, self.row(row), deleted_ts) for key, position, row, deleted_ts in rows]

    def forget(self, table: str, keys: list[str]) -> None:
        """Forget keys as `deleted` returned them (stored form)."""
        self.db.execute("BEGIN")
        self.db.executemany("DELETE FROM known WHERE tbl = ? AND key = ?", [(table, k) for k in keys])
        self.db.execute("COMMIT")
