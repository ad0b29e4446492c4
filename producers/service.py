"""Running a source adapter as a process: metrics endpoint, signals, orderly stop."""

from __future__ import annotations

import signal
import threading

from backbone import metrics
from backbone.runstate import write_state
from backbone.settings import Settings
from contract.bootstrap import preflight
from contract.catalog import catalog_for
from producers.adapters import adapter_class


def build_adapter(settings: Settings, system_name: str):  # noqa: ANN201 - a SourceAdapter
    system = catalog_for(settings).system(system_name)
    kind = str(system.adapter.get("kind", ""))
    return adapter_class(kind, system.catalog_file)(system, settings)


def run_adapter(settings: Settings, system_name: str, stop: threading.Event | None = None) -> None:
    preflight(settings)
    adapter = build_adapter(settings, system_name)
    stop = stop or threading.Event()
    port = metrics.serve_metrics(settings.bind_host, settings.producer_metrics_port)
    write_state(
        settings.run_dir, **{f"adapter_{system_name}_metrics_url": f"http://{settings.bind_host}:{port}/metrics"}
    )
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    metrics.UP.labels("adapter").set(1)
    try:
        adapter.run(stop)
    finally:
        metrics.UP.labels("adapter").set(0)
