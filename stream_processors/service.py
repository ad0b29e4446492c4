"""Running the processor as a process: metrics endpoint, run-state entry, then the Faust worker."""

from __future__ import annotations

from backbone import metrics
from backbone.runstate import write_state
from backbone.settings import Settings
from stream_processors.processor import run_worker


def run_processor(settings: Settings) -> None:
    port = metrics.serve_metrics(settings.bind_host, settings.processor_metrics_port)
    write_state(settings.run_dir, processor_metrics_url=f"http://{settings.bind_host}:{port}/metrics")
    run_worker(settings)
