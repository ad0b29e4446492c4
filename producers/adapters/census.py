"""The database adapters' census (contract/census.py): every `census_seconds` (catalog `adapter:` field,
default 300; 0 turns it off) the adapter counts each table's keys IN THE SOURCE DATABASE, with SQL (the
rows never travel), as of a source position, and publishes one census per entity on the `census` topic
once its own capture has passed that position, so the sink compares like with like.

  postgres_cdc    REPEATABLE READ read-only transaction whose first statement reads
                  pg_current_wal_insert_lsn(): every transaction its snapshot sees committed before
                  that LSN L; position `<L, 16 hex>-0000000000` (before every change committed at or after
                  L). Published once the replication stream has passed L with no transaction open.
  query_poll      the rows it would read (cursor set, not soft-deleted), now (mode current: no position
                  orders a poll's reads against a snapshot), published at once.
  file_drop       no periodic census: one per file once it is done (mode file), its data rows and the
                  rows the adapter rejected, the position the file's digest.
  mariadb_binlog  START TRANSACTION WITH CONSISTENT SNAPSHOT, whose binlog coordinates the server reports
                  (Binlog_snapshot_file/position): position `<file index>:<position>:999999`, after every
                  row event of the transactions the snapshot sees. Published once the binlog reader passed it.

The census runs in a thread of its own on its own connection, so a long count never holds up the
capture loop (nor the replication keepalives). A census that fails (source unavailable) is logged and
taken again at the next interval; one lost in a crash is simply not compared."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from psycopg2 import sql

from backbone import kafka
from contract.census import Census, buckets_from_rows
from contract.topics import CENSUS, named
from producers.adapters import _sql_common as common
from producers.adapters.mariadb_snapshot import file_index

log = logging.getLogger(__name__)


def postgres_census_sql(
    schema: str | None, table: str, key: tuple[str, ...], cursor: str | None = None, deleted: str | None = None
) -> sql.Composed:
    """(bucket, rows, sum of h) of a PostgreSQL table's keys (contract.census defines the hash); with
    `cursor`/`deleted` (query_poll) only the rows it reads (cursor set) and not soft-deleted."""
    text = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(k)) for k in key)
    where = [sql.SQL("{} IS NOT NULL").format(sql.Identifier(cursor))] if cursor else []
    if deleted:  # a flag (false) or a deletion time (NULL) when not deleted
        where.append(sql.SQL("coalesce({}::text, '') IN ('', 'false', '0')").format(sql.Identifier(deleted)))
    name = sql.Identifier(schema, table) if schema else sql.Identifier(table)
    condition = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL("")
    return sql.SQL(
        "SELECT ('x' || substr(m, 17, 2))::bit(8)::int, count(*), sum(('x' || substr(m, 1, 16))::bit(64)::bigint) "
        "FROM (SELECT md5(concat_ws('|', {})) AS m FROM {}{}) AS keys GROUP BY 1"
    ).format(text, name, condition)


def mariadb_census_sql(
    database: str | None, table: str, key: tuple[str, ...], cursor: str | None = None, deleted: str | None = None
) -> str:
    """The same for MariaDB/MySQL (names are plain identifiers, checked by the adapter's options)."""
    text = ", ".join(f"`{k}`" for k in key)
    where = [f"`{cursor}` IS NOT NULL"] if cursor else []
    if deleted:
        where.append(f"COALESCE(CAST(`{deleted}` AS CHAR), '') IN ('', '0')")
    name = f"`{database}`.`{table}`" if database else f"`{table}`"
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    return (
        "SELECT CAST(CONV(SUBSTR(m, 17, 2), 16, 10) AS UNSIGNED) AS bucket, COUNT(*), "
        "SUM(CAST(CONV(SUBSTR(m, 1, 16), 16, 10) AS UNSIGNED)) "
        f"FROM (SELECT MD5(CONCAT_WS('|', {text})) AS m FROM {name}{condition}) AS census_keys GROUP BY bucket"
    )


class CensusRunner:
    """Takes censuses in a thread every `interval` seconds and publishes each once the adapter's loop,
    calling `poll(at)`, has captured up to its position. `take()` returns (mark, censuses): the mark is
    compared with `at`, the loop's own position when everything before it is acknowledged (an LSN,
    binlog coordinates), or None in the middle of a transaction or batch."""

    def __init__(self, adapter: Any, interval: float, take: Callable[[], tuple[Any, list[Census]]]) -> None:
        self.adapter = adapter
        self.interval = interval
        self.take = take
        self.topic = named(adapter.settings, CENSUS)
        self._producer: Any = None
        self._lock = threading.Lock()
        self._ready: tuple[Any, list[Census]] | None = None
        self._thread: threading.Thread | None = None
        self._next = time.monotonic()  # the first census soon after the start
        self.published = 0

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def poll(self, at: Any) -> None:
        """From the capture loop: start a census when due; publish a finished one once `at` passed it."""
        if not self.enabled:
            return
        with self._lock:
            ready = self._ready
        if ready is not None and (ready[0] is None or (at is not None and at >= ready[0])):
            with self._lock:
                self._ready = None
            self._publish(ready[1])
        if ready is None and self._thread is None and time.monotonic() >= self._next:
            self._next = time.monotonic() + self.interval
            self._thread = threading.Thread(target=self._run, name="census", daemon=True)
            self._thread.start()
        if self._producer is not None:
            self._producer.poll(0)

    def _run(self) -> None:
        try:
            result = self.take()
            with self._lock:
                self._ready = result
        except Exception as exc:  # noqa: BLE001 - the source may be down; the next census tries again
            log.warning("%s: census failed: %s", self.adapter.system.system, str(exc).strip().splitlines()[:1])
        finally:
            self._thread = None

    def publish(self, censuses: list[Census]) -> None:
        """Publish at once (a file-drop adapter's census of a file it finished)."""
        self._publish(censuses)
        self._producer.poll(0)

    def _publish(self, censuses: list[Census]) -> None:
        if self._producer is None:
            self._producer = kafka.make_producer(self.adapter.settings, "dead_letters")
        for census in censuses:
            kafka.produce(self._producer, self.topic, census.to_bytes(), census.key(), stage="adapter")
            log.info("%s: census of %s: %d rows at %s", census.system, census.entity, census.rows, census.position)
        self.published += len(censuses)

    def close(self, timeout: float = 5.0) -> None:
        if self._producer is not None:
            self._producer.flush(timeout)


def postgres_census(adapter: Any) -> tuple[int, list[Census]]:
    """Every table of a postgres_cdc adapter, as of one snapshot: (LSN, censuses)."""
    conn = common.connect("postgres", adapter.params, application_name=f"backbone-{adapter.system.system}-census")
    try:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with conn.cursor() as cur:
            # The first statement takes the snapshot; the LSN read in it is after every commit it sees.
            cur.execute("SELECT pg_current_wal_insert_lsn()::text")
            lsn_text = cur.fetchone()[0]
            high, _, low = lsn_text.partition("/")
            lsn = (int(high, 16) << 32) + int(low, 16)
            censuses = []
            for table in adapter.tables.values():
                cur.execute(postgres_census_sql(table.schema, table.name, table.entity.key))
                censuses.append(
                    Census(
                        system=adapter.system.system,
                        entity=table.entity.name,
                        kind=adapter.kind,
                        mode="position",
                        position=f"{lsn:016X}-0000000000",
                        buckets=buckets_from_rows(cur.fetchall()),
                        source=table.qualified,
                    )
                )
        conn.rollback()
        return lsn, censuses
    finally:
        conn.close()


def mariadb_census(adapter: Any) -> tuple[tuple[int, int], list[Census]]:
    """Every table of a mariadb_binlog adapter, as of one consistent snapshot: ((file index, pos), censuses)."""
    conn = adapter._connect()
    try:
        with conn.cursor() as cur:
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
            status = {name.lower(): value for name, value in cur.fetchall()}
            binlog_file, binlog_pos = status["binlog_snapshot_file"], int(status["binlog_snapshot_position"])
            mark = (file_index(binlog_file), binlog_pos)
            censuses = []
            for table, entity in adapter.tables.items():
                cur.execute(mariadb_census_sql(adapter.database, table, entity.key))
                censuses.append(
                    Census(
                        system=adapter.system.system,
                        entity=entity.name,
                        kind=adapter.kind,
                        mode="position",
                        position=f"{mark[0]:08d}:{mark[1]:010d}:999999",
                        buckets=buckets_from_rows(cur.fetchall()),
                        source=f"{adapter.database}.{table}",
                    )
                )
            cur.execute("COMMIT")
        return mark, censuses
    finally:
        conn.close()


def query_poll_census(adapter: Any) -> tuple[None, list[Census]]:
    """Every table of a query_poll adapter, now (mode current): (None, censuses)."""
    conn = common.connect(adapter.driver, adapter.params)
    try:
        censuses = []
        for table in adapter.tables:
            if adapter.driver == "postgres":
                statement: Any = postgres_census_sql(
                    table.schema, table.table, table.entity.key, table.cursor, table.deleted
                )
            else:
                schema = table.schema or adapter.params.get("database")
                statement = mariadb_census_sql(schema, table.table, table.entity.key, table.cursor, table.deleted)
            cur = conn.cursor()
            try:
                cur.execute(statement)
                buckets = buckets_from_rows(cur.fetchall())
            finally:
                cur.close()
                conn.rollback()
            name = table.entity.name
            censuses.append(
                Census(adapter.system.system, name, adapter.kind, "current", buckets=buckets, source=table.name)
            )
        return None, censuses
    finally:
        conn.close()
