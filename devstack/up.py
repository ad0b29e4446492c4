"""`backbone up`: the production topology (docker-compose.yml) as local processes, for a machine
without Docker. The local stack (unless Kafka and the registry are configured), the sink, the
processor, the KPI worker, the public portal, and one adapter per catalog system with a real source;
Prometheus with the project's rules over every process, and Alertmanager with the project's routing.

A supervisor restarts a process that exits, as compose's `restart: unless-stopped` does, after a
back-off that doubles from 1 s to 60 s (reset once a process has stayed up for 5 minutes), so a
crash loop does not spin. Prometheus sees the restart as a new `process_start_time_seconds`, and
`BackboneStageRestarted` fires. Who runs where is written to <run_dir>/supervisor.json."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from backbone.net import free_port
from backbone.settings import Settings
from contract.bootstrap import bootstrap
from contract.catalog import catalog_for
from devstack.alert_rules import render_dir
from devstack.monitoring import (
    LocalAlertmanager,
    LocalPrometheus,
    Target,
    alertmanager_config,
    prometheus_config,
    rules_with,
)
from devstack.procs import Child
from devstack.stack import LocalStack

log = logging.getLogger(__name__)
STATE_FILE = "supervisor.json"
FIRST_BACKOFF, MAX_BACKOFF, STEADY_SECONDS = 1.0, 60.0, 300.0
# Where alerts go when no webhook is given: nothing listens there; Alertmanager's UI and API show them.
NO_WEBHOOK = "http://127.0.0.1:9"


@dataclass
class Supervised:
    child: Child
    target: Target | None  # None: nothing to scrape (the portal)
    restarts: int = 0
    backoff: float = FIRST_BACKOFF
    started_at: float = 0.0
    restart_at: float | None = None  # set while a dead process waits out its back-off


@dataclass
class Supervisor:
    """Restarts what exits; `check` is called from the main loop."""

    processes: list[Supervised]
    state_file: Path
    extra: dict[str, object] = field(default_factory=dict)

    def start(self) -> None:
        now = time.monotonic()
        for p in self.processes:
            p.child.start()
            p.started_at = now
        self.write()

    def check(self, now: float) -> None:
        changed = False
        for p in self.processes:
            if p.child.alive():
                if now - p.started_at >= STEADY_SECONDS:
                    p.backoff = FIRST_BACKOFF
                continue
            if p.restart_at is None:
                code = p.child.process.returncode if p.child.process else None
                log.warning("%s exited (%s); restarting in %.0f s", p.child.name, code, p.backoff)
                p.restart_at = now + p.backoff
            elif now >= p.restart_at:
                p.child.start()
                p.restarts += 1
                p.started_at, p.restart_at = now, None
                p.backoff = min(p.backoff * 2, MAX_BACKOFF)
                changed = True
        if changed:
            self.write()

    def write(self) -> None:
        state = {
            "processes": {
                p.child.name: {
                    "pid": p.child.pid,
                    "alive": p.child.alive(),
                    "restarts": p.restarts,
                    "metrics": p.target.address if p.target else None,
                    "log": str(p.child.log_path),
                }
                for p in self.processes
            },
            **self.extra,
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    def supervise(self, stop: threading.Event, duration: float | None = None) -> None:
        """Check every half second until `stop` is set (or `duration` has passed)."""
        began = time.monotonic()
        while not stop.wait(0.5):
            self.check(time.monotonic())
            if duration is not None and time.monotonic() - began >= duration:
                return

    def stop(self) -> None:
        for p in reversed(self.processes):  # producers first, the store last
            p.child.stop()


def topology(settings: Settings, env: dict[str, str]) -> list[Supervised]:
    """The processes of the production topology, each with its own metrics port (kept across restarts)."""
    logs = settings.run_dir / "logs"
    cli = [sys.executable, "-m", "cli.main"]
    env = {
        **env,
        "BACKBONE_RUN_DIR": str(settings.run_dir),
        "BACKBONE_QUERY_PORT": str(settings.query_port or free_port()),
    }
    workers = settings.processor_workers  # each a process of its own, supervised and scraped on its own
    processors = [
        (
            "processor" if workers == 1 else f"processor {i + 1}",
            "BACKBONE_PROCESSOR_METRICS_PORT",
            ["processor", "--workers", "1"],
            {"stage": "processor"},
        )
        for i in range(workers)
    ]
    stages = [
        ("sink", "BACKBONE_SINK_METRICS_PORT", ["sink"], {"stage": "sink"}),
        *processors,
        ("kpi", "BACKBONE_KPI_METRICS_PORT", ["kpi"], {"stage": "kpi"}),
        # Not a stage (no `stage` label, as in compose): every consumer group's lag.
        ("lag-exporter", "BACKBONE_LAG_EXPORTER_PORT", ["lag-exporter"], {}),
    ]
    for system in catalog_for(settings).systems:
        if system.adapter.get("kind", "simulator") != "simulator":  # simulators are the demo's, not production's
            labels = {"stage": "adapter", "system": system.system, "domain": system.domain}
            stages.append(
                (
                    f"adapter {system.system}",
                    "BACKBONE_PRODUCER_METRICS_PORT",
                    ["adapters", "run", system.system],
                    labels,
                )
            )
    processes = []
    # The public portal reads the sink's query endpoint (public_* views only); it serves pages, not metrics.
    portal_port = settings.portal_port or free_port()
    portal_env = {
        **env,
        "BACKBONE_PORTAL_PORT": str(portal_port),
        "BACKBONE_PORTAL_QUERY_URL": f"http://127.0.0.1:{env['BACKBONE_QUERY_PORT']}/",
    }
    portal = Child("portal", [*cli, "portal"], logs / "portal.log", env=portal_env, stop_timeout=10)
    processes.append(Supervised(portal, None))
    for name, port_variable, args, labels in stages:
        port = free_port()
        job = name.split(" ")[0]
        child = Child(
            name,
            [*cli, *args],
            logs / f"{name.replace(' ', '-')}.log",
            env={**env, port_variable: str(port)},
            stop_timeout=20,
        )
        processes.append(Supervised(child, Target(job, f"127.0.0.1:{port}", labels)))
    return processes


def run_up(settings: Settings, duration: float | None = None, webhook: str | None = None) -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    stack: LocalStack | None = None
    servers: list[LocalPrometheus | LocalAlertmanager] = []
    supervisor: Supervisor | None = None
    try:
        env: dict[str, str] = {}
        if not (settings.kafka_bootstrap and settings.registry_url):
            stack = LocalStack(settings)
            addresses = stack.start()
            env.update(addresses.env())
            settings = settings.model_copy(
                update={"kafka_bootstrap": addresses.kafka_bootstrap, "registry_url": addresses.registry_url}
            )
        bootstrap(settings)
        processes = topology(settings, env)
        monitoring = settings.run_dir / "monitoring"
        rules = monitoring / "rules"
        rules.mkdir(parents=True, exist_ok=True)
        (rules / "alerts.yml").write_text(json.dumps(rules_with()))  # JSON is YAML
        (rules / "catalog_rules.yml").write_text(render_dir(settings.catalog_dir))
        manager = LocalAlertmanager(monitoring / "alertmanager", alertmanager_config(webhook or NO_WEBHOOK))
        servers.append(manager.start())
        config = prometheus_config(
            [p.target for p in processes if p.target],
            [rules / "alerts.yml", rules / "catalog_rules.yml"],
            manager.address,
            "5s",
            "5s",
        )
        prometheus = LocalPrometheus(monitoring / "prometheus", config)
        servers.append(prometheus.start())
        portal = next(p.child for p in processes if p.child.name == "portal")
        extra = {
            "prometheus": prometheus.url,
            "alertmanager": manager.url,
            "portal": f"http://127.0.0.1:{portal.env['BACKBONE_PORTAL_PORT']}/",
            "kafka_bootstrap": settings.kafka_bootstrap,
        }
        supervisor = Supervisor(processes, settings.run_dir / STATE_FILE, extra)
        supervisor.start()
        log.warning(
            "up: %d processes supervised; Prometheus %s, Alertmanager %s", len(processes), prometheus.url, manager.url
        )
        supervisor.supervise(stop, duration)
    finally:
        if supervisor is not None:
            supervisor.stop()
        for server in reversed(servers):
            server.stop()
        if stack is not None:
            stack.stop()
