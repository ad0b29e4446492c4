"""Capture rate of the PostgreSQL source adapters on a fresh local stack (Kafka + Apicurio) and a local
PostgreSQL 15, all in a temporary folder:

  postgres_cdc  the slot is created first (empty snapshot), the adapter stopped, N changes (the licensing
                office's inserts and updates, one transaction each) written, then the adapter started
                again: the time from its first captured change to the last one checkpointed
                (acknowledged by Kafka) gives changes/s from the replication slot.
  query_poll    N rows inserted, then the poller started: rows/s from the first to the last checkpoint.

The adapters run in this process (as `backbone adapters run` would run them, without the metrics
endpoint); the processor and sink are not involved.

    .venv/bin/python -m bench.adapters_postgres --changes 20000 [--batch-size 500]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

from backbone.settings import PROJECT_ROOT, load_settings
from bench import adapter_settings, capture_rate, save_results, take_snapshot
from contract.reference import load_regions, villages
from devstack.postgres import LocalPostgres
from devstack.stack import LocalStack
from simulators.licensing import LicensingOffice
from simulators.writers.postgres import PostgresSourceWriter

PASSWORD_ENV = "BENCH_PG_PASSWORD"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, data)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-adapters-pg-"))
    stack = LocalStack(load_settings(run_dir=work / "stack"), work / "stack")
    addresses = stack.start()
    pg = LocalPostgres(work / "postgres")
    results: dict[str, dict] = {}
    try:
        pg.start()
        os.environ[PASSWORD_ENV] = pg.password
        regions = villages(load_regions(PROJECT_ROOT / "data" / "bojonegoro_regions.csv"))
        for kind in ("postgres_cdc", "query_poll"):
            database = kind.replace("_", "")
            dsn = pg.create_database(database)
            system = f"bench-{kind.replace('_', '-')}"
            adapter = {
                "kind": kind,
                "host": "127.0.0.1",
                "port": pg.port,
                "database": database,
                "user": pg.user,
                "password_env": PASSWORD_ENV,
                "tables": {"permit_application": "permit_application"},
                "batch_size": args.batch_size,
            }
            if kind == "postgres_cdc":
                adapter["slot"] = "bench"
            else:
                adapter["created_column"] = "submitted_at"
            settings, entity = adapter_settings(work, addresses, system, adapter)
            writer = PostgresSourceWriter(dsn, entity)
            writer.create_table(replica_identity_full=True)
            if kind == "postgres_cdc":
                take_snapshot(settings, system, "slot")  # creates the slot (empty snapshot)
                changes = LicensingOffice(regions, seed=3).changes()
            else:
                changes = (c for c in LicensingOffice(regions, seed=3).changes() if c.op == "c")
            results[kind] = capture_rate(settings, system, writer, changes, args.changes)
            print(kind, results[kind], flush=True)
    finally:
        pg.remove()
        stack.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    save_results("adapters_postgres", results)


if __name__ == "__main__":
    main()
