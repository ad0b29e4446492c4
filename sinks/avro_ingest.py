"""The sink's fast path: ClickHouse decodes the clean topic's bytes itself.

A batch of one entity's messages of one clean schema is inserted raw with FORMAT AvroConfluent (the
engine fetches the writer schema from the registry's Confluent-compatible API once) into a temporary
Memory table, checked there, and moved in SQL into the state table and the change log, with the
Kafka partition and offset of each row, the stored time and the version the processor computed
(`source_version`). No event is decoded in Python.

Whatever the fast path cannot take exactly as the Python path would store it goes to the Python path,
which dead-letters the rows it cannot store one by one: a batch the engine cannot decode, a decimal
wider than its column, a record without a usable `source_version` (written before the field
existed), a schema with nested records or multi-type unions (stored as JSON text). A table whose
batches fail here three times in a row (a registry the engine cannot reach) takes the Python path for
ten minutes. A registry behind a password or a private CA is not given to the engine (the password
would travel in the query's text): then every batch takes the Python path."""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime
from typing import Any, NamedTuple

from backbone import metrics
from contract.rules import SOURCE_VERSION
from sinks import ddl

log = logging.getLogger(__name__)

# The versions the SQL path takes: up to 38 digits (< 2**128); any other value goes the Python way.
_VERSION_PATTERN = "^[0-9]{1,38}$"
_GIVE_UP_AFTER = 3
_TRY_AGAIN_AFTER_SECONDS = 600.0
_DECIMAL = re.compile(r"^(?:Nullable\()?Decimal\((\d+), (\d+)\)\)?$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BOUNDS = [*map(repr, metrics.FRESHNESS_BUCKETS), "inf"]  # the histogram's upper bounds, +Inf last


def fast_columns(clean_schema: dict[str, Any]) -> bool:
    """Whether every field maps to its column through FORMAT AvroConfluent as the Python path stores
    it: nested records and multi-type unions are stored as JSON text there, so not here."""

    def simple(avro_type: Any) -> bool:
        if isinstance(avro_type, list):
            rest = [t for t in avro_type if t != "null"]
            return len(rest) == 1 and simple(rest[0])
        if isinstance(avro_type, dict):
            kind = avro_type.get("type")
            if kind == "record" or isinstance(kind, list | dict):
                return False
            if kind == "array":
                return simple(avro_type["items"]) and not _is_decimal(avro_type["items"])
            if kind == "map":
                return simple(avro_type["values"]) and not _is_decimal(avro_type["values"])
        return True

    return all(simple(f["type"]) for f in clean_schema["fields"])


def _is_decimal(avro_type: Any) -> bool:
    rest = [t for t in avro_type if t != "null"] if isinstance(avro_type, list) else [avro_type]
    return any(isinstance(t, dict) and t.get("logicalType") == "decimal" for t in rest)


def offset_expression(messages: list[Any]) -> tuple[str, str]:
    """SQL for each staged row's Kafka partition and offset, from the row's number in the batch:
    the batch as runs of consecutive offsets of one partition (a transaction marker starts a new
    run), so the expression is small whatever the batch size."""
    runs: list[tuple[int, int, int]] = []  # (first row, partition, first offset)
    last: tuple[int, int] | None = None
    for row, msg in enumerate(messages):
        partition, offset = msg.partition(), msg.offset()
        if last is None or last != (partition, offset - 1):
            runs.append((row, partition, offset))
        last = (partition, offset)
    row = "rowNumberInAllBlocks()"
    if len(runs) == 1:
        ((_, partition, first),) = runs
        return str(partition), f"{row} + {first}"
    starts = ", ".join(str(start) for start, _, _ in runs[1:])
    index = f"arrayFirstIndex(s -> s > {row}, [{starts}, {len(messages)}])"  # 1-based run of the row
    partitions = ", ".join(str(p) for _, p, _ in runs)
    bases = ", ".join(str(first - start) for start, _, first in runs)
    return f"[{partitions}][{index}]", f"{row} + [{bases}][{index}]"


class Stored(NamedTuple):
    """What the fast path stored: the rows' freshness (source change to `now`) counted at most each
    of the freshness histogram's bounds, its sum, and the newest ts_emitted."""

    fresh_within: list[int]
    fresh_seconds: float
    newest_emitted: datetime


class AvroIngest:
    """Per (table, schema id): its staging table and whether the fast path serves it."""

    def __init__(self, client: Any, registry_url: str, enabled: bool = True) -> None:
        self.client = client
        self.enabled = enabled and bool(registry_url)
        self.settings = {"format_avro_schema_registry_url": registry_url, "input_format_avro_allow_missing_fields": 1}
        self.served: dict[tuple[str, int], bool] = {}  # (table, schema id) -> the engine can take it
        self.staged: dict[tuple[str, int], tuple[str, list[str]]] = {}  # -> staging table, its columns
        self.failures: dict[str, int] = {}
        self.resting: dict[str, float] = {}  # table -> when to try the fast path again

    def serves(self, table: str, schema_id: int, layout: ddl.TableLayout, clean_schema: dict[str, Any]) -> bool:
        if not self.enabled or time.monotonic() < self.resting.get(table, 0.0):
            return False
        served = self.served.get((table, schema_id))
        if served is None:
            # A column an earlier schema made with another type (a narrower decimal, a smaller
            # integer) is converted and checked value by value in Python.
            served = (
                SOURCE_VERSION in layout.names
                and fast_columns(clean_schema)
                and all(layout.stored.get(n, t) == t and _IDENTIFIER.match(n) for n, t in layout.columns)
            )
            self.served[(table, schema_id)] = served
        return served

    def write(
        self, table: str, schema_id: int, layout: ddl.TableLayout, messages: list[Any], now: datetime
    ) -> Stored | None:
        """Store the messages (state table, then change log); None when the Python path must take
        the batch (then nothing was stored)."""
        try:
            staged = self._stage(table, schema_id, layout, messages, now)
            if staged is None:
                return None
            self._move(table, staged[0], layout, messages, now)
        except Exception as exc:  # noqa: BLE001 - any failure: the Python path stores or dead-letters it
            self.failures[table] = self.failures.get(table, 0) + 1
            first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            if self.failures[table] >= _GIVE_UP_AFTER:
                self.failures[table] = 0
                self.resting[table] = time.monotonic() + _TRY_AGAIN_AFTER_SECONDS
                log.warning(
                    "%s: the engine failed 3 batches in a row (%s); through Python for %.0f s",
                    table,
                    first,
                    _TRY_AGAIN_AFTER_SECONDS,
                )
            else:
                log.info("%s: batch through Python (%s)", table, first)
            return None
        self.failures[table] = 0
        return staged[1]

    def _stage(
        self, table: str, schema_id: int, layout: ddl.TableLayout, messages: list[Any], now: datetime
    ) -> tuple[str, Stored] | None:
        """The messages in the staging table, checked; None when a row needs the Python path."""
        if (table, schema_id) not in self.staged:
            ingest = dict(ddl.INGEST_COLUMNS)
            payload = [(n, t) for n, t in layout.columns if n not in ingest]
            staging = f"_ingest_{table}_{schema_id}"
            columns = ", ".join(f"`{n}` {t}" for n, t in payload)
            self.client.command(f"CREATE TEMPORARY TABLE IF NOT EXISTS `{staging}` ({columns}) ENGINE = Memory")
            self.staged[(table, schema_id)] = (staging, [n for n, _ in payload])
        staging, names = self.staged[(table, schema_id)]
        self.client.command(f"TRUNCATE TABLE `{staging}`")
        self.client.raw_insert(
            staging,
            names,
            insert_block=b"".join(m.value() for m in messages),
            fmt="AvroConfluent",
            settings=self.settings,
        )
        fresh = f"greatest(0, {now.timestamp() * 1000:.0f} - toUnixTimestamp64Milli(ts_source)) / 1000"
        checks = [
            "count()",
            f"countIf(NOT match(ifNull(`{SOURCE_VERSION}`, ''), '{_VERSION_PATTERN}'))",
            *(f"countIf(abs(`{n}`) >= {_limit(t)})" for n, t in layout.checked),
        ]
        stats = [
            *(f"countIf(`_fresh` <= {bound})" for bound in _BOUNDS),
            "sum(`_fresh`)",
            "toUnixTimestamp64Milli(max(ts_emitted))",
        ]
        # One pass over the columns the checks read, each row's freshness computed once (written out
        # in every countIf it was computed per bound: three times the engine time).
        read = ", ".join(f"`{n}`" for n in (SOURCE_VERSION, "ts_emitted", *(n for n, _ in layout.checked)))
        rows = f"(SELECT {read}, {fresh} AS `_fresh` FROM `{staging}`)"
        row = self.client.query(f"SELECT {', '.join(checks + stats)} FROM {rows}").first_row
        count, problems = row[0], row[1 : len(checks)]
        if count != len(messages) or any(problems):
            return None
        *within, seconds, emitted = row[len(checks) :]
        return staging, Stored(list(within), float(seconds), datetime.fromtimestamp(emitted / 1000, UTC))

    def _move(self, table: str, staging: str, layout: ddl.TableLayout, messages: list[Any], now: datetime) -> None:
        partition, offset = offset_expression(messages)
        stored_at = f"toDateTime64({now.timestamp():.3f}, 3, 'UTC')"
        ingest = {
            "_topic": ddl.literal(messages[0].topic()),
            "_partition": partition,
            "_offset": offset,
            "ts_stored": stored_at,
        }
        select = ", ".join(f"{ingest[n]} AS `{n}`" if n in ingest else f"`{n}`" for n in layout.names)
        names = ", ".join(f"`{n}`" for n in layout.names)
        settings = "SETTINGS max_threads = 1, max_partitions_per_insert_block = 0"  # rows in staged order
        started = time.perf_counter()
        # The state table keeps each entity's highest version: only the batch's newest row per entity is
        # written (of equal versions the last, as an insert of every row would keep).
        self.client.command(
            f"INSERT INTO `{layout.state_table}` ({names}, `version`) SELECT * EXCEPT `_row` FROM ("
            f"SELECT {select}, toUInt128(`{SOURCE_VERSION}`) AS `version`, rowNumberInAllBlocks() AS `_row` "
            f"FROM `{staging}`) ORDER BY `version` DESC, `_row` DESC LIMIT 1 BY `entity_key` {settings}"
        )
        self.client.command(f"INSERT INTO `{table}` ({names}) SELECT {select} FROM `{staging}` {settings}")
        metrics.SINK_INSERT_SECONDS.labels(table).observe(time.perf_counter() - started)
        metrics.SINK_BATCH_SIZE.labels(table).observe(len(messages))


def _limit(ch_type: str) -> str:
    """The smallest absolute value a Decimal(P, S) column cannot hold: 10**(P - S), as a literal."""
    match = _DECIMAL.match(ch_type)
    precision, scale = (int(match.group(1)), int(match.group(2))) if match else (76, 0)
    return f"toDecimal256('1{'0' * (precision - scale)}', 0)"
