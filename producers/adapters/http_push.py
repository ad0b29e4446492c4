"""HTTP push adapter: an HTTP endpoint (aiohttp) for departmental systems that can send JSON but
offer no change log to read. A 2xx answer is a promise: it is sent only after Kafka acknowledged
every event of the request.

Catalog `adapter:` fields (kind: http_push):
  host                 address to listen on (default 127.0.0.1)
  port                 TCP port; 0 (the default) picks a free one. The bound base URL is written to the run
                       folder's stack.json as `push_<system>_url` (devstack.stack.read_state).
  token_env            name of the environment variable holding this system's bearer token (required;
                       the token itself never appears in the catalog). Unset or empty: ConfigError at start.
  max_body_bytes       largest request body accepted (default 1048576 = 1 MiB); larger: 413
  max_batch            most records in one request (default 1000); more: 413
  ack_timeout_seconds  how long a request waits for Kafka's acknowledgement before answering 503 (default 30)
  max_pending          most events produced but not yet acknowledged, over all requests (default 10000); a
                       request that would exceed it is answered 503 with Retry-After at once (backpressure:
                       memory stays bounded while Kafka is slow or down, and nothing accepted is dropped)
  drain_seconds        on stop, how long in-flight requests may still finish (default 5)

API (one adapter serves one system; its entities are the catalog's):
  POST /v1/<entity>    Authorization: Bearer <token>; Content-Type: application/json
                       body: one change object or an array of them:
                         {"op": "c"|"u"|"d" (default "c"),
                          "record": {...the entity's payload fields...},   (for "d": the deleted state)
                          "before": {...} optional, the previous state (for "u"),
                          "changed_at": "2026-11-26T08:30:00+07:00"  source time, ISO 8601 with a zone,
                          "position": "..." optional source position (orders changes per key)}
                       200 {"accepted": n, "events": [{"index", "key", "event_id", "position"}]}
                       400 malformed JSON (with line, column and position) or a body that is not an
                           object or a non-empty array; 401 missing/wrong token; 404 unknown entity;
                           413 body or batch too large; 415 not application/json (UTF-8);
                       422 invalid records: {"errors": [{"index": i, "field": "record.status", "message": m}]}
                       503 Kafka has not acknowledged in time, or too much is pending: retry the same body
  GET /health          liveness: {"status": "ok", "system", "pending"}

Validation is all-or-nothing per request: every record is coerced strictly against the entity's payload
schema (contract.coerce.coerce_record: unknown fields refused) and checked with the processor's own rules
(contract.rules.clean_event: required fields, minimums, region codes, initial states and lifecycle
transitions), so a record the backbone would dead-letter is refused at the door, where the sender can fix
it. One bad record refuses the whole request, and nothing of it is emitted. Refused requests are answered,
not dead-lettered: the sender still holds the data.

Positions and replays: a change without a `position` gets a deterministic one, the digest of
(entity, op, key, changed_at, canonical JSON of the coerced record), so a client that retries a request
(for example after a timeout or a 503) produces the same event ids and the replay collapses downstream.

Acknowledgements: each request tracks its own delivery reports (one per message, served by a poller thread
and handed to the event loop), so it waits for its own events only, never for the unrelated backlog of
other requests, and the event loop is never blocked. A request that times out (503) leaves its events
queued; they are still delivered when Kafka is back, and the client's retry is recognised as a replay.
There is no source checkpoint: the sender keeps a change until it got a 2xx, which is the durability
point. Partial delivery is possible only when Kafka refuses a message outright (a 503 naming the error).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web
from confluent_kafka import KafkaError

from backbone import metrics
from backbone.errors import ConfigError
from backbone.runstate import write_state
from backbone.settings import Settings
from contract.catalog import Entity, SourceSystem
from contract.codec import Registry, encode
from contract.coerce import FieldErrors, coerce_record
from contract.reference import load_regions
from contract.rules import PayloadRules, Rejected, clean_event, event_id
from producers.adapters.base import SourceAdapter
from producers.emitter import Change

log = logging.getLogger(__name__)

ITEM_FIELDS = ("op", "record", "before", "changed_at", "position")
PUSH_OPS = ("c", "u", "d")
_FIELD_IN_REASON = re.compile(r"field '([A-Za-z_][A-Za-z0-9_]*)'")
_JSON_TYPES = ("application/json",)


def canonical_json(value: Any) -> str:
    """Stable text of a coerced record: sorted keys, no spaces, typed values in one spelling."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_plain)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def default_position(entity: str, op: str, key: str, changed_at: datetime, record: dict[str, Any]) -> str:
    """The position of a change sent without one: the same change always gets the same position."""
    digest = hashlib.blake2b(digest_size=16)
    for part in (entity, op, key, _plain(changed_at), canonical_json(record)):
        digest.update(part.encode())
        digest.update(b"\x00")
    return "push-" + digest.hexdigest()


