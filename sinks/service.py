"""The sink process: consume loop, read-only query endpoint and metrics, stopped by SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal

from backbone import metrics
from backbone.runstate import write_state
from backbone.settings import Settings
from sinks.clickhouse_sink import open_sink
from sinks.quality_metrics import QualityGauges
from sinks.query_server import QueryServer
from sinks.store import connect

log = logging.getLogger(__name__)


def run_sink(settings: Settings) -> None:
    sink = open_sink(settings)
    metrics_port = metrics.serve_metrics(settings.bind_host, settings.sink_metrics_port)
    # Its own client: read-only query settings must never apply to the writer's session.
    portal_client = connect(settings, portal=True) if settings.portal_clickhouse_dsn else None
    server = QueryServer(connect(settings, reader=True), settings, portal_client)
    query_port = server.start()
    # The data-quality gauges, from the scorecard every few seconds (its own client: its own thread).
    gauges = QualityGauges(connect(settings), settings.quality_refresh_seconds)
    gauges.start()
    write_state(
        settings.run_dir,
        query_url=f"http://{settings.bind_host}:{query_port}/",
        sink_metrics_url=f"http://{settings.bind_host}:{metrics_port}/metrics",
    )
    log.warning("sink running: query http://%s:%d/ metrics :%d", settings.bind_host, query_port, metrics_port)

    def stop(signum: int, _frame: object) -> None:
        sink.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        sink.run()
    finally:
        gauges.stop()
        server.stop()
