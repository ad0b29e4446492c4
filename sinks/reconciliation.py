"""Reconciliation: each census an adapter publishes (contract/census.py, topic `census`) compared with
the store, one row per comparison in the `reconciliation` table and the gauge
backbone_reconciliation_difference_rows{system, entity}.

The store side counts the same hash over `entity_key` in ClickHouse:
  position  the entity's state as of the census's source position: from the state table the keys whose
            newest version is not after it and not deleted, and for keys changed after it (newest version
            later) their last change at or before it in the change log. Changes captured after the census
            never count, so the comparison is exact once every change up to the position is stored.
  current   `<table>_current` now.
  file      the file's rows (position = the file's digest) stored in the change log + the rows the adapter
            rejected, against the rows in the file.
A census that does not match yet is compared again (every few seconds, as the sink's loop turns) until
it matches or `BACKBONE_RECONCILE_GRACE_SECONDS` have passed since it arrived (a newer census of the same
entity takes its place, and its arrival time): in-flight changes are not reported, a difference still
there after the grace is. Each row carries the census's position.
Differing keys are named (at most contract.census.MAX_KEYS_SHOWN) where a bucket differs by one key
the store holds or held: an extra key, or a missing one the store has as deleted.

Pending censuses live in the sink's memory: one pending when the sink crashes is not compared (its
offset may be committed with its batch); the next census of the entity is. A census compared twice
(re-read after a crash) is one row: the table collapses on census_id."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Message

from backbone import metrics
from contract.catalog import Catalog, Entity
from contract.census import (
    MAX_KEYS_SHOWN,
    Census,
    Difference,
    buckets_from_rows,
    compare,
    key_hash,
    single_key_hashes,
)
from contract.positions import version_of

log = logging.getLogger(__name__)

TABLE = "reconciliation"
DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    system LowCardinality(String) COMMENT 'Catalog name of the departmental system',
    entity LowCardinality(String) COMMENT 'Entity name in the catalog',
    checked_at DateTime64(3, 'UTC') COMMENT 'When the sink compared the census with the store',
    census_id String COMMENT 'Which census (system/entity/mode/position/taken_at)',
    mode LowCardinality(String) COMMENT 'position: as of a source position; current: now; file: one dropped file',
    source String COMMENT 'Source table or file',
    source_position String COMMENT 'Source position the census was taken at (a file: its digest)',
    taken_at DateTime64(3, 'UTC') COMMENT 'When the adapter took the census',
    source_rows UInt64 COMMENT 'Rows in the source (a file: its data rows)',
    store_rows UInt64 COMMENT 'Rows in the store as of the same position (a file: stored + rejected)',
    missing UInt64 COMMENT 'Rows in the source that the store lacks',
    extra UInt64 COMMENT 'Rows in the store that the source lacks',
    checksum_match Bool COMMENT 'Row count and key checksum equal',
    extra_keys Array(String) COMMENT 'Extra keys, where they can be named (at most 20)',
    missing_keys Array(String) COMMENT 'Missing keys the store holds as deleted, where they can be named'
) ENGINE = ReplacingMergeTree(checked_at)
ORDER BY (system, entity, census_id)
COMMENT 'Each census of a source compared with the store: reconciliation'
"""
COLUMNS = [
    "system", "entity", "checked_at", "census_id", "mode", "source", "source_position", "taken_at",
    "source_rows", "store_rows", "missing", "extra", "checksum_match", "extra_keys", "missing_keys",
]  # fmt: skip
RECHECK_SECONDS = 2.0
_BUCKET = "reinterpretAsUInt8(substring(MD5(entity_key), 9, 1))"
_HASH = "reinterpretAsUInt64(reverse(substring(MD5(entity_key), 1, 8)))"


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def keys_sql(census: Census, entity: Entity, kind: str) -> str:
    """The entity's keys in the store as the census counts them (see the module doc)."""
    table = entity.table
    if census.mode != "position" or kind not in ("postgres_cdc", "mariadb_binlog"):
        return f"SELECT entity_key FROM {table}_current"
    version = f"toUInt128('{version_of(kind, census.position, 0, 'r')}')"
    position = _literal(census.position)
    return (
        f"SELECT entity_key FROM (SELECT entity_key, argMax(is_deleted, version) AS deleted, max(version) AS newest "
        f"FROM {table}_state GROUP BY entity_key) WHERE newest <= {version} AND NOT deleted "
        f"UNION ALL SELECT entity_key FROM {table} FINAL "
        f"WHERE entity_key IN (SELECT entity_key FROM {table}_state WHERE version > {version}) "
        f"AND source_position <= {position} GROUP BY entity_key HAVING argMax(is_deleted, source_position) = 0"
    )


