"""Dimension tables kept from the compacted reference topics (ref.regions, ref.departments), and the
views that analysts join on, so that a kecamatan, village or office without data shows up as zero."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

from contract.topics import REF_DEPARTMENTS, REF_REGIONS

REGIONS_TABLE = "ref_regions"
DEPARTMENTS_TABLE = "ref_departments"
REFERENCE_TABLES = {REF_REGIONS: REGIONS_TABLE, REF_DEPARTMENTS: DEPARTMENTS_TABLE}  # topic (unprefixed) -> table

# Per code, the record with the highest offset wins (a compacted topic's newest value); a tombstone
# (null value) removes the code.
_ENGINE = "ReplacingMergeTree(_offset, is_deleted) ORDER BY code"
_INGEST = """    is_deleted Bool COMMENT 'The code was removed from the reference topic (a tombstone).',
    _topic LowCardinality(String),
    _partition Int32,
    _offset UInt64 COMMENT 'Offset in the compacted topic: the newest value of a code wins.',
    ts_stored DateTime64(3, 'UTC')"""

REGIONS_DDL = f"""
CREATE TABLE IF NOT EXISTS {REGIONS_TABLE} (
    code String COMMENT 'Official region code (Kemendagri), e.g. 35.22.15.2003.',
    name String COMMENT 'Official name.',
    level LowCardinality(String) COMMENT 'kabupaten, kecamatan or village (desa and kelurahan).',
    parent_code String COMMENT 'Code of the region it belongs to (a village: its kecamatan).',
{_INGEST}
) ENGINE = {_ENGINE}
COMMENT 'Regions of Kabupaten Bojonegoro from ref.regions (idn-area-data 4.0.1, ODbL; see data/README.md).'
"""
DEPARTMENTS_DDL = f"""
CREATE TABLE IF NOT EXISTS {DEPARTMENTS_TABLE} (
    code String COMMENT 'Abbreviation of the regency office (OPD), as in the regional budget, e.g. DPUPR.',
    name String COMMENT 'Name of the office.',
    field_code String COMMENT 'Government affair field (urusan, Permendagri 90/2019) of its main programme.',
    kind LowCardinality(String) COMMENT 'dinas, badan, sekretariat, inspektorat, rsud or kecamatan.',
{_INGEST}
) ENGINE = {_ENGINE}
COMMENT 'Regency offices (OPD) from ref.departments (data/departments.csv).'
"""
# National public holidays and joint leave days (data/holidays_id.csv): the days the ready views do not
# count as working days (with Saturdays and Sundays).
HOLIDAYS_TABLE = "ref_holidays"
HOLIDAYS_DDL = f"""
CREATE TABLE IF NOT EXISTS {HOLIDAYS_TABLE} (
    day Date COMMENT 'A national public holiday or joint leave day (cuti bersama).',
    is_deleted Bool COMMENT 'No longer in the calendar file.',
    version UInt64 COMMENT 'When the sink wrote the row (ms): the newest row of a day wins.'
) ENGINE = ReplacingMergeTree(version, is_deleted) ORDER BY day
COMMENT 'Days off of the regency offices besides weekends (data/holidays_id.csv, SKB 3 Menteri).'
"""
# What the ready views count as days off.
DAYS_OFF = f"(SELECT groupArray(day) FROM {HOLIDAYS_TABLE} FINAL)"


def sync_holidays(client: Any, days: frozenset[date]) -> None:
    """The table holds exactly the calendar's days; nothing is written when it already does (the
    writer may not delete: a day dropped from the file gets a newer row marked deleted)."""
    stored = {row[0] for row in client.query(f"SELECT day FROM {HOLIDAYS_TABLE} FINAL").result_rows}
    changes = [[d, False] for d in sorted(days - stored)] + [[d, True] for d in sorted(stored - days)]
    if changes:
        version = int(datetime.now(UTC).timestamp() * 1000)
        client.insert(HOLIDAYS_TABLE, [[*c, version] for c in changes], column_names=["day", "is_deleted", "version"])


# Kemendagri village codes: the first digit of the village part is 1 for a kelurahan, 2 for a desa.
DIMENSION_VIEWS = {
    "dim_kecamatan": f"""
CREATE OR REPLACE VIEW dim_kecamatan SQL SECURITY DEFINER AS
SELECT code AS kecamatan_code, name AS kecamatan_name
FROM {REGIONS_TABLE} FINAL WHERE level = 'kecamatan'
COMMENT 'The 28 kecamatan of the regency.'
""",
    "dim_village": f"""
CREATE OR REPLACE VIEW dim_village SQL SECURITY DEFINER AS
SELECT v.code AS village_code, v.name AS village_name,
       if(substring(splitByChar('.', v.code)[4], 1, 1) = '1', 'kelurahan', 'desa') AS village_type,
       v.parent_code AS kecamatan_code, k.name AS kecamatan_name
FROM (SELECT * FROM {REGIONS_TABLE} FINAL WHERE level = 'village') AS v
LEFT JOIN (SELECT code, name FROM {REGIONS_TABLE} FINAL WHERE level = 'kecamatan') AS k ON k.code = v.parent_code
COMMENT 'The 430 villages: 419 desa and 11 kelurahan (kelurahan receive no village funds).'
""",
    "dim_department": f"""
CREATE OR REPLACE VIEW dim_department SQL SECURITY DEFINER AS
SELECT code AS department_code, name AS department_name, field_code, kind
FROM {DEPARTMENTS_TABLE} FINAL
COMMENT 'The regency offices (OPD) with their codes.'
""",
}
_INGEST_COLUMNS = ["is_deleted", "_topic", "_partition", "_offset", "ts_stored"]
COLUMNS = {
    REGIONS_TABLE: ["code", "name", "level", "parent_code", *_INGEST_COLUMNS],
    DEPARTMENTS_TABLE: ["code", "name", "field_code", "kind", *_INGEST_COLUMNS],
}
# The JSON value's attributes, in column order after the code.
_FIELDS = {REGIONS_TABLE: ("name", "level", "parent"), DEPARTMENTS_TABLE: ("name", "field_code", "kind")}


def reference_row(
    table: str, key: bytes | None, value: bytes | None, topic: str, partition: int, offset: int, now: datetime
) -> list[Any]:
    """A reference record (JSON key: the code; JSON value: its attributes, or null to remove it) as a
    row of `table`. Raises ValueError for a record that is not one."""
    code = json.loads(key or b"null")
    if not isinstance(code, str) or not code:
        raise ValueError(f"key {key!r} is not a JSON string")
    info = json.loads(value) if value is not None else None
    if info is not None and not isinstance(info, dict):
        raise ValueError("value is not a JSON object")
    attributes = [str((info or {}).get(name) or "") for name in _FIELDS[table]]
    return [code, *attributes, info is None, topic, partition, offset, now]
