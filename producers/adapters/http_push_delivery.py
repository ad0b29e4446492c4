"""Producing a push request's events and waiting for their acknowledgements: each request tracks its
own delivery reports (served by a poller thread and handed to the event loop), so it waits for its own
events only, never for the backlog of other requests, and the event loop is never blocked on Kafka."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from backbone import metrics
from backbone.kafka import produce
from contract.catalog import Entity
from producers.adapters.http_push_changes import HttpError
from producers.emitter import MAX_MESSAGE_BYTES, Change, ChangeEmitter, TooLarge, check_size, is_too_large


@dataclass
class Delivery:
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


class Deliveries:
    """The events produced for requests and not yet acknowledged (`pending`, over all requests)."""

    def __init__(self, system: str, emitters: dict[str, ChangeEmitter], ack_timeout: float) -> None:
        self.system = system
        self.emitters = emitters
        self.ack_timeout = ack_timeout
        self.pending = 0  # produced, not yet acknowledged (touched on the event loop only)
        self.loop: asyncio.AbstractEventLoop | None = None  # set when the server starts
        self.drain_deadline: float | None = None  # set on stop: requests wait no longer than this

    def produce(self, entity: Entity, changes: list[Change]) -> Delivery:
        """Encode every change first (nothing is produced when one fails: HttpError 413 naming the items
        too large for Kafka, 422 naming those that cannot be encoded), then produce them all."""
        emitter = self.emitters[entity.name]
        encoded, problems, status = [], [], 422
        for index, change in enumerate(changes):
            try:
                key = change.key.encode()
                value = emitter.encoded(change)
                check_size(key, value)
            except TooLarge as exc:
                status = 413
                problems.append({"index": index, "field": "record", "message": f"{exc}; send it smaller"})
                continue
            except (ValueError, TypeError, OverflowError, UnicodeError) as exc:
                why = f"cannot be encoded ({type(exc).__name__})"
                problems.append({"index": index, "field": "record", "message": why})
                continue
            encoded.append((key, value))
        if problems:
            raise HttpError(status, problems)
        assert self.loop is not None
        delivery = Delivery(len(encoded), self.loop.create_future())
        loop = self.loop

        def on_delivery(err: KafkaError | None, msg: Any) -> None:  # on the poller thread
            emitter._on_delivery(err, msg)  # the emitter's own counters and metrics
            try:
                loop.call_soon_threadsafe(self._delivered, delivery, err.str() if err else None)
            except RuntimeError:  # the loop is closed: shutting down, nobody waits any more
                pass

        for index, (key, value) in enumerate(encoded):
            # A full queue is not expected below max_pending; produce() waits for room if it is.
            try:
                produce(emitter.producer, entity.cdc_topic, value, key=key, on_delivery=on_delivery, stage="producer")
            except KafkaException as exc:  # checked above; librdkafka's own limit, should it be lower
                if not is_too_large(exc) or index:
                    raise
                limit = f"Kafka takes at most {MAX_MESSAGE_BYTES} bytes"
                raise HttpError(
                    413, [{"index": 0, "field": "record", "message": f"record too large: {limit}"}]
                ) from None
            self.pending += 1
        metrics.ADAPTER_CAPTURED.labels(self.system, entity.name).inc(len(changes))
        return delivery

    def _delivered(self, delivery: Delivery, error: str | None) -> None:
        self.pending -= 1
        delivery.report(error)

    async def acknowledged(self, delivery: Delivery) -> bool:
        """Wait for this request's own delivery reports, within the ack timeout (shortened on stop)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ack_timeout
        while not delivery.future.done():
            if self.drain_deadline is not None:
                deadline = min(deadline, self.drain_deadline)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await asyncio.wait([delivery.future], timeout=min(remaining, 0.5))
        return True

    def poll(self, stop: threading.Event) -> None:
        """Serve the delivery reports until `stop` (run on the poller thread)."""
        producers = [e.producer for e in self.emitters.values()]
        wait = 0.1 / len(producers)
        while not stop.is_set():
            for producer in producers:
                producer.poll(wait)
