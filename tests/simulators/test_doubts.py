"""Doubtful records (simulators/doubts.py): every system's simulator, with doubts asked for, breaks
each data-quality rule its schemas declare now and then, on a copy (never the key), and the contract
flags or rejects each as the rule's severity says."""

from __future__ import annotations

import pytest

from contract.field_rules import FLAG
from contract.rules import Rejected
from simulators.doubts import Doubter
from tests.fakes import SimulatedSystem

SYSTEMS = [
    "sim-licensing",
    "sim-education",
    "sim-health",
    "sim-public-works",
    "sim-regional-budget",
    "sim-village-finance",
    "sim-complaints",
]


@pytest.mark.parametrize("name", SYSTEMS)
def test_each_declared_rule_is_broken_now_and_then_and_judged_as_its_severity_says(name):
    system = SimulatedSystem(name)
    doubter = Doubter(system.system, 0.4, seed=2)
    declared = {b.rule_id: b.severity for breaks in doubter.breaks.values() for b in breaks}
    assert declared, name
    seen: set[str] = set()
    for change in system.take(1000, seed=2):
        copy_before = dict(change.after) if change.after else None
        doubtful = doubter(change)
        assert change.after == copy_before  # the office's own record is untouched
        if doubtful is change:
            continue
        broken = [k for k in doubtful.after if doubtful.after[k] != change.after[k]]
        assert len(broken) == 1 and broken[0] not in system.entities[system.entity_of(change)].key
        rule_id = doubter.last
        assert rule_id is not None and rule_id.startswith(f"{broken[0]}:")
        seen.add(rule_id)
        if rule_id.endswith(":ref"):
            continue  # the processor's to check, against its reference table
        try:
            flags = system.clean(doubtful)["dq_flags"]
        except Rejected as error:
            assert declared[error.rule] != FLAG, error
            continue
        assert any(declared.get(flag) == FLAG for flag in flags), (rule_id, flags)
    assert seen == set(declared), set(declared) - seen
