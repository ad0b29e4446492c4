"""The data-quality scorecard: per system, entity and local day (Asia/Jakarta), records received,
rejected and flagged per rule, completeness of each nullable field, timeliness and duplicates dropped,
and `dq_scorecard`, one score per system. Made by the migrations (step 6, sinks/migrations.py).

How it stays fast: a materialized view per change log (`dq_mv_<table>`) adds, at every insert of the
sink, a few counters per day of the inserted block to `dq_daily_counts` (long form: measure, key,
n); the views read those small tables and `dead_letters`, never scan a change log, except
`dq_duplicates_daily`, which counts the distinct changes of each day (filter it by day).

What is counted (said again in each comment):
- stored rows: every row the sink inserted into a change log, counted at insert, by the local day of
  its source time (`ts_source`); a duplicate stored twice counts twice here (see dq_duplicates_daily);
- rejected: distinct dead letters (`dead_letters FINAL`, within its retention) by the local day they
  were rejected (`ts_failed`), of every stage; the rule is the dead letter's `rule`, or `(stage)`
  when it names none (undecodable, unstorable, a source row an adapter refused);
- received = stored + rejected; flagged: stored rows with a non-empty `dq_flags`;
- completeness of a field: share of non-deleted stored rows where it is not NULL;
- timeliness: share of stored rows whose `ts_stored - ts_source` is within the system's catalog
  `freshness_seconds` (as in force when the row was stored).
Rows stored before this migration are counted once from the change log (FINAL) when it runs."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from contract.catalog import Catalog
from sinks.ddl import DEAD_LETTERS_TABLE, literal

COUNTS_TABLE = "dq_daily_counts"
MV_PREFIX = "dq_mv_"
WINDOW_DAYS = 7  # the scorecard's window: today and the six days before (local dates)
TZ = "'Asia/Jakarta'"
# The score's weights (documented in dq_scorecard's comment and the README).
WEIGHTS = {"validity": 0.4, "flag_free": 0.3, "timeliness": 0.2, "completeness": 0.1}

COUNTS_DOC = (
    "Data-quality counters per system, entity and day, added by the materialized views dq_mv_<table> at "
    "every insert of the sink into a change log (every stored row, duplicates included; rows stored before "
    "the quality migration counted once from the change log). Read through the dq_* views."
)
COUNTS_DDL = f"""
CREATE TABLE IF NOT EXISTS {COUNTS_TABLE} (
    system LowCardinality(String) COMMENT 'Catalog name of the departmental system.',
    entity LowCardinality(String) COMMENT 'Entity name in the catalog.',
    day Date COMMENT 'Local day (Asia/Jakarta) of the source time of the rows counted.',
    measure LowCardinality(String)
        COMMENT 'rows (stored), timely, live (not deleted), flagged, non_null (key: field), flag (key: rule id).',
    key LowCardinality(String) COMMENT 'The field or rule id the measure is about, or empty.',
    n SimpleAggregateFunction(sum, UInt64) COMMENT 'How many rows (sum over inserts: read with sum(n) GROUP BY).'
) ENGINE = AggregatingMergeTree
ORDER BY (system, entity, day, measure, key)
COMMENT {literal(COUNTS_DOC)}
"""


@dataclass(frozen=True)
class EntityQuality:
    """What the scorecard needs of one catalog entity and its change log as it is stored."""

    system: str
    entity: str
    table: str
    freshness_seconds: int
    topics: tuple[str, ...]  # the cdc.* and clean.* topics its dead letters name
    nullable: tuple[str, ...]  # payload fields whose column is Nullable
    flags: bool  # the change log has dq_flags

    @property
    def mv(self) -> str:
        return MV_PREFIX + self.table


def entity_qualities(catalog: Catalog, columns_of: Callable[[str], dict[str, str]]) -> list[EntityQuality]:
    """`columns_of(table)`: name -> ClickHouse type of the stored change log."""
    result = []
    for system in catalog.systems:
        for entity in system.entities:
            stored = columns_of(entity.table)
            payload = [f["name"] for f in entity.payload_schema()["fields"]]
            nullable = tuple(n for n in payload if "Nullable(" in stored.get(n, ""))
            result.append(
                EntityQuality(
                    system.system,
                    entity.name,
                    entity.table,
                    system.freshness_seconds,
                    (entity.cdc_topic, entity.clean_topic),
                    nullable,
                    "dq_flags" in stored,
                )
            )
    return result


def _array(values: list[str] | tuple[str, ...]) -> str:
    return "[" + ", ".join(literal(v) for v in values) + "]"


def counts_select(eq: EntityQuality, final: bool = False) -> str:
    """The counters of a block of change-log rows, one row per (day, measure, key)."""
    parts = [
        "[('rows', '', rows_), ('timely', '', timely_), ('live', '', live_)"
        + (", ('flagged', '', flagged_)]" if eq.flags else "]")
    ]
    aggregates = [
        "count() AS rows_",
        f"countIf(dateDiff('millisecond', ts_source, ts_stored) <= {int(eq.freshness_seconds) * 1000}) AS timely_",
        "countIf(NOT is_deleted) AS live_",
    ]
    if eq.nullable:
        checks = ", ".join(f"countIf(NOT is_deleted AND `{f}` IS NOT NULL)" for f in eq.nullable)
        aggregates.append(f"[{checks}] AS non_null_")
        parts.append(f"arrayMap((f, c) -> ('non_null', f, c), {_array(eq.nullable)}, non_null_)")
    if eq.flags:
        aggregates += [
            "countIf(notEmpty(dq_flags)) AS flagged_",
            "sumMap(dq_flags, arrayMap(x -> toUInt64(1), dq_flags)) AS flag_",
        ]
        parts.append("arrayMap((r, c) -> ('flag', r, c), flag_.1, flag_.2)")
    return (
        f"SELECT {literal(eq.system)} AS system, {literal(eq.entity)} AS entity, day,\n"
        "       m.1 AS measure, m.2 AS key, toUInt64(m.3) AS n\n"
        f"FROM (\n    SELECT toDate(ts_source, {TZ}) AS day,\n           "
        + ",\n           ".join(aggregates)
        + f"\n    FROM `{eq.table}`{' FINAL' if final else ''}\n    GROUP BY day\n)\n"
        f"ARRAY JOIN arrayConcat({', '.join(parts)}) AS m"
    )


def counts_mv_sql(eq: EntityQuality) -> str:
    return f"CREATE MATERIALIZED VIEW IF NOT EXISTS `{eq.mv}` TO {COUNTS_TABLE} AS\n{counts_select(eq)}"


def _view(name: str, body: str, doc: str) -> str:
    return f"CREATE OR REPLACE VIEW {name} SQL SECURITY DEFINER AS\n{body.strip()}\nCOMMENT {literal(doc)}"


def _rejections(entities: list[EntityQuality], rule_column: bool) -> str:
    """Distinct dead letters with their system, entity, local day and rule."""
    topics = [t for eq in entities for t in eq.topics]
    systems_by_topic = [eq.system for eq in entities for _ in eq.topics]
    entities_by_topic = [eq.entity for eq in entities for _ in eq.topics]
    systems = sorted({eq.system for eq in entities})
    rule = "if(rule != '', rule, concat('(', stage, ')'))" if rule_column else "concat('(', stage, ')')"
    # An adapter's dead letter names '<system>:<table or file>', not a topic.
    return f"""
