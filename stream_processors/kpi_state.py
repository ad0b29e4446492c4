"""The KPI engine's state, free of Faust: each entity's last contribution to each KPI (kept by
the app in a changelogged RocksDB table), and the aggregates per KPI, group and window derived
from them (in memory, rebuilt from the table at start).

An event is applied once: an entity's state keeps the version of the last change applied (its
source position, contract.positions), and an event at or below it changes nothing, so a replayed
or duplicated event never moves a KPI. Applying a change subtracts the entity's previous
contribution and adds the new one: an update that changes a grouping field moves the entity, a
delete leaves its group. Windowed KPIs close a window `grace` after the latest event time seen;
a change touching a closed window is counted as late and ignored. Deadlines: an entity counted
with `overdue` false moves to true when its deadline passes (`flip_due`, called by a timer)."""

from __future__ import annotations

import hashlib
import heapq
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from contract.catalog import Catalog
from contract.kpis import OVERDUE, Kpi, text
from contract.positions import version_of
from contract.workdays import WorkCalendar
from stream_processors.kpi_measures import Aggregate, Contribution, contribution, millis, per_kpi, window_bounds

AggKey = tuple[str, tuple[str | None, ...], int | None]  # (KPI slot, group values, window start)


@per_kpi  # once per KPI: it was redone (dump, JSON, hash) several times per event
def slot(kpi: Kpi) -> str:
    """The KPI's name in entity states, with a fingerprint of its declaration: after a change of
    declaration, contributions computed under the old one are not mistaken for current ones."""
    spec = json.dumps(kpi.spec.model_dump(mode="json"), sort_keys=True)
    return f"{kpi.qualified}@{hashlib.blake2b(spec.encode(), digest_size=4).hexdigest()}"


