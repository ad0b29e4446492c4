"""What every source adapter shares: emitters per entity, dead letters for bad source records,
durable checkpoints advanced only after Kafka acknowledged, backpressure, metrics.

The loop of an adapter is: capture a batch of changes from the source -> `emit()` each ->
`commit(position)`, which waits until Kafka acknowledged everything emitted so far (retrying with
backoff while the broker is down, never dropping) and only then writes the checkpoint atomically.
A kill -9 at any moment therefore re-sends at most the changes after the last checkpoint, and
their deterministic event ids make the replay recognisable downstream."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from backbone import metrics
from backbone.errors import ConfigError, ServiceUnavailable
from backbone.settings import Settings
from contract.catalog import SourceSystem
from contract.codec import Registry
from contract.deadletter import dead_letter_headers
from contract.topics import DLQ_ADAPTER, named
from producers.emitter import Change, ChangeEmitter

log = logging.getLogger(__name__)


class CheckpointStore:
    """One JSON document per system, replaced atomically (write, fsync, rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise ConfigError(f"checkpoint {self.path} is corrupt ({exc}); move it away to start over") from None

    def save(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as fh:
            json.dump(state, fh, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class SourceAdapter(ABC):
    """Base of every adapter. Subclasses implement `run(stop)` with the loop described above."""

    kind = "adapter"

    def __init__(self, system: SourceSystem, settings: Settings, registry: Registry | None = None) -> None:
        self.system = system
        self.settings = settings
        self.config: dict[str, Any] = dict(system.adapter)
        registry = registry or Registry(settings.registry_url)
        database = str(self.config.get("database") or self.config.get("folder") or self.kind)
        self.emitters = {e.name: ChangeEmitter(e, settings, registry, database=database) for e in system.entities}
        self.entities = {e.name: e for e in system.entities}
        self.checkpoints = CheckpointStore(settings.run_dir / "checkpoints" / f"{system.system}.json")
        self.dlq_topic = named(settings, DLQ_ADAPTER)
        self._dlq = Producer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "message.timeout.ms": 0,
            }
        )
        self._oldest_pending: datetime | None = None
        self._labels = {"system": system.system}

    # -- configuration -------------------------------------------------------------------------
    def setting(self, name: str, default: Any = ..., kind: type | tuple[type, ...] = object) -> Any:
        """A value of the catalog's `adapter:` mapping; a missing or mistyped one names the file and field."""
        value = self.config.get(name, default)
        if value is ... or (value is None and default is ...):
            raise ConfigError(f"{self.system.catalog_file}: field 'adapter.{name}' is missing")
        if value is not None and not isinstance(value, kind):
            raise ConfigError(f"{self.system.catalog_file}: field 'adapter.{name}' has value {value!r}")
        return value

    def secret(self, name: str) -> str:
        """A secret named in the catalog by its environment variable (`<name>_env`), never the value."""
        variable = self.setting(f"{name}_env", kind=str)
        value = os.environ.get(variable)
        if not value:
            raise ConfigError(
                f"environment variable {variable} is not set (adapter.{name}_env of {self.system.system})"
            )
        return value

    # -- emitting ------------------------------------------------------------------------------
    def emit(self, change: Change) -> None:
        entity = change.entity or self.system.entities[0].name
        emitter = self.emitters.get(entity)
        if emitter is None:
            raise ConfigError(f"{self.system.catalog_file}: adapter produced unknown entity {entity!r}")
        emitter.emit(change)
        metrics.ADAPTER_CAPTURED.labels(self.system.system, entity).inc()
        if self._oldest_pending is None:
            self._oldest_pending = change.ts_source
        metrics.ADAPTER_SOURCE_LAG.labels(**self._labels).set(
            max(0.0, (datetime.now(UTC) - self._oldest_pending).total_seconds())
        )

    def reject(self, reason: str, original: bytes, key: bytes | None = None, origin: str = "") -> None:
        """A source record that cannot become an event: to dlq.adapter with the reason and its bytes."""
        headers = dead_letter_headers("adapter", reason, f"{self.system.system}:{origin}", -1, -1)
        while True:
            try:
                self._dlq.produce(self.dlq_topic, value=original, key=key, headers=headers)
                break
            except BufferError:
                self._dlq.poll(0.1)
        metrics.ADAPTER_REJECTED.labels(self.system.system, reason.split(":")[0][:60]).inc()

    def wait_acknowledged(self, stop: threading.Event | None = None) -> None:
        """Block until Kafka acknowledged everything emitted; back off while it is unavailable."""
        delay = 0.5
        while True:
            pending = sum(len(e.producer) for e in self.emitters.values()) + len(self._dlq)
            if pending == 0:
                break
            for emitter in self.emitters.values():
                emitter.producer.flush(delay)
            self._dlq.flush(delay)
            if sum(len(e.producer) for e in self.emitters.values()) + len(self._dlq):
                metrics.RETRIES.labels("adapter", "kafka_unavailable").inc()
                log.warning("%s: Kafka has not acknowledged %d events yet; waiting", self.system.system, pending)
                delay = min(delay * 2, 10)
                if stop is not None and stop.is_set() and delay >= 10:
                    raise ServiceUnavailable(f"{self.system.system}: stopping with {pending} events unacknowledged")
        failed = [err for e in self.emitters.values() for err in e.failed]
        if failed:
            raise ServiceUnavailable(f"{self.system.system}: Kafka refused events: {failed[:3]}")

    def commit(self, state: dict[str, Any], numeric_position: float | None = None) -> None:
        """Checkpoint `state` once everything emitted before it is acknowledged."""
        self.wait_acknowledged()
        self.checkpoints.save(state)
        self._oldest_pending = None
        metrics.ADAPTER_SOURCE_LAG.labels(**self._labels).set(0)
        metrics.ADAPTER_CHECKPOINT_TIME.labels(**self._labels).set(time.time())
        if numeric_position is not None:
            metrics.ADAPTER_CHECKPOINT.labels(**self._labels).set(numeric_position)

    @abstractmethod
    def run(self, stop: threading.Event) -> None:
        """Capture until `stop` is set; commit before returning."""
