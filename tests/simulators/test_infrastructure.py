"""The simulated public works office (DPUPR): deterministic, lifecycle-respecting, valid under the
contract unless asked otherwise, and storable in ClickHouse."""

from __future__ import annotations

import io
import itertools
import statistics
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import clickhouse_connect
import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import simulators.infrastructure as infrastructure
from backbone.settings import load_settings
from contract.catalog import load_catalog
from contract.codec import decode, encode
from contract.reference import load_regions, villages
from contract.rules import PayloadRules, Rejected, clean_event
from contract.subjects import entity_value_schema
from producers.emitter import Change, envelope_for
from simulators.infrastructure import PublicWorks
from simulators.simulate import simulator_class
from sinks import ddl
from sinks.clickhouse_sink import TableWriter
from stream_processors.cleaning import Cleaner, Output, RawEvent

SETTINGS = load_settings()
REGIONS = load_regions(SETTINGS.regions_csv)
VILLAGES = villages(REGIONS)
SYSTEM = load_catalog(SETTINGS.catalog_dir, SETTINGS.schemas_dir).system("sim-public-works")
ENTITIES = {e.name: e for e in SYSTEM.entities}
RULES = {name: PayloadRules.from_schema(e.payload_schema()) for name, e in ENTITIES.items()}
VALUE_SCHEMAS = {name: fastavro.parse_schema(entity_value_schema(e, SETTINGS)) for name, e in ENTITIES.items()}
CLEAN_SCHEMAS = {name: fastavro.parse_schema(rules.clean_schema()) for name, rules in RULES.items()}
TRANSITIONS = RULES["project"].transitions["status"]
SECRET = b"unit-test-key"
MONDAY = datetime(2025, 1, 6, 1, 0, tzinfo=UTC)  # 08:00 in Jakarta
JAKARTA = timedelta(hours=7)


def take(n: int, seed: int = 1, clock_start: datetime | None = MONDAY, **kwargs: Any) -> list[Change]:
    return list(itertools.islice(PublicWorks(VILLAGES, seed=seed, clock_start=clock_start, **kwargs).changes(), n))


def essentials(batch: list[Change]) -> list[tuple]:
    """Everything but ts_source (the wall clock at emission)."""
    return [(c.op, c.key, c.position, c.entity, c.before, c.after) for c in batch]


def envelope(change: Change) -> dict[str, Any]:
    """The envelope the emitter builds (producers.emitter.envelope_for)."""
    return envelope_for(ENTITIES[change.entity or SYSTEM.entities[0].name], change)


def clean(change: Change) -> dict[str, Any]:
    entity = ENTITIES[change.entity]
    return clean_event(envelope(change), RULES[entity.name], REGIONS, SECRET, entity.key)


def bad_kinds(change: Change) -> set[str]:
    """What is wrong with a change, judged from the schema's rules (independently of clean_event)."""
    rules, state, kinds = RULES[change.entity], change.after, set()
    if any(state[r.name] not in REGIONS for r in rules.regions):
        kinds.add("unknown_village")
    if any(state[name] is not None and state[name] < 0 for name in rules.minimums):
        kinds.add("negative_amount")
    if any(state[name] is None for name in rules.required):
        kinds.add("missing_required")
    if change.op == "u":
        for name, moves in rules.transitions.items():
            old, new = change.before[name], state[name]
            if old != new and new not in moves[old]:
                kinds.add("impossible_transition")
    return kinds


def freeze(monkeypatch, now: datetime) -> None:
    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return now

    monkeypatch.setattr(infrastructure, "datetime", Frozen)


def test_the_catalog_names_this_simulator_and_its_entities():
    assert SYSTEM.department == "DPUPR" and SYSTEM.domain == "infrastructure"
    assert simulator_class(SYSTEM) is PublicWorks
    assert list(ENTITIES) == ["project"] and ENTITIES["project"].key == ("project_id",)
    emitted = {c.entity for c in take(500)}
    assert emitted == set(ENTITIES)


def test_same_seed_and_start_give_the_same_changes():
    assert essentials(take(3000, seed=5, start_seq=100)) == essentials(take(3000, seed=5, start_seq=100))
    assert essentials(take(200, seed=5)) != essentials(take(200, seed=6))
    assert records(take(200, seed=5, start_seq=0)) != records(take(200, seed=5, start_seq=1))


def records(batch: list[Change]) -> list[tuple]:
    return [(c.after["name"], c.after["village_code"], c.after["contract_value"]) for c in batch if c.op == "c"]


