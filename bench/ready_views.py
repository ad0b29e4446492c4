"""Query time of each ready view (sinks/ready_views.py) and public view (sinks/public_views.py) on a store
holding 10 million change-log rows: the bar is one second on this machine.

A chDB store made by the migrations gets the dimensions (regions, departments) and twenty years of
synthetic history, generated inside ClickHouse (INSERT ... SELECT FROM numbers()): every change goes to
its change-log table and to its current-state table, as the sink writes them, in rounds (all creations,
then all first updates, ...) so that an entity's versions sit in different parts and FINAL has real
work. Most rows are in the biggest tables (visits, enrolments, realisations, spending), with key
cardinalities of a regency of 430 villages. Each view is read whole (its full result to the client):
once cold (caches dropped), then `--runs` times; the median is reported. For a view over the bar, the
plan with `EXPLAIN indexes = 1` is kept in the JSON (bench/results/ready_views-<time>.json).

    .venv/bin/python -m bench.ready_views --rows 10000000 --runs 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import clickhouse_connect
from rich.console import Console
from rich.table import Table

from backbone.settings import PROJECT_ROOT
from bench import save_results
from contract.catalog import Catalog, Entity, load_catalog
from contract.departments import load_departments
from contract.reference import load_regions
from sinks import dimensions, migrations
from sinks.ready_views import READY_VIEWS

console = Console(width=None if sys.stdout.isatty() else 140)  # no wrapping in logs and pipes
BAR_SECONDS = 1.0
YEARS = 20
# INSERT ... SELECT over 20 years of monthly partitions, and no collapsing at insert: the state
# tables keep every version until a merge, as they do when the sink writes one batch at a time.
INSERT_SETTINGS = {"max_partitions_per_insert_block": 0, "optimize_on_insert": 0}


@dataclass(frozen=True)
class Spec:
    """One table's synthetic history: `entities` entities with `changes` changes each (rounds), a change
    `step_hours` after the previous one; `overrides`: SQL per column over the generator's columns
    (see `_base`), instead of the generic value for the column's name and type."""

    table: str
    entities: int
    changes: int
    step_hours: int
    overrides: dict[str, str] = field(default_factory=dict)
    scaled: bool = True  # False: a fixed population (wards, desa-years) whatever --rows says


