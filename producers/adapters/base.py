"""What every source adapter shares: emitters per entity, dead letters for bad source records,
durable checkpoints advanced only after Kafka acknowledged, backpressure, metrics.

The loop of an adapter is: capture a batch of changes from the source -> `emit()` each ->
`commit(position)`, which waits until Kafka acknowledged everything emitted so far (retrying with
backoff while the broker is down, never dropping) and only then writes the checkpoint atomically.
A kill -9 at any moment therefore re-sends at most the changes after the last checkpoint, and
their deterministic event ids make the replay recognisable downstream. `keep_running()` runs a
connection to the source until the stop event, waiting for the source while it is unavailable.
Waits follow the retry policies of backbone.retry ("kafka" for the broker, "source" for sources)."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tenacity import RetryCallState

from backbone import kafka, metrics
from backbone.errors import ConfigError, ServiceUnavailable
from backbone.retry import retrying
from backbone.sealing import Sealer
from backbone.settings import Settings
from contract.catalog import SourceSystem
from contract.codec import Registry
from contract.deadletter import dead_letter_headers, input_letter_id
from contract.rules import scope_secret
from contract.topics import DLQ_ADAPTER, named
from producers.adapters.pii import PiiMask
from producers.emitter import MAX_MESSAGE_BYTES, Change, ChangeEmitter, TooLarge, canonical_bytes

log = logging.getLogger(__name__)

ACK_FLUSH_SECONDS = 0.5  # how long one attempt waits for Kafka's acknowledgements
MAX_REASON_CHARS = 2000  # an error.reason header longer than this is cut (a reason is read, not replayed)
# The sealed original of a dead letter must fit one Kafka message: larger inputs keep their head only.
MAX_ORIGINAL_BYTES = MAX_MESSAGE_BYTES - MAX_REASON_CHARS * 4 - 4096


def private_dir(path: Path) -> None:
    """Create a folder the adapter owns, readable by its user only (0700)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def bounded_reason(reason: str) -> str:
    """A reason fit for a header: valid UTF-8 (lone surrogates replaced) and at most MAX_REASON_CHARS."""
    text = reason.encode("utf-8", errors="replace").decode("utf-8")
    if len(text) > MAX_REASON_CHARS:
        text = f"{text[: MAX_REASON_CHARS - 40]}... ({len(reason)} characters)"
    return text


class SourceUnavailable(ServiceUnavailable):
    """The source cannot be reached right now: wait for it and connect again."""


