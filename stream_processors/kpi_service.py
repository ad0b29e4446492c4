"""Running the KPI worker as a process: metrics endpoint, run-state entry, then the Faust worker."""

from __future__ import annotations

from backbone import metrics
from backbone.runstate import write_state
from backbone.settings import Settings
from stream_processors.kpi_app import run_kpi_worker


def run_kpi(settings: Settings) -> None:
    port = metrics.serve_metrics(settings.bind_host, settings.kpi_metrics_port)
    write_state(settings.run_dir, kpi_metrics_url=f"http://{settings.bind_host}:{port}/metrics")
    run_kpi_worker(settings)