# Per table: entities, changes per entity, hours between changes ("fixed": a population that --rows does
# not scale: wards, desa per year, schools); then SQL per column over the generator's columns (see
# `_base`) where the generic value for the column's name and type (`column_value`) would not do.
HISTORY = """
health_visit 1400000 3 2
  status: multiIf(v = 0, 'REGISTERED', v = 1, 'IN_CONSULTATION', h % 9 = 0, 'REFERRED', 'DONE')
  facility_code: concat('PKM', toString(h % 60))
  facility_vi: (h % 60) * 7 % 430 + 1
  visited_at: t0
education_enrolment 700000 2 4800
  school_npsn: concat('N', toString(h % 2000))
  status: if(v = 0, 'ACTIVE', ['ACTIVE', 'TRANSFERRED', 'DROPPED_OUT', 'GRADUATED'][h % 4 + 1])
  event_kind: if(v = 0, 'NEW', ['NEW', 'TRANSFER', 'DROPOUT', 'GRADUATION'][h % 4 + 1])
  enrolled_at: t0
  grade: h % 6 + 1
budget_realisation 600000 2 72
  line_id: concat('B', toString(least(intDiv(e * {lines}, {E}) + h % 20, {lines} - 1)))
  fiscal_year: toYear(t0)
  month: toMonth(t0)
  amount: toDecimal64((h % 9000 + 1) * 100000, 2)
  spent_at: t0
village_finance_village_spending 600000 2 120
  vi: DESA[h % 419 + 1]
  amount: toDecimal64((h % 5000 + 1) * 10000, 2)
  spent_at: t0
licensing_permit_application 300000 3 72
  status: multiIf(v = 0, 'SUBMITTED', v = 1, 'VERIFIED', h % 20 = 0, 'VERIFIED', h % 7 = 0, 'REJECTED', 'APPROVED')
  submitted_at: t0
  decided_at: if(v = 2 AND h % 20 != 0, t0 + toIntervalHour(20 + h % 500), NULL)
  sla_days: [5, 10, 14][h % 3 + 1]
  office_code: concat('MPP', toString(h % 3))
participation_complaint 150000 4 30
  status: ['RECEIVED', 'VERIFIED', 'IN_PROGRESS', ['RESOLVED', 'CLOSED', 'REJECTED', 'IN_PROGRESS'][h % 4 + 1]][v + 1]
  received_at: t0
  first_response_at: if(v >= 1, t0 + toIntervalMinute(30 + h % 4000), NULL)
  resolved_at: if(v = 3 AND h % 4 IN (0, 1), t0 + toIntervalHour(24 + h % 600), NULL)
  resolution_due_at: t0 + toIntervalDay(14)
budget_budget_line 100000 3 1440
  line_id: concat('B', toString(e))
  stage: ['DRAFT', 'ENACTED', 'REVISED'][v + 1]
  programme_code: concat(DEPTS[h % length(DEPTS) + 1], '.', toString(h % 5))
  activity_code: concat(DEPTS[h % length(DEPTS) + 1], '.', toString(h % 5), '.', toString(h % 20))
  account_code: concat('5.', toString(h % 300))
  allocation: toDecimal64((h % 5000 + 10) * 1000000, 2)
  revised_allocation: if(v = 2, toDecimal64((h % 5000 + 10) * 1100000, 2), NULL)
infrastructure_project 10000 10 720
  status: arrayConcat(['PLANNED', 'TENDER', 'CONTRACTED'], arrayWithConstant(6, 'IN_PROGRESS'), \
    [['COMPLETED', 'TERMINATED', 'IN_PROGRESS'][h % 3 + 1]])[v + 1]
  physical_progress_pct: least(100., greatest(0., (v - 3) * 16. - h % 10))
  financial_progress_pct: least(100., greatest(0., (v - 3) * 15. + h % 10))
  planned_start: toDate32(t0) + 60
  planned_end: toDate32(t0) + 240 + h % 200
  contract_value: toDecimal64((h % 9000 + 100) * 1000000, 2)
village_finance_village_fund 16760 4 2160 fixed
  vi: DESA[e % 419 + 1]
  fund_id: concat('F', toString(e))
  stage: ['ALLOCATED', 'TAHAP_1', 'TAHAP_2', 'TAHAP_3'][v + 1]
  allocation: toDecimal64((h % 600 + 600) * 1000000, 2)
  disbursed: toDecimal64((h % 600 + 600) * 1000000 * v / 4, 2)
health_bed_occupancy 60 800 216 fixed
  hospital_name: concat('RSUD ', toString(e % 4))
  beds_total: 10 + e % 30
  beds_occupied: hv % (11 + e % 30)
  as_of: tv
education_school 2000 5 16800 fixed
  npsn: concat('N', toString(e))
  student_capacity: h % 900 + 100
"""


def parse_history(text: str) -> list[Spec]:
    specs: list[Spec] = []
    for line in text.replace("\\\n", "").splitlines():
        if line.strip() and not line.startswith(" "):
            table, entities, changes, step, *fixed = line.split()
            specs.append(Spec(table, int(entities), int(changes), int(step), {}, scaled=not fixed))
        elif line.strip():
            name, _, expr = line.strip().partition(": ")
            specs[-1].overrides[name] = expr
    return specs


SPECS = parse_history(HISTORY)


def _base(spec: Spec, entities: int, rounds: range, start: datetime, prefix: str, with_clause: str) -> str:
    """The generator: change i is round v of entity e (all creations first, then first updates, ...);
    h: the entity's random, hv: the change's; t0: the entity's creation, spread evenly over the years;
    tv: this change; vi: the entity's village (1-based index into the village arrays)."""
    span = YEARS * 365 * 86400 - spec.changes * spec.step_hours * 3600
    vi = spec.overrides.get("vi", "h % 430 + 1")
    return (
        f"{with_clause} SELECT number AS i, number % {entities} AS e, intDiv(number, {entities}) AS v, "
        f"cityHash64('{spec.table}', e) AS h, cityHash64('{spec.table}', e, v) AS hv, "
        f"toDateTime64('{start:%Y-%m-%d %H:%M:%S}', 3, 'UTC')"
        f" + toIntervalSecond(intDiv(e * {max(span, 1)}, {entities})) AS t0, "
        f"t0 + toIntervalSecond(v * {spec.step_hours * 3600} + hv % 3600) AS tv, "
        f"v = {spec.changes - 1} AND h % 100 = 0 AS deleted, {vi} AS vi, "
        f"{spec.overrides.get('facility_vi', 'vi')} AS facility_vi, '{prefix}' AS prefix "
        f"FROM numbers({entities * rounds.start}, {entities * len(rounds)})"
    )


