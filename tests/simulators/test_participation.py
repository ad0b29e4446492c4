"""The simulated complaint channels (DISKOMINFO): deterministic, lifecycle-respecting, realistic in
timing and channel mix, valid for the processor unless asked otherwise."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import simulators.participation as participation
from producers.emitter import Change
from simulators.kit import UNKNOWN_VILLAGE, local
from sinks import ddl
from tests.fakes import SimulatedSystem, breaks_lifecycle, freeze

MONDAY = datetime(2025, 1, 6, 1, 0, tzinfo=UTC)  # 08:00 in Jakarta
SIM = SimulatedSystem("sim-complaints", clock_start=MONDAY)
SYSTEM, REGIONS, VILLAGES = SIM.system, SIM.regions, SIM.villages
ENTITY = SYSTEM.entities[0]
RULES = SIM.rules[ENTITY.name]
TRANSITIONS = RULES.transitions["status"]
PII = {"complainant_name", "complainant_phone", "complainant_nik"}
STAFF_MOVES = {"VERIFIED", "IN_PROGRESS", "RESOLVED", "REJECTED"}


def office_hours(at: datetime) -> bool:
    return local(at).weekday() < 5 and 8 <= local(at).hour < 16


def essentials(batch: list[Change]) -> list[tuple]:
    return [(c.op, c.key, c.position, tuple(sorted(c.after.items()))) for c in batch]


take, clean = SIM.take, SIM.clean_from_the_wire


def bad_kind(change: Change) -> str | None:
    after = change.after
    if after["village_code"] == UNKNOWN_VILLAGE:
        return "unknown_village"
    if after["resolution_due_at"] is None:
        return "missing_required"
    if breaks_lifecycle(change, {"status": TRANSITIONS}):
        return "bad_transition"
    return None


def test_the_catalog_names_the_simulator_and_the_entity():
    assert (SYSTEM.system, SYSTEM.department, SYSTEM.domain) == ("sim-complaints", "DISKOMINFO", "participation")
    assert SYSTEM.adapter == {"kind": "simulator", "simulator": "simulators.participation:ComplaintChannel"}
    assert [(e.name, e.key) for e in SYSTEM.entities] == [("complaint", ("ticket_id",))]
    assert RULES.pii == PII
    assert RULES.initial == {"status": ["RECEIVED"]}
    assert {k: tuple(v) for k, v in TRANSITIONS.items()} == participation.TRANSITIONS


def test_same_seed_and_start_give_the_same_changes(monkeypatch):
    freeze(monkeypatch, datetime(2025, 3, 3, 3, 0, tzinfo=UTC))
    assert take(2000, seed=5, start_seq=100) == take(2000, seed=5, start_seq=100)
    assert take(300, seed=5, clock_start=None) == take(300, seed=5, clock_start=None)
    assert essentials(take(50, seed=5)) != essentials(take(50, seed=6))
    assert essentials(take(50, seed=5, start_seq=0)) != essentials(take(50, seed=5, start_seq=1))


def test_positions_strictly_increase_from_start_seq():
    batch = take(2000, start_seq=41)
    assert [int(c.position) for c in batch] == list(range(42, 2042))
    assert all(len(c.position) == 12 for c in batch)
    assert all(c.entity == "complaint" and c.key == c.after["ticket_id"] for c in batch)
    assert all(c.key == f"ADUAN-{c.position}" for c in batch if c.op == "c")


@pytest.mark.slow
def test_statuses_follow_the_lifecycle_per_key():
    state: dict[str, dict] = {}
    finished: set[str] = set()
    seen = set()
    last = MONDAY
    for change in take(20000, seed=11):
        after = change.after
        assert change.key not in finished, "a closed or rejected complaint changed again"
        assert after["updated_at"] >= last, "the business timeline runs forward"
        last = after["updated_at"]
        if change.op == "c":
            assert change.key not in state and change.before is None and after["status"] == "RECEIVED"
            assert after["updated_at"] == after["received_at"] < after["resolution_due_at"]
        else:
            assert change.op == "u" and change.before == state[change.key]
            assert after["status"] in TRANSITIONS[change.before["status"]]
            unchanged = {"status", "updated_at", "first_response_at", "resolved_at"}
            assert {k: v for k, v in after.items() if k not in unchanged} == {
                k: v for k, v in change.before.items() if k not in unchanged
            }
            seen.add((change.before["status"], after["status"]))
            if after["status"] in STAFF_MOVES:
                assert office_hours(after["updated_at"]), "staff work in office hours"
        assert (after["first_response_at"] is None) == (after["status"] == "RECEIVED")
        assert (after["resolved_at"] is None) == (after["status"] not in ("RESOLVED", "CLOSED"))
        if after["first_response_at"]:
            assert after["received_at"] < after["first_response_at"] <= after["updated_at"]
        if after["resolved_at"]:
            assert after["first_response_at"] < after["resolved_at"] <= after["updated_at"]
        if not TRANSITIONS[after["status"]]:
            finished.add(change.key)
        state[change.key] = after
    assert seen == {(old, new) for old, moves in TRANSITIONS.items() for new in moves}


def test_evenings_and_weekends_bring_whatsapp_and_social_media_and_no_walk_ins():
    complaints = [c.after for c in take(20000, seed=4) if c.op == "c"]
    inside = Counter(c["channel"] for c in complaints if office_hours(c["received_at"]))
    outside = Counter(c["channel"] for c in complaints if not office_hours(c["received_at"]))
    assert inside["WALK_IN"] > 0 and outside["WALK_IN"] == 0
    share = {
        name: (counts["WHATSAPP"] + counts["SOCIAL_MEDIA"]) / sum(counts.values())
        for name, counts in (("inside", inside), ("outside", outside))
    }
    assert share["outside"] > share["inside"] + 0.2
    hours = Counter(local(c["received_at"]).hour for c in complaints)
    assert hours[9] > 5 * hours[3] and hours[20] > hours[17]  # the working day, and an evening peak
    days = Counter(local(c["received_at"]).weekday() for c in complaints)
    assert days[5] + days[6] < 0.8 * (days[0] + days[1])


def test_response_times_are_hours_resolution_takes_days_by_category():
    first, resolution = defaultdict(list), defaultdict(list)
    for change in take(30000, seed=6):
        after = change.after
        if change.op == "u" and change.before["status"] == "RECEIVED":
            first[after["category"]].append((after["first_response_at"] - after["received_at"]) / timedelta(hours=1))
        if change.op == "u" and after["status"] == "RESOLVED":
            resolution[after["category"]].append((after["resolved_at"] - after["received_at"]) / timedelta(days=1))
    assert set(first) == set(resolution) == set(participation.CATEGORIES)
    median_first = {k: statistics.median(v) for k, v in first.items()}
    median_resolution = {k: statistics.median(v) for k, v in resolution.items()}
    assert all(1 < hours < 48 for hours in median_first.values())
    assert all(1 < days < 30 for days in median_resolution.values())
    assert median_resolution["ROADS"] > 2 * median_resolution["ADMINISTRATION"]
    assert median_first["HEALTH"] < median_first["ENVIRONMENT"]
    overdue = sum(d > participation.CATEGORIES[k][4] for k, v in resolution.items() for d in v)
    assert 0.05 < overdue / sum(len(v) for v in resolution.values()) < 0.35


@pytest.mark.slow
def test_categories_follow_the_seasons_and_go_to_the_right_office():
    complaints = [c.after for c in take(70000, seed=8) if c.op == "c"]
    months = defaultdict(Counter)
    for c in complaints:
        months[local(c["received_at"]).month][c["category"]] += 1
        assert c["department_responsible"] in participation.CATEGORIES[c["category"]][1]
    share = {m: {k: n / sum(c.values()) for k, n in c.items()} for m, c in months.items()}
    assert share[7]["EDUCATION"] > 1.8 * share[3]["EDUCATION"]  # school admission
    assert share[1]["ROADS"] > 1.6 * share[8]["ROADS"]  # rainy season
    assert len({c["village_code"] for c in complaints}) > 400


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 100_000))
def test_village_codes_exist_and_personal_data_is_plausible(seed):
    for change in take(300, seed=seed):
        after = change.after
        assert REGIONS[after["village_code"]]["level"] == "village"
        if after["complainant_nik"] is not None:
            nik = after["complainant_nik"]
            assert len(nik) == 16 and nik.isdigit() and nik[4:6] == after["village_code"].split(".")[2]
        if after["channel"] == "WHATSAPP":
            assert after["complainant_phone"] is not None
        assert after["complainant_name"] not in after["summary"]


@pytest.mark.slow
def test_every_change_passes_the_processor_contract():
    batch = take(8000, seed=7)
    for change in batch:
        record = clean(change)
        assert record["village_name"] and record["kecamatan_code"] == change.after["village_code"][:8]
        for name in PII:
            if change.after[name] is not None:
                assert record[name] != change.after[name] and len(record[name]) == 32


def test_no_bad_records_without_bad_ratio():
    assert not [c for c in take(10000, seed=2) if bad_kind(c)]


def test_clickhouse_table_can_be_created(chdb):
    layout = ddl.layout_for(ENTITY.table, RULES.clean_schema())
    chdb.command(ddl.create_table_sql(layout))
    described = {row[0]: row[1] for row in chdb.query(f"DESCRIBE TABLE `{layout.name}`").result_rows}
    assert described["status"] == "LowCardinality(String)"
    assert described["complainant_nik"] == "Nullable(String)"
    assert described["resolution_due_at"] == "Nullable(DateTime64(3, 'UTC'))"
    assert described["kecamatan_name"] == "Nullable(String)"
