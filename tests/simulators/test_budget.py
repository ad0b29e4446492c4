"""The simulated regency budget (BPKAD): deterministic, following the budget cycle, with seasonal
absorption, valid under the contract unless asked otherwise, and storable in ClickHouse."""

from __future__ import annotations

import io
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime
from decimal import Decimal

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.rules import Rejected
from producers.emitter import Change
from simulators.budget import RegionalBudget
from simulators.budget_plan import WORKS, fiscal_year_of, works_line_id
from simulators.kit import JAKARTA
from simulators.simulate import simulator_class
from tests.fakes import SimulatedSystem, breaks_lifecycle, freeze

FISCAL_YEAR = 2025
START = datetime(FISCAL_YEAR, 3, 3, tzinfo=UTC)  # the cycle begins with drafting on 1 September 2024
SIM = SimulatedSystem("sim-regional-budget", clock_start=START)
REGIONS, VILLAGES, SYSTEM, ENTITIES, RULES = SIM.regions, SIM.villages, SIM.system, SIM.entities, SIM.rules
VALUE_SCHEMAS, CLEAN_SCHEMAS = SIM.value_schemas, SIM.clean_schemas
TRANSITIONS = RULES["budget_line"].transitions["stage"]
# A cycle: drafting from September 2024, the fiscal year 2025 spent, next year's budget enacted.
CYCLE = 7000


CACHE: dict[int, list[Change]] = {}


def cycle(seed: int) -> list[Change]:
    """A full budget cycle, computed once per seed."""
    if seed not in CACHE:
        CACHE[seed] = take(CYCLE, seed=seed)
    return CACHE[seed]


def essentials(batch: list[Change]) -> list[tuple]:
    """Everything but ts_source (the wall clock at emission)."""
    return [(c.op, c.key, c.position, c.entity, c.before, c.after) for c in batch]


take, envelope, clean = SIM.take, SIM.envelope, SIM.clean


def bad_kinds(change: Change) -> set[str]:
    """What is wrong with a change, judged from the schema's rules (independently of clean_event)."""
    rules, state, kinds = RULES[change.entity], change.after, set()
    if any(state[name] is not None and state[name] < 0 for name in rules.minimums):
        kinds.add(f"negative_amount:{change.entity}")
    if any(state[name] is None for name in rules.required):
        kinds.add(f"missing_required:{change.entity}")
    if change.op == "u" and breaks_lifecycle(change, rules.transitions):
        kinds.add("impossible_transition")
    return kinds


def ceiling(line: dict) -> Decimal:
    return line["revised_allocation"] if line["revised_allocation"] is not None else line["allocation"]


def test_the_catalog_names_this_simulator_and_its_entities():
    assert SYSTEM.department == "BPKAD" and SYSTEM.domain == "budget"
    assert simulator_class(SYSTEM) is RegionalBudget
    assert ENTITIES["budget_line"].key == ("line_id",) and ENTITIES["realisation"].key == ("realisation_id",)
    assert {c.entity for c in cycle(1)} == set(ENTITIES)


def test_same_seed_and_start_give_the_same_changes():
    assert essentials(take(3000, seed=5, start_seq=100)) == essentials(take(3000, seed=5, start_seq=100))
    assert essentials(take(300, seed=5)) != essentials(take(300, seed=6))

    def lines(batch: list[Change]) -> list[tuple]:
        return [(c.after["account_code"], c.after["allocation"]) for c in batch if c.op == "c"]

    assert lines(take(300, seed=5, start_seq=0)) != lines(take(300, seed=5, start_seq=1))


def test_positions_strictly_increase_from_start_seq():
    batch = take(3000, start_seq=41)
    assert [int(c.position) for c in batch] == list(range(42, 3042))
    assert all(len(c.position) == 12 for c in batch)
    for change in batch:
        if change.entity == "budget_line" and change.op == "c":
            works = {works_line_id(change.after["fiscal_year"], category) for category in WORKS}
            assert change.key == change.after["line_id"]
            assert change.key == f"BPKAD-{change.position}" or change.key in works
        elif change.entity == "realisation":
            assert change.op == "c" and change.key == change.after["realisation_id"] == f"SP2D-{change.position}"


@pytest.mark.slow
def test_every_change_passes_the_contract_and_encodes():
    for change in cycle(1):
        assert not bad_kinds(change), change
        fastavro.schemaless_writer(io.BytesIO(), VALUE_SCHEMAS[change.entity], envelope(change))
        fastavro.schemaless_writer(io.BytesIO(), CLEAN_SCHEMAS[change.entity], clean(change))