def _enums(entity: Entity) -> dict[str, list[str]]:
    fields = entity.payload_schema()["fields"]
    types = ((f["name"], t) for f in fields for t in (f["type"] if isinstance(f["type"], list) else [f["type"]]))
    return {name: t["symbols"] for name, t in types if isinstance(t, dict) and t.get("type") == "enum"}


GENERIC = dict(
    line.strip().split(": ", 1)
    for line in """
    entity_key: concat(prefix, toString(e))
    event_id: lower(hex(hv))
    op: if(v = 0, 'c', if(deleted, 'd', 'u'))
    is_deleted: deleted
    version: toUInt128(v + 1)
    source_position: leftPad(toString(i), 12, '0')
    ts_source: tv
    ts_emitted: tv + toIntervalMillisecond(20)
    ts_processed: tv + toIntervalMillisecond(300)
    ts_stored: tv + toIntervalMillisecond(900)
    updated_at: tv
    changed_at: tv
    payload_version: 1
    dq_flags: []
    _partition: h % 4
    _offset: i
    department_code: DEPTS[h % length(DEPTS) + 1]
    department_responsible: DEPTS[h % length(DEPTS) + 1]
    fiscal_year: toYear(t0)
    """.strip().splitlines()
)


def column_value(name: str, ch_type: str, entity: Entity, enums: dict[str, list[str]]) -> str:
    """The generic value of a column, by its name and type."""
    key, e = entity.key[0], entity
    consts = dict(source_system=e.system, source_department=e.department, source_entity=e.name, _topic=e.clean_topic)
    for part in ("village_code", "village_name", "kecamatan_code", "kecamatan_name"):
        if name.endswith(part):
            index = "facility_vi" if name.startswith("facility_") else "vi"
            return f"{part.upper()}S[{index}]"
    generic = {key: "concat(prefix, toString(e))", **GENERIC}
    if name in consts:
        return f"'{consts[name]}'"
    if name in generic:
        return generic[name]
    if name in enums:
        return f"[{', '.join(map(literal, enums[name]))}][h % {len(enums[name])} + 1]"
    base = ch_type.removeprefix("Nullable(").removeprefix("LowCardinality(").rstrip(")")
    if base.startswith("Decimal"):
        return "toDecimal64((hv % 10000) * 1000, 2)"
    if base.startswith(("Int", "UInt")):
        return "h % 100"
    if base.startswith("Float"):
        return "(hv % 10000) / 100."
    if base.startswith("DateTime"):
        return "tv"
    if base.startswith("Date"):
        return "toDate32(t0)"
    return f"concat('{name[:3]}', toString(h % 5000))"  # names, numbers, free text: thousands of values


def literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _arrays() -> str:
    """WITH clause: the villages (code, name, kecamatan), the desa's indexes and the department codes."""
    regions = load_regions(PROJECT_ROOT / "data" / "bojonegoro_regions.csv")
    villages = sorted(c for c, r in regions.items() if r["level"] == "village")
    desa = [i + 1 for i, c in enumerate(villages) if c.split(".")[3].startswith("2")]
    kec = [regions[c]["parent"] for c in villages]
    arrays = {
        "VILLAGE_CODES": villages,
        "VILLAGE_NAMES": [regions[c]["name"] for c in villages],
        "KECAMATAN_CODES": kec,
        "KECAMATAN_NAMES": [regions[k]["name"] for k in kec],
        "DEPTS": sorted(load_departments()),
    }
    parts = [f"[{', '.join(map(literal, values))}] AS {name}" for name, values in arrays.items()]
    return "WITH " + ", ".join([*parts, f"{desa!r} AS DESA"])


