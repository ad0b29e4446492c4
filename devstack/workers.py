"""`backbone processor --workers N`: N processor processes in one consumer group, restarted when
they exit (the back-off of `backbone up`), stopped together on SIGTERM or SIGINT.

Each worker is a `backbone processor` of its own (one Python interpreter per core is what lifts
the processor above one core's worth: the cleaning is CPU-bound Python). Kafka's group protocol
shares the cdc topics' partitions among them; each keeps its own offset ledger and lifecycle
state for the partitions it holds, so the delivery guarantees are those of one worker. Worker i
serves metrics on BACKBONE_PROCESSOR_METRICS_PORT + i when that is set, else on a free port; who
runs where is written to <run_dir>/processor-workers.json."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from backbone.net import free_port
from backbone.settings import Settings
from devstack.monitoring import Target
from devstack.procs import Child
from devstack.up import Supervised, Supervisor

log = logging.getLogger(__name__)
STATE_FILE = "processor-workers.json"


def worker_processes(settings: Settings, n: int) -> list[Supervised]:
    """The N workers, each a `backbone processor` of one worker with its own metrics port."""
    cli = [sys.executable, "-m", "cli.main", "processor", "--workers", "1"]
    base = settings.processor_metrics_port
    workers = []
    for i in range(n):
        port = base + i if base else free_port()
        env = {**settings.as_env(), "BACKBONE_PROCESSOR_WORKERS": "1", "BACKBONE_PROCESSOR_METRICS_PORT": str(port)}
        child = Child(f"processor {i + 1}", cli, settings.run_dir / "logs" / f"processor-{i + 1}.log", env=env,
                      stop_timeout=20)
        workers.append(Supervised(child, Target("processor", f"{settings.bind_host}:{port}", {"stage": "processor"})))
    return workers


def run_processor_workers(settings: Settings, n: int, stop: threading.Event | None = None) -> None:
    """Run N workers until SIGTERM or SIGINT (or `stop`), restarting any that exits."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor(worker_processes(settings, n), settings.run_dir / STATE_FILE)
    try:
        supervisor.start()
        log.info("%d processor workers started; logs in %s", n, settings.run_dir / "logs")
        supervisor.supervise(stop)
    finally:
        supervisor.stop()
