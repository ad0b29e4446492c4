"""Benchmarks of the pipeline on a real local stack: `make bench` runs bench.run and the adapter benches."""

import threading
import time

from producers.service import build_adapter


def save_results(name: str, results: dict) -> None:
    """Adapter benches: bench/results/<name>-<UTC time>.json and <name>-latest.json, with the core count."""
    import json
    import os
    from datetime import UTC, datetime
    from pathlib import Path

    folder = Path(__file__).resolve().parent / "results"
    folder.mkdir(exist_ok=True)
    document = json.dumps({"cores": os.cpu_count(), "timestamp": datetime.now(UTC).isoformat(), **results}, indent=2)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for path in (folder / f"{name}-{stamp}.json", folder / f"{name}-latest.json"):
        path.write_text(document + "\n")


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
