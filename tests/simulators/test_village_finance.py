"""The simulated village finance system (DPMD, Siskeudes): deterministic, desa only, money that
follows the disbursements, lifecycles that hold, valid for the processor unless asked otherwise."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from producers.emitter import Change
from simulators.kit import UNKNOWN_VILLAGE, local
from simulators.village_finance import VillageFinance
from sinks import ddl
from tests.fakes import SimulatedSystem, breaks_lifecycle, freeze

JANUARY = datetime(2025, 1, 2, 1, 0, tzinfo=UTC)  # Thursday 08:00 in Jakarta
SIM = SimulatedSystem("sim-village-finance", clock_start=JANUARY)
SETTINGS, SYSTEM, ENTITIES, RULES = SIM.settings, SIM.system, SIM.entities, SIM.rules
REGIONS, VILLAGES = SIM.regions, SIM.villages
with SETTINGS.regions_csv.open(newline="", encoding="utf-8") as _fh:
    LEVELS = {row["code"]: row["level"] for row in csv.DictReader(_fh)}
DESA = {code for code, level in LEVELS.items() if level == "desa"}
TRANSITIONS = RULES["village_fund"].transitions["stage"]


def when(change: Change) -> datetime:
    return change.after["updated_at"] if change.entity == "village_fund" else change.after["spent_at"]


def essentials(batch: list[Change]) -> list[tuple]:
    return [(c.op, c.key, c.position, c.entity, tuple(sorted(c.after.items()))) for c in batch]


take, clean = SIM.take, SIM.clean_from_the_wire


def bad_kind(change: Change) -> str | None:
    after = change.after
    if after["village_code"] == UNKNOWN_VILLAGE:
        return "unknown_village"
    if after.get("amount", 0) < 0 or after.get("allocation", 0) < 0:
        return "negative_amount"
    if change.entity == "village_spending" and after["fund_source"] is None:
        return "missing_required"
    if breaks_lifecycle(change, {"stage": TRANSITIONS}):
        return "bad_transition"
    return None


def test_the_catalog_names_the_simulator_and_both_entities():
    assert SYSTEM.department == "DPMD" and SYSTEM.domain == "village_finance"
    assert SYSTEM.adapter == {"kind": "simulator", "simulator": "simulators.village_finance:VillageFinance"}
    assert {name: e.key for name, e in ENTITIES.items()} == {
        "village_fund": ("fund_id",),
        "village_spending": ("spending_id",),
    }
    assert RULES["village_spending"].pii == {"recipient_name"}
    assert RULES["village_fund"].initial == {"stage": ["ALLOCATED"]}


@pytest.mark.slow
def test_same_seed_and_start_give_the_same_changes(monkeypatch):
    freeze(monkeypatch, datetime(2025, 3, 3, 3, 0, tzinfo=UTC))
    assert take(3000, seed=5, start_seq=100) == take(3000, seed=5, start_seq=100)
    assert take(300, seed=5, clock_start=None) == take(300, seed=5, clock_start=None)
    assert essentials(take(50, seed=5)) != essentials(take(50, seed=6))
    assert essentials(take(50, seed=5, start_seq=0)) != essentials(take(50, seed=5, start_seq=1))


def test_positions_strictly_increase_from_start_seq():
    batch = take(3000, start_seq=41)
    assert [int(c.position) for c in batch] == list(range(42, 3042))
    assert all(len(c.position) == 12 for c in batch)
    prefix = {"village_fund": ("DPMD-FUND-", "fund_id"), "village_spending": ("DPMD-SPD-", "spending_id")}
    for change in batch:
        start, key_field = prefix[change.entity]
        assert change.key == change.after[key_field]
        if change.op == "c":
            assert change.key == f"{start}{change.position}"
    creates = [c.key for c in batch if c.op == "c"]
    assert len(creates) == len(set(creates))


@pytest.mark.parametrize(
    "clock_start", [JANUARY, datetime(2025, 8, 15, 1, tzinfo=UTC), datetime(2025, 12, 24, 1, tzinfo=UTC)]
)
def test_every_entity_of_the_catalog_is_emitted_whenever_the_run_starts(clock_start):
    batch = take(8000, clock_start=clock_start)
    assert {c.entity for c in batch} == set(ENTITIES)
    assert {c.op for c in batch if c.entity == "village_fund"} == {"c", "u"}


def test_only_desa_over_all_of_them_and_skewed():
    batch = take(20000)
    codes = Counter(c.after["village_code"] for c in batch)
    assert set(codes) <= DESA, "a kelurahan got village funds"
    assert len(codes) == len(DESA) == 419
    funded = {c.after["village_code"] for c in batch if c.entity == "village_fund"}
    assert funded == DESA
    spending = Counter(c.after["village_code"] for c in batch if c.entity == "village_spending")
    counts = sorted(spending.values())
    assert counts[-len(counts) // 10] > 2 * counts[len(counts) // 10]  # busy villages spend far more often


def test_kelurahan_and_unknown_codes_are_left_out():
    kelurahan = sorted(code for code, level in LEVELS.items() if level == "kelurahan")
    sim = VillageFinance(kelurahan + VILLAGES[:5], clock_start=JANUARY)
    assert sim.villages == [v for v in VILLAGES[:5] if v in DESA]
    with pytest.raises(ValueError, match="desa"):
        VillageFinance(kelurahan)


@pytest.mark.slow
def test_funds_follow_the_stages_and_money_follows_the_funds():
    state: dict[str, dict] = {}
    available: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    seen = set()
    last = JANUARY
    for change in take(40000, seed=11):
        after = change.after
        assert when(change) >= last, "the business timeline runs forward"
        last = when(change)
        assert after["fiscal_year"] == local(last).year
        if change.entity == "village_spending":
            assert change.op == "c" and change.before is None
            key = (after["village_code"], after["fund_source"])
            available[key] -= after["amount"]
            assert available[key] >= 0, "spent more than was disbursed"
            assert (after["recipient_name"] is not None) == (after["activity"] == "BLT Dana Desa")
            if after["recipient_name"] is not None:
                assert after["field"] == "DISASTER_EMERGENCY" and after["fund_source"] == "DD"
                assert after["amount"] == Decimal("1200000.00")
            continue
        if change.op == "c":
            assert change.key not in state and change.before is None
            assert after["stage"] == "ALLOCATED" and after["disbursed"] == 0
        else:
            assert change.op == "u" and change.before == state[change.key]
            assert after["stage"] in TRANSITIONS[change.before["stage"]]
            assert {k: v for k, v in after.items() if k not in ("stage", "disbursed", "updated_at")} == {
                k: v for k, v in change.before.items() if k not in ("stage", "disbursed", "updated_at")
            }
            assert change.before["disbursed"] < after["disbursed"] <= after["allocation"]
            available[(after["village_code"], after["source"])] += after["disbursed"] - change.before["disbursed"]
            seen.add((after["source"], change.before["stage"], after["stage"]))
            if after["stage"] == "TAHAP_3" or (after["source"] in ("BHPRD", "BANKEU") and after["stage"] == "TAHAP_2"):
                assert after["disbursed"] == after["allocation"]
        state[change.key] = after
    assert ("DD", "ALLOCATED", "TAHAP_1") in seen and ("DD", "TAHAP_2", "TAHAP_3") in seen
    assert not [s for s in seen if s[0] in ("BHPRD", "BANKEU") and s[2] == "TAHAP_3"]  # paid in two halves


@pytest.mark.slow
def test_a_year_looks_like_a_village_budget_year():
    batch = [c for c in take(60000, seed=4) if c.after["fiscal_year"] == 2025]
    allocations = {c.key: c.after for c in batch if c.entity == "village_fund" and c.op == "c"}
    dd = [f["allocation"] for f in allocations.values() if f["source"] == "DD"]
    assert len(dd) == 419 and all(Decimal(800_000_000) <= a <= Decimal(1_500_000_000) for a in dd)
    per_village = Counter(f["village_code"] for f in allocations.values())
    assert all(3 <= n <= 5 for n in per_village.values())
    # Dana Desa stage 1 early in the year, stage 3 in the second half.
    months = defaultdict(list)
    for c in batch:
        if c.op == "u" and c.after["source"] == "DD":
            months[c.after["stage"]].append(local(c.after["updated_at"]).month)
    assert sorted(months["TAHAP_1"])[len(months["TAHAP_1"]) // 2] <= 3
    assert min(months["TAHAP_3"]) >= 7
    spending = [c.after for c in batch if c.entity == "village_spending"]
    by_field = Counter(s["field"] for s in spending)
    assert set(by_field) == {"GOVERNANCE", "DEVELOPMENT", "COMMUNITY", "EMPOWERMENT", "DISASTER_EMERGENCY"}
    money = defaultdict(Decimal)
    for s in spending:
        money[s["field"]] += s["amount"]
    assert max(money, key=money.get) == "DEVELOPMENT"
    lines = Counter(local(s["spent_at"]).month for s in spending if s["recipient_name"] is None)
    assert 5 * lines[1] < lines[3] < lines[6] and lines[12] > lines[3]  # budgets approved, money arrives
    for s in spending:
        at = local(s["spent_at"])
        assert at.weekday() < 5 and 8 <= at.hour < (16 if s["recipient_name"] is None else 17)


@pytest.mark.slow
@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 100_000))
def test_money_is_decimal_with_two_places_and_never_negative(seed):
    for change in take(2500, seed=seed):
        for name in ("allocation", "disbursed", "amount"):
            if name in change.after:
                value = change.after[name]
                assert isinstance(value, Decimal) and value.as_tuple().exponent == -2
                assert value >= 0


@pytest.mark.slow
def test_every_change_passes_the_processor_contract():
    batch = take(12000, seed=7, clock_start=datetime(2025, 3, 10, 1, tzinfo=UTC))
    assert {c.entity for c in batch} == set(ENTITIES)
    for change in batch:
        record = clean(change)
        assert record["village_name"] and record["kecamatan_code"] == change.after["village_code"][:8]
        if change.entity == "village_spending" and change.after["recipient_name"] is not None:
            assert record["recipient_name"] != change.after["recipient_name"]
            assert len(record["recipient_name"]) == 32


@pytest.mark.slow
def test_no_bad_records_without_bad_ratio():
    assert not [c for c in take(20000, seed=2) if bad_kind(c)]


@pytest.mark.parametrize("name", sorted(ENTITIES))
def test_clickhouse_tables_can_be_created(chdb, name):
    layout = ddl.layout_for(ENTITIES[name].table, RULES[name].clean_schema())
    chdb.command(ddl.create_table_sql(layout))
    described = {row[0]: row[1] for row in chdb.query(f"DESCRIBE TABLE `{layout.name}`").result_rows}
    assert described["village_name"] == "Nullable(String)"
    assert described["amount" if name == "village_spending" else "allocation"] == "Decimal(18, 2)"