SELECT transform(source_topic, {_array(topics)}, {_array(systems_by_topic)},
                 transform(splitByChar(':', source_topic)[1], {_array(systems)}, {_array(systems)}, '')) AS system,
       transform(source_topic, {_array(topics)}, {_array(entities_by_topic)}, '') AS entity,
       toDate(ts_failed, {TZ}) AS day, {rule} AS rule
FROM {DEAD_LETTERS_TABLE} FINAL"""


def _counts(measures: str) -> str:
    return f"SELECT system, entity, day, {measures} FROM {COUNTS_TABLE} GROUP BY system, entity, day"


STORED_MEASURES = (
    "sumIf(n, measure = 'rows') AS stored_, 0 AS rejected_, sumIf(n, measure = 'flagged') AS flagged_, "
    "sumIf(n, measure = 'timely') AS timely_"
)


def views(entities: list[EntityQuality], rule_column: bool) -> dict[str, str]:
    """name -> CREATE OR REPLACE VIEW, in the order they must be made."""
    rejections = _rejections(entities, rule_column)
    entity_daily = f"""
SELECT system, entity, day, sum(stored_) + sum(rejected_) AS received, sum(stored_) AS stored,
       sum(rejected_) AS rejected, sum(flagged_) AS flagged, sum(timely_) AS timely,
       if(stored = 0, NULL, round(timely / stored, 4)) AS timeliness_ratio