class HttpError(Exception):
    """A refused request: status and the JSON errors list."""

    def __init__(self, status: int, errors: list[dict[str, Any]], headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status}: {errors[:1]}")
        self.status = status
        self.errors = errors
        self.headers = headers or {}


def _error(message: str, **extra: Any) -> dict[str, Any]:
    return {"index": None, "field": None, "message": message, **extra}


@dataclass
class _Delivery:
    """Delivery reports of one request's messages, completed on the event loop."""

    remaining: int
    future: asyncio.Future
    errors: list[str] = field(default_factory=list)

    def report(self, error: str | None) -> None:
        self.remaining -= 1
        if error:
            self.errors.append(error)
        if self.remaining <= 0 and not self.future.done():
            self.future.set_result(None)


class HttpPushAdapter(SourceAdapter):
    kind = "http_push"

    def __init__(self, system: SourceSystem, settings: Settings, registry: Registry | None = None) -> None:
        super().__init__(system, settings, registry)
        self.host = self.setting("host", "127.0.0.1", str)
        self.port = self._int("port", 0, minimum=0, maximum=65535)
        self.max_body_bytes = self._int("max_body_bytes", 1024 * 1024, minimum=1)
        self.max_batch = self._int("max_batch", 1000, minimum=1)
        self.max_pending = self._int("max_pending", 10_000, minimum=1)
        self.ack_timeout = self._number("ack_timeout_seconds", 30.0)
        self.drain_seconds = self._number("drain_seconds", 5.0)
        if self.config.get("token_env") is None:  # absent or `token_env:` left empty
            raise ConfigError(f"{self.system.catalog_file}: field 'adapter.token_env' is missing")
        self.token = self.secret("token").encode()
        self.schemas = {name: e.payload_schema() for name, e in self.entities.items()}
        self.rules = {name: PayloadRules.from_schema(s) for name, s in self.schemas.items()}
        self.regions = load_regions(settings.regions_csv)
        self.url = ""
        self.pending = 0  # produced, not yet acknowledged (touched on the event loop only)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_deadline: float | None = None

    # -- configuration -------------------------------------------------------------------------
    def _int(self, name: str, default: int, minimum: int, maximum: int | None = None) -> int:
        value = self.setting(name, default, int)
        if isinstance(value, bool) or value < minimum or (maximum is not None and value > maximum):
            bounds = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
            raise ConfigError(
                f"{self.system.catalog_file}: field 'adapter.{name}' has value {value!r}, expected a whole number "
                f"{bounds}"
            )
        return value

    def _number(self, name: str, default: float) -> float:
        value = self.setting(name, default, (int, float))
        if isinstance(value, bool) or value <= 0:
            raise ConfigError(
                f"{self.system.catalog_file}: field 'adapter.{name}' has value {value!r}, expected a positive number"
            )
        return float(value)

    # -- validation ----------------------------------------------------------------------------
    def _authorised(self, request: web.Request) -> bool:
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        # Compared in constant time; a missing header compares an empty value the same way.
        given = credentials.strip().encode() if scheme.lower() == "bearer" else b""
        return hmac.compare_digest(given, self.token)

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.max_body_bytes
        too_large = HttpError(413, [_error(f"request body is larger than {limit} bytes (adapter.max_body_bytes)")])
        if request.content_length is not None and request.content_length > limit:
            raise too_large
        chunks, size = [], 0
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _parse(body: bytes) -> Any:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise HttpError(
                400, [_error(f"body is not UTF-8: {exc.reason} at byte {exc.start}", position=exc.start)]
            ) from None

        def constant(name: str) -> Any:
            raise ValueError(f"{name} is not valid JSON")

        try:
            return json.loads(text, parse_constant=constant)
        except json.JSONDecodeError as exc:
            raise HttpError(
                400,
                [
                    _error(
                        f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos})",
                        line=exc.lineno,
                        column=exc.colno,
                        position=exc.pos,
                    )
                ],
            ) from None
        except ValueError as exc:
            raise HttpError(400, [_error(f"malformed JSON: {exc}")]) from None

    def _changes(self, entity: Entity, items: list[Any]) -> list[Change]:
        """Every item as a Change, or HttpError(422) with every problem of every item."""
        errors: list[dict[str, Any]] = []
        changes: list[Change] = []
        for index, item in enumerate(items):
            found: list[dict[str, Any]] = []
            change = self._change(entity, item, index, found)
            errors.extend(found)
            if change is not None and not found:
                changes.append(change)
        if errors:
            raise HttpError(422, errors)
        return changes

    def _change(self, entity: Entity, item: Any, index: int, errors: list[dict[str, Any]]) -> Change | None:
        def problem(name: str | None, message: str) -> None:
            errors.append({"index": index, "field": name, "message": message})

        if not isinstance(item, dict):
            problem(None, f"is a JSON {type(item).__name__}, expected an object with 'record' and 'changed_at'")
            return None
        for name in item:
            if name not in ITEM_FIELDS:
                problem(name, f"is not a field of a change (expected {', '.join(ITEM_FIELDS)})")
        op = item.get("op", "c")
        if op not in PUSH_OPS:
            problem("op", f"value {op!r} is not one of {', '.join(PUSH_OPS)}")
        changed_at = self._changed_at(item.get("changed_at"), problem)
        position = item.get("position")
        if position is not None and (not isinstance(position, str) or not position.strip()):
            problem("position", f"value {position!r} is not a non-empty string")
        schema = self.schemas[entity.name]
        record = self._record(schema, item.get("record"), "record", problem)
        before = None
        if item.get("before") is not None:
            before = self._record(schema, item["before"], "before", problem)
        if errors or record is None:
            return None
        key = "|".join(str(record[k]) for k in entity.key)
        if not position:
            position = default_position(entity.name, op, key, changed_at, record)
        if op == "d":
            change = Change("d", key, position, changed_at, before=record, entity=entity.name)
        else:
            change = Change(op, key, position, changed_at, before=before, after=record, entity=entity.name)
        # The processor's own rules: what it would dead-letter is refused here, where the sender can fix it.
        event = {"event_id": "check", "op": op, "key": key, "before": change.before, "after": change.after}
        event |= {"source": {"system": "", "department": "", "entity": "", "position": ""}}
        event |= {"ts_source": changed_at, "ts_emitted": changed_at}
        try:
            clean_event(event, self.rules[entity.name], self.regions, b"check", entity.key)
        except Rejected as exc:
            reason = str(exc)
            match = _FIELD_IN_REASON.search(reason)
            where = "before" if op == "d" else "record"
            problem(f"{where}.{match.group(1)}" if match else where, reason)
            return None
        return change

    @staticmethod
    def _changed_at(value: Any, problem: Any) -> datetime | None:
        if value is None:
            problem("changed_at", "is missing (the time of the change in the source, ISO 8601 with a zone)")
            return None
        if not isinstance(value, str):
            problem("changed_at", f"value {value!r} is not an ISO 8601 text")
            return None
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            problem("changed_at", f"value {value!r} is not an ISO 8601 time (e.g. 2026-11-26T08:30:00+07:00)")
            return None
        if parsed.tzinfo is None:
            problem("changed_at", f"value {value!r} has no zone: add Z or an offset such as +07:00")
            return None
        return parsed.astimezone(UTC)

    @staticmethod
    def _record(schema: dict[str, Any], raw: Any, where: str, problem: Any) -> dict[str, Any] | None:
        if raw is None:
            problem(where, f"is missing (the {schema['name']} fields)")
            return None
        if not isinstance(raw, dict):
            problem(where, f"is a JSON {type(raw).__name__}, expected an object of {schema['name']} fields")
            return None
        try:
            return coerce_record(schema, raw, strict=True)
        except FieldErrors as exc:
            for name, message in exc.errors.items():
                problem(f"{where}.{name}", message)
            return None

    # -- producing -----------------------------------------------------------------------------
    def _produce(self, entity: Entity, changes: list[Change]) -> _Delivery:
        """Encode every change first (nothing is produced when one fails), then produce them all."""
        emitter = self.emitters[entity.name]
        encoded = [(c.key.encode(), encode(emitter.schema_id, emitter.parsed, emitter.envelope(c))) for c in changes]
        assert self._loop is not None
        delivery = _Delivery(len(encoded), self._loop.create_future())
        loop = self._loop

        def on_delivery(err: KafkaError | None, msg: Any) -> None:  # on the poller thread
            emitter._on_delivery(err, msg)  # the emitter's own counters and metrics
            try:
                loop.call_soon_threadsafe(self._delivered, delivery, err.str() if err else None)
            except RuntimeError:  # the loop is closed: shutting down, nobody waits any more
                pass

        for key, value in encoded:
            while True:
                try:
                    emitter.producer.produce(entity.cdc_topic, value=value, key=key, on_delivery=on_delivery)
                    break
                except BufferError:  # not expected below max_pending; wait for the queue without the loop
                    metrics.RETRIES.labels(stage="producer", what="queue_full").inc()
                    time.sleep(0.01)
            self.pending += 1
        metrics.ADAPTER_CAPTURED.labels(self.system.system, entity.name).inc(len(changes))
        return delivery

    def _delivered(self, delivery: _Delivery, error: str | None) -> None:
        self.pending -= 1
        delivery.report(error)

    async def _acknowledged(self, delivery: _Delivery) -> bool:
        """Wait for this request's own delivery reports, within the ack timeout (shortened on stop)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ack_timeout
        while not delivery.future.done():
            if self._drain_deadline is not None:
                deadline = min(deadline, self._drain_deadline)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await asyncio.wait([delivery.future], timeout=min(remaining, 0.5))
        return True

    def _poll_deliveries(self, stop: threading.Event) -> None:
        producers = [e.producer for e in self.emitters.values()]
        wait = 0.1 / len(producers)
        while not stop.is_set():
            for producer in producers:
                producer.poll(wait)

    # -- HTTP ----------------------------------------------------------------------------------
    async def _push(self, request: web.Request) -> web.Response:
        name = request.match_info["entity"]
        try:
            if not self._authorised(request):
                raise HttpError(
                    401,
                    [_error("missing or wrong bearer token (Authorization: Bearer <token>)")],
                    {"WWW-Authenticate": 'Bearer realm="backbone"'},
                )
            entity = self.entities.get(name)
            if entity is None:
                known = ", ".join(sorted(self.entities))
                raise HttpError(404, [_error(f"unknown entity {name!r} of {self.system.system} (known: {known})")])
            charset = (request.charset or "utf-8").lower()
            if request.content_type not in _JSON_TYPES or charset not in ("utf-8", "utf8"):
                shown = request.headers.get("Content-Type", "none")
                raise HttpError(415, [_error(f"content type {shown!r}: send application/json (UTF-8)")])
            document = self._parse(await self._read_body(request))
            items = document if isinstance(document, list) else [document]
            if not isinstance(document, list | dict) or not items:
                raise HttpError(400, [_error("body must be a change object or a non-empty array of them")])
            if len(items) > self.max_batch:
                raise HttpError(
                    413, [_error(f"{len(items)} records: at most {self.max_batch} per request (adapter.max_batch)")]
                )
            changes = self._changes(entity, items)
            if self.pending + len(changes) > self.max_pending:
                raise HttpError(
                    503,
                    [_error(f"{self.pending} events wait for Kafka's acknowledgement; retry later")],
                    {"Retry-After": "5"},
                )
            delivery = self._produce(entity, changes)
            if not await self._acknowledged(delivery):
                raise HttpError(
                    503,
                    [
                        _error(
                            "Kafka has not acknowledged the events yet; retry the same request (replays are recognised)"
                        )
                    ],
                    {"Retry-After": "5"},
                )
            if delivery.errors:
                raise HttpError(503, [_error(f"Kafka refused events: {'; '.join(delivery.errors[:3])}")])
        except HttpError as exc:
            metrics.ADAPTER_REJECTED.labels(self.system.system, f"http {exc.status}").inc()
            first = exc.errors[0]
            where = f"[{first['index']}] {first['field']}: " if first.get("field") else ""
            log.info(
                "%s %s: %d (%d errors) %s%s",
                request.method,
                request.path,
                exc.status,
                len(exc.errors),
                where,
                first["message"][:200],
            )
            return web.json_response({"errors": exc.errors}, status=exc.status, headers=exc.headers)
        self._acknowledged_metrics(changes)
        events = [
            {
                "index": i,
                "key": c.key,
                "event_id": event_id(self.system.system, entity.name, c.key, c.position),
                "position": c.position,
            }
            for i, c in enumerate(changes)
        ]
        return web.json_response({"accepted": len(changes), "events": events})

    def _acknowledged_metrics(self, changes: list[Change]) -> None:
        now = time.time()
        oldest = min(c.ts_source for c in changes).timestamp()
        newest = max(c.ts_source for c in changes).timestamp()
        metrics.ADAPTER_SOURCE_LAG.labels(**self._labels).set(max(0.0, now - oldest))
        metrics.ADAPTER_CHECKPOINT.labels(**self._labels).set(newest)
        metrics.ADAPTER_CHECKPOINT_TIME.labels(**self._labels).set(now)

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "system": self.system.system, "pending": self.pending})

    async def _serve(self, stop: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        app = web.Application(client_max_size=self.max_body_bytes)
        app.router.add_post("/v1/{entity}", self._push)
        app.router.add_get("/health", self._health)
        # In-flight handlers stop waiting at the drain deadline themselves; the runner's bound is a backstop.
        runner = web.AppRunner(app, shutdown_timeout=self.drain_seconds + 1)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
            host, port = runner.addresses[0][:2]
            self.url = f"http://{host}:{port}"
            write_state(self.settings.run_dir, **{f"push_{self.system.system}_url": self.url})
            log.info("%s: accepting pushes on %s/v1/<entity>", self.system.system, self.url)
            while not stop.is_set():
                await asyncio.sleep(0.2)
            log.info("%s: stopping; %d events still unacknowledged", self.system.system, self.pending)
            self._drain_deadline = self._loop.time() + self.drain_seconds
        finally:
            await runner.cleanup()  # stops accepting, lets in-flight requests finish (bounded)

    def run(self, stop: threading.Event) -> None:
        poller_stop = threading.Event()
        poller = threading.Thread(
            target=self._poll_deliveries, args=(poller_stop,), name="push-deliveries", daemon=True
        )
        poller.start()
        try:
            asyncio.run(self._serve(stop))
        finally:
            poller_stop.set()
            poller.join(5)
            # Events of requests that got no 2xx: deliver what Kafka takes within a moment; the senders retry.
            for emitter in self.emitters.values():
                emitter.producer.flush(1.0)
