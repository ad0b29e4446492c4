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
  tls_cert_file        PEM certificate (chain) to serve HTTPS with; with tls_key_file. Unset: plain HTTP,
  tls_key_file         for loopback or behind a TLS-terminating proxy only

API (one adapter serves one system; its entities are the catalog's):
  POST /v1/<entity>    Authorization: Bearer <token>; Content-Type: application/json
                       body: one change object or an array of them:
                         {"op": "c"|"u"|"d" (default "c"),
                          "record": {...the entity's payload fields...},   (for "d": the deleted state)
                          "before": {...} optional, the previous state (for "u"),
                          "changed_at": "2026-11-26T08:30:00+07:00"  source time, ISO 8601 with a zone,
                          "position": "..." optional source position (orders changes per key)}
                       200 {"accepted": n, "events": [{"index", "key", "event_id", "position"}]}
                       400 malformed JSON (with line, column and position), not UTF-8, nested more than
                           32 levels, an object naming a field twice, or a body that is not an object or a
                           non-empty array (numbers are read exactly, never as floats); 401 missing/wrong
                           token; 404 unknown entity; 413 body or batch too large, or an item whose event is
                           too large for Kafka (index and field); 415 not application/json (UTF-8);
                       422 invalid records: {"errors": [{"index": i, "field": "record.status", "message": m}]}
                           (numbers beyond a double such as 1e400, lone surrogates, out-of-range times and any
                           value no check foresaw are refused per item and field, never answered with a 500;
                           values of pii fields are shown only as `pii:<keyed hash>`, in answers and logs)
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
import hmac
import logging
import ssl
import threading
import time
from typing import Annotated, Any

from aiohttp import web
from pydantic import BeforeValidator, Field, FilePath, PositiveFloat, PositiveInt, model_validator
from pydantic_core import PydanticCustomError

from backbone import metrics
from backbone.runstate import write_state
from backbone.settings import Settings
from contract.catalog import SourceSystem
from contract.codec import Registry
from contract.reference import load_regions
from contract.rules import event_id
from producers.adapters.base import SourceAdapter
from producers.adapters.http_push_changes import ChangeValidator, HttpError, error, parse_json
from producers.adapters.http_push_delivery import Deliveries
from producers.adapters.options import AdapterOptions, load_options
from producers.emitter import Change

log = logging.getLogger(__name__)

_JSON_TYPES = ("application/json",)


def _present(value: Any) -> Any:
    if value is None:  # `token_env:` left empty counts as missing
        raise PydanticCustomError("missing", "Field required")
    return value


def _loggable(text: str, most: int) -> str:
    """A sender's text fit for a log line: cut, with lone surrogates and control characters escaped."""
    cut = text[:most].encode("utf-8", errors="backslashreplace").decode("utf-8")
    return cut.encode("unicode_escape").decode("ascii") if not cut.isprintable() else cut


class HttpPushOptions(AdapterOptions):
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)
    max_body_bytes: PositiveInt = 1024 * 1024
    max_batch: PositiveInt = 1000
    max_pending: PositiveInt = 10_000
    ack_timeout_seconds: PositiveFloat = 30.0
    drain_seconds: PositiveFloat = 5.0
    token_env: Annotated[str, BeforeValidator(_present)]
    # Catalog values are text: lax here (strict mode takes only Path objects), still checked to exist.
    tls_cert_file: Annotated[FilePath | None, Field(strict=False)] = None
    tls_key_file: Annotated[FilePath | None, Field(strict=False)] = None

    @model_validator(mode="after")
    def _tls_pair(self) -> HttpPushOptions:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise PydanticCustomError("tls_pair", "tls_cert_file and tls_key_file go together")
        return self

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.tls_cert_file is None or self.tls_key_file is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.tls_cert_file, self.tls_key_file)
        return context


