"""The simulated public works office (DPUPR): deterministic, lifecycle-respecting, valid under the
contract unless asked otherwise, and storable in ClickHouse."""

from __future__ import annotations

import io
import itertools
import statistics
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.rules import Rejected
from producers.emitter import Change
from simulators.budget_plan import WORKS, works_line_id
from simulators.infrastructure import PublicWorks
from simulators.kit import JAKARTA
from simulators.simulate import simulator_class
from tests.fakes import SimulatedSystem, breaks_lifecycle

MONDAY = datetime(2025, 1, 6, 1, 0, tzinfo=UTC)  # 08:00 in Jakarta
SIM = SimulatedSystem("sim-public-works", clock_start=MONDAY)
REGIONS, VILLAGES, SYSTEM, ENTITIES, RULES = SIM.regions, SIM.villages, SIM.system, SIM.entities, SIM.rules
VALUE_SCHEMAS, CLEAN_SCHEMAS = SIM.value_schemas, SIM.clean_schemas
TRANSITIONS = RULES["project"].transitions["status"]


def essentials(batch: list[Change]) -> list[tuple]:
    """Everything but ts_source (the wall clock at emission)."""
    return [(c.op, c.key, c.position, c.entity, c.before, c.after) for c in batch]


take, envelope, clean = SIM.take, SIM.envelope, SIM.clean


def bad_kinds(change: Change) -> set[str]:
    """What is wrong with a change, judged from the schema's rules (independently of clean_event)."""
    rules, state, kinds = RULES[change.entity], change.after, set()
    if any(state[r.name] not in REGIONS for r in rules.regions):
        kinds.add("unknown_village")
    if any(state[name] is not None and state[name] < 0 for name in rules.minimums):
        kinds.add("negative_amount")
    if any(state[name] is None for name in rules.required):
        kinds.add("missing_required")
    if change.op == "u" and breaks_lifecycle(change, rules.transitions):
        kinds.add("impossible_transition")
    return kinds


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


def test_positions_strictly_increase_from_start_seq():
    batch = take(2000, start_seq=41)
    assert [int(c.position) for c in batch] == list(range(42, 2042))
    assert all(len(c.position) == 12 for c in batch)
    assert all(c.key == c.after["project_id"] == f"DPUPR-{c.position}" for c in batch if c.op == "c")
    assert len({c.key for c in batch if c.op == "c"}) == sum(c.op == "c" for c in batch)


@pytest.mark.slow
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


def test_each_project_names_a_budget_line_the_budget_office_emits():
    """The DPUPR line of the project's category and fiscal year, as the simulated budget has it."""
    projects = {c.key: c.after for c in take(3000) if c.after}
    assert {p["fiscal_year"] for p in projects.values()} == {2025, 2026}  # packages planned from October: 2026
    budget = SimulatedSystem("sim-regional-budget", clock_start=MONDAY).take(7000)
    lines = {c.key: c.after for c in budget if c.entity == "budget_line" and c.op == "c"}
    for project in projects.values():
        line = lines[project["budget_line_id"]]
        assert project["budget_line_id"] == works_line_id(project["fiscal_year"], project["category"])
        assert (line["fiscal_year"], line["department_code"]) == (project["fiscal_year"], "DPUPR")
        assert line["activity_code"] == WORKS[project["category"]][0]
    assert {works_line_id(2025, category) for category in WORKS} <= {p["budget_line_id"] for p in projects.values()}


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


def test_clean_records_are_stored_in_clickhouse(chdb):
    batch = take(400, seed=5)
    for name, entity in ENTITIES.items():
        rows = SIM.store_clean(chdb, name, [c for c in batch if c.entity == name])
        got = chdb.query(
            f"SELECT count(), countIf(planned_end IS NULL), min(contract_value) >= 0 FROM {entity.table}"
        ).result_rows
        assert got == [(len(rows), 0, True)]
