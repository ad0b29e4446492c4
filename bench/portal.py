"""The public portal against the store: bytes transferred and latency (p50, p99) of each page kind.

A chDB store made by the migrations is filled with a synthetic current state of realistic size (every
desa with its funds and spending, a regency budget of a few thousand lines with a year of
realisations, tens of thousands of visits, complaints, permits and enrolments); the sink's real query
endpoint serves it and the real portal reads it over HTTP, in this process. Each page kind is asked
`--rounds` times: warm (cached, refreshed in the background: steady use), expired (every kept answer
past its lifetime: served while refreshed) and cold (cache emptied, keeper stopped: the store's path,
what the start-up and each refresh cost); the start-up (every dataset fetched before the port opens)
is timed too. The issue's bars: under 300 KB and 200 ms. Printed, and saved under bench/results/
(portal-<time>.json and portal-latest.json)."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import clickhouse_connect
import requests
from rich.console import Console
from rich.table import Table

from backbone.settings import PROJECT_ROOT, load_settings
from contract.catalog import load_catalog
from contract.departments import load_departments
from contract.reference import load_regions
from portal.app import STORE, make_app
from portal.datasets import SERVICES
from portal.service import start_portal
from sinks import dimensions, migrations
from sinks.query_server import QueryServer

console = Console(width=None if sys.stdout.isatty() else 120)
NOW = datetime.now(UTC)
CATALOG = load_catalog(PROJECT_ROOT / "catalog", PROJECT_ROOT / "schemas")
PAGE_BAR_BYTES, PAGE_BAR_MS = 300 * 1024, 200


def _put(client: Any, table: str, key: str, rows: list[dict[str, Any]]) -> None:
    names = sorted({n for r in rows for n in r} | {"entity_key", "version", "is_deleted"})
    values = [
        [{**r, "entity_key": str(r[key]), "version": i + 1, "is_deleted": False}.get(n) for n in names]
        for i, r in enumerate(rows)
    ]
    client.insert(f"{table}_state", values, column_names=names)


def fill(client: Any, scale: int, seed: int = 1) -> dict[str, int]:
    """Dimensions and a synthetic current state; returns rows per table."""
    rnd = random.Random(seed)
    regions = load_regions(PROJECT_ROOT / "data" / "bojonegoro_regions.csv")
    departments = load_departments()
    regions_rows = [(c, r["name"], r["level"], r["parent"]) for c, r in regions.items()]
    department_rows = [(c, d["name"], d["field_code"], d["kind"]) for c, d in departments.items()]
    for table, source, values in (
        (dimensions.REGIONS_TABLE, "ref.regions", regions_rows),
        (dimensions.DEPARTMENTS_TABLE, "ref.departments", department_rows),
    ):
        rows = [[*v, False, source, 0, i, NOW] for i, v in enumerate(values)]
        client.insert(table, rows, column_names=dimensions.COLUMNS[table])
    villages = [c for c, r in regions.items() if r["level"] == "village"]
    desa = [c for c in villages if c.split(".")[3].startswith("2")]

    def where(code: str, prefix: str = "") -> dict[str, str]:
        kec = regions[code]["parent"]
        return {
            f"{prefix}village_code": code,
            f"{prefix}village_name": regions[code]["name"],
            f"{prefix}kecamatan_code": kec,
            f"{prefix}kecamatan_name": regions[kec]["name"],
        }

    def ago(days: float) -> datetime:
        return NOW - timedelta(days=rnd.uniform(0, days))

    fresh = {"ts_source": NOW, "ts_stored": NOW}
    counts: dict[str, int] = {}
    depts = sorted(departments)[:20]
    lines = [
        {
            "line_id": f"B{i}",
            "fiscal_year": NOW.year,
            "department_code": depts[i % 20],
            "programme_code": f"{i % 20}.{i % 3}",
            "activity_code": f"{i % 20}.{i % 3}.{i % 7}",
            "account_code": f"5.{i}",
            "allocation": Decimal(rnd.randint(10, 5000) * 1_000_000),
            "revised_allocation": None,
            "stage": "ENACTED",
            **fresh,
        }
        for i in range(40 * scale)
    ]
    paid = [
        {
            "realisation_id": f"R{i}",
            "line_id": f"B{i % len(lines)}",
            "fiscal_year": NOW.year,
            "month": rnd.randint(1, 12),
            "amount": Decimal(rnd.randint(1, 900) * 100_000) + Decimal("0.50"),
            **fresh,
        }
        for i in range(160 * scale)
    ]
    tables: list[tuple[str, str, list[dict[str, Any]]]] = [
        ("budget_budget_line", "line_id", lines),
        ("budget_realisation", "realisation_id", paid),
        (
            "village_finance_village_fund",
            "fund_id",
            [
                {
                    "fund_id": f"F{c}",
                    **where(c),
                    "fiscal_year": NOW.year,
                    "source": "DD",
                    "allocation": Decimal(rnd.randint(600, 1200) * 1_000_000),
                    "disbursed": Decimal(rnd.randint(0, 600) * 1_000_000),
                    "stage": "TAHAP_1",
                    **fresh,
                }
                for c in desa
            ],
        ),
        (
            "village_finance_village_spending",
            "spending_id",
            [
                {
                    "spending_id": f"S{i}",
                    **where(rnd.choice(desa)),
                    "fiscal_year": NOW.year,
                    "amount": Decimal(rnd.randint(1, 500) * 100_000),
                    "spent_at": ago(120),
                    **fresh,
                }
                for i in range(100 * scale)
            ],
        ),
        (
            "participation_complaint",
            "ticket_id",
            [
                {
                    "ticket_id": f"C{i}",
                    "department_responsible": rnd.choice(depts),
                    "channel": rnd.choice(["WEB", "WHATSAPP", "SMS"]),
                    "status": rnd.choice(["RECEIVED", "IN_PROGRESS", "RESOLVED", "CLOSED"]),
                    "received_at": (r := ago(90)),
                    "first_response_at": r + timedelta(hours=rnd.uniform(1, 48)),
                    "resolved_at": None,
                    "resolution_due_at": r + timedelta(days=14),
                    **where(rnd.choice(villages)),
                    **fresh,
                }
                for i in range(50 * scale)
            ],
        ),
        (
            "health_visit",
            "visit_id",
            [
                {
                    "visit_id": f"V{i}",
                    "facility_code": f"PKM{i % 36:02d}",
                    "facility_type": "PUSKESMAS",
                    "service": rnd.choice(["OUTPATIENT", "IMMUNISATION", "MATERNAL", "EMERGENCY"]),
                    "status": rnd.choice(["REGISTERED", "DONE", "DONE", "REFERRED"]),
                    **where(villages[(i % 36) * 11], "facility_"),
                    **fresh,
                }
                for i in range(400 * scale)
            ],
        ),
        (
            "health_bed_occupancy",
            "ward_id",
            [
                {
                    "ward_id": f"W{i}",
                    "hospital_name": f"RSUD {i % 3}",
                    "ward_class": ["I", "II", "III", "VIP"][i % 4],
                    "beds_total": 20,
                    "beds_occupied": rnd.randint(5, 20),
                    "as_of": NOW,
                    **fresh,
                }
                for i in range(12)
            ],
        ),
        (
            "education_school",
            "npsn",
            [{"npsn": f"N{i}", "level": "SD", **where(villages[i % 430]), **fresh} for i in range(300)],
        ),
        (
            "education_enrolment",
            "enrolment_id",
            [
                {
                    "enrolment_id": f"E{i}",
                    "school_npsn": f"N{i % 300}",
                    "level": rnd.choice(["SD", "SMP", "SMA", "SMK"]),
                    "enrolled_at": ago(700),
                    "status": "ACTIVE",
                    **where(villages[i % 430], "student_"),
                    **fresh,
                }
                for i in range(200 * scale)
            ],
        ),
        (
            "licensing_permit_application",
            "application_id",
            [
                {
                    "application_id": f"L{i}",
                    "permit_type": rnd.choice(["PBG", "NIB", "SIP", "SIUP"]),
                    "status": (s := rnd.choice(["SUBMITTED", "VERIFIED", "APPROVED", "REJECTED"])),
                    "submitted_at": (t := ago(200)),
                    "decided_at": t + timedelta(days=rnd.uniform(1, 20)) if s in ("APPROVED", "REJECTED") else None,
                    "sla_days": 5,
                    **where(rnd.choice(villages)),
                    **fresh,
                }
                for i in range(100 * scale)
            ],
        ),
        (
            "infrastructure_project",
            "project_id",
            [
                {
                    "project_id": f"P{i}",
                    "name": f"Paket {i}",
                    "category": "ROAD",
                    "source_department": "DPUPR",
                    **where(rnd.choice(villages)),
                    "status": rnd.choice(["PLANNED", "CONTRACTED", "IN_PROGRESS", "COMPLETED"]),
                    "planned_start": (NOW - timedelta(days=100)).date(),
                    "planned_end": (NOW + timedelta(days=100)).date(),
                    "physical_progress_pct": rnd.uniform(0, 100),
                    "financial_progress_pct": rnd.uniform(0, 100),
                    "contract_value": Decimal(rnd.randint(100, 9000) * 1_000_000),
                    **fresh,
                }
                for i in range(10 * scale)
            ],
        ),
    ]
    for table, key, rows in tables:
        _put(client, table, key, rows)
        counts[table] = len(rows)
    client.command(DECIDED_WITHIN_SLA)
    counts["kpi_licensing_decided_within_sla"] = 96
    return counts


# The stream's KPI rows of permits decided per type and month of decision, a year of months, two
# versions of each (FINAL keeps the later).
DECIDED_WITHIN_SLA = """
INSERT INTO kpi_licensing_decided_within_sla
    (group_key, permit_type, window_start, count, within, version, updated_at, ts_stored)