def test_budget_lines_follow_the_budget_cycle():
    state: dict[str, dict] = {}
    seen = set()
    for change in cycle(2):
        if change.entity != "budget_line":
            continue
        after = change.after
        if change.op == "c":
            assert change.key not in state and change.before is None and after["stage"] == "DRAFT"
            assert after["revised_allocation"] is None
        else:
            before = change.before
            assert change.op == "u" and before == state[change.key]
            assert after["stage"] == before["stage"] or after["stage"] in TRANSITIONS[before["stage"]]
            assert after["updated_at"] >= before["updated_at"]
            if before["stage"] != "DRAFT":
                assert after["allocation"] == before["allocation"]  # enacted allocations change by revision
            seen.add((before["stage"], after["stage"]))
        assert (after["revised_allocation"] is not None) == (after["stage"] == "REVISED")
        local = after["updated_at"] + JAKARTA
        if after["stage"] == "DRAFT":
            assert (local.year, local.month) in ((after["fiscal_year"] - 1, 9), (after["fiscal_year"] - 1, 10),
                                                 (after["fiscal_year"] - 1, 11))  # fmt: skip
        elif after["stage"] == "ENACTED" and change.op == "u" and change.before["stage"] == "DRAFT":
            assert (local.year, local.month) == (after["fiscal_year"] - 1, 12)
        state[change.key] = after
    assert seen == {("DRAFT", "DRAFT"), ("DRAFT", "ENACTED"), ("ENACTED", "REVISED"), ("REVISED", "REVISED")}


def test_realisations_are_charged_to_enacted_lines_within_their_ceiling():
    lines: dict[str, dict] = {}
    spent: defaultdict[str, Decimal] = defaultdict(Decimal)
    numbers = set()
    for change in cycle(3):
        if change.entity == "budget_line":
            lines[change.key] = change.after
            assert spent[change.key] <= ceiling(change.after)  # a revision never goes below what is spent
            continue
        r = change.after
        line = lines[r["line_id"]]
        assert line["stage"] in ("ENACTED", "REVISED")
        assert r["fiscal_year"] == line["fiscal_year"] and r["department_code"] == line["department_code"]
        local = r["spent_at"] + JAKARTA
        assert (local.year, local.month) == (r["fiscal_year"], r["month"])
        assert local.weekday() < 5 and 8 <= local.hour < 16
        assert r["document_number"] not in numbers
        assert re.fullmatch(r"35\.22/04\.0/\d{6}/(LS|GU|UP|TU)/[\d.]+/M/\d{1,2}/\d{4}", r["document_number"])
        numbers.add(r["document_number"])
        spent[r["line_id"]] += r["amount"]
        assert spent[r["line_id"]] <= ceiling(line)
    assert len(numbers) > 2000


def test_realisation_is_low_in_the_first_quarter_and_peaks_in_december():
    amounts: defaultdict[int, Decimal] = defaultdict(Decimal)
    counts: Counter[int] = Counter()
    for change in cycle(1):
        if change.entity == "realisation" and change.after["fiscal_year"] == FISCAL_YEAR:
            amounts[change.after["month"]] += change.after["amount"]
            counts[change.after["month"]] += 1
    assert set(amounts) == set(range(1, 13))  # the whole fiscal year was spent
    total = sum(amounts.values())
    q1 = sum(amounts[m] for m in (1, 2, 3)) / total
    q4 = sum(amounts[m] for m in (10, 11, 12)) / total
    first_half = sum(amounts[m] for m in range(1, 7)) / total
    assert q1 < Decimal("0.15") < Decimal("0.35") < q4 and first_half < Decimal("0.45")
    assert max(amounts, key=amounts.get) == 12 and amounts[12] > 2 * amounts[1] + amounts[2] + amounts[3]
    assert counts[12] == max(counts.values()) and sum(counts[m] for m in (1, 2, 3)) < counts[11] + counts[12]


def test_absorption_stays_below_the_budget():
    lines: dict[str, dict] = {}
    spent = Decimal(0)
    for change in cycle(1):
        if change.entity == "budget_line":
            lines[change.key] = change.after
        elif change.after["fiscal_year"] == FISCAL_YEAR:
            spent += change.after["amount"]
    budget_total = sum(ceiling(line) for line in lines.values() if line["fiscal_year"] == FISCAL_YEAR)
    assert Decimal("0.80") < spent / budget_total < Decimal("0.99")


