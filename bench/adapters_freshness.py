"""Freshness from the source's commit to the stored row, per adapter: the demo's arrangement
(offices writing into PostgreSQL, MariaDB, a drop folder and the push endpoint; the adapters,
processor and sink on a fresh local stack) runs for a fixed time at a fixed rate, then ClickHouse
is asked for quantiles of ts_stored - ts_source per source system, after a warm-up.

    .venv/bin/python -m bench.adapters_freshness --seconds 60 --rate 20
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import clickhouse_connect
from rich.console import Console
from rich.table import Table

from backbone.settings import load_settings
from bench import save_results
from contract.catalog import catalog_for
from devstack.demo import run_demo
from devstack.demo_sources import ARRANGEMENT

WARM_UP_SECONDS = 15  # processor and sink start-up; rows changed before are left out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=float, default=20, help="changes per second per office")
    args = parser.parse_args()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-fresh-") as tmp:
        settings = load_settings(run_dir=Path(tmp))
        run_demo(settings, duration=args.seconds, rate=args.rate, bad_ratio=0.0)
        client = clickhouse_connect.get_client(dsn=f"chdb://{settings.chdb_path}")
        for system in catalog_for(settings).systems:
            rows = ms50 = ms99 = 0.0
            parts = []
            for entity in system.entities:
                table = entity.table
                parts.append(
                    f"SELECT dateDiff('millisecond', ts_source, ts_stored) AS ms FROM `{table}` FINAL "
                    f"WHERE ts_source >= (SELECT min(ts_source) FROM `{table}`) + INTERVAL {WARM_UP_SECONDS} SECOND"
                )
            ((rows, quantiles),) = client.query(
                f"SELECT count(), quantiles(0.5, 0.99)(ms) FROM ({' UNION ALL '.join(parts)})"
            ).result_rows
            ms50, ms99 = (quantiles or [None, None])[:2]
            results[system.system] = {
                "adapter": ARRANGEMENT.get(system.domain),
                "rows": rows,
                "source_to_stored_ms": {"p50": ms50, "p99": ms99},
            }
    table = Table("system", "adapter", "rows", "p50 ms", "p99 ms", title="freshness: source commit → stored row")
    for name, r in results.items():
        f = r["source_to_stored_ms"]
        table.add_row(name, str(r["adapter"]), f"{r['rows']:,}", f"{f['p50'] or 0:,.0f}", f"{f['p99'] or 0:,.0f}")
    Console().print(table)
    print(json.dumps(results, indent=2))
    save_results("adapters_freshness", {"seconds": args.seconds, "rate_per_office": args.rate, "systems": results})


if __name__ == "__main__":
    main()