def test_same_seed_gives_the_same_records_whatever_the_time_of_day(monkeypatch):
    freeze(monkeypatch, datetime(2025, 3, 3, 3, 0, tzinfo=UTC))  # Monday 10:00 in Jakarta
    office_hours = essentials(take(1000, seed=3, clock_start=None))
    freeze(monkeypatch, datetime(2025, 3, 3, 13, 0, tzinfo=UTC))  # Monday 20:00 in Jakarta
    assert essentials(take(1000, seed=3, clock_start=None)) == office_hours


def test_positions_strictly_increase_from_start_seq():
    batch = take(2000, start_seq=41)
    assert [int(c.position) for c in batch] == list(range(42, 2042))
    assert all(len(c.position) == 12 for c in batch)
    assert all(c.key == c.after["project_id"] == f"DPUPR-{c.position}" for c in batch if c.op == "c")
    assert len({c.key for c in batch if c.op == "c"}) == sum(c.op == "c" for c in batch)


def test_every_change_passes_the_contract_and_encodes():
    batch = take(6000, seed=7)
    for change in batch:
        assert not bad_kinds(change), change
        event = envelope(change)
        fastavro.schemaless_writer(io.BytesIO(), VALUE_SCHEMAS[change.entity], event)
        record = clean(change)
        fastavro.schemaless_writer(io.BytesIO(), CLEAN_SCHEMAS[change.entity], record)
        assert record["village_name"] and record["kecamatan_code"] == change.after["village_code"][:8]


def test_statuses_follow_the_lifecycle_per_key():
    state: dict[str, dict] = {}
    finished: set[str] = set()
    seen = set()
    for change in take(12000, seed=11):
        after = change.after
        assert change.key not in finished, "a completed or terminated package changed again"
        if change.op == "c":
            assert change.key not in state and change.before is None and after["status"] == "PLANNED"
            assert after["physical_progress_pct"] == after["financial_progress_pct"] == 0
            assert after["contractor"] is None
        else:
            before = change.before
            assert change.op == "u" and before == state[change.key]
            assert after["status"] == before["status"] or after["status"] in TRANSITIONS[before["status"]]
            assert after["updated_at"] >= before["updated_at"]
            assert after["physical_progress_pct"] >= before["physical_progress_pct"]
            assert after["financial_progress_pct"] >= before["financial_progress_pct"]
            seen.add((before["status"], after["status"]))
        assert 0 <= after["financial_progress_pct"] <= after["physical_progress_pct"] <= 100
        assert after["planned_start"] < after["planned_end"]
        assert after["planned_end"].year <= after["fiscal_year"] + 1
        if after["status"] in ("CONTRACTED", "IN_PROGRESS", "COMPLETED"):
            assert after["contractor"]
        if after["status"] == "COMPLETED":
            assert after["physical_progress_pct"] == 100 and after["financial_progress_pct"] == 95
        if not TRANSITIONS[after["status"]]:
            finished.add(change.key)
        state[change.key] = after
    allowed = {(old, new) for old, news in TRANSITIONS.items() for new in news}
    assert seen == allowed | {("IN_PROGRESS", "IN_PROGRESS")}


def test_progress_rises_gradually_along_the_works():
    reports: dict[str, list[float]] = {}
    for change in take(12000, seed=4):
        if change.after["status"] in ("IN_PROGRESS", "COMPLETED") and change.op == "u":
            reports.setdefault(change.key, []).append(change.after["physical_progress_pct"])
    completed = [r for r in reports.values() if r[-1] == 100]
    assert len(completed) > 50
    # Weekly reports, not a jump: most completed packages report several times before the end.
    assert statistics.median(len(r) for r in completed) >= 6
    assert all(b >= a for r in completed for a, b in itertools.pairwise(r))


def test_changes_happen_in_office_hours_in_time_order():
    batch = take(5000, seed=2)
    times = [c.after["updated_at"] for c in batch]
    assert times == sorted(times)
    for moment in times:
        local = moment + JAKARTA
        assert local.weekday() < 5 and 8 <= local.hour < 16 and moment.tzinfo is not None


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 100_000))
def test_money_is_decimal_with_two_places_and_never_negative(seed):
    for change in take(600, seed=seed):
        value = change.after["contract_value"]
        assert isinstance(value, Decimal) and value.as_tuple().exponent == -2
        assert value > 0


def test_values_are_skewed_and_bridges_cost_billions():
    created = [c.after for c in take(12000, seed=8) if c.op == "c"]
    values = [c["contract_value"] for c in created]
    assert statistics.median(values) * 2 < statistics.mean(values)  # many small, a few very large
    categories = Counter(v["category"] for v in created)
    assert categories.most_common(1)[0][0] == "ROAD" and set(categories) == {
        "ROAD", "BRIDGE", "IRRIGATION", "DRAINAGE", "BUILDING", "WATER_SUPPLY"
    }  # fmt: skip
    roads = [v["contract_value"] for v in created if v["category"] == "ROAD"]
    bridges = [v["contract_value"] for v in created if v["category"] == "BRIDGE"]
    assert statistics.median(roads) < Decimal(500_000_000) < Decimal(1_000_000_000) < max(bridges)
    assert statistics.median(bridges) > statistics.median(roads)


