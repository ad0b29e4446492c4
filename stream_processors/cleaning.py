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
               partition)
Each dead letter also names the rule it broke ("<field>:<kind>", or envelope:undecodable,
envelope:schema, envelope:too_large, envelope:unexpected, key:mismatch). A record that breaks only
rules of severity flag is emitted with their ids in dq_flags. A record referencing an entity not
known yet waits for it (stream_processors/references.py). Outcomes and rule failures are counted
per batch: backbone_dq_records_total and backbone_dq_rule_failures_total."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from backbone import metrics
from backbone.errors import ServiceUnavailable
from backbone.sealing import Sealer
from contract.catalog import Catalog
from contract.codec import (
    Registry,
    UndecodableMessage,
    decode,
    encode,
    schema_id_of,
)
from contract.deadletter import Output, RawEvent, dead_letter
from contract.field_rules import REJECT
from contract.rules import (
    DQ_FLAGS,
    SOURCE_VERSION,
    PayloadRules,
    Rejected,
    check_message_key,
    clean_event,
    shown,
)
from contract.topics import DLQ_PROCESSOR
from stream_processors.lifecycle import LifecycleState, change_version
from stream_processors.plans import Plan, Planner, PlanRefused
from stream_processors.references import ReferenceTable, WaitingRoom

STAGE = "processor"
# librdkafka's default message.max.bytes (backbone.kafka's profiles keep it).
DEFAULT_MAX_MESSAGE_BYTES = 1_000_000
# What librdkafka adds to key, value and headers when it sizes a message (36 bytes measured, and
# a few per header): kept as a margin below message.max.bytes.
_RECORD_OVERHEAD = 64
_HEADER_OVERHEAD = 8
# A reason travels in a Kafka header: never longer than this.
MAX_REASON = 2000


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


@dataclass
class _Held:
    """A record judged but for its references: what finishing it needs."""

    plan: Plan
    record: dict[str, Any]  # the decoded change event
    clean: dict[str, Any]
    version: int
    lifecycle: LifecycleState | None
    flagged: list[str]  # rules of severity flag it failed so far


class _Tally:
    """A batch's counts, published once per batch (a label lookup per event would take a lock)."""

    def __init__(self) -> None:
        self.outs: dict[str, int] = {}
        self.fails: dict[tuple[str, str], int] = {}
        self.outcomes: dict[tuple[str, str, str], int] = {}
        self.rules: dict[tuple[str, str, str, str], int] = {}
        self.ok = self.failed = 0

    def outcome(self, where: tuple[str, str], outcome: str, rules: list[str], severity: str) -> None:
        key = (*where, outcome)
        self.outcomes[key] = self.outcomes.get(key, 0) + 1
        for rule in rules:
            rkey = (*where, rule, severity)
            self.rules[rkey] = self.rules.get(rkey, 0) + 1


