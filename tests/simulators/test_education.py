"""The simulated education office (DISDIK): deterministic, lifecycle-respecting, seasonal, valid
against the contract unless asked otherwise, and storable in ClickHouse."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.rules import Rejected
from producers.emitter import Change
from simulators.education import EducationOffice
from simulators.kit import JAKARTA, UNKNOWN_VILLAGE
from tests.fakes import SimulatedSystem, avro_bytes, breaks_lifecycle, freeze, states

MONDAY = datetime(2025, 6, 2, tzinfo=UTC)  # 07:00 in Jakarta
SIM = SimulatedSystem("sim-education", clock_start=MONDAY)
REGIONS, VILLAGES, ENTITIES, RULES = SIM.regions, SIM.villages, SIM.entities, SIM.rules
ENVELOPES, CLEAN = SIM.value_schemas, SIM.clean_schemas
STATUS = next(f for f in ENTITIES["enrolment"].payload_schema()["fields"] if f["name"] == "status")
TRANSITIONS = STATUS["transitions"]
SCHOOLS = 356
GRADES = {"SD": range(1, 7), "SMP": range(7, 10), "SMA": range(10, 13), "SMK": range(10, 13)}
take, envelope, clean, encode, essentials = SIM.take, SIM.envelope, SIM.clean, avro_bytes, states


def bad_kind(change: Change) -> str | None:
    """What is wrong with a change, found by looking at it (independently of the contract)."""
    after = change.after
    if change.entity == "school":
        if after["village_code"] == UNKNOWN_VILLAGE:
            return "unknown_village"
        if after["student_capacity"] < 0:
            return "negative_count"
        if after["headmaster"] is None:
            return "missing_required"
        return None
    if after["student_village_code"] == UNKNOWN_VILLAGE:
        return "unknown_village"
    if after["student_nisn"] is None:
        return "missing_required"
    if breaks_lifecycle(change, {"status": TRANSITIONS}):
        return "impossible_transition"
    return None


def test_same_seed_and_start_give_the_same_changes(monkeypatch):
    freeze(monkeypatch, datetime(2025, 7, 7, 3, 0, tzinfo=UTC))
    assert take(1500, seed=5, start_seq=100, clock_start=None) == take(1500, seed=5, start_seq=100, clock_start=None)
    first = [(c.key, c.after) for c in take(SCHOOLS + 100, seed=5)]
    assert first != [(c.key, c.after) for c in take(SCHOOLS + 100, seed=6)]
    assert take(100, seed=5, start_seq=1)[0].after != take(100, seed=5, start_seq=2)[0].after


def test_a_fresh_start_snapshots_the_school_register_first():
    batch = take(SCHOOLS + 50)
    snapshot = batch[:SCHOOLS]
    assert all(c.op == "r" and c.snapshot and c.entity == "school" and c.before is None for c in snapshot)
    assert len({c.key for c in snapshot}) == SCHOOLS
    assert all(c.key == c.after["npsn"] and len(c.key) == 8 and c.key.isdigit() for c in snapshot)
    assert not any(c.snapshot or c.op == "r" for c in batch[SCHOOLS:])
    levels = Counter(c.after["level"] for c in snapshot)
    assert levels["SD"] > levels["SMP"] > levels["SMK"] > 0 and levels["SMA"] > 0
    capacities = sorted(c.after["student_capacity"] for c in snapshot if c.after["level"] == "SMP")
    assert capacities[-1] > 3 * statistics.median(capacities)  # a few big schools, many small
    # The register depends on the seed only: a resumed run knows the same schools without a snapshot.
    resumed = EducationOffice(VILLAGES, seed=1, start_seq=5000, clock_start=MONDAY)
    assert resumed.schools == {c.key: c.after for c in snapshot}
    assert next(resumed.changes()).op != "r"


def test_positions_strictly_increase_from_start_seq():
    batch = take(1000, start_seq=41)
    assert [int(c.position) for c in batch] == list(range(42, 1042))
    assert all(len(c.position) == 12 for c in batch)
    creates = [c for c in batch if c.op == "c"]
    assert creates and all(c.key == c.after["enrolment_id"] == f"DISDIK-{c.position}" for c in creates)


def test_every_catalog_entity_is_emitted():
    assert {c.entity for c in take(SCHOOLS + 2000)} == set(ENTITIES) == {"school", "enrolment"}


@pytest.mark.slow
@pytest.mark.parametrize("clock_start", [MONDAY, datetime(2025, 12, 29, tzinfo=UTC)], ids=["june", "december"])
def test_without_bad_ratio_every_change_is_clean_and_encodes(clock_start):
    for change in take(SCHOOLS + 4000, seed=4, clock_start=clock_start):
        encode(ENVELOPES[change.entity], envelope(change))
        record = clean(change)
        encode(CLEAN[change.entity], record)
        assert record["entity_key"] == change.key
        assert (record["ts_source"], record["source_position"]) == (change.ts_source, change.position)
        if change.entity == "enrolment":
            assert record["student_nisn"] != change.after["student_nisn"]  # pseudonymised
            assert record["student_kecamatan_code"] == change.after["student_village_code"].rsplit(".", 1)[0]
        else:
            assert record["headmaster"] == change.after["headmaster"]  # an official's name is kept


@pytest.mark.slow
def test_bad_ratio_produces_each_bad_kind_and_the_processor_rejects_them():
    batch = take(SCHOOLS + 4000, seed=2, bad_ratio=0.3)
    kinds = Counter()
    for change in batch:
        encode(ENVELOPES[change.entity], envelope(change))  # bad for the business, still valid Avro
        kind = bad_kind(change)
        if kind is None:
            clean(change)
            continue
        kinds[(change.entity, kind)] += 1
        with pytest.raises(Rejected):
            clean(change)
    assert set(kinds) == {
        ("school", "unknown_village"),
        ("school", "negative_count"),
        ("school", "missing_required"),
        ("enrolment", "unknown_village"),
        ("enrolment", "missing_required"),
        ("enrolment", "impossible_transition"),
    }
    assert 0.2 < sum(kinds.values()) / (len(batch) - SCHOOLS) < 0.35


def test_without_bad_ratio_nothing_is_bad():
    assert not [c for c in take(SCHOOLS + 5000, seed=2) if bad_kind(c)]


def test_lifecycles_follow_the_transitions():
    state: dict[tuple[str, str], dict] = {}
    finished: set[str] = set()
    moves = Counter()
    left: dict[str, dict] = {}
    for change in take(SCHOOLS + 12000, seed=11, clock_start=datetime(2025, 4, 7, tzinfo=UTC)):
        after, ident = change.after, (change.entity, change.key)
        if change.op in ("c", "r"):
            assert ident not in state and change.before is None
        else:
            assert change.op == "u" and change.before == state[ident]
        if change.entity == "school":
            if change.op == "u":
                assert after["updated_at"] >= change.before["updated_at"]
                assert after["npsn"] == change.before["npsn"] and after["level"] == change.before["level"]
            state[ident] = after
            continue
        assert change.key not in finished, "a finished enrolment changed again"
        assert after["grade"] in GRADES[after["level"]]
        if change.op == "c":
            assert after["status"] == "ACTIVE" and after["event_kind"] in ("NEW", "TRANSFER")
            assert after["enrolled_at"] == after["changed_at"]
            if after["event_kind"] == "NEW":
                assert after["grade"] == min(GRADES[after["level"]])
            if after["from_school_npsn"] is not None:  # the second half of a transfer within the regency
                gone = left.pop(after["student_nisn"])
                assert after["from_school_npsn"] == gone["school_npsn"] != after["school_npsn"]
                assert (after["level"], after["grade"], after["student_name"]) == (
                    gone["level"],
                    gone["grade"],
                    gone["student_name"],
                )
        else:
            before = change.before
            assert after["status"] in TRANSITIONS[before["status"]]
            assert after["changed_at"] >= before["changed_at"] and after["enrolled_at"] == before["enrolled_at"]
            assert after["grade"] >= before["grade"]
            assert after["event_kind"] == {"TRANSFERRED": "TRANSFER", "DROPPED_OUT": "DROPOUT"}.get(
                after["status"], "GRADUATION"
            )
            moves[(before["status"], after["status"])] += 1
            if after["status"] == "GRADUATED":
                assert after["grade"] == max(GRADES[after["level"]])
                assert (after["changed_at"] + JAKARTA).month in (5, 6)
            if after["status"] == "TRANSFERRED":
                left[after["student_nisn"]] = after
            finished.add(change.key)
        state[ident] = after
    assert set(moves) == {("ACTIVE", "TRANSFERRED"), ("ACTIVE", "DROPPED_OUT"), ("ACTIVE", "GRADUATED")}


def test_new_enrolments_peak_in_july_and_changes_come_in_school_hours():
    batch = take(SCHOOLS + 12000, seed=3, clock_start=datetime(2025, 1, 6, tzinfo=UTC))
    enrolments = [c.after for c in batch if c.entity == "enrolment"]
    assert max(e["changed_at"] for e in enrolments) > datetime(2026, 1, 6, tzinfo=UTC)  # a whole school year
    new = Counter((e["enrolled_at"] + JAKARTA).month for e in enrolments if e["event_kind"] == "NEW")
    assert max(new, key=new.get) == 7
    assert new[7] > 5 * statistics.median(new.values())
    for e in enrolments:
        local = e["changed_at"] + JAKARTA
        assert local.weekday() < 6 and 7 <= local.hour < 15
        assert local.hour < 12 or local.weekday() < 5


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 100_000))
def test_codes_and_counts_are_plausible(seed):
    for change in take(SCHOOLS + 300, seed=seed):
        after = change.after
        if change.entity == "school":
            assert REGIONS[after["village_code"]]["level"] == "village"
            assert after["student_capacity"] > 0 and after["headmaster"]
            continue
        assert REGIONS[after["student_village_code"]]["level"] == "village"
        nisn = after["student_nisn"]
        assert len(nisn) == 10 and nisn.isdigit()
        born = 2000 + int(nisn[1:3])
        assert 4 <= (after["enrolled_at"].year - born) - after["grade"] <= 8  # of school age


def test_students_mostly_live_in_the_kecamatan_of_their_school():
    batch = take(SCHOOLS + 3000, seed=6)
    schools = {c.key: c.after for c in batch if c.entity == "school"}
    creates = [c.after for c in batch if c.entity == "enrolment" and c.op == "c"]
    near = [
        e["student_village_code"].rsplit(".", 1)[0] == schools[e["school_npsn"]]["village_code"].rsplit(".", 1)[0]
        for e in creates
    ]
    assert 0.7 < sum(near) / len(near) < 0.98