def test_lines_cover_the_regency_offices_with_skewed_allocations():
    created = [c.after for c in cycle(1) if c.entity == "budget_line" and c.op == "c"]
    year = [c for c in created if c["fiscal_year"] == FISCAL_YEAR]
    departments = {c["department_code"] for c in year}
    assert len(departments) >= 35 and {"DISDIK", "DINKES", "DPUPR", "DPMPTSP", "BAPPEDA", "DINSOS"} <= departments
    assert all(re.fullmatch(r"5\.\d\.\d{2}\.\d{2}\.\d{2}\.\d{4}", c["account_code"]) for c in year)
    assert all(c["activity_code"].startswith(c["programme_code"] + ".") for c in year)
    allocations = sorted((c["allocation"] for c in year), reverse=True)
    total = sum(allocations)
    assert sum(allocations[: len(allocations) // 10]) > total / 2  # a tenth of the lines hold over half
    assert Decimal(3 * 10**12) < total < Decimal(10 * 10**12)  # trillions of Rupiah, as a regency's APBD


KEYS = {year: {category: works_line_id(year, category) for category in WORKS} for year in (2025, 2026)}


def test_each_fiscal_year_has_one_public_works_line_per_project_category():
    created = [c.after for c in cycle(1) if c.entity == "budget_line" and c.op == "c"]
    for year in (FISCAL_YEAR, FISCAL_YEAR + 1):
        works = {c["line_id"]: c for c in created if c["line_id"] in KEYS[year].values()}
        assert set(works) == set(KEYS[year].values())  # every category's line, once
        for category, key in KEYS[year].items():
            line = works[key]
            activity, account, _ = WORKS[category]
            assert (line["fiscal_year"], line["department_code"]) == (year, "DPUPR")
            assert (line["activity_code"], line["account_code"]) == (activity, account)
            assert line["programme_code"] == activity[:7] and line["activity_name"] and line["allocation"] > 0
    assert len({c["line_id"] for c in created}) == len(created)  # keys never repeat


def test_the_default_fiscal_year_is_the_one_being_planned_today(monkeypatch):
    """From October the draft of the next budget is in: the public-works office plans for it too."""
    assert fiscal_year_of(datetime(2026, 9, 30, 16, 59, tzinfo=UTC)) == 2026  # 23:59 in Jakarta
    assert fiscal_year_of(datetime(2026, 9, 30, 17, 0, tzinfo=UTC)) == 2027  # 1 October in Jakarta
    freeze(monkeypatch, datetime(2026, 12, 1, 3, 0, tzinfo=UTC))
    first = next(c for c in take(500, clock_start=None) if c.entity == "budget_line")
    assert first.after["fiscal_year"] == 2027


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 100_000))
def test_money_is_decimal_with_two_places_and_never_negative(seed):
    for change in take(2500, seed=seed):
        after = change.after
        names = ("allocation", "revised_allocation") if change.entity == "budget_line" else ("amount",)
        for value in (after[n] for n in names if after[n] is not None):
            assert isinstance(value, Decimal) and value.as_tuple().exponent == -2
            assert value >= 0


def test_bad_ratio_produces_each_bad_kind_and_the_processor_rejects_them():
    batch = take(4000, seed=2, bad_ratio=0.3)
    kinds: Counter[str] = Counter()
    lines: dict[str, dict] = {}
    realisations = 0
    for change in batch:
        problems = bad_kinds(change)
        if problems:
            kinds.update(problems)
            with pytest.raises(Rejected):
                clean(change)
            if change.op == "u":
                assert change.before == lines[change.key]  # a bad update starts from the valid state
            continue
        clean(change)
        if change.entity == "budget_line":
            if change.op == "u":
                assert change.before == lines[change.key]  # bad records never entered the state
            lines[change.key] = change.after
        else:
            assert change.after["line_id"] in lines
            realisations += 1
    assert set(kinds) == {
        "negative_amount:budget_line",
        "negative_amount:realisation",
        "missing_required:budget_line",
        "missing_required:realisation",
        "impossible_transition",
    }
    assert 0.2 < sum(kinds.values()) / len(batch) < 0.4
    assert realisations > 500


def test_clean_records_are_stored_in_clickhouse(chdb):
    batch = take(2000, seed=5)
    for name, entity in ENTITIES.items():
        rows = SIM.store_clean(chdb, name, [c for c in batch if c.entity == name])
        assert rows, name
        money = "allocation" if name == "budget_line" else "amount"
        got = chdb.query(f"SELECT count(), sum({money}) FROM {entity.table}").result_rows
        assert got == [(len(rows), sum(r[money] for r in rows))]
