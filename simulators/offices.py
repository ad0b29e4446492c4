"""Simulated departmental offices that write into their own systems (databases, a drop folder,
the push endpoint), for the adapters to capture: `backbone offices` in the demo."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

from backbone.errors import ConfigError
from backbone.runstate import read_state
from backbone.settings import Settings
from contract.catalog import SourceSystem, catalog_for
from simulators.simulate import Pace, ResumedSimulator

log = logging.getLogger(__name__)


def writers_for(settings: Settings, system: SourceSystem, create: bool = False) -> dict[str, Any]:
    """One writer per entity, by the system's adapter kind."""
    adapter = system.adapter
    kind = adapter.get("kind")
    writers: dict[str, Any] = {}
    for entity in system.entities:
        if kind in ("postgres_cdc", "query_poll"):
            from simulators.writers.postgres import PostgresSourceWriter

            writer: Any = PostgresSourceWriter(os.environ[adapter["dsn_env"]], entity)
            if create:
                writer.create_table(replica_identity_full=True)
        elif kind == "mariadb_binlog":
            from simulators.writers.mariadb import MariaDbSourceWriter

            params = {
                "host": adapter["host"],
                "port": adapter["port"],
                "database": adapter["database"],
                "user": adapter["writer_user"],
                "password": os.environ[adapter["writer_password_env"]],
            }
            writer = MariaDbSourceWriter(params, entity)
            if create:
                writer.create_table()
        elif kind == "file_drop":
            from simulators.writers.files import CsvDropWriter

            writer = CsvDropWriter(adapter["folder"], entity, rows_per_file=200, seconds_per_file=2)
        elif kind == "http_push":
            from simulators.writers.push import PushClient

            if create:
                continue
            url = _wait_for_push_url(settings, system.system)
            writer = PushClient(url, os.environ[adapter["token_env"]], entity.name, batch_size=50)
        else:
            raise ConfigError(f"{system.catalog_file}: the offices cannot write to adapter kind {kind!r}")
        writers[entity.name] = writer
    return writers


def _wait_for_push_url(settings: Settings, system: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        url = read_state(settings.run_dir).get(f"push_{system}_url")
        if url:
            return url
        time.sleep(0.5)
    raise ConfigError(f"the push endpoint of {system} did not start within {timeout:.0f}s")


class Office:
    def __init__(self, settings: Settings, system: SourceSystem, seed: int, bad_ratio: float) -> None:
        self.system = system
        self.kind = system.adapter.get("kind")
        self.writers = writers_for(settings, system)
        self.source = ResumedSimulator(settings, system, seed, bad_ratio)
        self.pending: dict[str, list] = {}
        self.written = self.refused = 0

    def step(self) -> None:
        change = next(self.source.changes)
        entity = change.entity or self.system.entities[0].name
        writer = self.writers[entity]
        if self.kind == "http_push":
            from simulators.writers.push import PushError

            try:
                writer.send([change])
            except PushError as exc:  # a bad record refused at the door, as the office would see it
                self.refused += 1
                log.info("%s refused a change: %s", self.system.system, exc)
                return
        elif self.kind == "file_drop":
            writer.write(change)
        else:
            writer.apply(change)
        self.written += 1

    def tick(self) -> None:
        if self.kind == "file_drop":
            for writer in self.writers.values():
                writer.flush_if_due()

    def close(self) -> None:
        for writer in self.writers.values():
            close = getattr(writer, "close", None)
            if close is not None:
                close()
        self.source.save_position()


def run_offices(settings: Settings, rate: float, bad_ratio: float, seed: int = 1) -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    offices = [Office(settings, s, seed, bad_ratio) for s in catalog_for(settings).systems]
    pace = Pace(rate, stop)
    try:
        while not stop.is_set() and pace.wait():
            for office in offices:
                try:
                    office.step()
                except Exception as exc:  # noqa: BLE001 - one office's trouble must not stop the others
                    log.warning("%s: %s", office.system.system, exc)
                office.tick()
    finally:
        for office in offices:
            office.close()