FROM (
    {_counts(STORED_MEASURES)}
    UNION ALL
    SELECT system, entity, day, 0, count(), 0, 0 FROM ({rejections}) GROUP BY system, entity, day
)
GROUP BY system, entity, day"""
    rule_daily = f"""
SELECT system, entity, day, 'flag' AS severity, key AS rule, sum(n) AS records
FROM {COUNTS_TABLE} WHERE measure = 'flag' GROUP BY system, entity, day, rule
UNION ALL
SELECT system, entity, day, 'reject' AS severity, rule, count() AS records
FROM ({rejections}) GROUP BY system, entity, day, rule"""
    completeness_daily = f"""
SELECT c.system AS system, c.entity AS entity, c.day AS day, c.key AS field, l.live AS records,
       c.non_null AS non_null, if(records = 0, NULL, round(non_null / records, 4)) AS completeness_ratio
FROM (SELECT system, entity, day, key, sum(n) AS non_null FROM {COUNTS_TABLE} WHERE measure = 'non_null'
      GROUP BY system, entity, day, key) AS c
INNER JOIN (SELECT system, entity, day, sum(n) AS live FROM {COUNTS_TABLE} WHERE measure = 'live'
            GROUP BY system, entity, day) AS l
    ON l.system = c.system AND l.entity = c.entity AND l.day = c.day"""
    distinct = "\n    UNION ALL\n    ".join(
        f"SELECT {literal(eq.system)} AS system, {literal(eq.entity)} AS entity, toDate(ts_source, {TZ}) AS day, "
        f"uniqExact(event_id) AS changes FROM `{eq.table}` GROUP BY day"
        for eq in entities
    )
    duplicates_daily = f"""
SELECT s.system AS system, s.entity AS entity, s.day AS day, s.stored AS rows_stored, d.changes AS changes,
       toUInt64(greatest(0, toInt64(rows_stored) - toInt64(changes))) AS duplicates_dropped
FROM (SELECT system, entity, day, sum(n) AS stored FROM {COUNTS_TABLE} WHERE measure = 'rows'
      GROUP BY system, entity, day) AS s
INNER JOIN (
    {distinct}
) AS d ON d.system = s.system AND d.entity = s.entity AND d.day = s.day"""
    w = WEIGHTS
    systems = sorted({eq.system for eq in entities})
    window = f"day > toDate(now(), {TZ}) - {WINDOW_DAYS}"
    scorecard = f"""
SELECT s.system AS system, toDate(now(), {TZ}) - {WINDOW_DAYS - 1} AS since,
       e.received AS received, e.stored AS stored, e.rejected AS rejected, e.flagged AS flagged,
       if(received = 0, NULL, round(stored / received, 4)) AS validity,
       if(received = 0, NULL, if(stored = 0, 0, round(1 - flagged / stored, 4))) AS flag_free,
       if(received = 0, NULL, if(stored = 0, 0, round(e.timely / stored, 4))) AS timeliness,
       if(received = 0, NULL, if(stored = 0, 0, if(c.records = 0, 1, round(c.non_null / c.records, 4))))
           AS completeness,
       round(100 * ({w["validity"]} * validity + {w["flag_free"]} * flag_free + {w["timeliness"]} * timeliness
                    + {w["completeness"]} * completeness), 1) AS score
