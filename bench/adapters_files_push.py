"""Capture rate of the file-drop and HTTP push source adapters on a fresh local stack (Kafka +
Apicurio) in a temporary folder. Each adapter runs as a child `backbone adapters run <system>` process:

  file_drop  N licensing creates written with CsvDropWriter as files of 2000 rows into a staging folder,
             moved into the drop folder at once, then the adapter started: the time from its first to
             its last Kafka-acknowledged event (backbone_events_out_total{stage="producer"} on its
             metrics endpoint, polled) gives changes/s.
  http_push  the adapter started, then N creates pushed with PushClient in batches of 500 (a 2xx is
             only given once Kafka acknowledged the batch): changes/s over the whole send.

The processor and sink are not involved.

    .venv/bin/python -m bench.adapters_files_push --changes 20000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from backbone.net import free_port
from backbone.runstate import read_state
from backbone.settings import PROJECT_ROOT, Settings, load_settings
from bench import adapter_settings, save_results
from contract.reference import load_regions, villages
from devstack.procs import Child
from devstack.stack import LocalStack
from simulators.licensing import LicensingOffice
from simulators.writers.files import CsvDropWriter
from simulators.writers.push import PushClient

TOKEN_ENV = "BENCH_PUSH_TOKEN"
TOKEN = "bench-push-token"
ROWS_PER_FILE = 2000
PUSH_BATCH = 500


def _start_adapter(settings: Settings, system: str, metrics_port: int) -> Child:
    env = {**settings.as_env(), "BACKBONE_PRODUCER_METRICS_PORT": str(metrics_port), TOKEN_ENV: TOKEN}
    return Child(
        system,
        [sys.executable, "-m", "cli.main", "adapters", "run", system],
        settings.run_dir / "logs" / f"{system}.log",
        env=env,
        stop_timeout=20,
    ).start()


def _wait(condition, timeout: float, what: str, child: Child, interval: float = 0.1):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while True:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited while waiting for {what}:\n{child.log_tail(30)}")
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}:\n{child.log_tail(30)}")
        time.sleep(interval)


def _acknowledged(port: int) -> int:
    """backbone_events_out_total{stage="producer"} summed over topics (0 while the endpoint is not up)."""
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except requests.RequestException:
        return 0
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "backbone_events_out_total" and sample.labels.get("stage") == "producer":
                total += sample.value
    return int(total)


def _creates(regions: list[str], n: int) -> list:
    changes = (c for c in LicensingOffice(regions, seed=3).changes() if c.op == "c")
    return [next(changes) for _ in range(n)]


def _file_drop(work: Path, addresses, regions: list[str], n: int, timeout: float) -> dict:  # noqa: ANN001
    system = "bench-file-drop"
    drop = work / "drop"
    adapter = {"kind": "file_drop", "folder": str(drop), "settle_seconds": 0, "poll_seconds": 0.2}
    settings, entity = adapter_settings(work, addresses, system, adapter)
    staging = work / "staging"
    writer = CsvDropWriter(staging, entity, rows_per_file=ROWS_PER_FILE, seconds_per_file=3600)
    for change in _creates(regions, n):
        writer.write(change)
    writer.close()
    drop.mkdir(parents=True, exist_ok=True)
    for path in writer.files:
        os.rename(path, drop / path.name)
    port = free_port()
    child = _start_adapter(settings, system, port)
    try:
        deadline = time.monotonic() + timeout
        first = None
        while True:
            done = _acknowledged(port)
            now = time.monotonic()
            if done and first is None:
                first = now
            if done >= n:
                last = now
                break
            if not child.alive():
                raise RuntimeError(f"{system} exited after {done}/{n} acknowledged:\n{child.log_tail(30)}")
            if now > deadline:
                raise TimeoutError(f"{system}: only {done}/{n} events acknowledged after {timeout}s")
            time.sleep(0.05)
    finally:
        child.stop()
    seconds = last - first
    return {"changes": done, "seconds": round(seconds, 2), "changes_per_s": round(done / seconds) if seconds else None}


def _http_push(work: Path, addresses, regions: list[str], n: int, timeout: float) -> dict:  # noqa: ANN001
    system = "bench-http-push"
    settings, entity = adapter_settings(work, addresses, system, {"kind": "http_push", "token_env": TOKEN_ENV})
    changes = _creates(regions, n)
    child = _start_adapter(settings, system, free_port())
    try:
        url = _wait(lambda: read_state(settings.run_dir).get(f"push_{system}_url"), timeout, "the push URL", child)
        client = PushClient(url, TOKEN, entity.name, batch_size=PUSH_BATCH)
        started = time.monotonic()
        accepted = client.send(changes)
        seconds = time.monotonic() - started
    finally:
        child.stop()
    if accepted != n:
        raise RuntimeError(f"{system}: {accepted}/{n} changes accepted")
    return {"changes": accepted, "seconds": round(seconds, 2), "changes_per_s": round(accepted / seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=20000)
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for each adapter")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, data)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-adapters-files-push-"))
    stack = LocalStack(load_settings(run_dir=work / "stack"), work / "stack")
    results: dict[str, dict] = {}
    try:
        addresses = stack.start()
        regions = villages(load_regions(PROJECT_ROOT / "data" / "bojonegoro_regions.csv"))
        results["file_drop"] = _file_drop(work, addresses, regions, args.changes, args.timeout)
        print("file_drop", results["file_drop"], flush=True)
        results["http_push"] = _http_push(work, addresses, regions, args.changes, args.timeout)
        print("http_push", results["http_push"], flush=True)
    finally:
        stack.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    save_results("adapters_files_push", results)


if __name__ == "__main__":
    main()