def test_village_codes_exist_and_are_spread_with_a_skew():
    created = [c.after for c in take(12000, seed=9) if c.op == "c"]
    counts = Counter(c["village_code"] for c in created)
    assert all(REGIONS[code]["level"] == "village" for code in counts)
    assert len(counts) > 150
    top = sum(n for _, n in counts.most_common(len(VILLAGES) // 10))
    assert top > 0.25 * len(created)  # a tenth of the villages get over a quarter of the packages


def test_bad_ratio_produces_each_bad_kind_and_the_processor_rejects_them():
    batch = take(3000, seed=2, bad_ratio=0.3)
    kinds: Counter[str] = Counter()
    state: dict[str, dict] = {}
    for change in batch:
        problems = bad_kinds(change)
        if problems:
            kinds.update(problems)
            with pytest.raises(Rejected):
                clean(change)
            if change.op == "u":
                assert change.before == state[change.key]  # a bad update starts from the valid state
            continue
        clean(change)
        if change.op == "u":
            assert change.before == state[change.key]  # bad records never entered the state
        state[change.key] = change.after
    assert set(kinds) == {"unknown_village", "negative_amount", "impossible_transition", "missing_required"}
    assert 0.2 < sum(kinds.values()) / len(batch) < 0.4
    assert all(c["contract_value"] >= 0 for c in state.values())


def test_clean_records_are_stored_in_clickhouse(tmp_path):
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path}/ch")
    try:
        writer = TableWriter(client)
        batch = take(400, seed=5)
        for name, entity in ENTITIES.items():
            layout = ddl.layout_for(entity.table, RULES[name].clean_schema())
            client.command(ddl.create_table_sql(layout))
            layout = writer.layout(entity.table, 1, RULES[name].clean_schema())
            now = datetime.now(UTC)
            rows = [
                {**clean(c), "_topic": entity.clean_topic, "_partition": 0, "_offset": i, "ts_stored": now}
                for i, c in enumerate(c for c in batch if c.entity == name)
            ]
            writer.insert(entity.table, layout.names, [[row.get(n) for row in rows] for n in layout.names])
            got = client.query(
                f"SELECT count(), countIf(planned_end IS NULL), min(contract_value) >= 0 FROM {entity.table}"
            ).result_rows
            assert got == [(len(rows), 0, True)]
    finally:
        client.close()


class FakeRegistry:
    """schema_by_id and register, as the processor's Cleaner uses them."""

    def __init__(self) -> None:
        self.schemas: dict[int, tuple[dict[str, Any], Any]] = {}

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        for schema_id, (known, _) in self.schemas.items():
            if known == schema:
                return schema_id
        self.schemas[len(self.schemas) + 1] = (schema, fastavro.parse_schema(schema))
        return len(self.schemas)

    def schema_by_id(self, schema_id: int) -> tuple[dict[str, Any], Any]:
        return self.schemas[schema_id]


def test_the_processor_cleans_good_changes_and_dead_letters_bad_ones():
    """Through the wire format and the processor's Cleaner, as in the pipeline."""
    registry = FakeRegistry()
    ids = {
        name: registry.register(f"{e.cdc_topic}-value", entity_value_schema(e, SETTINGS))
        for name, e in ENTITIES.items()
    }
    catalog = load_catalog(SETTINGS.catalog_dir, SETTINGS.schemas_dir)
    cleaner = Cleaner(catalog, registry, REGIONS, SECRET, "dlq.processor")
    batch = take(1500, seed=6, bad_ratio=0.2)
    events = [
        RawEvent(ENTITIES[c.entity].cdc_topic, 0, i, c.key.encode(),
                 encode(ids[c.entity], registry.schema_by_id(ids[c.entity])[1], envelope(c)))
        for i, c in enumerate(batch)
    ]  # fmt: skip
    outputs: list[Output] = []
    ok, failed = cleaner.process(events, outputs.append)
    bad = [bool(bad_kinds(c)) for c in batch]
    assert (ok, failed) == (bad.count(False), bad.count(True)) and 0 < failed < ok
    for change, is_bad, output in zip(batch, bad, outputs, strict=True):
        if is_bad:
            assert output.topic == "dlq.processor" and dict(output.headers)["error.reason"].startswith(b"invalid: ")
        else:
            assert output.topic == ENTITIES[change.entity].clean_topic
            _, record = decode(registry, output.value)
            assert record["entity_key"] == change.key and record["source_position"] == change.position
