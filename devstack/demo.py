"""`make demo`: the local stack, the pipeline on a simulated licensing office, live progress,
and an orderly stop (Ctrl-C, SIGTERM or --duration) that leaves the stored data in place."""

from __future__ import annotations

import signal
import sys
import threading
import time

from rich.console import Console
from rich.live import Live

from backbone.net import free_port
from backbone.runstate import clear_state, write_state
from backbone.settings import Settings
from contract.bootstrap import bootstrap
from contract.catalog import catalog_for
from devstack.demo_sources import DemoSources
from devstack.procs import Child
from devstack.progress import collect, render
from devstack.stack import LocalStack

console = Console(stderr=True)


def _portal_env(settings: Settings, env: dict[str, str]) -> dict[str, str]:
    query_url = f"http://{settings.bind_host}:{env['BACKBONE_QUERY_PORT']}/"
    port = str(settings.portal_port or free_port())
    return {**env, "BACKBONE_PORTAL_PORT": port, "BACKBONE_PORTAL_QUERY_URL": query_url}


def stage_children(
    settings: Settings, env: dict[str, str], rate: float, bad_ratio: float, systems: list[str] | None = None
) -> list[Child]:
    """The pipeline's processes, in start order (sink first, so nothing waits for storage).
    With `systems`, each gets its source adapter and the simulated offices write into the sources;
    without, the simulators produce straight to Kafka."""
    logs = settings.run_dir / "logs"
    cli = [sys.executable, "-m", "cli.main"]
    ports = {
        "BACKBONE_SINK_METRICS_PORT": str(settings.sink_metrics_port or free_port()),
        "BACKBONE_QUERY_PORT": str(settings.query_port or free_port()),
        "BACKBONE_PROCESSOR_METRICS_PORT": str(settings.processor_metrics_port or free_port()),
        "BACKBONE_KPI_METRICS_PORT": str(settings.kpi_metrics_port or free_port()),
        "BACKBONE_PRODUCER_METRICS_PORT": str(settings.producer_metrics_port or free_port()),
    }
    env = {**env, **ports, "BACKBONE_RUN_DIR": str(settings.run_dir)}
    children = [
        Child("sink", [*cli, "sink"], logs / "sink.log", env=env, stop_timeout=20),
        Child("processor", [*cli, "processor"], logs / "processor.log", env=env, stop_timeout=20),
        Child("kpi", [*cli, "kpi"], logs / "kpi.log", env=env, stop_timeout=20),
        # The public portal reads the sink's query endpoint (public_* views only); its URL shows in the progress.
        Child("portal", [*cli, "portal"], logs / "portal.log", env=_portal_env(settings, env), stop_timeout=10),
    ]
    if systems is None:
        simulate = [*cli, "simulate", "all", "--rate", str(rate), "--bad-ratio", str(bad_ratio)]
        return [*children, Child("simulators", simulate, logs / "simulators.log", env=env, stop_timeout=10)]
    for system in systems:
        adapter_env = {**env, "BACKBONE_PRODUCER_METRICS_PORT": str(free_port())}
        children.append(
            Child(
                f"adapter {system}",
                [*cli, "adapters", "run", system],
                logs / f"adapter-{system}.log",
                env=adapter_env,
                stop_timeout=20,
            )
        )
    offices = [*cli, "offices", "--rate", str(rate), "--bad-ratio", str(bad_ratio)]
    return [*children, Child("offices", offices, logs / "offices.log", env=env, stop_timeout=15)]


def run_demo(
    settings: Settings, duration: float | None = None, rate: float = 20.0, bad_ratio: float = 0.02, direct: bool = False
) -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    clear_state(settings.run_dir)
    stack = None
    sources: DemoSources | None = None
    children: list[Child] = []
    try:
        env: dict[str, str] = {}
        if settings.kafka_bootstrap and settings.registry_url:
            console.print(f"Using Kafka at {settings.kafka_bootstrap} and the registry at {settings.registry_url}")
        else:
            console.print("Starting Kafka (KRaft) and Apicurio Registry (kafkasql) on loopback ports...")
            stack = LocalStack(settings)
            addresses = stack.start()
            env.update(addresses.env())
            settings = settings.model_copy(
                update={"kafka_bootstrap": addresses.kafka_bootstrap, "registry_url": addresses.registry_url}
            )
        write_state(settings.run_dir, kafka_bootstrap=settings.kafka_bootstrap, registry_url=settings.registry_url)
        report = bootstrap(settings)
        console.print(
            f"Topics ready ({len(report.topics_created)} new), {len(report.subjects)} schemas registered, "
            f"{report.regions} regions published."
        )
        systems = None
        if not direct:
            console.print("Starting the departmental sources (PostgreSQL, MariaDB, a drop folder, a push endpoint)...")
            sources = DemoSources(settings)
            env.update(sources.start())
            systems = [
                s.system for s in catalog_for(settings.model_copy(update={"catalog_dir": sources.catalog_dir})).systems
            ]
        children = stage_children(settings, env, rate, bad_ratio, systems)
        for child in children:
            child.start()
        console.print(
            'Query the live data from another terminal:  [bold].venv/bin/backbone sql "SELECT count() FROM '
            'licensing_permit_application FINAL"[/]\nStop with Ctrl-C. Logs: ' + str(settings.run_dir / "logs")
        )
        began = time.monotonic()
        with Live(render(collect(settings.run_dir)), console=console, refresh_per_second=2) as live:
            while not stop.wait(1.0):
                live.update(render(collect(settings.run_dir)))
                dead = [c for c in children if not c.alive()]
                if dead:
                    for c in dead:
                        console.print(
                            f"[red]{c.name} exited ({c.process.returncode}); its log ends with:[/]\n{c.log_tail()}"
                        )
                    break
                if duration is not None and time.monotonic() - began >= duration:
                    break
            live.update(render(collect(settings.run_dir)))
    finally:
        console.print("Stopping...")
        for child in reversed(children):  # producers first, the store last
            code = child.stop()
            console.print(f"  {child.name} stopped ({code})")
        if sources is not None:
            sources.stop()
            console.print("  PostgreSQL and MariaDB stopped")
        if stack is not None:
            stack.stop()
            console.print("  registry and Kafka stopped")
        clear_state(settings.run_dir)
        console.print(f"Data kept in {settings.run_dir}; `make demo` again continues from it.")
