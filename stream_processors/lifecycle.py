"""The last lifecycle state of each entity, so that an update without a `before` image (file drops,
query polling, pushes that send only the new record) is still checked against the allowed transitions.

Kept in memory per assigned partition and written to a compacted topic (`state.lifecycle`) in the
same batch as the clean records, so it is acknowledged before the batch's input offsets are
committed: after a crash the state is never behind the committed offsets, only possibly ahead of
them. Each state carries the version of the change that made it (its order in the source,
contract/positions.py): a change whose version is not above it - read again after a crash, or sent
again by an adapter that restarted mid-file - is not judged against a state that already includes
it; it was checked the first time. Only the lifecycle fields are kept (statuses, never personal
data)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from backbone import kafka
from backbone.errors import ServiceUnavailable
from backbone.settings import Settings
from contract.deadletter import Output, RawEvent
from contract.positions import version_of
from stream_processors.kpi_measures import millis

_SEP = b"\x00"
# One encoder for every state record (json.dumps with options builds a new one per call).
_STATE_JSON = json.JSONEncoder(separators=(",", ":"), default=str)


def change_version(adapter_kind: str, event: Mapping[str, Any]) -> int:
    """The source order of a decoded change event (contract/positions.py), as the sink's state
    tables and the KPI worker compute it."""
    return version_of(adapter_kind, str(event["source"]["position"]), millis(event.get("ts_source")) or 0, event["op"])


class LifecycleState:
    def __init__(self, topic: str) -> None:
        self.topic = topic
        # (cdc topic, message key) -> (partition, source version of the change that made it, lifecycle
        # fields, or None once deleted: kept so that an older state read back cannot return)
        self.known: dict[tuple[str, bytes], tuple[int, int, dict[str, Any] | None]] = {}

    def prior(self, event: RawEvent, version: int) -> dict[str, Any] | None:
        """The entity's lifecycle fields as of before the change `event` carries (at source `version`),
        or None when unknown, deleted, or when the state already includes that change."""
        entry = self.known.get((event.topic, event.key or b""))
        if entry is None or entry[0] != event.partition or version <= entry[1]:
            return None
        return entry[2]

    def remember(self, event: RawEvent, version: int, fields: Mapping[str, Any] | None) -> Output:
        """The entity's new lifecycle fields (None: deleted), as the record to produce with the batch
        (into the state topic's partition of the same number as the event's)."""
        state = None if fields is None else dict(fields)
        where = (event.topic, event.key or b"")
        current = self.known.get(where)
        if current is not None and current[0] == event.partition and current[1] > version:
            state, version = current[2], current[1]  # a change sent again: the later state stands
        self.known[where] = (event.partition, version, state)
        value = _STATE_JSON.encode({"version": version, "fields": state})
        key = event.topic.encode() + _SEP + (event.key or b"")
        return Output(self.topic, key, value.encode(), partition=event.partition)

    def load(self, partition: int, records: Iterable[tuple[bytes | None, bytes | None]], topics: set[str]) -> None:
        """Merge one partition of the state topic (its records in order) for the given cdc topics: per
        entity, the state made by the later change (in source order) wins, so neither an unacknowledged state in memory
        nor a newer one another worker wrote is lost."""
        for key, value in records:
            topic, sep, entity_key = (key or b"").partition(_SEP)
            name = topic.decode(errors="replace")
            if not sep or name not in topics or value is None:
                continue
            try:
                data = json.loads(value)
                version, fields = int(data["version"]), data["fields"]
                fields = None if fields is None else dict(fields)
            except (ValueError, KeyError, TypeError):
                continue  # not one of ours: ignored rather than trusted
            current = self.known.get((name, entity_key))
            if current is None or current[0] != partition or current[1] < version:
                self.known[(name, entity_key)] = (partition, version, fields)

    def keep_only(self, partitions: set[tuple[str, int]]) -> None:
        """Drop what belongs to partitions no longer assigned (another worker owns them now)."""
        for where in [w for w, entry in self.known.items() if (w[0], entry[0]) not in partitions]:
            del self.known[where]


def read_partition(settings: Settings, topic: str, partition: int) -> list[tuple[bytes | None, bytes | None]]:
    """Every record of one partition, from its beginning to its end as of now (no consumer group)."""
    consumer = Consumer(
        kafka.client_config(
            settings, **{"group.id": f"{settings.processor_app_id}-state-load", "enable.auto.commit": False}
        )
    )
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
        records: list[tuple[bytes | None, bytes | None]] = []
        if high <= low:
            return records
        consumer.assign([TopicPartition(topic, partition, low)])
        position = low
        while position < high:
            message = consumer.poll(30.0)
            if message is None:
                raise ServiceUnavailable(f"{topic}[{partition}]: no record within 30 s at offset {position} of {high}")
            if message.error():
                continue
            records.append((message.key(), message.value()))
            position = message.offset() + 1
        return records
    finally:
        consumer.close()
