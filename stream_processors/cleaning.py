"""The processor's work on a batch of raw change events, free of Faust so it can be unit-tested
and benchmarked: decode, validate, enrich, pseudonymise, encode; or dead-letter with the reason.

Every input gives exactly one output, whatever its bytes: only an unreachable registry (a
ServiceUnavailable, after which the batch is read again) stops a batch. What the contract cannot
take is dead-lettered with a reason of one of these kinds:
  undecodable  not Confluent-framed Avro, unknown schema id, a body that does not match its schema
  schema       a schema id of another subject, or a clean schema the registry refuses for the plan
  invalid      a record the payload rules reject (contract.rules.clean_event), or a message key
               that is not the record's key
  too_large    a clean record larger than the producer takes (message.max.bytes)
  unexpected   anything else a hostile input provokes in cleaning (a bug to fix, never a stuck
               partition)"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import fastavro

from backbone import metrics
from backbone.errors import InputError, ServiceUnavailable
from backbone.sealing import Sealer
from contract.catalog import Catalog, Entity
from contract.codec import (
    Registry,
    SchemaRejected,
    UndecodableMessage,
    decode,
    encode,
    schema_id_of,
    subject_for,
)
from contract.deadletter import Output, RawEvent, dead_letter
from contract.rules import PayloadRules, Rejected, check_message_key, clean_event, full_name, scope_secret
from contract.subjects import payload_of
from contract.topics import DLQ_PROCESSOR
from stream_processors.lifecycle import LifecycleState, change_version

STAGE = "processor"
# librdkafka's default message.max.bytes (backbone.kafka's profiles keep it).
DEFAULT_MAX_MESSAGE_BYTES = 1_000_000
# What librdkafka adds to key, value and headers when it sizes a message (36 bytes measured, and
# a few per header): kept as a margin below message.max.bytes.
_RECORD_OVERHEAD = 64
_HEADER_OVERHEAD = 8
# A refused plan (schema of another subject, clean schema refused) is asked again after this long,
# so a fix in the registry is picked up without a restart; meanwhile its events are dead-lettered
# without a network round trip.
REFUSAL_RETRY_SECONDS = 60.0
# A reason travels in a Kafka header: never longer than this.
MAX_REASON = 2000


class PlanRefused(Exception):
    """The events of one (topic, schema id) cannot be cleaned; the message is the reason."""


@dataclass
class Plan:
    """How to clean events written with one schema id on one topic."""

    entity: Entity
    rules: PayloadRules
    clean_id: int
    clean_parsed: Any
    secret: bytes  # the pseudonymisation key of the entity's scope
    adapter_kind: str  # how the source's positions order its changes (contract/positions.py)


def message_size(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | None = None) -> int:
    """The size librdkafka compares with message.max.bytes (rounded up)."""
    size = _RECORD_OVERHEAD + len(key or b"") + len(value or b"")
    for name, data in headers or ():
        size += _HEADER_OVERHEAD + len(name) + len(data or b"")
    return size


LifecycleUpdate = tuple[LifecycleState, int, dict[str, Any] | None]


def _lifecycle_fields(event: Mapping[str, Any], rules: PayloadRules) -> dict[str, Any] | None:
    """What the lifecycle state keeps of an accepted event: its status fields (None once deleted);
    never a personal field."""
    if event.get("op") == "d":
        return None
    after = event.get("after") or {}
    return {name: after.get(name) for name in rules.transitions if name not in rules.pii}


class Cleaner:
    def __init__(
        self,
        catalog: Catalog,
        registry: Registry,
        regions: Mapping[str, Mapping[str, Any]],
        secret: bytes,  # the master key; each scope's is derived from it
        dlq_topic: str = DLQ_PROCESSOR,
        *,
        sealer: Sealer,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        lifecycle: LifecycleState | None = None,
    ) -> None:
        self.sealer = sealer
        self.lifecycle = lifecycle  # None: updates without `before` skip the lifecycle check
        self.catalog = catalog
        self.registry = registry
        self.regions = regions
        self.secret = secret
        self.dlq_topic = dlq_topic
        self.max_message_bytes = max_message_bytes
        self.plans: dict[tuple[str, int], Plan] = {}
        # (topic, schema id) -> (reason, when refused, on time.monotonic()).
        self.refused: dict[tuple[str, int], tuple[str, float]] = {}
        self._owners: dict[str, list[Entity]] | None = None

    def _owners_of(self, payload_name: str) -> list[Entity]:
        """The catalog entities whose payload record has this full name (read once from the schemas)."""
        if self._owners is None:
            owners: dict[str, list[Entity]] = {}
            for entity in self.catalog.entities:
                try:
                    owners.setdefault(full_name(entity.payload_schema()), []).append(entity)
                except (InputError, OSError, ValueError, KeyError):
                    continue
            self._owners = owners
        return self._owners.get(payload_name, [])

    def plan_for(self, topic: str, schema_id: int) -> Plan:
        plan = self.plans.get((topic, schema_id))
        if plan is not None:
            return plan
        refused = self.refused.get((topic, schema_id))
        if refused is not None and time.monotonic() - refused[1] < REFUSAL_RETRY_SECONDS:
            raise PlanRefused(refused[0])
        try:
            plan = self._make_plan(topic, schema_id)
        except PlanRefused as exc:
            self.refused[(topic, schema_id)] = (str(exc), time.monotonic())
            raise
        self.refused.pop((topic, schema_id), None)
        self.plans[(topic, schema_id)] = plan
        return plan

    def _make_plan(self, topic: str, schema_id: int) -> Plan:
        entity = self.catalog.entity_for_topic(topic)
        writer, _ = self.registry.schema_by_id(schema_id)
        try:
            payload = payload_of(writer)
            rules = PayloadRules.from_schema(payload)
        except (ValueError, KeyError, TypeError, StopIteration) as exc:
            raise UndecodableMessage(f"schema id {schema_id} is not a change-event envelope: {exc}") from None
        expected = subject_for(entity.cdc_topic)
        name = full_name(payload)
        owners = self._owners_of(name)
        if entity not in owners:
            # Framed with the schema id of another entity (or of a record no entity of the catalog
            # has): its clean schema must never reach this entity's clean subject.
            belongs = (
                " and ".join(repr(subject_for(o.cdc_topic)) for o in owners)
                if owners
                else f"no subject of the catalog (record {name})"
            )
            subjects = "subject " if len(owners) <= 1 else "subjects "
            raise PlanRefused(
                f"schema id {schema_id} belongs to {subjects if owners else ''}{belongs}, not {expected!r}"
            )
        clean_subject = subject_for(entity.clean_topic)
        try:
            clean = rules.clean_schema()
            clean_parsed = fastavro.parse_schema(clean)
            clean_id = self.registry.register(clean_subject, clean)
        except ServiceUnavailable:
            raise
        except (SchemaRejected, InputError) as exc:
            raise PlanRefused(f"clean schema of schema id {schema_id} for subject {clean_subject!r}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - fastavro's SchemaParseError and kin: the writer schema's fault
            raise PlanRefused(
                f"clean schema of schema id {schema_id} for subject {clean_subject!r} is not valid Avro: "
                f"{exc.__class__.__name__}: {exc}"
            ) from None
        kind = str(self.catalog.system(entity.system).adapter.get("kind", ""))
        return Plan(entity, rules, clean_id, clean_parsed, scope_secret(self.secret, entity.scope), kind)

    def letter(self, event: RawEvent, reason: str) -> Output:
        """The dead letter of `event`; when the sealed original would not fit in one message, only
        its beginning is kept and the reason says so (the letter must get through)."""
        if len(reason) > MAX_REASON:
            reason = reason[:MAX_REASON] + "..."
        out = dead_letter(event, reason, STAGE, self.dlq_topic, self.sealer)
        excess = message_size(out.key, out.value, out.headers) - self.max_message_bytes
        if excess <= 0:
            return out
        original = event.value or b""
        note = f" (original of {len(original)} bytes too large for a dead letter: only its first "
        keep = len(original) - excess - len(note) - 40
        if keep < 0:  # the key itself is too large: neither is kept
            cut = replace(event, key=None, value=b"")
            note = f" (original key of {len(event.key or b'')} and value of {len(original)} bytes too large "
            return dead_letter(cut, f"{reason}{note}for a dead letter: not kept)", STAGE, self.dlq_topic, self.sealer)
        cut = replace(event, value=original[:keep])
        return dead_letter(cut, f"{reason}{note}{keep} bytes are kept)", STAGE, self.dlq_topic, self.sealer)

    def process(self, events: list[RawEvent], emit: Callable[[Output], None]) -> tuple[int, int]:
        """Clean a batch; every event results in exactly one output (clean or dead letter)."""
        ok = failed = 0
        now = datetime.now(UTC)
        now_ms = time.time() * 1000
        limit = self.max_message_bytes
        # Counted per batch (one increment per topic), not per event: label lookups take a lock.
        for topic, n in metrics.count_by(events, lambda e: e.topic).items():
            metrics.EVENTS_IN.labels(STAGE, topic).inc(n)
        latency = metrics.PROCESSING_LATENCY.labels(STAGE)
        outs: dict[str, int] = {}
        fails: dict[tuple[str, str], int] = {}
        for event in events:
            out: Output | None = None
            tracked: LifecycleUpdate | None = None
            try:
                schema_id = schema_id_of(event.value)
                plan = self.plan_for(event.topic, schema_id)
                _, record = decode(self.registry, event.value)
                lifecycle = self.lifecycle if plan.rules.transitions else None
                version = change_version(plan.adapter_kind, record) if lifecycle is not None else 0
                prior = lifecycle.prior(event, version) if lifecycle is not None else None
                clean = clean_event(record, plan.rules, self.regions, plan.secret, plan.entity.key, now, prior)
                check_message_key(clean, event.key, plan.rules, plan.secret, plan.entity.key)
                value = encode(plan.clean_id, plan.clean_parsed, clean)
                size = message_size(event.key, value)
                if size > limit:
                    kind, reason = (
                        "too_large",
                        (
                            f"too_large: the clean record for {plan.entity.clean_topic} is {size} bytes, "
                            f"more than the producer takes (message.max.bytes {limit})"
                        ),
                    )
                else:
                    out = Output(plan.entity.clean_topic, event.key, value)
                    if lifecycle is not None:
                        tracked = (lifecycle, version, _lifecycle_fields(record, plan.rules))
            except UndecodableMessage as exc:
                kind, reason = "undecodable", f"undecodable: {exc}"
            except PlanRefused as exc:
                kind, reason = "schema", f"schema: {exc}"
            except Rejected as exc:
                kind, reason = "invalid", f"invalid: {exc}"
            except ServiceUnavailable:
                raise  # the registry is unreachable: the batch is read again
            except Exception as exc:  # noqa: BLE001 - no input may stop the partition
                kind, reason = "unexpected", f"unexpected: {exc.__class__.__name__}: {str(exc)[:300]}"
            if out is not None:
                emit(out)
                if tracked is not None:  # acknowledged with the batch, before its offsets are committed
                    emit(tracked[0].remember(event, tracked[1], tracked[2]))
                outs[out.topic] = outs.get(out.topic, 0) + 1
                ok += 1
            else:
                emit(self.letter(event, reason))
                fails[(event.topic, kind)] = fails.get((event.topic, kind), 0) + 1
                failed += 1
            if event.timestamp_ms:
                latency.observe(max(0.0, (now_ms - event.timestamp_ms) / 1000))
        for topic, n in outs.items():
            metrics.EVENTS_OUT.labels(STAGE, topic).inc(n)
        for (topic, kind), n in fails.items():
            metrics.EVENTS_FAILED.labels(STAGE, topic, kind).inc(n)
        return ok, failed
