"""References to another entity's current state (`"references"` rules, contract/field_rules.py), and
the records that wait for their referenced entity to arrive.

The reference table says which referenced entities exist now: the processor writes a record to the
compacted topic `state.references` (key: entity and key; value 1 while it exists, 0 once deleted)
with the batch that accepted the change, only when that changes, and reads the topic whole as a
Faust global table, so every worker sees what every other accepted; what this worker accepted counts
at once (`local`), before the topic brings it back. Only keys are kept, never personal data.

A record whose referenced entity is unknown waits (`WaitingRoom`), up to
BACKBONE_PROCESSOR_REFERENCE_WAIT_SECONDS from its arrival: accepted as soon as the entity arrives,
given the rule's severity when the wait ends. Later changes of the same entity wait behind it, so the
order per key holds. A waiting record's offset is not committed (`HoldingLedger`) until its output is
acknowledged: after a crash it is read again and waits again; nothing is lost."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from contract.deadletter import Output, RawEvent
from stream_processors.offsets import OffsetLedger, Partition

_SEP = "\x00"


class ReferenceTable:
    def __init__(self, topic: str, shared: Mapping[str, Any] | None = None) -> None:
        self.topic = topic
        self.shared: Mapping[str, Any] = shared if shared is not None else {}  # the global table
        self.local: dict[str, int] = {}  # what this worker accepted (ahead of the topic)

    def _state(self, key: str) -> int:
        value = self.local.get(key)
        if value is None:
            value = self.shared.get(key)
        return 1 if value else 0

    def forget_local(self) -> None:
        """After a rebalance another worker may change what this one accepted (its entities' partitions
        moved): from now on the topic decides. What this worker wrote is acknowledged, so the global
        table brings it back; a record referencing it meanwhile waits, it is not refused."""
        self.local.clear()

    def exists(self, entity: str, key: str) -> bool:
        return self._state(entity + _SEP + key) == 1

    def note(self, entity: str, key: str, present: bool) -> Output | None:
        """Record an accepted change of a referenced entity; the record to produce with the batch
        when its existence changed."""
        where, value = entity + _SEP + key, 1 if present else 0
        if self._state(where) == value:
            return None
        self.local[where] = value
        return Output(self.topic, json.dumps(where).encode(), json.dumps(value).encode(), partition=0)


@dataclass
class Waiting:
    event: RawEvent
    since: float  # arrival, on time.monotonic()
    held: Any  # the cleaner's work so far; None: not started (behind another change of its entity)


class WaitingRoom:
    """Records waiting for a referenced entity, in arrival order, and what is released but not yet
    acknowledged by Kafka: neither may have its offset committed."""

    def __init__(self) -> None:
        self.entries: list[Waiting] = []
        self._keys: dict[tuple[str, bytes], int] = {}
        self.unacked: list[tuple[Partition, int]] = []

    def __len__(self) -> int:
        return len(self.entries)

    def blocked(self, event: RawEvent) -> bool:
        return (event.topic, event.key or b"") in self._keys

    def add(self, event: RawEvent, held: Any, since: float) -> None:
        self.entries.append(Waiting(event, since, held))
        where = (event.topic, event.key or b"")
        self._keys[where] = self._keys.get(where, 0) + 1

    def take_all(self) -> list[Waiting]:
        entries, self.entries, self._keys = self.entries, [], {}
        return entries

    def released(self, event: RawEvent) -> None:
        self.unacked.append(((event.topic, event.partition), event.offset))

    def acknowledged(self) -> None:
        """The outputs emitted so far are acknowledged by Kafka."""
        self.unacked.clear()

    def holds(self) -> dict[Partition, int]:
        """Per partition, the lowest offset that must not be committed past."""
        low: dict[Partition, int] = {}
        pairs = [((w.event.topic, w.event.partition), w.event.offset) for w in self.entries]
        for tp, offset in [*pairs, *self.unacked]:
            if offset < low.get(tp, offset + 1):
                low[tp] = offset
        return low

    def drop(self, partitions: Iterable[Partition]) -> None:
        """Partitions revoked: their waiting records are read again by their next owner."""
        gone = set(partitions)
        kept = [w for w in self.take_all() if (w.event.topic, w.event.partition) not in gone]
        for w in kept:
            self.add(w.event, w.held, w.since)


class HoldingLedger(OffsetLedger):
    """The offset ledger, committing no partition past a record that waits (or whose output is not
    acknowledged yet); a partition held back is offered again at the next commit."""

    room: WaitingRoom | None = None

    def committable(self) -> dict[Partition, int]:
        offsets = super().committable()
        holds = self.room.holds() if self.room is not None else {}
        if not holds:
            return offsets
        capped = {}
        for tp, offset in offsets.items():
            if tp in holds and holds[tp] < offset:
                capped[tp] = holds[tp]
            else:
                capped[tp] = offset
        self.retry([tp for tp in offsets if tp in holds])  # committed further once released
        return capped