class Cleaner(Planner):
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
        references: ReferenceTable | None = None,
        reference_wait_seconds: float = 30.0,
        dq_rules: bool = True,
    ) -> None:
        self.sealer = sealer
        self.lifecycle = lifecycle  # None: updates without `before` skip the lifecycle check
        Planner.__init__(self, catalog, registry, secret, dq_rules)
        self.regions = regions
        self.dlq_topic = dlq_topic
        self.max_message_bytes = max_message_bytes
        self.references = references  # None: references to other entities go unchecked
        self.reference_wait = reference_wait_seconds
        self.waiting = WaitingRoom()
        # (system, entity) of each cdc topic, for the counters of events that have no plan.
        self.where = {e.cdc_topic: (e.system, e.name) for e in catalog.entities}
        self.referenced = self._referenced() if dq_rules and references is not None else {}
        self.records = metrics.ChildCache(metrics.DQ_RECORDS)
        self.rule_failures = metrics.ChildCache(metrics.DQ_RULE_FAILURES)

    def letter(self, event: RawEvent, reason: str, rule: str = "") -> Output:
        """The dead letter of `event`; when the sealed original would not fit in one message, only
        its beginning is kept and the reason says so (the letter must get through)."""
        if len(reason) > MAX_REASON:
            reason = reason[:MAX_REASON] + "..."
        out = dead_letter(event, reason, STAGE, self.dlq_topic, self.sealer, rule)
        excess = message_size(out.key, out.value, out.headers) - self.max_message_bytes
        if excess <= 0:
            return out
        original = event.value or b""
        note = f" (original of {len(original)} bytes too large for a dead letter: only its first "
        keep = len(original) - excess - len(note) - 40
        if keep < 0:  # the key itself is too large: neither is kept
            cut = replace(event, key=None, value=b"")
            note = f" (original key of {len(event.key or b'')} and value of {len(original)} bytes too large "
            reason = f"{reason}{note}for a dead letter: not kept)"
            return dead_letter(cut, reason, STAGE, self.dlq_topic, self.sealer, rule)
        cut = replace(event, value=original[:keep])
        return dead_letter(cut, f"{reason}{note}{keep} bytes are kept)", STAGE, self.dlq_topic, self.sealer, rule)

    def process(self, events: list[RawEvent], emit: Callable[[Output], None]) -> tuple[int, int]:
        """Clean a batch; every event results in exactly one output (clean or dead letter), now or,
        for a record waiting for a referenced entity, when it is released (`release`). Returns the
        (clean, dead-lettered) outputs emitted."""
        tally = _Tally()
        now, arrival = datetime.now(UTC), time.monotonic()
        # Counted per batch (one increment per topic), not per event: label lookups take a lock.
        for topic, n in metrics.count_by(events, lambda e: e.topic).items():
            metrics.EVENTS_IN.labels(STAGE, topic).inc(n)
        now_ms = time.time() * 1000
        for event in events:
            if self.waiting.blocked(event):  # an earlier change of its entity waits: so does it
                self.waiting.add(event, None, arrival)
            else:
                self._handle(event, now, arrival, arrival, emit, tally, None)
        self._release(now, arrival, emit, tally)
        self._publish(tally)
        metrics.observe_many(
            metrics.PROCESSING_LATENCY.labels(STAGE),
            (max(0.0, (now_ms - e.timestamp_ms) / 1000) for e in events if e.timestamp_ms),
        )
        return tally.ok, tally.failed

    def release(self, emit: Callable[[Output], None]) -> tuple[int, int]:
        """Judge the waiting records again (their entity may have arrived, or their wait ended)."""
        if not self.waiting.entries:
            return 0, 0
        tally = _Tally()
        self._release(datetime.now(UTC), time.monotonic(), emit, tally)
        self._publish(tally)
        return tally.ok, tally.failed

    def acknowledged(self) -> None:
        """Every output emitted so far is acknowledged by Kafka (their offsets may be committed)."""
        self.waiting.acknowledged()

    def _release(self, now: datetime, clock: float, emit: Callable[[Output], None], tally: _Tally) -> None:
        if not self.waiting.entries:
            return
        for entry in self.waiting.take_all():
            if self.waiting.blocked(entry.event):
                self.waiting.add(entry.event, entry.held, entry.since)
            elif self._handle(entry.event, now, clock, entry.since, emit, tally, entry.held):
                self.waiting.released(entry.event)

    def _unresolved(self, plan: Plan, clean: Mapping[str, Any]) -> list[Any]:
        missing = []
        for ref in plan.rules.references:
            value = clean.get(ref.field)
            if value is not None and not self.references.exists(ref.qualified(plan.entity.domain), str(value)):
                missing.append(ref)
        return missing

    def _handle(
        self,
        event: RawEvent,
        now: datetime,
        clock: float,
        since: float,
        emit: Callable[[Output], None],
        tally: _Tally,
        held: _Held | None,
    ) -> bool:
        """Judge one event (or finish one that waited); False when it waits for a referenced entity."""
        out: Output | None = None
        rule, kind, reason = "", "", ""
        where = self.where.get(event.topic, ("", ""))
        try:
            if held is None:
                plan = self.plan_for(event.topic, schema_id_of(event.value))
                _, record = decode(self.registry, event.value)
                lifecycle = self.lifecycle if plan.rules.transitions else None
                version = change_version(plan.adapter_kind, record)
                prior = lifecycle.prior(event, version) if lifecycle is not None else None
                clean = clean_event(record, plan.rules, self.regions, plan.secret, plan.entity.key, now, prior)
                clean[SOURCE_VERSION] = str(version)
                check_message_key(clean, event.key, plan.rules, plan.secret, plan.entity.key)
                held = _Held(plan, record, clean, version, lifecycle, list(clean[DQ_FLAGS]))
            plan, clean = held.plan, held.clean
            where = (plan.entity.system, plan.entity.name)
            checked = self.references is not None and plan.rules.references and not clean["is_deleted"]
            missing = self._unresolved(plan, clean) if checked else []
            if missing and clock - since < self.reference_wait:
                self.waiting.add(event, held, since)
                return False
            for ref in missing:
                value = shown(plan.rules, plan.secret, ref.field, clean.get(ref.field))
                message = (
                    f"field {ref.field!r} value {value}: no {ref.qualified(plan.entity.domain)} "
                    f"{ref.target_field or 'key'} {value} known (waited {self.reference_wait:g}s)"
                )
                if ref.severity == REJECT:
                    raise Rejected(message, ref.rule_id)
                held.flagged.append(ref.rule_id)
            clean[DQ_FLAGS] = held.flagged
            value = encode(plan.clean_id, plan.clean_parsed, clean)
            size = message_size(event.key, value)
            if size > self.max_message_bytes:
                kind, rule = "too_large", "envelope:too_large"
                reason = (
                    f"too_large: the clean record for {plan.entity.clean_topic} is {size} bytes, "
                    f"more than the producer takes (message.max.bytes {self.max_message_bytes})"
                )
            else:
                out = Output(plan.entity.clean_topic, event.key, value)
        except UndecodableMessage as exc:
            kind, rule, reason = "undecodable", "envelope:undecodable", f"undecodable: {exc}"
        except PlanRefused as exc:
            kind, rule, reason = "schema", "envelope:schema", f"schema: {exc}"
        except Rejected as exc:
            kind, rule, reason = "invalid", exc.rule or "record:invalid", f"invalid: {exc}"
        except ServiceUnavailable:
            raise  # the registry is unreachable: the batch is read again
        except Exception as exc:  # noqa: BLE001 - no input may stop the partition
            kind, rule = "unexpected", "envelope:unexpected"
            reason = f"unexpected: {exc.__class__.__name__}: {str(exc)[:300]}"
        if out is not None and held is not None:
            emit(out)
            if held.lifecycle is not None:  # acknowledged with the batch, before its offsets are committed
                emit(held.lifecycle.remember(event, held.version, _lifecycle_fields(held.record, held.plan.rules)))
            entity = self.referenced.get(event.topic)
            if entity is not None and self.references is not None:
                noted = self.references.note(entity, held.clean["entity_key"], not held.clean["is_deleted"])
                if noted is not None:
                    emit(noted)
            tally.outs[out.topic] = tally.outs.get(out.topic, 0) + 1
            tally.ok += 1
            flags = held.flagged
            tally.outcome(where, "flagged" if flags else "accepted", flags, "flag")
        else:
            emit(self.letter(event, reason, rule))
            tally.fails[(event.topic, kind)] = tally.fails.get((event.topic, kind), 0) + 1
            tally.failed += 1
            tally.outcome(where, "rejected", [rule], "reject")
        return True

    def _publish(self, tally: _Tally) -> None:
        for topic, n in tally.outs.items():
            metrics.EVENTS_OUT.labels(STAGE, topic).inc(n)
        for (topic, kind), n in tally.fails.items():
            metrics.EVENTS_FAILED.labels(STAGE, topic, kind).inc(n)
        for labels, n in tally.outcomes.items():
            self.records(*labels).inc(n)
        for labels, n in tally.rules.items():
            self.rule_failures(*labels).inc(n)
