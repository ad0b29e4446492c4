"""Input offsets committed by the processor itself, only as far as every event was processed.

faust-streaming 0.15 can lose an event when it starts on a backlog: one offset right after the
first batch is neither delivered to the agent nor reported, and Faust's gap handling then commits
past it (seen in about a third of cold starts in `make bench`). So the processor switches Faust's
acks off for its input topics and keeps this ledger instead: per partition it knows the next
offset it must see; an event beyond it is a gap, which is never committed past and is re-read by
seeking back. Re-read events produce the same event ids, so downstream they collapse."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from backbone import kafka
from backbone.settings import Settings

Partition = tuple[str, int]


@dataclass
class OffsetLedger:
    # Where a partition starts when first seen: its committed offset (or the earliest one).
    starting_offset: Callable[[Partition], int]
    expected: dict[Partition, int] = field(default_factory=dict)
    dirty: set[Partition] = field(default_factory=set)
    gaps: int = 0
    # observe() runs in a worker thread (its first look-up per partition is a network call),
    # committable() on the event loop.
    lock: threading.Lock = field(default_factory=threading.Lock)

    def forget(self, partitions: Iterable[Partition]) -> None:
        """After a rebalance: the next event of these partitions starts from the committed offset."""
        with self.lock:
            for tp in partitions:
                self.expected.pop(tp, None)
                self.dirty.discard(tp)

    def observe(self, events: Iterable[tuple[Partition, int]]) -> dict[Partition, int]:
        """Advance over processed (partition, offset) pairs; returns {partition: offset to seek back to}
        for partitions where an offset was skipped."""
        by_tp: dict[Partition, list[int]] = {}
        for tp, offset in events:
            by_tp.setdefault(tp, []).append(offset)
        starts = {tp: self.starting_offset(tp) for tp in by_tp if tp not in self.expected}
        with self.lock:
            return self._advance(by_tp, starts)

    def _advance(self, by_tp: dict[Partition, list[int]], starts: dict[Partition, int]) -> dict[Partition, int]:
        rewinds: dict[Partition, int] = {}
        for tp, offsets in by_tp.items():
            expected = self.expected.get(tp)
            if expected is None:
                expected = starts.get(tp)
            if expected is None:  # forgotten meanwhile (a rebalance): look it up again next time
                continue
            for offset in sorted(offsets):
                if offset < expected:  # a re-read after a seek: already counted
                    continue
                if offset > expected:
                    rewinds[tp] = expected
                    self.gaps += 1
                    break
                expected += 1
                self.dirty.add(tp)
            self.expected[tp] = expected
        return rewinds

    def committable(self) -> dict[Partition, int]:
        """Offsets to commit now (next offset to read, Kafka's convention); clears the dirty set."""
        with self.lock:
            out = {tp: self.expected[tp] for tp in self.dirty if tp in self.expected}
            self.dirty.clear()
        return out

    def retry(self, partitions: Iterable[Partition]) -> None:
        """Offsets whose commit failed: committed again next time."""
        with self.lock:
            self.dirty.update(tp for tp in partitions if tp in self.expected)


def committed_offsets_lookup(settings: Settings, group: str) -> Callable[[Partition], int]:
    """Reads a partition's committed offset for `group` (earliest offset when none), without joining it."""
    from confluent_kafka import Consumer, TopicPartition

    reader: Any = Consumer(kafka.client_config(settings, **{"group.id": group, "enable.auto.commit": False}))

    def lookup(tp: Partition) -> int:
        (committed,) = reader.committed([TopicPartition(tp[0], tp[1])], timeout=10)
        if committed.offset >= 0:
            return committed.offset
        low, _high = reader.get_watermark_offsets(TopicPartition(tp[0], tp[1]), timeout=10)
        return low

    return lookup