SELECT concat('["', t, '",', toString(toUnixTimestamp64Milli(start)), ']'), t, start, c, intDiv(c * w, 100),
       number, now64(3), now64(3)
FROM (SELECT number, ['PBG', 'NIB', 'SIP', 'SIUP'][number % 4 + 1] AS t, 20 + number * 37 % 380 AS c,
             number * 53 % 101 AS w,
             toDateTime64(toStartOfMonth(now(), 'Asia/Jakarta') - toIntervalMonth(intDiv(number, 8)), 3,
                          'Asia/Jakarta') AS start
      FROM numbers(1, 96))
"""


def pages(regions: dict[str, dict[str, str]]) -> dict[str, list[str]]:
    """Page kind -> the paths asked (round robin)."""
    kec = sorted(c for c, r in regions.items() if r["level"] == "kecamatan")
    vil = sorted(c for c, r in regions.items() if r["level"] == "village")
    return {
        "home": ["/"],
        "service": [f"/service/{s}" for s in SERVICES],
        "budget explorer": ["/budget", "/budget?department_code=" + sorted(load_departments())[0]],
        "kecamatan": [f"/kecamatan/{c}" for c in kec],
        "village": [f"/village/{c}" for c in vil[::7]],
        "dataset page": ["/datasets/complaints", "/datasets/budget-absorption"],
        "download csv": ["/datasets/village-funds.csv"],
        "download parquet": ["/datasets/village-funds.parquet"],
        "dcat catalogue": ["/catalog.jsonld"],
        "ckan package_search": ["/api/3/action/package_search?q=village"],
    }


def measure(url: str, paths: list[str], rounds: int, before: Any = None) -> dict[str, Any]:
    session = requests.Session()
    times, sizes = [], []
    for i in range(rounds):
        path = paths[i % len(paths)]
        if before is not None:
            before()
        began = time.perf_counter()
        resp = session.get(url + path, timeout=60)
        times.append((time.perf_counter() - began) * 1000)
        if resp.status_code != 200:
            raise RuntimeError(f"{path}: HTTP {resp.status_code}")
        sizes.append(len(resp.content) + sum(len(k) + len(v) + 4 for k, v in resp.headers.items()))
    ordered = sorted(times)
    return {
        "requests": rounds,
        "bytes_max": max(sizes),
        "bytes_mean": int(statistics.mean(sizes)),
        "p50_ms": round(ordered[len(ordered) // 2], 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
    }


def run(rounds: int, scale: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="backbone-bench-portal-") as tmp:
        settings = load_settings(run_dir=Path(tmp), portal_rate_burst=1_000_000, portal_rate_per_second=1_000_000)
        writer = clickhouse_connect.get_client(dsn=settings.effective_clickhouse_dsn)
        migrations.migrate(writer, CATALOG)
        console.log("filling the store")
        rows = fill(writer, scale)
        reader = clickhouse_connect.get_client(dsn=settings.effective_clickhouse_dsn)
        server = QueryServer(reader, settings)
        query_url = f"http://127.0.0.1:{server.start()}/"
        settings = load_settings(**{**settings.model_dump(), "portal_query_url": query_url})
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        app = make_app(settings)
        began = time.perf_counter()
        runner, url = asyncio.run_coroutine_threadsafe(start_portal(settings, app), loop).result(120)
        startup = {"seconds": round(time.perf_counter() - began, 2), "answers_kept": len(app[STORE]._cache)}  # noqa: SLF001
        url = url.rstrip("/")
        store = app[STORE]
        cache = store._cache  # noqa: SLF001 - the bench empties or ages it between requests

        def expire() -> None:
            for key, (_, value) in list(cache.items()):
                cache[key] = (0.0, value)

        results: dict[str, Any] = {}
        kinds = pages(load_regions(settings.regions_csv))
        try:
            for kind, paths in kinds.items():
                console.log(f"portal: {kind}")
                measure(url, paths, len(paths))  # warm the engine
                warm = measure(url, paths, rounds)
                results[kind] = {"warm": warm, "expired": measure(url, paths, max(5, rounds // 10), before=expire)}
            # Cold: the store's path alone (the keeper stopped, or it would refetch what was emptied meanwhile).
            loop.call_soon_threadsafe(store._keeper.cancel)  # noqa: SLF001
            for kind, paths in kinds.items():
                results[kind]["cold"] = measure(url, paths, max(5, rounds // 10), before=cache.clear)
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            server.stop()
            reader.close()
            writer.close()
    return {
        "when": datetime.now(UTC).isoformat(),
        "rounds": rounds,
        "scale": scale,
        "store_rows": rows,
        "bars": {"bytes": PAGE_BAR_BYTES, "ms": PAGE_BAR_MS},
        "cache_seconds": settings.portal_cache_seconds,
        "startup": startup,
        "pages": results,
    }


def render(report: dict[str, Any]) -> Table:
    table = Table(
        title="portal: page kinds against the store (warm: kept and refreshed in the background; expired: "
        f"served while refreshed; cold: fetched from the store). Start-up: {report['startup']['seconds']} s, "
        f"{report['startup']['answers_kept']} answers kept before the port opened"
    )
    kinds = ("warm", "expired", "cold")
    for column in ["page kind", "bytes (max)", *(f"{m} {q} ms" for m in kinds for q in ("p50", "p99"))]:
        table.add_column(column, justify="left" if column == "page kind" else "right")
    for kind, r in report["pages"].items():
        cells = [str(r[m][q]) for m in kinds for q in ("p50_ms", "p99_ms")]
        table.add_row(kind, f"{r['warm']['bytes_max']:,}", *cells)
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.portal", description=__doc__)
    parser.add_argument("--rounds", type=int, default=200, help="requests per page kind (warm)")
    parser.add_argument("--scale", type=int, default=50, help="size of the synthetic state (50: ~20k visits)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    report = run(args.rounds, args.scale)
    console.print(render(report))
    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, default=str) + "\n"
    path = args.out / f"portal-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(text)
    (args.out / "portal-latest.json").write_text(text)
    console.print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
