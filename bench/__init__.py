"""Benchmarks of the pipeline on a real local stack: `make bench` runs bench.run and the adapter benches."""

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import yaml

from backbone.settings import PROJECT_ROOT, Settings, load_settings
from contract.bootstrap import bootstrap
from contract.catalog import Entity, catalog_for
from devstack.stack import LocalStack, StackAddresses
from producers.service import build_adapter


@contextmanager
def local_stack(work: Path) -> Iterator[StackAddresses]:
    """Kafka and the registry in `work`/stack for one bench run, stopped however the run ends."""
    stack = LocalStack(load_settings(run_dir=work / "stack"), work / "stack")
    try:
        yield stack.start()
    finally:
        stack.stop()


def save_results(name: str, results: dict) -> None:
    """Adapter benches: bench/results/<name>-<UTC time>.json and <name>-latest.json, with the core count."""
    folder = Path(__file__).resolve().parent / "results"
    folder.mkdir(exist_ok=True)
    document = json.dumps({"cores": os.cpu_count(), "timestamp": datetime.now(UTC).isoformat(), **results}, indent=2)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for path in (folder / f"{name}-{stamp}.json", folder / f"{name}-latest.json"):
        path.write_text(document + "\n")


def adapter_settings(work: Path, addresses, system: str, adapter: dict) -> tuple[Settings, Entity]:  # noqa: ANN001
    """Adapter benches: the licensing catalog as source system `system` read by `adapter`, with its own run
    folder and topic prefix on the bench's stack (`addresses`); its topics and schemas are created.
    Returns the settings and the system's one entity."""
    doc = yaml.safe_load((PROJECT_ROOT / "catalog" / "licensing.yaml").read_text())
    doc.update(system=system, adapter=adapter)
    catalog = work / f"catalog-{system}"
    catalog.mkdir(parents=True)
    (catalog / "licensing.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    settings = load_settings(
        run_dir=work / system,
        kafka_bootstrap=addresses.kafka_bootstrap,
        registry_url=addresses.registry_url,
        topic_prefix=f"{system}.",
        catalog_dir=catalog,
    )
    bootstrap(settings)
    (entity,) = catalog_for(settings).system(system).entities
    return settings, entity


class TimedAdapterRun:
    """A source adapter in a thread, counting what it emits and when it checkpoints."""

    def __init__(self, settings, system: str) -> None:
        self.adapter = build_adapter(settings, system)
        self.emitted = 0
        self.first: float | None = None
        self.last_commit = 0.0
        self.committed = 0  # changes emitted before the last checkpoint
        emit, commit = self.adapter.emit, self.adapter.commit

        def counting_emit(change) -> None:  # noqa: ANN001
            if self.first is None:
                self.first = time.monotonic()
            self.emitted += 1
            emit(change)

        def timed_commit(state, numeric_position=None) -> None:  # noqa: ANN001
            emitted = self.emitted
            commit(state, numeric_position)
            self.committed = emitted
            self.last_commit = time.monotonic()

        self.adapter.emit = counting_emit
        self.adapter.commit = timed_commit
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.adapter.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def wait(self, condition, timeout: float, what: str) -> None:  # noqa: ANN001
        deadline = time.monotonic() + timeout
        while not condition():
            if not self.thread.is_alive():
                raise RuntimeError(f"the adapter stopped while waiting for {what}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(30)


def take_snapshot(settings: Settings, system: str, what: str) -> None:
    """Run a database adapter until its (empty) snapshot is checkpointed, then stop it."""
    first = TimedAdapterRun(settings, system)
    checkpoint = settings.run_dir / "checkpoints" / f"{system}.json"
    first.wait(lambda: checkpoint.is_file() and json.loads(checkpoint.read_text())["snapshot_done"], 60, what)
    first.finish()


def capture_rate(settings: Settings, system: str, writer, changes: Iterator, n: int) -> dict:  # noqa: ANN001
    """Write n changes into the source (one transaction each), then run the adapter until all are
    checkpointed: changes/s from its first captured change to the last checkpoint."""
    started = time.monotonic()
    writer.apply_many((next(changes) for _ in range(n)), batch=1)
    write_seconds = time.monotonic() - started
    writer.close()
    run = TimedAdapterRun(settings, system)
    run.wait(lambda: run.committed >= n, 600, "every change captured and checkpointed")
    seconds = run.last_commit - (run.first or run.last_commit)
    run.finish()
    return {
        "changes": run.committed,
        "capture_seconds": round(seconds, 2),
        "changes_per_s": round(run.committed / seconds) if seconds else None,
        "source_write_changes_per_s": round(n / write_seconds),
    }
