"""ClickHouse tables derived from the clean Avro schemas: the sink needs no per-domain code."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cached_property
from typing import Any

from contract.positions import MAX_VERSION, version_of
from contract.rules import DQ_FLAGS, SOURCE_VERSION, RegionField

# Columns the sink adds to every row: where it came from in Kafka, and when it was stored.
INGEST_COLUMNS = [
    ("_topic", "LowCardinality(String)"),
    ("_partition", "Int32"),
    ("_offset", "Int64"),
    ("ts_stored", "DateTime64(3, 'UTC')"),
]
# The current-state table of `<table>` (one row per entity) and the analysts' view over it.
STATE_SUFFIX = "_state"
CURRENT_SUFFIX = "_current"
VERSION_COLUMN = ("version", "UInt128")
# The data dictionary of the columns every table has (the payload's come from the Avro `doc`).
STANDARD_DOCS = {
    "event_id": "Id of the change: the same change captured twice has the same id (duplicates collapse on it).",
    "op": "c create, u update, d delete, r snapshot read.",
    "entity_key": "Primary key of the entity in its source system.",
    "is_deleted": "The change deleted the entity.",
    "source_system": "Catalog name of the departmental system the change came from.",
    "source_department": "Regency office that runs the source system.",
    "source_entity": "Entity name in the catalog.",
    "source_position": "Position of the change in the source (orders the changes of one entity).",
    "ts_source": "When the change happened in the source (UTC).",
    "ts_emitted": "When the adapter emitted the change (UTC).",
    "ts_processed": "When the processor validated the change (UTC).",
    "payload_version": "Version of the entity's payload schema.",
    "source_version": "Version of the entity in source order, from source_position (the state keeps the highest).",
    "_topic": "Kafka topic the row was read from.",
    "_partition": "Kafka partition the row was read from.",
    "_offset": "Kafka offset the row was read from.",
    "ts_stored": "When the sink stored the row (UTC).",
    "version": "Order of the entity's changes in its source (from source_position, see contract/positions.py).",
    DQ_FLAGS: "Data-quality rules of severity flag the record failed, as rule ids <field>:<kind> (empty: none).",
}

DEAD_LETTERS_TABLE = "dead_letters"


def dead_letters_ttl(retention_days: int) -> str:
    """How long a dead letter is kept: counted from when the sink stored it (ts_failed comes from
    another process's header and may be anything)."""
    return f"toDateTime(ts_stored) + toIntervalDay({int(retention_days)})"


def dead_letters_ddl(retention_days: int) -> str:
    return f"""
CREATE TABLE IF NOT EXISTS {DEAD_LETTERS_TABLE} (
    stage LowCardinality(String),
    reason String,
    source_topic LowCardinality(String),
    source_partition Int32,
    source_offset Int64,
    letter_id String COMMENT 'the same for the same rejected input, another for every other input',
    rule LowCardinality(String) COMMENT 'the rule it broke: <field>:<kind>, or e.g. envelope:schema, key:mismatch',
    key String,
    value String COMMENT 'the original bytes, sealed (AES-GCM; the key is not in the store)',
    ts_failed DateTime64(3, 'UTC'),
    _topic LowCardinality(String),
    _partition Int32,
    _offset Int64,
    ts_stored DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
-- Keyed by where the bad record came from, not where its dead letter sits: a stage that re-reads
-- after a crash dead-letters the same record again, and FINAL shows it once. Inputs without a Kafka
-- position (an adapter's rows, lines, requests) differ by letter_id, so none is collapsed.
ORDER BY (stage, source_topic, source_partition, source_offset, letter_id)
TTL {dead_letters_ttl(retention_days)}
"""


def dead_letters_modify_ttl(retention_days: int) -> str:
    """For stores made before the retention existed, or when the setting changes. ClickHouse then
    materializes the TTL (drops the expired letters) in the background."""
    return f"ALTER TABLE {DEAD_LETTERS_TABLE} MODIFY TTL {dead_letters_ttl(retention_days)}"


# Dead letters without their content (`key`, `value`): what the operator role reads. SQL SECURITY
# DEFINER: it reads dead_letters with its creator's (the sink's) rights, so readers need no grant
# on the raw table.
DEAD_LETTERS_MASKED_VIEW = "dead_letters_masked"
DEAD_LETTERS_MASKED_DDL = f"""
CREATE OR REPLACE VIEW {DEAD_LETTERS_MASKED_VIEW} SQL SECURITY DEFINER AS
SELECT stage, reason, source_topic, source_partition, source_offset, letter_id, rule,
       ts_failed, _topic, _partition, _offset, ts_stored
FROM {DEAD_LETTERS_TABLE}
"""
DEAD_LETTER_COLUMNS = [
    "stage",
    "reason",
    "source_topic",
    "source_partition",
    "source_offset",
    "letter_id",
    "rule",
    "key",
    "value",
    "ts_failed",
    "_topic",
    "_partition",
    "_offset",
    "ts_stored",
]
# Stores made before dead letters named their rule (migration 6).
DEAD_LETTERS_ADD_RULE = (
    f"ALTER TABLE {DEAD_LETTERS_TABLE} ADD COLUMN IF NOT EXISTS rule LowCardinality(String) "
    "COMMENT 'the rule it broke: <field>:<kind>, or e.g. envelope:schema, key:mismatch' AFTER letter_id"
)
# The failed flag rules of a record: few distinct ids, so LowCardinality.
DQ_FLAGS_TYPE = "Array(LowCardinality(String))"
# Stores made before letter_id existed: the column joins the end of the sorting key.
DEAD_LETTERS_ADD_LETTER_ID = f"""
ALTER TABLE {DEAD_LETTERS_TABLE}
    ADD COLUMN letter_id String AFTER source_offset,
    MODIFY ORDER BY (stage, source_topic, source_partition, source_offset, letter_id)
"""


def _primitive(avro_type: Any) -> str:
    if isinstance(avro_type, dict):
        logical = avro_type.get("logicalType")
        base = avro_type.get("type")
        if logical == "decimal":
            return f"Decimal({avro_type['precision']}, {avro_type.get('scale', 0)})"
        if logical == "timestamp-millis":
            return "DateTime64(3, 'UTC')"
        if logical == "timestamp-micros":
            return "DateTime64(6, 'UTC')"
        if logical == "date":
            return "Date32"
        if logical == "uuid":
            return "UUID"
        if base == "enum":
            return "LowCardinality(String)"
        if base == "array":
            return f"Array({clickhouse_type(avro_type['items'])})"
        if base == "map":
            return f"Map(String, {clickhouse_type(avro_type['values'])})"
        if base == "fixed":
            return f"FixedString({avro_type['size']})"
        if base == "record":
            return "String"  # nested records are stored as JSON text
        return _primitive(base)
    return {
        "string": "String",
        "boolean": "Bool",
        "int": "Int32",
        "long": "Int64",
        "float": "Float32",
        "double": "Float64",
        "bytes": "String",
    }.get(avro_type, "String")


def clickhouse_type(avro_type: Any) -> str:
    if isinstance(avro_type, list):
        rest = [t for t in avro_type if t != "null"]
        inner = _primitive(rest[0]) if len(rest) == 1 else "String"
        if "null" not in avro_type:
            return inner
        if inner.startswith("LowCardinality("):
            return f"LowCardinality(Nullable({inner[15:-1]}))"
        if inner.startswith(("Array(", "Map(")):
            return inner
        return f"Nullable({inner})"
    return _primitive(avro_type)


def default_expression(avro_field: dict[str, Any]) -> str | None:
    """The Avro default as a ClickHouse literal, so old rows read what Avro readers would.
    Only plain values: logical types (decimals, timestamps) keep ClickHouse's zero default."""
    value = avro_field.get("default")
    if value is None or (isinstance(avro_field["type"], dict) and "logicalType" in avro_field["type"]):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return None


@dataclass(frozen=True)
class TableLayout:
    name: str
    columns: list[tuple[str, str]]  # (name, ClickHouse type), payload columns then ingest columns
    defaults: dict[str, str] = field(default_factory=dict)
    # The types the table actually has (a column made by an earlier schema keeps its type, e.g. a
    # narrower decimal): what values are checked against. Empty: the layout's own types.
    stored: dict[str, str] = field(default_factory=dict)
    comments: dict[str, str] = field(default_factory=dict)  # column -> data-dictionary text
    doc: str = ""  # what one entity is (the payload schema's doc)

    @property
    def state_table(self) -> str:
        return self.name + STATE_SUFFIX

    @property
    def current_view(self) -> str:
        return self.name + CURRENT_SUFFIX

    @property
    def state_columns(self) -> list[tuple[str, str]]:
        return [*self.columns, VERSION_COLUMN]

    @property
    def names(self) -> list[str]:
        return [c for c, _ in self.columns]

    @cached_property
    def checked(self) -> list[tuple[str, str]]:
        """The columns whose values must be checked before an insert (see `value_problem`)."""
        types = [(n, self.stored.get(n, t)) for n, t in self.columns]
        return [(n, t) for n, t in types if "Decimal(" in t]

    def row_problem(self, record: dict[str, Any]) -> str | None:
        """Why this record cannot be stored as it is, or None."""
        for name, ch_type in self.checked:
            problem = value_problem(ch_type, record.get(name))
            if problem:
                return f"{name}: {problem}"
        return None


def column_comments(clean_schema: dict[str, Any]) -> dict[str, str]:
    """Each column's data-dictionary text: the Avro `doc`, or the standard text of the columns every
    table has, or (region names the processor adds) what the name is of."""
    comments = dict(STANDARD_DOCS)
    for f in clean_schema["fields"]:
        if f.get("doc"):
            comments[f["name"]] = f["doc"]
        if f.get("region") in ("village", "kecamatan"):
            for name, what in RegionField(f["name"], f["region"], True).enrichment_fields():
                comments.setdefault(name, f"{what.replace('_', ' ')} of {f['name']}, from ref.regions.")
    return comments


def layout_for(table: str, clean_schema: dict[str, Any], doc: str = "") -> TableLayout:
    columns = [
        (f["name"], DQ_FLAGS_TYPE if f["name"] == DQ_FLAGS else clickhouse_type(f["type"]))
        for f in clean_schema["fields"]
    ]
    defaults = {f["name"]: d for f in clean_schema["fields"] if (d := default_expression(f)) is not None}
    return TableLayout(
        table,
        columns + INGEST_COLUMNS,
        defaults,
        comments=column_comments(clean_schema),
        doc=doc or clean_schema.get("doc", ""),
    )


def literal(text: str) -> str:
    """A ClickHouse string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _column_list(layout: TableLayout, columns: list[tuple[str, str]]) -> str:
    return ",\n    ".join(f"`{n}` {t}{_default(layout, n)}{_comment(layout, n)}" for n, t in columns)


def _comment(layout: TableLayout, column: str) -> str:
    return f" COMMENT {literal(layout.comments[column])}" if layout.comments.get(column) else ""


def change_log_comment(layout: TableLayout) -> str:
    return f"Change log (every change; read with FINAL). {layout.doc}".strip()


def state_comment(layout: TableLayout) -> str:
    return f"Current state: one row per entity (read with FINAL; deleted entities hidden). {layout.doc}".strip()


# The change log's sorting key: a filter on entity_key reads only that entity's granules. event_id
# determines entity_key (it is a hash of system, entity, key and position), so the duplicates that
# ReplacingMergeTree collapses are still exactly the rows with the same event_id.
CHANGE_LOG_ORDER_BY = "(entity_key, event_id)"


def create_table_sql(layout: TableLayout) -> str:
    # ReplacingMergeTree on the sorting key: a replayed event collapses into one row (read with FINAL).
    # Monthly partitions: a filter on time reads only its months; a backfill of decades is ~12 parts a
    # year, and the sink's inserts lift the 100-partitions-per-insert guard (see table_writer).
    return (
        f"CREATE TABLE IF NOT EXISTS `{layout.name}` (\n    {_column_list(layout, layout.columns)}\n)"
        f" ENGINE = ReplacingMergeTree(ts_stored)\nPARTITION BY toYYYYMM(ts_source)\n"
        f"ORDER BY {CHANGE_LOG_ORDER_BY}\nCOMMENT {literal(change_log_comment(layout))}"
    )


def create_state_table_sql(layout: TableLayout) -> str:
    """One row per entity: the highest version wins, and FINAL leaves out the entities whose last
    change is a delete. Not partitioned: an entity's versions must meet in one partition to merge."""
    return (
        f"CREATE TABLE IF NOT EXISTS `{layout.state_table}` (\n"
        f"    {_column_list(layout, layout.state_columns)}\n)"
        f" ENGINE = ReplacingMergeTree(version, is_deleted)\nORDER BY entity_key\n"
        f"COMMENT {literal(state_comment(layout))}"
    )


def current_view_sql(layout: TableLayout) -> str:
    """Each entity's current state for analysts (the name today's queries use). Replaced whenever the
    layout changes, since a view's `*` is fixed when it is created."""
    return (
        f"CREATE OR REPLACE VIEW `{layout.current_view}` AS\n"
        f"SELECT * FROM `{layout.state_table}` FINAL WHERE NOT is_deleted\n"
        f"COMMENT {literal('Current state of each entity, deleted ones left out. ' + layout.doc)}"
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def version_column(kind: str, names: list[str], columns: list[list[Any]]) -> list[int]:
    """The state table's version of each row (columns as inserted; see contract/positions.py)."""
    positions, times, ops = (columns[names.index(n)] for n in ("source_position", "ts_source", "op"))
    given = columns[names.index(SOURCE_VERSION)] if SOURCE_VERSION in names else [None] * len(positions)
    return [
        int(version) if _given(version) else version_of(kind, position, _millis(ts), op)
        for version, position, ts, op in zip(given, positions, times, ops, strict=True)
    ]


def _given(version: str | None) -> bool:
    """A usable version from the processor (records from before it wrote them have none)."""
    if not version or len(version) > 39 or not (version.isascii() and version.isdigit()):
        return False
    return int(version) <= MAX_VERSION


def _millis(ts: datetime) -> int:
    """Exact milliseconds since the epoch (a stored DateTime64 reads back without its zone: UTC)."""
    return ((ts if ts.tzinfo else ts.replace(tzinfo=UTC)) - _EPOCH) // _MS


def _default(layout: TableLayout, column: str) -> str:
    return f" DEFAULT {layout.defaults[column]}" if column in layout.defaults else ""


def add_columns_sql(layout: TableLayout, missing: list[tuple[str, str]], table: str | None = None) -> str:
    return f"ALTER TABLE `{table or layout.name}` " + ", ".join(
        f"ADD COLUMN IF NOT EXISTS `{n}` {t}{_default(layout, n)}{_comment(layout, n)}" for n, t in missing
    )


def comment_columns_sql(table: str, comments: dict[str, str]) -> str:
    return f"ALTER TABLE `{table}` " + ", ".join(f"COMMENT COLUMN `{n}` {literal(c)}" for n, c in comments.items())


_DECIMAL = re.compile(r"^Decimal\((\d+), (\d+)\)$")


def value_problem(ch_type: str, value: Any) -> str | None:
    """Why `value` cannot be stored in a column of `ch_type` exactly, or None. Only decimals are
    checked: the client would silently truncate extra fractional digits, and refuses (or, below the
    storage width, accepts) values with more digits than the declared precision."""
    if value is None:
        return None
    if ch_type.startswith("Nullable("):
        return value_problem(ch_type[9:-1], value)
    if ch_type.startswith("Array("):
        inner = ch_type[6:-1]
        return (
            next((p for v in value if (p := value_problem(inner, v))), None)
            if isinstance(value, list | tuple)
            else None
        )
    match = _DECIMAL.match(ch_type)
    if match:
        return decimal_problem(value, int(match.group(1)), int(match.group(2)))
    return None


def decimal_problem(value: Any, precision: int, scale: int) -> str | None:
    """Exact check (integer arithmetic, no rounding context) that `value` is a finite number with
    at most `scale` fractional digits and at most `precision` digits in all."""
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except ArithmeticError:
        return f"{value!r} is not a number"
    if not number.is_finite():
        return f"{number} is not a finite number"
    sign, digits, exponent = number.as_tuple()
    unscaled = int("".join(map(str, digits)) or "0")
    shift = int(exponent) + scale  # the value times 10**scale is unscaled * 10**shift
    if shift < 0:
        unscaled, rest = divmod(unscaled, 10**-shift)
        if rest:
            return f"{number} has more than {scale} decimal places for Decimal({precision}, {scale}) (would be rounded)"
    else:
        unscaled *= 10**shift
    if unscaled >= 10**precision:
        return f"{number} does not fit Decimal({precision}, {scale})"
    return None
