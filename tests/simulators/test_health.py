"""The simulated health services (DINKES and the RSUD): deterministic, lifecycle-respecting, with
busy mornings and a plausible bed census, valid against the contract unless asked otherwise, and
storable in ClickHouse."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.rules import Rejected
from producers.emitter import Change
from simulators.health import HealthServices
from simulators.kit import JAKARTA, UNKNOWN_VILLAGE
from tests.fakes import SimulatedSystem, avro_bytes, breaks_lifecycle, freeze, states

MONDAY = datetime(2025, 3, 3, tzinfo=UTC)  # 07:00 in Jakarta
SIM = SimulatedSystem("sim-health", clock_start=MONDAY)
REGIONS, VILLAGES, ENTITIES, RULES = SIM.regions, SIM.villages, SIM.entities, SIM.rules
ENVELOPES, CLEAN = SIM.value_schemas, SIM.clean_schemas
STATUS = next(f for f in ENTITIES["visit"].payload_schema()["fields"] if f["name"] == "status")
TRANSITIONS = STATUS["transitions"]
WARDS = 10
take, envelope, clean, encode, essentials = SIM.take, SIM.envelope, SIM.clean, avro_bytes, states


def bad_kind(change: Change) -> str | None:
    """What is wrong with a change, found by looking at it (independently of the contract)."""
    after = change.after
    if change.entity == "bed_occupancy":
        return "negative_count" if after["beds_occupied"] < 0 else None
    if after["facility_village_code"] == UNKNOWN_VILLAGE:
        return "unknown_village"
    if after["fee"] < 0:
        return "negative_amount"
    if after["patient_nik"] is None:
        return "missing_required"
    if breaks_lifecycle(change, {"status": TRANSITIONS}):
        return "impossible_transition"
    return None


def test_same_seed_and_start_give_the_same_changes(monkeypatch):
    freeze(monkeypatch, datetime(2025, 3, 3, 3, 0, tzinfo=UTC))
    assert take(1500, seed=5, start_seq=100, clock_start=None) == take(1500, seed=5, start_seq=100, clock_start=None)
    assert [c.after for c in take(200, seed=5)] != [c.after for c in take(200, seed=6)]
    assert [c.after for c in take(50, seed=5, start_seq=1)] != [c.after for c in take(50, seed=5, start_seq=2)]


def test_a_fresh_start_snapshots_the_wards_first():
    batch = take(WARDS + 50)
    snapshot = batch[:WARDS]
    assert all(c.op == "r" and c.snapshot and c.entity == "bed_occupancy" and c.before is None for c in snapshot)
    assert len({c.key for c in snapshot}) == WARDS
    assert {c.after["hospital_name"] for c in snapshot} == {"RSUD Dr. R. Sosodoro Djatikoesoemo"}
    assert {c.after["ward_class"] for c in snapshot} == {"VIP", "I", "II", "III", "ICU"}
    assert not any(c.snapshot or c.op == "r" for c in batch[WARDS:])
    assert next(HealthServices(VILLAGES, start_seq=500, clock_start=MONDAY).changes()).op != "r"


def test_positions_strictly_increase_from_start_seq():
    batch = take(1000, start_seq=41)
    assert [int(c.position) for c in batch] == list(range(42, 1042))
    assert all(len(c.position) == 12 for c in batch)
    creates = [c for c in batch if c.op == "c"]
    assert creates and all(c.key == c.after["visit_id"] == f"DINKES-{c.position}" for c in creates)


def test_every_catalog_entity_is_emitted():
    assert {c.entity for c in take(200)} == set(ENTITIES) == {"visit", "bed_occupancy"}


@pytest.mark.slow
def test_without_bad_ratio_every_change_is_clean_and_encodes():
    for change in take(6000, seed=4):
        encode(ENVELOPES[change.entity], envelope(change))
        record = clean(change)
        encode(CLEAN[change.entity], record)
        assert record["entity_key"] == change.key
        assert (record["ts_source"], record["source_position"]) == (change.ts_source, change.position)
        if change.entity == "visit":
            assert record["patient_nik"] != change.after["patient_nik"]  # pseudonymised
            assert (record["patient_phone"] is None) == (change.after["patient_phone"] is None)
            assert record["facility_kecamatan_code"] == change.after["facility_village_code"].rsplit(".", 1)[0]


@pytest.mark.slow
def test_bad_ratio_produces_each_bad_kind_and_the_processor_rejects_them():
    batch = take(4000, seed=2, bad_ratio=0.3)
    kinds = Counter()
    for change in batch:
        encode(ENVELOPES[change.entity], envelope(change))  # bad for the business, still valid Avro
        kind = bad_kind(change)
        if kind is None:
            clean(change)
            continue
        kinds[kind] += 1
        with pytest.raises(Rejected):
            clean(change)
    assert set(kinds) == {
        "unknown_village",
        "negative_amount",
        "missing_required",
        "impossible_transition",
        "negative_count",
    }
    assert 0.2 < sum(kinds.values()) / (len(batch) - WARDS) < 0.35


def test_without_bad_ratio_nothing_is_bad():
    assert not [c for c in take(8000, seed=2) if bad_kind(c)]


def test_visits_follow_the_lifecycle():
    state: dict[str, dict] = {}
    finished: set[str] = set()
    moves = Counter()
    for change in take(12000, seed=11):
        if change.entity != "visit":
            continue
        after = change.after
        assert change.key not in finished, "a finished visit changed again"
        if change.op == "c":
            assert change.key not in state and change.before is None
            assert after["status"] == "REGISTERED" and after["visited_at"] == after["updated_at"]
        else:
            before = change.before
            assert change.op == "u" and before == state[change.key]
            assert after["status"] in TRANSITIONS[before["status"]]
            assert after["updated_at"] >= before["updated_at"] and after["visited_at"] == before["visited_at"]
            unchanged = ("facility_code", "patient_nik", "service", "payer", "fee")
            assert [after[f] for f in unchanged] == [before[f] for f in unchanged]
            moves[(before["status"], after["status"])] += 1
        ended = not TRANSITIONS[after["status"]]
        assert (after["diagnosis_icd10"] is not None) == ended
        assert (after["referred_to"] is not None) == (after["status"] == "REFERRED")
        if ended:
            finished.add(change.key)
        state[change.key] = after
    assert set(moves) == {
        ("REGISTERED", "IN_CONSULTATION"),
        ("IN_CONSULTATION", "DONE"),
        ("IN_CONSULTATION", "REFERRED"),
    }


def test_mornings_are_busy_and_only_emergencies_come_at_night():
    visits = [c.after for c in take(12000, seed=3) if c.entity == "visit" and c.op == "c"]
    hours = Counter((v["visited_at"] + JAKARTA).hour for v in visits)
    assert max(hours, key=hours.get) in (8, 9)
    assert sum(hours[h] for h in range(7, 12)) > 0.6 * len(visits)
    night = [v for v in visits if (v["visited_at"] + JAKARTA).hour < 6]
    assert night and {v["service"] for v in night} <= {"EMERGENCY", "INPATIENT", "MATERNAL"}
    assert {v["facility_type"] for v in night} <= {"RSUD", "PUSKESMAS"}
    types = Counter(v["facility_type"] for v in visits)
    assert types["PUSKESMAS"] > types["RSUD"] > types["PUSTU"] > 0


def test_bed_census_comes_every_few_changes_and_stays_within_the_beds():
    batch = take(8000, seed=5)
    census = [i for i, c in enumerate(batch) if c.entity == "bed_occupancy" and c.op == "u"]
    gaps = [b - a for a, b in itertools.pairwise(census)]
    assert max(gaps) <= 8 and len(census) > len(batch) / 8
    occupancy = {}
    for change in batch:
        if change.entity != "bed_occupancy":
            continue
        after = change.after
        assert 0 <= after["beds_occupied"] <= after["beds_total"]
        if change.op == "u":
            assert after["as_of"] >= change.before["as_of"] and after["beds_total"] == change.before["beds_total"]
        occupancy.setdefault(after["ward_id"], []).append(after["beds_occupied"] / after["beds_total"])
    assert len(occupancy) == WARDS
    assert all(len(set(values)) > 1 for values in occupancy.values())  # beds are taken and freed
    overall = [v for values in occupancy.values() for v in values]
    assert 0.5 < sum(overall) / len(overall) < 0.95


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 100_000))
def test_money_codes_and_patients_are_plausible(seed):
    for change in take(300, seed=seed):
        if change.entity != "visit":
            continue
        after = change.after
        fee = after["fee"]
        assert isinstance(fee, Decimal) and fee.as_tuple().exponent == -2 and fee >= 0
        if after["service"] == "IMMUNISATION":
            assert fee == 0
        if after["facility_type"] == "RSUD" and after["service"] != "IMMUNISATION":
            assert fee > 0
        assert REGIONS[after["facility_village_code"]]["level"] == "village"
        nik = after["patient_nik"]
        assert len(nik) == 16 and nik.isdigit() and nik.startswith("3522")
        if after["service"] == "MATERNAL":
            assert int(nik[6:8]) > 40  # a woman
        code = after["diagnosis_icd10"]
        assert code is None or (code[0].isalpha() and code[1:3].isdigit())