def fill_dimensions(client: Any) -> None:
    now, regions = datetime.now(UTC), load_regions(PROJECT_ROOT / "data" / "bojonegoro_regions.csv").items()
    rows = {
        dimensions.REGIONS_TABLE: [(c, r["name"], r["level"], r["parent"]) for c, r in regions],
        dimensions.DEPARTMENTS_TABLE: [
            (c, d["name"], d["field_code"], d["kind"]) for c, d in load_departments().items()
        ],
    }
    for table, values in rows.items():
        ingest = [[*row, False, "bench", 0, i, now] for i, row in enumerate(values)]
        client.insert(table, ingest, column_names=dimensions.COLUMNS[table])


def fill(client: Any, catalog: Catalog, rows: int) -> dict[str, dict[str, int]]:
    """Generate the history; returns per table its entities and changes."""
    fill_dimensions(client)
    entities = {e.table: e for e in catalog.entities}
    base_total = sum(s.entities * s.changes for s in SPECS if s.scaled)
    fixed = sum(s.entities * s.changes for s in SPECS if not s.scaled)
    scale = max(rows - fixed, 0) / base_total
    start = datetime.now(UTC).replace(year=datetime.now(UTC).year - YEARS, microsecond=0)
    with_clause = _arrays()
    counts: dict[str, dict[str, int]] = {}
    lines = round(next(s.entities for s in SPECS if s.table == "budget_budget_line") * scale)
    for spec in SPECS:
        entity = entities[spec.table]
        n = round(spec.entities * scale) if spec.scaled else spec.entities
        columns = client.query(
            "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = %(t)s "
            "ORDER BY position",
            parameters={"t": f"{spec.table}_state"},
        ).result_rows
        enums = _enums(entity)
        values = []
        for name, ch_type in columns:
            expr = spec.overrides.get(name) or column_value(name, ch_type, entity, enums)
            values.append(f"{expr.format(lines=max(lines, 1), E=n)} AS `{name}`")
        prefix = {"budget_budget_line": "B", "education_school": "N"}.get(spec.table, spec.table[:3].upper())
        began = time.monotonic()
        # Rounds in separate INSERTs (at most 10): an entity's versions land in different parts, as
        # batches arriving over the years do.
        per = -(-spec.changes // 10)
        for first in range(0, spec.changes, per):
            rounds = range(first, min(first + per, spec.changes))
            base = _base(spec, n, rounds, start, prefix, with_clause)
            ranged = f"{with_clause} SELECT {', '.join(values)} FROM ({base})"
            names = ", ".join(f"`{c}`" for c, _ in columns)
            client.command(f"INSERT INTO `{spec.table}_state` ({names}) {ranged}", settings=INSERT_SETTINGS)
            log_names = ", ".join(f"`{c}`" for c, _ in columns if c != "version")
            client.command(
                f"INSERT INTO `{spec.table}` ({log_names}) SELECT {log_names} FROM ({ranged})", settings=INSERT_SETTINGS
            )
        counts[spec.table] = {"entities": n, "changes": n * spec.changes}
        console.log(f"{spec.table}: {n:,} entities, {n * spec.changes:,} changes in {time.monotonic() - began:.1f}s")
    return counts


def settle(client: Any, timeout: float) -> int:
    """Wait (bounded) for background merges to end, not to time them; returns the active parts left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and client.command("SELECT count() FROM system.merges"):
        time.sleep(1)
    return int(client.command("SELECT count() FROM system.parts WHERE active AND database = currentDatabase()"))


def time_view(client: Any, view: str, runs: int) -> dict[str, Any]:
    """The engine's time to compute the whole view (FORMAT Null): once cold (mark and uncompressed caches
    dropped), then `runs` times; then once fetched into Python rows (what a client pays on top)."""
    for cache in ("MARK CACHE", "UNCOMPRESSED CACHE", "QUERY CACHE"):
        try:
            client.command(f"SYSTEM DROP {cache}")
        except Exception:  # noqa: BLE001 - not every build has every cache
            pass
    times = []
    for _ in range(runs + 1):
        began = time.perf_counter()
        client.command(f"SELECT * FROM {view} FORMAT Null")
        times.append(time.perf_counter() - began)
    warm = statistics.median(times[1:])
    began = time.perf_counter()
    result_rows = len(client.query(f"SELECT * FROM {view}").result_rows)
    fetched = time.perf_counter() - began
    keys = ("cold_s", "median_s", "runs", "rows", "fetched_s", "under_bar")
    values = (round(times[0], 3), round(warm, 3), runs, result_rows, round(fetched, 3), warm < BAR_SECONDS)
    out: dict[str, Any] = dict(zip(keys, values, strict=True))
    if warm >= BAR_SECONDS or times[0] >= BAR_SECONDS:
        out["explain_indexes"] = [r[0] for r in client.query(f"EXPLAIN indexes = 1 SELECT * FROM {view}").result_rows]
    return out


def run(rows: int, runs: int, public: bool, store: Path | None) -> dict[str, Any]:
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-ready-views-") as tmp:
        client = clickhouse_connect.get_client(dsn=f"chdb://{store or Path(tmp) / 'store'}")
        catalog = load_catalog(PROJECT_ROOT / "catalog", PROJECT_ROOT / "schemas")
        migrations.migrate(client, catalog)
        began = time.monotonic()
        counts = fill(client, catalog, rows)
        fill_seconds = time.monotonic() - began
        parts = settle(client, 120)
        # The public_* views as the migrations made them (they come from more than one module).
        found = "SELECT name FROM system.tables WHERE engine = 'View' AND name LIKE 'public\\_%' ORDER BY name"
        names = [v.name for v in READY_VIEWS] + ([r[0] for r in client.query(found).result_rows] if public else [])
        views: dict[str, Any] = {}
        for name in names:
            views[name] = time_view(client, name, runs)
            r = views[name]
            console.log(
                f"{name}: cold {r['cold_s']:.3f}s, median {r['median_s']:.3f}s, {r['rows']:,} rows "
                f"fetched in {r['fetched_s']:.3f}s"
            )
        change_log = int(
            client.command(f"SELECT sum(rows) FROM system.parts WHERE active AND table IN {tuple(counts)!r}")
        )
        client.close()
    return {
        "when": datetime.now(UTC).isoformat(),
        "change_log_rows": change_log,
        "tables": counts,
        "fill_seconds": round(fill_seconds, 1),
        "active_parts": parts,
        "bar_seconds": BAR_SECONDS,
        "load_avg_1m": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)},
        "views": views,
    }


def render(report: dict[str, Any]) -> Table:
    load = report["load_avg_1m"]
    table = Table(
        title=f"views on {report['change_log_rows']:,} change-log rows "
        f"({os.cpu_count()} cores, load {load['start']:.1f}→{load['end']:.1f})"
    )
    for column in ("view", "rows", "cold s", "median s", f"< {BAR_SECONDS:g} s", "fetched s"):
        table.add_column(column, justify="left" if column == "view" else "right")
    for name, r in report["views"].items():
        under = "yes" if r["under_bar"] else "[bold red]NO[/]"
        times = (f"{r[k]:.3f}" for k in ("cold_s", "median_s"))
        table.add_row(name, f"{r['rows']:,}", *times, under, f"{r['fetched_s']:.3f}")
    table.caption = (
        "cold: first run, caches dropped; median: of the warm runs; both the engine computing the "
        "whole result (FORMAT Null). fetched: the whole result read into Python rows, once"
    )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.ready_views", description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000, help="change-log rows to generate")
    parser.add_argument("--runs", type=int, default=5, help="warm runs per view (after the cold one)")
    parser.add_argument("--no-public", action="store_true", help="time the ready_* views only")
    parser.add_argument("--store", type=Path, help="a new folder for the store, kept afterwards (to look into it)")
    args = parser.parse_args(argv)
    if args.store and args.store.exists():
        parser.error(f"--store {args.store} exists: give a new folder")
    report = run(args.rows, args.runs, not args.no_public, args.store)
    console.print(render(report))
    save_results("ready_views", report)
    over = [n for n, r in report["views"].items() if not r["under_bar"]]
    if over:
        console.print(f"over {BAR_SECONDS:g} s: {', '.join(over)} (plans in bench/results/ready_views-latest.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