class Reconciler:
    """Takes census messages out of the sink's batches and compares them as the loop turns."""

    def __init__(self, client: Any, catalog: Catalog, kinds: dict[str, str], topic: str, grace: float) -> None:
        self.client = client
        self.topic = topic
        self.grace = grace
        self.kinds = kinds
        self.entities = {(e.system, e.name): e for e in catalog.entities}
        # (system, entity) -> (census, when it arrived, when to compare next): a newer census replaces it.
        self.pending: dict[tuple[str, str], tuple[Census, float, float]] = {}
        self._gauge = metrics.ChildCache(metrics.RECONCILIATION_DIFFERENCE)
        client.command(DDL)

    def take(self, msg: Message) -> bool:
        """True when `msg` is a census (kept for comparing); anything else is the sink's."""
        if msg.topic() != self.topic:
            return False
        try:
            census = Census.from_bytes(msg.value() or b"")
        except ValueError as exc:
            log.warning("census %s[%d]@%d ignored: %s", msg.topic(), msg.partition(), msg.offset(), exc)
            return True
        if (census.system, census.entity) not in self.entities:
            log.warning("census of %s/%s ignored: not in the catalog", census.system, census.entity)
            return True
        name = (census.system, census.entity)
        # A newer census replaces one still waiting, but not its arrival: a difference that lasts from one
        # census to the next is not in flight, and is reported once the first has waited the grace.
        arrived = self.pending[name][1] if name in self.pending else time.monotonic()
        self.pending[name] = (census, arrived, 0.0)
        return True

    def check(self) -> int:
        """Compare the pending censuses that are due; returns how many were recorded."""
        now = time.monotonic()
        rows = []
        for name, (census, arrived, due) in list(self.pending.items()):
            if now < due:
                continue
            try:
                row, diff = self.compare(census, self.entities[name])
            except Exception as exc:  # noqa: BLE001 - the store is failing: its inserts say so; try again later
                log.warning("reconciliation of %s/%s failed: %s", *name, str(exc).splitlines()[:1])
                self.pending[name] = (census, arrived, now + RECHECK_SECONDS)
                continue
            if diff.matches or now - arrived >= self.grace:
                rows.append(row)
                del self.pending[name]
                self._gauge(census.system, census.entity).set(diff.rows)
                if not diff.matches:
                    log.warning(
                        "reconciliation of %s/%s at %s: %d missing, %d extra (%s)",
                        census.system, census.entity, census.position, diff.missing, diff.extra,
                        ", ".join(row[13][:5]) or "keys not named",
                    )  # fmt: skip
            else:
                self.pending[name] = (census, arrived, now + RECHECK_SECONDS)
        if rows:
            self.client.insert(TABLE, rows, column_names=COLUMNS)
        return len(rows)

    def compare(self, census: Census, entity: Entity) -> tuple[list[Any], Difference]:
        if census.mode == "file":
            return self._compare_file(census, entity)
        keys = keys_sql(census, entity, self.kinds.get(entity.table, census.kind))
        result = self.client.query(
            f"SELECT {_BUCKET} AS b, count(), sumWithOverflow({_HASH}) FROM ({keys}) GROUP BY b"
        ).result_rows
        store = buckets_from_rows(result)
        diff = compare(census.buckets, store)
        extra_keys, missing_keys = self._name_keys(diff, keys, entity) if diff.buckets else ([], [])
        store_rows = sum(n for n, _ in store.values())
        return self._row(census, census.rows, store_rows, diff, extra_keys, missing_keys), diff

    def _name_keys(self, diff: Difference, keys: str, entity: Entity) -> tuple[list[str], list[str]]:
        extra_h, missing_h = single_key_hashes(diff)
        if not (extra_h or missing_h) or len(extra_h) + len(missing_h) > MAX_KEYS_SHOWN * 4:
            return [], []
        extra_hashes, missing_hashes = set(extra_h.items()), set(missing_h.items())
        buckets = ", ".join(str(b) for b in sorted({*extra_h, *missing_h}))
        extra: list[str] = []
        if extra_hashes:
            found = self.client.query(f"SELECT entity_key FROM ({keys}) WHERE {_BUCKET} IN ({buckets})").result_rows
            extra = sorted(k for (k,) in found if key_hash(k) in extra_hashes)[:MAX_KEYS_SHOWN]
        missing: list[str] = []
        if missing_hashes:  # keys the store holds as deleted (or held before a later change)
            found = self.client.query(
                f"SELECT DISTINCT entity_key FROM {entity.table}_state WHERE {_BUCKET} IN ({buckets})"
            ).result_rows
            missing = sorted(k for (k,) in found if key_hash(k) in missing_hashes)[:MAX_KEYS_SHOWN]
        return extra, missing

    def _compare_file(self, census: Census, entity: Entity) -> tuple[list[Any], Difference]:
        prefix = _literal(census.position + ":")
        stored = int(
            self.client.query(
                f"SELECT count() FROM {entity.table} FINAL WHERE startsWith(source_position, {prefix})"
            ).result_rows[0][0]
        )
        accounted = stored + census.file_rejected
        diff = Difference(missing=max(0, census.file_rows - accounted), extra=max(0, accounted - census.file_rows))
        if diff.rows:
            diff.buckets[0] = (accounted - census.file_rows, 0)
        return self._row(census, census.file_rows, accounted, diff, [], []), diff

    @staticmethod
    def _row(
        census: Census, source_rows: int, store_rows: int, diff: Difference, extra: list[str], missing: list[str]
    ) -> list[Any]:
        return [
            census.system, census.entity, datetime.now(UTC), census.census_id, census.mode, census.source,
            census.position, census.taken_at, source_rows, store_rows, diff.missing, diff.extra, diff.matches,
            extra, missing,
        ]  # fmt: skip
