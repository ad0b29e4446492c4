"""The simulated licensing office: deterministic, lifecycle-respecting, valid unless asked otherwise."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from backbone.settings import PROJECT_ROOT
from contract.reference import load_regions, villages
from producers.emitter import Change
from simulators.licensing import LicensingOffice
from tests.fakes import freeze, take_from

REGIONS = load_regions(PROJECT_ROOT / "data" / "bojonegoro_regions.csv")
VILLAGES = villages(REGIONS)
PAYLOAD = json.loads((PROJECT_ROOT / "schemas" / "licensing" / "permit_application.avsc").read_text())
TRANSITIONS = next(f["transitions"] for f in PAYLOAD["fields"] if f["name"] == "status")
BAD_VILLAGE = "35.22.99.9999"


def take(n: int, seed: int = 1, **kwargs) -> list[Change]:
    return take_from(LicensingOffice, VILLAGES, n, seed=seed, **kwargs)


def essentials(batch: list[Change]) -> list[tuple]:
    return [
        (
            c.op,
            c.key,
            c.position,
            c.after["permit_type"],
            c.after["status"],
            c.after["village_code"],
            c.after["applicant_nik"],
            c.after["fee"],
        )
        for c in batch
    ]


def test_same_seed_and_start_give_the_same_changes(monkeypatch):
    freeze(monkeypatch, datetime(2025, 3, 3, 3, 0, tzinfo=UTC))
    assert take(300, seed=5, start_seq=100) == take(300, seed=5, start_seq=100)
    assert essentials(take(50, seed=5)) != essentials(take(50, seed=6))
    assert essentials(take(50, seed=5, start_seq=0)) != essentials(take(50, seed=5, start_seq=1))


def test_positions_strictly_increase_from_start_seq():
    batch = take(500, start_seq=41)
    positions = [int(c.position) for c in batch]
    assert positions == list(range(42, 542))
    assert all(len(c.position) == 12 for c in batch)
    assert all(c.key == c.after["application_id"] == f"DPMPTSP-{c.position}" for c in batch if c.op == "c")


def test_statuses_follow_the_lifecycle_per_key():
    state: dict[str, dict] = {}
    finished: set[str] = set()
    seen = set()
    for change in take(3000, seed=11):
        after = change.after
        assert change.key not in finished, "a decided application changed again"
        if change.op == "c":
            assert change.key not in state and change.before is None and after["status"] == "SUBMITTED"
        else:
            assert change.op == "u" and change.before == state[change.key]
            assert after["status"] in TRANSITIONS[change.before["status"]]
            assert after["updated_at"] >= change.before["updated_at"]
            seen.add((change.before["status"], after["status"]))
        decided = not TRANSITIONS[after["status"]]
        assert (after["decided_at"] is not None) == decided
        assert (after["rejection_reason"] is not None) == (after["status"] == "REJECTED")
        if decided:
            finished.add(change.key)
        state[change.key] = after
    assert seen == {
        ("SUBMITTED", "VERIFIED"),
        ("SUBMITTED", "REJECTED"),
        ("VERIFIED", "APPROVED"),
        ("VERIFIED", "REJECTED"),
    }


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 100_000))
def test_money_is_decimal_with_two_places_and_never_negative(seed):
    for change in take(200, seed=seed):
        for name in ("fee", "investment_value"):
            value = change.after[name]
            assert isinstance(value, Decimal) and value.as_tuple().exponent == -2
            assert value >= 0


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 100_000))
def test_every_village_code_exists_in_the_reference_data(seed):
    for change in take(200, seed=seed):
        code = change.after["village_code"]
        assert REGIONS[code]["level"] == "village"
        assert change.after["applicant_nik"][4:6] == code.split(".")[2]  # NIK carries the kecamatan


def test_bad_ratio_produces_unknown_villages_and_negative_fees():
    batch = take(600, seed=2, bad_ratio=0.5)
    bad_village = [c for c in batch if c.after["village_code"] == BAD_VILLAGE]
    negative = [c for c in batch if c.after["fee"] < 0]
    assert bad_village and negative
    assert len(bad_village) + len(negative) > 100
    for change in bad_village + negative:
        assert change.op == "c"  # bad records are never followed by updates
        assert change.key not in {c.key for c in batch if c.op == "u"}
    good = [c for c in batch if c not in bad_village and c not in negative]
    assert all(c.after["village_code"] in REGIONS and c.after["fee"] >= 0 for c in good)


def test_no_bad_records_without_bad_ratio():
    batch = take(2000, seed=2)
    assert not [c for c in batch if c.after["village_code"] == BAD_VILLAGE or c.after["fee"] < 0]
