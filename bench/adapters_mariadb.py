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
import time
from pathlib import Path
from shutil import rmtree

import yaml

from backbone.settings import PROJECT_ROOT, load_settings
from bench import TimedAdapterRun, save_results
from contract.bootstrap import bootstrap
from contract.catalog import catalog_for
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
        doc = yaml.safe_load((PROJECT_ROOT / "catalog" / "licensing.yaml").read_text())
        doc.update(
            system=SYSTEM,
            adapter={
                "kind": "mariadb_binlog",
                "host": params["host"],
                "port": params["port"],
                "database": params["database"],
                "user": params["user"],
                "password_env": PASSWORD_ENV,
                "server_id": 5999,
                "tables": {"permit_application": "permit_application"},
                "batch_size": args.batch_size,
            },
        )
        catalog = work / "catalog"
        catalog.mkdir()
        (catalog / "licensing.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        settings = load_settings(
            run_dir=work / SYSTEM,
            kafka_bootstrap=addresses.kafka_bootstrap,
            registry_url=addresses.registry_url,
            topic_prefix=f"{SYSTEM}.",
            catalog_dir=catalog,
        )
        bootstrap(settings)
        (entity,) = catalog_for(settings).system(SYSTEM).entities
        writer = MariaDbSourceWriter(params, entity)
        writer.create_table()
        first = TimedAdapterRun(settings, SYSTEM)  # the (empty) snapshot and its binlog coordinates
        checkpoint = settings.run_dir / "checkpoints" / f"{SYSTEM}.json"
        first.wait(lambda: checkpoint.is_file() and json.loads(checkpoint.read_text())["snapshot_done"], 60, "snapshot")
        first.finish()
        changes = LicensingOffice(villages(load_regions(settings.regions_csv)), seed=3).changes()
        started = time.monotonic()
        writer.apply_many((next(changes) for _ in range(args.changes)), batch=1)
        write_seconds = time.monotonic() - started
        writer.close()
        run = TimedAdapterRun(settings, SYSTEM)
        run.wait(lambda: run.committed >= args.changes, 600, "every change captured and checkpointed")
        seconds = run.last_commit - (run.first or run.last_commit)
        run.finish()
        result = {
            "changes": run.committed,
            "capture_seconds": round(seconds, 2),
            "changes_per_s": round(run.committed / seconds) if seconds else None,
            "source_write_changes_per_s": round(args.changes / write_seconds),
            "batch_size": args.batch_size,
        }
    finally:
        db.stop()
        stack.stop()
        rmtree(work, ignore_errors=True)
    print(json.dumps({"mariadb_binlog": result}, indent=2))
    save_results("adapters_mariadb", {"mariadb_binlog": result})


if __name__ == "__main__":
    main()