class HttpPushAdapter(SourceAdapter):
    kind = "http_push"

    def __init__(self, system: SourceSystem, settings: Settings, registry: Registry | None = None) -> None:
        super().__init__(system, settings, registry)
        self.options = load_options(HttpPushOptions, system)
        self.token = self.secret("token").encode()
        self.validator = ChangeValidator(self.entities, load_regions(settings.regions_csv), self.pii)
        self.deliveries = Deliveries(system.system, self.emitters, self.options.ack_timeout_seconds)
        self.url = ""

    # -- requests ------------------------------------------------------------------------------
    def _authorised(self, request: web.Request) -> bool:
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        # Compared in constant time; a missing header compares an empty value the same way.
        # Header bytes that are not UTF-8 arrive as lone surrogates: "surrogatepass" encodes any text
        # (a wrong token is a 401, never a 500 from UnicodeEncodeError).
        given = credentials.strip().encode("utf-8", "surrogatepass") if scheme.lower() == "bearer" else b""
        return hmac.compare_digest(given, self.token)

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.options.max_body_bytes
        too_large = HttpError(413, [error(f"request body is larger than {limit} bytes (adapter.max_body_bytes)")])
        if request.content_length is not None and request.content_length > limit:
            raise too_large
        chunks, size = [], 0
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    # -- HTTP ----------------------------------------------------------------------------------
    async def _push(self, request: web.Request) -> web.Response:
        name = request.match_info["entity"]
        try:
            if not self._authorised(request):
                raise HttpError(
                    401,
                    [error("missing or wrong bearer token (Authorization: Bearer <token>)")],
                    {"WWW-Authenticate": 'Bearer realm="backbone"'},
                )
            entity = self.entities.get(name)
            if entity is None:
                known = ", ".join(sorted(self.entities))
                raise HttpError(404, [error(f"unknown entity {name!r} of {self.system.system} (known: {known})")])
            charset = (request.charset or "utf-8").lower()
            if request.content_type not in _JSON_TYPES or charset not in ("utf-8", "utf8"):
                shown = request.headers.get("Content-Type", "none")
                raise HttpError(415, [error(f"content type {shown!r}: send application/json (UTF-8)")])
            document = parse_json(await self._read_body(request))
            items = document if isinstance(document, list) else [document]
            if not isinstance(document, list | dict) or not items:
                raise HttpError(400, [error("body must be a change object or a non-empty array of them")])
            most = self.options.max_batch
            if len(items) > most:
                raise HttpError(413, [error(f"{len(items)} records: at most {most} per request (adapter.max_batch)")])
            changes = self.validator.changes(entity, items)
            if self.deliveries.pending + len(changes) > self.options.max_pending:
                raise HttpError(
                    503,
                    [error(f"{self.deliveries.pending} events wait for Kafka's acknowledgement; retry later")],
                    {"Retry-After": "5"},
                )
            delivery = self.deliveries.produce(entity, changes)
            if not await self.deliveries.acknowledged(delivery):
                raise HttpError(
                    503,
                    [
                        error(
                            "Kafka has not acknowledged the events yet; retry the same request (replays are recognised)"
                        )
                    ],
                    {"Retry-After": "5"},
                )
            if delivery.errors:
                raise HttpError(503, [error(f"Kafka refused events: {'; '.join(delivery.errors[:3])}")])
        except HttpError as exc:
            metrics.ADAPTER_REJECTED.labels(self.system.system, f"http {exc.status}").inc()
            first = exc.errors[0]
            where = f"[{first['index']}] {_loggable(str(first['field']), 80)}: " if first.get("field") else ""
            log.info(
                "%s %s: %d (%d errors) %s%s",
                request.method,
                _loggable(request.path, 200),
                exc.status,
                len(exc.errors),
                where,
                _loggable(first["message"], 200),  # messages are pii-masked already (ChangeValidator)
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
        return web.json_response({"status": "ok", "system": self.system.system, "pending": self.deliveries.pending})

    async def _serve(self, stop: threading.Event) -> None:
        self.deliveries.loop = loop = asyncio.get_running_loop()
        app = web.Application(client_max_size=self.options.max_body_bytes)
        app.router.add_post("/v1/{entity}", self._push)
        app.router.add_get("/health", self._health)
        # In-flight handlers stop waiting at the drain deadline themselves; the runner's bound is a backstop.
        runner = web.AppRunner(app, shutdown_timeout=self.options.drain_seconds + 1)
        await runner.setup()
        try:
            tls = self.options.ssl_context()
            site = web.TCPSite(runner, self.options.host, self.options.port, ssl_context=tls)
            await site.start()
            host, port = runner.addresses[0][:2]
            self.url = f"{'https' if tls else 'http'}://{host}:{port}"
            write_state(self.settings.run_dir, **{f"push_{self.system.system}_url": self.url})
            log.info("%s: accepting pushes on %s/v1/<entity>", self.system.system, self.url)
            while not stop.is_set():
                self.heartbeat.beat()  # the event loop serving pushes turns
                await asyncio.sleep(0.2)
            log.info("%s: stopping; %d events still unacknowledged", self.system.system, self.deliveries.pending)
            self.deliveries.drain_deadline = loop.time() + self.options.drain_seconds
        finally:
            await runner.cleanup()  # stops accepting, lets in-flight requests finish (bounded)

    def run(self, stop: threading.Event) -> None:
        poller_stop = threading.Event()
        poller = threading.Thread(target=self.deliveries.poll, args=(poller_stop,), name="push-deliveries", daemon=True)
        poller.start()
        try:
            asyncio.run(self._serve(stop))
        finally:
            poller_stop.set()
            poller.join(5)
            # Events of requests that got no 2xx: deliver what Kafka takes within a moment; the senders retry.
            for emitter in self.emitters.values():
                emitter.producer.flush(1.0)
