"""Runs a domain simulator against Kafka: paced, bounded by count or duration, stopped by signals.
Its source position continues across runs (kept in the run folder), so event ids never repeat."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

from backbone import metrics
from backbone.avro import Registry
from backbone.catalog import catalog_for
from backbone.errors import InputError, ServiceUnavailable
from backbone.reference import load_regions, villages
from backbone.settings import Settings
from backbone.stack import write_state
from producers.emitter import ChangeEmitter
from producers.licensing import LicensingOffice

# domain -> (catalog system, entity, simulator class)
SIMULATORS = {"licensing": ("sim-licensing", "permit_application", LicensingOffice)}


def _position_file(settings: Settings, system: str) -> Path:
    return settings.run_dir / "simulators" / f"{system}.position"


def run_simulator(
    settings: Settings,
    domain: str,
    rate: float = 20.0,
    count: int | None = None,
    duration: float | None = None,
    bad_ratio: float = 0.0,
    seed: int = 1,
    stop: threading.Event | None = None,
    serve_metrics: bool = True,
) -> int:
    """Emit changes until `count`, `duration` or a stop signal; returns how many were acknowledged."""
    if domain not in SIMULATORS:
        raise InputError(f"no simulator for domain {domain!r} (available: {', '.join(SIMULATORS)})")
    if not settings.kafka_bootstrap:
        raise ServiceUnavailable("no Kafka address", hint="set BACKBONE_KAFKA_BOOTSTRAP or run `backbone demo`")
    system_name, entity_name, simulator_class = SIMULATORS[domain]
    entity = next(e for e in catalog_for(settings).system(system_name).entities if e.name == entity_name)
    emitter = ChangeEmitter(entity, settings, Registry(settings.registry_url))
    position_file = _position_file(settings, system_name)
    start = int(position_file.read_text()) if position_file.is_file() else 0
    office = simulator_class(
        villages(load_regions(settings.regions_csv)), seed=seed, start_seq=start, bad_ratio=bad_ratio
    )
    stop = stop or threading.Event()
    if serve_metrics:
        port = metrics.serve_metrics(settings.bind_host, settings.producer_metrics_port)
        write_state(
            settings.run_dir, **{f"producer_{domain}_metrics_url": f"http://{settings.bind_host}:{port}/metrics"}
        )
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    metrics.UP.labels("producer").set(1)
    interval = 1.0 / rate if rate > 0 else 0.0
    began = time.monotonic()
    next_at = began
    sent = 0
    try:
        for change in office.changes():
            if stop.is_set() or (count is not None and sent >= count):
                break
            if duration is not None and time.monotonic() - began >= duration:
                break
            if interval:
                delay = next_at - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    break
                next_at += interval
            emitter.emit(change)
            sent += 1
    finally:
        emitter.flush()
        position_file.parent.mkdir(parents=True, exist_ok=True)
        position_file.write_text(str(office.seq))
        metrics.UP.labels("producer").set(0)
    return emitter.delivered
