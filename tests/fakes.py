"""Stand-ins and helpers shared by the unit tests: a schema registry in memory, a pinned wall clock for
the simulators, Avro encoding, and a simulated system's contract as the pipeline applies it."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

import fastavro
import pytest

import simulators.kit
from backbone.sealing import Sealer
from backbone.settings import Settings, load_settings
from contract.catalog import Catalog, load_catalog
from contract.codec import UndecodableMessage, encode
from contract.reference import load_regions, villages
from contract.rules import PayloadRules, clean_event
from contract.subjects import entity_value_schema
from producers.emitter import Change, envelope_for
from simulators.simulate import simulator_class
from simulators.writers.push import change_item
from sinks import ddl
from sinks.clickhouse_sink import TableWriter
from stream_processors.cleaning import Cleaner, Output, RawEvent

SECRET = b"unit-test-key"
DLQ = "dlq.processor"
SEALER = Sealer("unit-test-dead-letter-key")


class FakeRegistry:
    """Stands in for contract.codec.Registry as the codec and the processor's Cleaner use it: one id
    per distinct schema; the subjects registered are kept in order."""

    def __init__(self) -> None:
        self.schemas: dict[int, tuple[dict[str, Any], Any]] = {}
        self.registered: list[str] = []

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        self.registered.append(subject)
        return self.add(schema)

    def add(self, schema: dict[str, Any]) -> int:
        for schema_id, (known, _) in self.schemas.items():
            if known == schema:
                return schema_id
        schema_id = len(self.schemas) + 1
        self.schemas[schema_id] = (schema, fastavro.parse_schema(schema))
        return schema_id

    def schema_by_id(self, schema_id: int) -> tuple[dict[str, Any], Any]:
        if schema_id not in self.schemas:
            raise UndecodableMessage(f"schema id {schema_id} unknown to the registry")
        return self.schemas[schema_id]


def freeze(monkeypatch: pytest.MonkeyPatch, now: datetime) -> None:
    """Pin the wall clock the simulators read (the start of their business clock, ts_source)."""

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return now

    monkeypatch.setattr(simulators.kit, "datetime", Frozen)


def breaks_lifecycle(change: Change, transitions: Mapping[str, Mapping[str, Sequence[str]]]) -> bool:
    """Whether an update moves a field to a state its lifecycle does not allow after the old one
    (transitions: field -> state -> the states allowed next)."""
    if change.before is None:
        return False
    for field, moves in transitions.items():
        old, new = change.before[field], change.after[field]
        if old != new and new not in moves[old]:
            return True
    return False


def states(batch: list[Change]) -> list[tuple]:
    """What a replay must repeat of each change: all but the entity and the wall clock (ts_source)."""
    return [(c.op, c.key, c.position, c.before, c.after) for c in batch]


def take_from(simulator: type, regions: list[str], n: int, **kwargs: Any) -> list[Change]:
    """The first n changes of a simulator started with these villages and keyword arguments."""
    return list(itertools.islice(simulator(regions, **kwargs).changes(), n))


def avro_bytes(parsed: Any, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, parsed, record)
    return out.getvalue()


def avro_roundtrip(parsed: Any, record: dict[str, Any]) -> dict[str, Any]:
    return fastavro.schemaless_reader(io.BytesIO(avro_bytes(parsed, record)), parsed)


@cache
def _reference() -> tuple[Settings, dict[str, dict[str, Any]], Catalog]:
    settings = load_settings()
    return settings, load_regions(settings.regions_csv), load_catalog(settings.catalog_dir, settings.schemas_dir)


class SimulatedSystem:
    """A simulated system of the catalog with its entities' rules and schemas, and its changes as the
    emitter sends them and the processor cleans them."""

    def __init__(self, name: str, clock_start: datetime | None = None) -> None:
        self.settings, self.regions, self.catalog = _reference()
        self.villages = villages(self.regions)
        self.system = self.catalog.system(name)
        self.simulator = simulator_class(self.system)
        self.clock_start = clock_start  # where the business clock starts unless a test says otherwise
        self.entities = {e.name: e for e in self.system.entities}
        self.rules = {name: PayloadRules.from_schema(e.payload_schema()) for name, e in self.entities.items()}
        self.value_schemas = {
            name: fastavro.parse_schema(entity_value_schema(e, self.settings)) for name, e in self.entities.items()
        }
        self.clean_schemas = {name: fastavro.parse_schema(rules.clean_schema()) for name, rules in self.rules.items()}

    def take(self, n: int, seed: int = 1, **kwargs: Any) -> list[Change]:
        """The first n changes of the system's simulator, on this system's villages."""
        kwargs.setdefault("clock_start", self.clock_start)
        return take_from(self.simulator, self.villages, n, seed=seed, **kwargs)

    def entity_of(self, change: Change) -> str:
        return change.entity or self.system.entities[0].name

    def envelope(self, change: Change) -> dict[str, Any]:
        """The envelope the emitter builds (producers.emitter.envelope_for)."""
        return envelope_for(self.entities[self.entity_of(change)], change)

    def clean(self, change: Change) -> dict[str, Any]:
        name = self.entity_of(change)
        return clean_event(self.envelope(change), self.rules[name], self.regions, SECRET, self.entities[name].key)

    def clean_from_the_wire(self, change: Change) -> dict[str, Any]:
        """What the processor does: decode the produced bytes, clean, encode the clean record."""
        name = self.entity_of(change)
        decoded = avro_roundtrip(self.value_schemas[name], self.envelope(change))
        record = clean_event(decoded, self.rules[name], self.regions, SECRET, self.entities[name].key)
        avro_roundtrip(self.clean_schemas[name], record)
        return record

    def through_processor(self, batch: list[Change]) -> tuple[tuple[int, int], list[Output], FakeRegistry]:
        """The changes through the wire format and the processor's Cleaner, as in the pipeline:
        ((cleaned, dead-lettered), one output per change, the registry to decode them with)."""
        registry = FakeRegistry()
        ids = {
            name: registry.register(f"{e.cdc_topic}-value", entity_value_schema(e, self.settings))
            for name, e in self.entities.items()
        }
        cleaner = Cleaner(self.catalog, registry, self.regions, SECRET, DLQ, sealer=SEALER)
        events = []
        for offset, change in enumerate(batch):
            name = self.entity_of(change)
            value = encode(ids[name], registry.schema_by_id(ids[name])[1], self.envelope(change))
            events.append(RawEvent(self.entities[name].cdc_topic, 0, offset, change.key.encode(), value))
        outputs: list[Output] = []
        counts = cleaner.process(events, outputs.append)
        return counts, outputs, registry

    def store_clean(self, client: Any, name: str, changes: list[Change]) -> list[dict[str, Any]]:
        """One entity's changes, cleaned and stored in a new table as the sink stores them; the rows."""
        entity, schema = self.entities[name], self.rules[name].clean_schema()
        client.command(ddl.create_table_sql(ddl.layout_for(entity.table, schema)))
        writer = TableWriter(client)
        layout = writer.layout(entity.table, 1, schema)
        now = datetime.now(UTC)
        rows = [
            {**self.clean(c), "_topic": entity.clean_topic, "_partition": 0, "_offset": i, "ts_stored": now}
            for i, c in enumerate(changes)
        ]
        writer.insert(entity.table, layout.names, [[row.get(n) for row in rows] for n in layout.names])
        return rows


def push_creates(changes: Iterator[Change], n: int) -> list[dict[str, Any]]:
    """The first n creates of a simulator's changes as push items (no positions: the adapter makes them)."""
    items = []
    for change in changes:
        if len(items) == n:
            break
        if change.op == "c":
            item = change_item(change)
            del item["position"]
            items.append(item)
    return items