FROM (SELECT arrayJoin({_array(systems)}) AS system) AS s
LEFT JOIN (
    SELECT system, sum(received) AS received, sum(stored) AS stored, sum(rejected) AS rejected,
           sum(flagged) AS flagged, sum(timely) AS timely
    FROM dq_entity_daily WHERE {window} GROUP BY system
) AS e ON e.system = s.system
LEFT JOIN (
    SELECT system, sum(records) AS records, sum(non_null) AS non_null
    FROM dq_completeness_daily WHERE {window} GROUP BY system
) AS c ON c.system = s.system"""
    return {
        "dq_entity_daily": _view(
            "dq_entity_daily",
            entity_daily,
            "Data quality per system, entity and local day: received = stored + rejected; stored: rows the "
            "sink inserted into the change log, by the day of their source time (a duplicate counts twice, "
            "see dq_duplicates_daily); rejected: distinct dead letters of every stage by the day they were "
            "rejected (within the dead letters' retention); flagged: stored rows with dq_flags; "
            "timeliness_ratio: share of stored rows stored within the catalog's freshness_seconds of their "
            "source time.",
        ),
        "dq_rule_daily": _view(
            "dq_rule_daily",
            rule_daily,
            "Records failing each rule per system, entity and local day: severity flag (stored rows whose "
            "dq_flags name the rule id <field>:<kind>) or reject (distinct dead letters naming the rule; "
            "(stage) when a dead letter names no rule: undecodable, unstorable, refused by an adapter).",
        ),
        "dq_completeness_daily": _view(
            "dq_completeness_daily",
            completeness_daily,
            "Completeness of each nullable payload field per system, entity and local day: share of the "
            "non-deleted rows stored that day (by source time) where the field is not NULL.",
        ),
        "dq_duplicates_daily": _view(
            "dq_duplicates_daily",
            duplicates_daily,
            "Duplicates dropped per system, entity and local day of the source time: rows the sink inserted "
            "into the change log (counted at insert, so merges do not hide them) minus the distinct changes "
            "(event_id) the change log keeps; the change log collapses them with FINAL (ReplacingMergeTree). "
            "Counts the duplicates stored since the quality migration; scans the change logs: filter by day.",
        ),
        "dq_scorecard": _view(
            "dq_scorecard",
            scorecard,
            f"One data-quality score per catalog system over the last {WINDOW_DAYS} local days (since): "
            f"score = 100 * ({w['validity']} * validity + {w['flag_free']} * flag_free + "
            f"{w['timeliness']} * timeliness + {w['completeness']} * completeness), where validity = "
            "stored / received, flag_free = 1 - flagged / stored, timeliness = stored within freshness / "
            "stored, completeness = non-NULL values / (non-deleted rows * nullable fields) pooled over the "
            "entities (1 without nullable fields); the last three are 0 when nothing was stored. "
            "NULL when nothing was received.",
        ),
    }


def _digest(sql: str) -> str:
    return hashlib.sha256(sql.encode()).hexdigest()[:12]


def _columns(client: Any, table: str) -> dict[str, str]:
    rows = client.query(
        "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = {t:String}",
        parameters={"t": table},
    ).result_rows
    return dict(rows)


def migrate(client: Any, catalog: Catalog, step: Callable[[int, str, Callable[[], Any]], None]) -> None:
    """Migration 6: the counters table, each change log's counting view (counted once from the change
    log when it first gets one; replaced when the table gains a nullable field or dq_flags), and the
    dq_* views (replaced when the catalog or the tables change: the name carries a digest of the SQL)."""
    step(6, "quality counters", lambda: client.command(COUNTS_DDL))
    entities = entity_qualities(catalog, lambda table: _columns(client, table))
    for eq in entities:

        def backfill(eq: EntityQuality = eq) -> None:
            client.command(f"INSERT INTO {COUNTS_TABLE} {counts_select(eq, final=True)}")

        def counting_view(eq: EntityQuality = eq) -> None:
            client.command(f"DROP VIEW IF EXISTS `{eq.mv}`")
            client.command(counts_mv_sql(eq))

        step(6, f"quality counts {eq.table}", backfill)
        step(6, f"quality view {eq.mv} {_digest(counts_mv_sql(eq))}", counting_view)
    if not entities:  # a catalog without entities (a test's, a reference-only store): nothing to score
        return
    rule_column = "rule" in _columns(client, DEAD_LETTERS_TABLE)
    for name, sql in views(entities, rule_column).items():
        step(6, f"quality view {name} {_digest(sql)}", lambda sql=sql: client.command(sql))
