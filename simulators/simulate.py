"""Runs simulated departmental systems against Kafka: paced, bounded by count or duration, stopped
by signals. A system's simulator is named in its catalog file (adapter.simulator: module:Class),
so a new domain needs no change here.

A simulator class (simulators.kit.Simulator) takes (villages, seed=, start_seq=, bad_ratio=) and has
`changes()`, an endless iterator of Change (with `entity` naming one of the system's entities when it
has several) and `seq`, its source position. Positions continue across runs (kept in the run folder),
and the same seed and start give the same changes, so event ids never repeat and a replay is
recognisable."""

from __future__ import annotations

import importlib
import signal
import threading
import time
from pathlib import Path
from typing import Any

from backbone import metrics
from backbone.errors import InputError, ServiceUnavailable
from backbone.runstate import write_state
from backbone.settings import Settings
from contract.bootstrap import preflight
from contract.catalog import SourceSystem, catalog_for
from contract.codec import Registry
from contract.reference import load_regions, villages
from producers.emitter import ChangeEmitter
from simulators.doubts import Doubter


def simulated_systems(settings: Settings) -> list[SourceSystem]:
    return [s for s in catalog_for(settings).systems if s.adapter.get("kind") == "simulator"]


def find_system(settings: Settings, name: str) -> SourceSystem:
    """A simulated system by its catalog name or its domain."""
    systems = simulated_systems(settings)
    for system in systems:
        if name in (system.system, system.domain):
            return system
    known = ", ".join(sorted(s.domain for s in systems)) or "none"
    raise InputError(f"no simulated system or domain named {name!r} in the catalog (available: {known})")


def simulator_class(system: SourceSystem) -> type:
    target = system.adapter.get("simulator", "")
    module_name, _, class_name = str(target).partition(":")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        raise InputError(
            f"{system.catalog_file}: field 'adapter.simulator' has value {target!r}: no such module:Class"
        ) from None


def position_file(settings: Settings, system: str) -> Path:
    return settings.run_dir / "simulators" / f"{system}.position"


DOUBT_SHARE = 0.5  # doubtful records per bad record asked for


class ResumedSimulator:
    """A system's simulator, started at the position its last run reached (kept in the run folder)."""

    def __init__(self, settings: Settings, system: SourceSystem, seed: int, bad_ratio: float) -> None:
        self.position_file = position_file(settings, system.system)
        start = int(self.position_file.read_text()) if self.position_file.is_file() else 0
        regions = villages(load_regions(settings.regions_csv))
        self.simulator: Any = simulator_class(system)(regions, seed=seed, start_seq=start, bad_ratio=bad_ratio)
        # With bad records asked for, doubtful ones too (half as many): each declared data-quality rule
        # broken now and then, flagged or dead-lettered as its severity says (simulators/doubts.py).
        self.doubter = Doubter(system, bad_ratio * DOUBT_SHARE, seed)
        self.changes = self.doubter.changes(self.simulator.changes())

    def save_position(self) -> None:
        self.position_file.parent.mkdir(parents=True, exist_ok=True)
        self.position_file.write_text(str(self.simulator.seq))


class Pace:
    """Steps at `rate` per second (0: as fast as they come) until `stop` is set."""

    def __init__(self, rate: float, stop: threading.Event) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.stop = stop
        self.next_at = time.monotonic()

    def wait(self) -> bool:
        """Wait for the next step's turn; False when stopped meanwhile."""
        if self.interval:
            delay = self.next_at - time.monotonic()
            if delay > 0 and self.stop.wait(delay):
                return False
            self.next_at += self.interval
        return True


class SystemRun:
    """One simulated system with an emitter per entity."""

    def __init__(self, settings: Settings, system: SourceSystem, registry: Registry, seed: int, bad_ratio: float):
        self.system = system
        # Nothing here acts on each acknowledgement: librdkafka reports failures only (fewer Python calls).
        self.emitters = {e.name: ChangeEmitter(e, settings, registry, each_delivery=False) for e in system.entities}
        self.default = system.entities[0].name
        self.source = ResumedSimulator(settings, system, seed, bad_ratio)
        self.sent = 0

    def step(self) -> None:
        change = next(self.source.changes)
        emitter = self.emitters.get(change.entity or self.default)
        if emitter is None:
            raise InputError(f"simulator of {self.system.system} emitted unknown entity {change.entity!r}")
        emitter.emit(change)
        self.sent += 1

    def close(self) -> int:
        """Flush, remember the position; returns how many events Kafka acknowledged."""
        try:
            for emitter in self.emitters.values():
                emitter.flush()
        finally:
            self.source.save_position()
        return sum(e.delivered for e in self.emitters.values())


def run_simulators(
    settings: Settings,
    names: list[str],
    rate: float = 20.0,
    count: int | None = None,
    duration: float | None = None,
    bad_ratio: float = 0.0,
    seed: int = 1,
    stop: threading.Event | None = None,
    serve_metrics: bool = True,
) -> dict[str, int]:
    """Emit changes from the named systems (round robin, `rate` per second per system) until
    `count` per system, `duration` or a stop signal. Returns acknowledged events per system."""
    if not settings.kafka_bootstrap:
        raise ServiceUnavailable("no Kafka address", hint="set BACKBONE_KAFKA_BOOTSTRAP or run `backbone demo`")
    preflight(settings)
    systems = simulated_systems(settings) if names in ([], ["all"]) else [find_system(settings, n) for n in names]
    registry = Registry.for_settings(settings)
    runs = [SystemRun(settings, s, registry, seed, bad_ratio) for s in systems]
    stop = stop or threading.Event()
    if serve_metrics:
        port = metrics.serve_metrics(settings.bind_host, settings.producer_metrics_port)
        write_state(settings.run_dir, producer_metrics_url=f"http://{settings.bind_host}:{port}/metrics")
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    metrics.UP.labels("producer").set(1)
    heartbeat = metrics.Heartbeat("producer")
    began = time.monotonic()
    pace = Pace(rate, stop)
    try:
        while not stop.is_set():
            heartbeat.beat()
            if count is not None and all(r.sent >= count for r in runs):
                break
            if duration is not None and time.monotonic() - began >= duration:
                break
            if not pace.wait():
                break
            for run in runs:
                if count is None or run.sent < count:
                    run.step()
    finally:
        delivered = {}
        for run in runs:
            delivered[run.system.system] = run.close()
        metrics.UP.labels("producer").set(0)
    return delivered


def run_simulator(settings: Settings, name: str, **kwargs: Any) -> int:
    """One system (by name or domain); returns how many events Kafka acknowledged."""
    return sum(run_simulators(settings, [name], **kwargs).values())
