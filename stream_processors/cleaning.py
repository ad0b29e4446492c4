"""The processor's work on a batch of raw change events, free of Faust so it can be unit-tested
and benchmarked: decode, validate, enrich, pseudonymise, encode; or dead-letter with the reason."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import fastavro

from backbone import metrics
from backbone.sealing import Sealer
from contract.catalog import Catalog, Entity
from contract.codec import Registry, UndecodableMessage, decode, encode, schema_id_of, subject_for
from contract.deadletter import Output, RawEvent, dead_letter
from contract.rules import PayloadRules, Rejected, clean_event
from contract.subjects import payload_of
from contract.topics import DLQ_PROCESSOR

STAGE = "processor"


@dataclass
class Plan:
    """How to clean events written with one schema id on one topic."""

    entity: Entity
    rules: PayloadRules
    clean_id: int
    clean_parsed: Any


class Cleaner:
    def __init__(
        self,
        catalog: Catalog,
        registry: Registry,
        regions: Mapping[str, Mapping[str, Any]],
        secret: bytes,
        dlq_topic: str = DLQ_PROCESSOR,
        *,
        sealer: Sealer,
    ) -> None:
        self.sealer = sealer
        self.catalog = catalog
        self.registry = registry
        self.regions = regions
        self.secret = secret
        self.dlq_topic = dlq_topic
        self.plans: dict[tuple[str, int], Plan] = {}

    def plan_for(self, topic: str, schema_id: int) -> Plan:
        plan = self.plans.get((topic, schema_id))
        if plan is None:
            entity = self.catalog.entity_for_topic(topic)
            writer, _ = self.registry.schema_by_id(schema_id)
            try:
                rules = PayloadRules.from_schema(payload_of(writer))
            except (ValueError, KeyError, StopIteration) as exc:
                raise UndecodableMessage(f"schema id {schema_id} is not a change-event envelope: {exc}") from None
            clean = rules.clean_schema()
            clean_id = self.registry.register(subject_for(entity.clean_topic), clean)
            plan = Plan(entity, rules, clean_id, fastavro.parse_schema(clean))
            self.plans[(topic, schema_id)] = plan
        return plan

    def process(self, events: list[RawEvent], emit: Callable[[Output], None]) -> tuple[int, int]:
        """Clean a batch; every event results in exactly one output (clean or dead letter)."""
        ok = failed = 0
        now = datetime.now(UTC)
        now_ms = time.time() * 1000
        for event in events:
            metrics.EVENTS_IN.labels(STAGE, event.topic).inc()
            try:
                schema_id = schema_id_of(event.value)
                plan = self.plan_for(event.topic, schema_id)
                _, record = decode(self.registry, event.value)
                clean = clean_event(record, plan.rules, self.regions, self.secret, plan.entity.key, now)
                emit(Output(plan.entity.clean_topic, event.key, encode(plan.clean_id, plan.clean_parsed, clean)))
                metrics.EVENTS_OUT.labels(STAGE, plan.entity.clean_topic).inc()
                ok += 1
            except (UndecodableMessage, Rejected) as exc:
                kind = "undecodable" if isinstance(exc, UndecodableMessage) else "invalid"
                emit(dead_letter(event, f"{kind}: {exc}", STAGE, self.dlq_topic, self.sealer))
                metrics.EVENTS_FAILED.labels(STAGE, event.topic, kind).inc()
                failed += 1
            if event.timestamp_ms:
                metrics.PROCESSING_LATENCY.labels(STAGE).observe(max(0.0, (now_ms - event.timestamp_ms) / 1000))
        return ok, failed