class Unacknowledged(ServiceUnavailable):
    """Kafka has not acknowledged everything emitted yet."""


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
        private_dir(self.path.parent)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd, 0o600)
        with open(fd, "w") as fh:
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
        registry = registry or Registry.for_settings(settings)
        database = str(self.config.get("database") or self.config.get("folder") or self.kind)
        self.emitters = {e.name: ChangeEmitter(e, settings, registry, database=database) for e in system.entities}
        self.entities = {e.name: e for e in system.entities}
        self.checkpoints = CheckpointStore(settings.run_dir / "checkpoints" / f"{system.system}.json")
        self.dlq_topic = named(settings, DLQ_ADAPTER)
        self._dlq = kafka.make_producer(settings, "dead_letters")
        self.sealer = Sealer(settings.dead_letter_secret())
        self.pii = PiiMask(scope_secret(settings.pii_secret(), system.scope), system.entities)
        self._oldest_pending: datetime | None = None
        self._labels = {"system": system.system}
        self._captured = metrics.ChildCache(metrics.ADAPTER_CAPTURED, system.system)
        self._source_lag = metrics.ADAPTER_SOURCE_LAG.labels(system.system)
        # Beaten by each adapter's capture loop (and by commit, source_ok): stale while the loop is stuck.
        self.heartbeat = metrics.Heartbeat("adapter", system.system)
        self._source_retry: RetryCallState | None = None

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
        return self.env_secret(self.setting(f"{name}_env", kind=str), f"{name}_env")

    def env_secret(self, variable: str, field: str) -> str:
        """The value of environment variable `variable`, named by the catalog's `adapter.<field>`."""
        value = os.environ.get(variable)
        if not value:
            raise ConfigError(f"environment variable {variable} is not set (adapter.{field} of {self.system.system})")
        return value

    # -- emitting ------------------------------------------------------------------------------
    def emit(self, change: Change, refuse_too_large: bool = True) -> bool:
        """Emit one change; True once it is produced. A change too large for Kafka is, with
        `refuse_too_large`, dead-lettered (reason naming entity, key and position; False), else TooLarge."""
        entity = change.entity or self.system.entities[0].name
        emitter = self.emitters.get(entity)
        if emitter is None:
            raise ConfigError(f"{self.system.catalog_file}: adapter produced unknown entity {entity!r}")
        try:
            emitter.emit(change)
        except TooLarge as exc:
            if not refuse_too_large:
                raise
            key = self.pii.key(entity, change.key)
            where = f"{entity} key {key!r} at position {change.position}"
            log.warning("%s: %s refused: %s", self.system.system, where, exc)
            self.reject(f"{exc}: {where}", canonical_bytes(change), key.encode(), origin=f"{entity}@{change.position}")
            return False
        self._captured(entity).inc()
        if self._oldest_pending is None:
            self._oldest_pending = change.ts_source
        self._source_lag.set(max(0.0, (datetime.now(UTC) - self._oldest_pending).total_seconds()))
        return True

    def invalid(self, entity: str, what: str, errors: dict[str, str], raw: dict[str, Any] | None) -> str:
        """The reason of a source row that does not fit its entity, with personal data masked."""
        return f"{what}: {self.pii.errors(entity, errors, raw or {})}"

    def reject(self, reason: str, original: bytes, key: bytes | None = None, origin: str = "") -> None:
        """A source record that cannot become an event: to dlq.adapter with the reason and its bytes
        (sealed), under a letter id of its own so that no two rejected inputs collapse. The reason and
        key must already be free of personal data (self.pii masks them); the reason is cut to a header's
        size and an original too large for one message keeps its head (the reason says so)."""
        where = f"{self.system.system}:{origin}"
        letter_id = input_letter_id(where, original)
        reason = bounded_reason(reason)
        if len(original) > MAX_ORIGINAL_BYTES:
            reason = f"{reason} (original cut to its first {MAX_ORIGINAL_BYTES} of {len(original)} bytes)"
            original = original[:MAX_ORIGINAL_BYTES]
        if key is not None and len(key) > 1024:
            key = key[:1024]
        headers = dead_letter_headers("adapter", reason, where, -1, -1, letter_id)
        kafka.produce(self._dlq, self.dlq_topic, self.sealer.seal(original), key, headers, stage="adapter")
        metrics.ADAPTER_REJECTED.labels(self.system.system, reason.split(":")[0][:60]).inc()

    def unacknowledged(self) -> int:
        """Events and dead letters produced and not yet acknowledged by Kafka."""
        return sum(len(e.producer) for e in self.emitters.values()) + len(self._dlq)

    def flush(self, timeout: float = ACK_FLUSH_SECONDS) -> None:
        """Wait up to `timeout` for Kafka's acknowledgements; Unacknowledged when some are missing."""
        for producer in [*(e.producer for e in self.emitters.values()), self._dlq]:
            producer.flush(timeout)
        pending = self.unacknowledged()
        if pending:
            raise Unacknowledged(f"{self.system.system}: Kafka has not acknowledged {pending} events yet")

    def wait_acknowledged(self, stop: threading.Event | None = None) -> None:
        """Block until Kafka acknowledged everything emitted, waiting while it is unavailable (the
        "kafka" retry policy: no limit; when `stop` is set, Unacknowledged after the current wait)."""
        for attempt in retrying("kafka", stage="adapter", what="kafka_unavailable", on=Unacknowledged, stop_event=stop):
            with attempt:
                self.flush()
        failed = [err for e in self.emitters.values() for err in e.failed]
        if failed:
            raise ServiceUnavailable(f"{self.system.system}: Kafka refused events: {failed[:3]}")

    def commit(self, state: dict[str, Any], numeric_position: float | None = None) -> None:
        """Checkpoint `state` once everything emitted before it is acknowledged."""
        self.wait_acknowledged()
        self.checkpoints.save(state)
        self._oldest_pending = None
        self.heartbeat.beat()
        self._source_lag.set(0)
        metrics.ADAPTER_CHECKPOINT_TIME.labels(**self._labels).set(time.time())
        if numeric_position is not None:
            metrics.ADAPTER_CHECKPOINT.labels(**self._labels).set(numeric_position)

    # -- the source ----------------------------------------------------------------------------
    def keep_running(
        self,
        stop: threading.Event,
        session: Callable[[], None],
        source: str,
        errors: tuple[type[BaseException], ...],
        permanent: tuple[type[BaseException], ...] = (),
        also: tuple[type[BaseException], ...] = (),
    ) -> None:
        """Run `session()` (connect, capture until `stop` is set) until `stop` is set. One of `errors`
        (unless also `permanent`) means the source is unavailable; `also` are retried as they are: wait
        (the "source" retry policy: no limit, counted as source_unavailable, interrupted by `stop`) and
        run it again. Anything else propagates at once; an error seen at a stop ends the loop quietly.
        A session calls `source_ok()` once it works, so the next outage waits from the first wait again."""
        on = (SourceUnavailable, *also)
        for attempt in retrying("source", stage="adapter", what="source_unavailable", on=on, stop_event=stop):
            with attempt:
                self._source_retry = attempt.retry_state
                if stop.is_set():
                    return
                try:
                    session()
                except errors as exc:
                    if isinstance(exc, permanent):
                        raise
                    if stop.is_set():
                        return
                    raise SourceUnavailable(f"{self.system.system}: {source} unavailable ({first_line(exc)})") from exc

    def source_ok(self) -> None:
        """The source answers: its next outage is waited for from the retry policy's first wait again."""
        self.heartbeat.beat()
        if self._source_retry is not None:
            self._source_retry.attempt_number = 1

    @abstractmethod
    def run(self, stop: threading.Event) -> None:
        """Capture until `stop` is set; commit before returning."""
