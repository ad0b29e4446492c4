"""Capture rate of the MariaDB binlog adapter on a fresh local stack (Kafka + Apicurio) and a local
MariaDB (row-based binlog), all in a temporary folder.

The adapter runs once to take its (empty) snapshot and is stopped; N changes (the licensing office's
inserts and updates, one transaction each, as an application commits them) are written; then the
adapter is started again: the time from its first captured change to the last one checkpointed
(acknowledged by Kafka) gives changes/s from the binlog. The adapter runs in this process (as
`backbone adapters run` would run it, without the metrics endpoint); the processor and sink are not
involved.

    .venv/bin/python -m bench.adapters_mariadb --changes 20000 [--batch-size 500]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from shutil import rmtree

from backbone.settings import load_settings
from bench import adapter_settings, capture_rate, save_results, take_snapshot
from contract.reference import load_regions, villages
from devstack.mariadb import LocalMariaDB
from devstack.stack import LocalStack
from simulators.licensing import LicensingOffice
from simulators.writers.mariadb import MariaDbSourceWriter

PASSWORD_ENV = "BENCH_MARIADB_PASSWORD"
SYSTEM = "bench-mariadb-binlog"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-adapters-mariadb-"))
    stack = LocalStack(load_settings(run_dir=work / "stack"), work / "stack")
    addresses = stack.start()
    db = LocalMariaDB(work / "mariadb")
    try:
        params = db.start()
        os.environ[PASSWORD_ENV] = params["password"]
        adapter = {
            "kind": "mariadb_binlog",
            "host": params["host"],
            "port": params["port"],
            "database": params["database"],
            "user": params["user"],
            "password_env": PASSWORD_ENV,
            "server_id": 5999,
            "tables": {"permit_application": "permit_application"},
            "batch_size": args.batch_size,
        }
        settings, entity = adapter_settings(work, addresses, SYSTEM, adapter)
        writer = MariaDbSourceWriter(params, entity)
        writer.create_table()
        take_snapshot(settings, SYSTEM, "snapshot")  # the (empty) snapshot and its binlog coordinates
        changes = LicensingOffice(villages(load_regions(settings.regions_csv)), seed=3).changes()
        result = {**capture_rate(settings, SYSTEM, writer, changes, args.changes), "batch_size": args.batch_size}
    finally:
        db.stop()
        stack.stop()
        rmtree(work, ignore_errors=True)
    print(json.dumps({"mariadb_binlog": result}, indent=2))
    save_results("adapters_mariadb", {"mariadb_binlog": result})


if __name__ == "__main__":
    main()