@dataclass
class KpiEngine:
    kpis: list[Kpi]
    calendar: WorkCalendar
    adapter_kinds: dict[str, str]  # clean topic -> adapter kind (how its positions order)
    by_topic: dict[str, list[Kpi]] = field(init=False)
    by_slot: dict[str, Kpi] = field(init=False)
    aggregates: dict[AggKey, Aggregate] = field(default_factory=dict)
    watermarks: dict[str, int] = field(default_factory=dict)
    # (slot, entity id) -> contribution counted as not overdue whose deadline is still ahead.
    pending: dict[tuple[str, str], Contribution] = field(default_factory=dict)
    deadlines: list[tuple[int, str, str]] = field(default_factory=list)
    dirty: set[AggKey] = field(default_factory=set)
    late: int = 0
    replayed: int = 0
    _last_version: int = 0

    def __post_init__(self) -> None:
        self.by_topic, self.by_slot = {}, {}
        for kpi in self.kpis:
            self.by_topic.setdefault(kpi.entity.clean_topic, []).append(kpi)
            self.by_slot[slot(kpi)] = kpi

    @classmethod
    def for_catalog(cls, kpis: list[Kpi], calendar: WorkCalendar, catalog: Catalog) -> KpiEngine:
        kinds = {e.clean_topic: s.adapter.get("kind", "simulator") for s in catalog.systems for e in s.entities}
        return cls(kpis, calendar, kinds)

    @property
    def topics(self) -> list[str]:
        return sorted(self.by_topic)

    @staticmethod
    def entity_id(kpi_or_topic: Kpi | str, record: dict[str, Any]) -> str:
        name = kpi_or_topic if isinstance(kpi_or_topic, str) else kpi_or_topic.entity.clean_topic
        return f"{name}|{record['entity_key']}"

    def version(self, topic: str, record: dict[str, Any]) -> int:
        ts_ms = millis(record.get("ts_source")) or 0
        return version_of(self.adapter_kinds.get(topic, ""), str(record["source_position"]), ts_ms, record["op"])

    # -- applying changes ------------------------------------------------------------------------
    def apply(self, topic: str, record: dict[str, Any], state: dict[str, Any] | None, now_ms: int) -> dict | None:
        """The entity's new state after `record`, or None when the event was applied before."""
        version = self.version(topic, record)
        if state is not None and version <= state["v"]:
            self.replayed += 1
            return None
        entity = self.entity_id(topic, record)
        old = state["c"] if state else {}
        new: dict[str, list[Any]] = {}
        for kpi in self.by_topic.get(topic, []):
            name = slot(kpi)
            before = Contribution.load(old[name]) if name in old else None
            after = None if record.get("is_deleted") else contribution(kpi, record, self.calendar)
            if self._closed(kpi, before) or self._closed(kpi, after):
                self.late += 1  # closed windows are final
                if before is not None:
                    new[name] = before.dump()
                continue
            if before != after:
                if before is not None:
                    self._count(kpi, entity, before, -1, now_ms)
                if after is not None:
                    self._count(kpi, entity, after, +1, now_ms)
            if after is not None:
                new[name] = after.dump()
                self._see(kpi, after)
        return {"v": version, "c": new}

    def _see(self, kpi: Kpi, c: Contribution) -> None:
        if c.t is not None:
            name = kpi.qualified
            self.watermarks[name] = max(self.watermarks.get(name, c.t), c.t)

    def _closed(self, kpi: Kpi, c: Contribution | None) -> bool:
        window = kpi.spec.window
        if c is None or window is None or c.window is None:
            return False
        mark = self.watermarks.get(kpi.qualified)
        return mark is not None and window_bounds(window.size, c.window)[1] + window.grace_ms <= mark

    def _count(self, kpi: Kpi, entity: str, c: Contribution, sign: int, now_ms: int) -> None:
        name = slot(kpi)
        tracks = OVERDUE in kpi.spec.group_by and c.deadline is not None
        if sign > 0:
            overdue = tracks and now_ms >= c.deadline  # type: ignore[operator]
            if tracks and not overdue:
                self.pending[(name, entity)] = c
                heapq.heappush(self.deadlines, (c.deadline, name, entity))  # type: ignore[arg-type]
        else:
            # Counted as not overdue while pending; once flipped (or overdue when counted), as overdue.
            overdue = tracks and self.pending.pop((name, entity), None) is None and now_ms >= c.deadline  # type: ignore[operator]
        self._add(kpi, c, overdue, sign)

    def _add(self, kpi: Kpi, c: Contribution, overdue: bool, sign: int) -> None:
        group = tuple(text(overdue) if n == OVERDUE else v for n, v in zip(kpi.spec.group_by, c.group, strict=True))
        key = (slot(kpi), group, c.window)
        self.aggregates.setdefault(key, Aggregate()).add(kpi, c.value, sign)
        self.dirty.add(key)

    def flip_due(self, now_ms: int) -> int:
        """Move every contribution whose deadline has passed to its `overdue` group; how many moved."""
        moved = 0
        while self.deadlines and self.deadlines[0][0] <= now_ms:
            deadline, name, entity = heapq.heappop(self.deadlines)
            c = self.pending.get((name, entity))
            if c is None or c.deadline != deadline:
                continue  # changed since: its current contribution has its own entry
            del self.pending[(name, entity)]
            kpi = self.by_slot[name]
            self._add(kpi, c, False, -1)
            self._add(kpi, c, True, +1)
            moved += 1
        return moved

    # -- restart ---------------------------------------------------------------------------------
    def rebuild(self, states: Iterable[tuple[str, dict[str, Any]]], now_ms: int) -> int:
        """Aggregates again from every entity's stored contributions; every group is then dirty."""
        self.aggregates.clear()
        self.pending.clear()
        self.deadlines.clear()
        self.watermarks.clear()
        entities = 0
        for entity, state in states:
            entities += 1
            for name, data in (state or {}).get("c", {}).items():
                kpi = self.by_slot.get(name)
                if kpi is None:  # a KPI since removed or re-declared
                    continue
                c = Contribution.load(data)
                self._count(kpi, entity, c, +1, now_ms)
                self._see(kpi, c)
        self.dirty = set(self.aggregates)
        return entities

    # -- output ----------------------------------------------------------------------------------
    def next_version(self) -> int:
        """Strictly increasing, also across restarts (microseconds of the wall clock)."""
        self._last_version = max(time.time_ns() // 1000, self._last_version + 1)
        return self._last_version

    def take_rows(self, now_ms: int) -> list[tuple[Kpi, str, dict[str, Any]]]:
        """(KPI, message key, value) of every group changed since the last call; emptied groups
        are sent once with a count of 0 and then forgotten."""
        rows = []
        for key in sorted(self.dirty, key=repr):
            aggregate = self.aggregates.get(key)
            if aggregate is None:
                continue
            kpi = self.by_slot[key[0]]
            rows.append((kpi, *self.row(kpi, key, aggregate, now_ms)))
            if aggregate.count == 0:
                del self.aggregates[key]
        self.dirty.clear()
        return rows

    def row(self, kpi: Kpi, key: AggKey, aggregate: Aggregate, now_ms: int) -> tuple[str, dict[str, Any]]:
        _, group, window = key
        group_key = json.dumps([*group, window], separators=(",", ":"))
        value: dict[str, Any] = {"group_key": group_key, **dict(zip(kpi.spec.group_by, group, strict=True))}
        end = window_bounds(kpi.spec.window.size, window)[1] if kpi.spec.window and window is not None else None
        value.update(
            window_start=_ts(window),
            window_end=_ts(end),
            count=aggregate.count,
            **aggregate.measures(kpi),
            version=self.next_version(),
            updated_at=_ts(now_ms),
        )
        return group_key, value

    def group_keys(self) -> dict[str, set[str]]:
        """KPI topic -> message keys of every group with a current aggregate."""
        keys: dict[str, set[str]] = {}
        for name, group, window in self.aggregates:
            topic = self.by_slot[name].topic
            keys.setdefault(topic, set()).add(json.dumps([*group, window], separators=(",", ":")))
        return keys


def _ts(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)
