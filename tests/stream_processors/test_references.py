"""References to another entity's current state in the Cleaner (fake registry, no Kafka): a referrer
waits for its entity, is accepted when it arrives within the wait, flagged or rejected past it; the
order per key holds; no offset is committable past a waiting record; outcomes and rules are counted."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from prometheus_client import REGISTRY

from backbone.settings import PROJECT_ROOT
from contract.codec import decode, encode
from contract.rules import compose_envelope, load_envelope_template
from producers.emitter import Change
from stream_processors.cleaning import Cleaner, Output, RawEvent
from stream_processors.offsets import OffsetLedger
from stream_processors.references import HoldingLedger, ReferenceTable
from tests.fakes import DLQ, SEALER, SECRET, FakeRegistry, SimulatedSystem

SYSTEM = SimulatedSystem("sim-education")
SCHOOL, ENROLMENT = SYSTEM.entities["school"], SYSTEM.entities["enrolment"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pipeline(monkeypatch):
    registry = FakeRegistry()
    template = load_envelope_template(PROJECT_ROOT / "schemas")
    ids = {
        e.name: registry.register(f"{e.cdc_topic}-value", compose_envelope(template, e.payload_schema(), e.name))
        for e in (SCHOOL, ENROLMENT)
    }
    clock = Clock()
    monkeypatch.setattr("stream_processors.cleaning.time.monotonic", clock)
    references = ReferenceTable("state.references")
    cleaner = Cleaner(
        SYSTEM.catalog,
        registry,
        SYSTEM.regions,
        SECRET,
        DLQ,
        sealer=SEALER,
        references=references,
        reference_wait_seconds=30,
    )
    changes = SYSTEM.take(400, seed=4)
    schools = [c for c in changes if c.entity == "school"]
    enrolments = [c for c in changes if c.entity == "enrolment" and c.op == "c"]
    offsets = iter(range(100, 10_000))

    def raw(change: Change) -> RawEvent:
        entity = SYSTEM.entities[SYSTEM.entity_of(change)]
        value = encode(ids[entity.name], registry.schemas[ids[entity.name]][1], SYSTEM.envelope(change))
        return RawEvent(entity.cdc_topic, 0, next(offsets), change.key.encode(), value)

    return cleaner, clock, schools, enrolments, raw, registry


def clean_of(registry: FakeRegistry, out: Output) -> dict[str, Any]:
    return decode(registry, out.value)[1]


def test_a_reference_that_arrives_later_within_the_wait_is_accepted(pipeline):
    cleaner, clock, schools, enrolments, raw, registry = pipeline
    school = schools[0]
    pupil = replace(enrolments[0], after={**enrolments[0].after, "school_npsn": school.key})
    outputs: list[Output] = []
    first, ledger_holds = raw(pupil), None
    assert cleaner.process([first], outputs.append) == (0, 0)  # waits: no output yet
    assert outputs == [] and len(cleaner.waiting) == 1
    ledger_holds = cleaner.waiting.holds()
    assert ledger_holds == {(first.topic, 0): first.offset}
    clock.now += 10
    assert cleaner.process([raw(school)], outputs.append) == (2, 0)  # the school, then the pupil released
    (reference,) = [o for o in outputs if o.topic == "state.references"]
    assert json.loads(reference.key) == f"education.school\x00{school.key}" and json.loads(reference.value) == 1
    (pupil_out,) = [o for o in outputs if o.topic == ENROLMENT.clean_topic]
    assert clean_of(registry, pupil_out)["dq_flags"] == []
    assert cleaner.waiting.holds() == {(first.topic, 0): first.offset}  # released, not acknowledged yet
    cleaner.acknowledged()
    assert cleaner.waiting.holds() == {}


@pytest.mark.parametrize("severity", ["flag", "reject"])
def test_past_the_wait_the_rule_severity_applies_and_later_changes_of_the_key_wait_behind(pipeline, severity):
    cleaner, clock, _schools, enrolments, raw, registry = pipeline
    pupil = replace(enrolments[1], after={**enrolments[1].after, "school_npsn": "99999999"})
    later = replace(pupil, op="u", position=f"{int(pupil.position) + 1:012d}", before=dict(pupil.after))
    other = enrolments[2]  # another entity: its school is not known either, it waits on its own
    outputs: list[Output] = []
    cleaner.process([raw(pupil)], outputs.append)
    if severity == "reject":  # the plan exists now: make its reference rule reject, then start again
        for plan in cleaner.plans.values():
            plan.rules.references = tuple(replace(r, severity="reject") for r in plan.rules.references)
    cleaner.process([raw(later), raw(other)], outputs.append)
    assert outputs == [] and len(cleaner.waiting) == 3
    clock.now += 29
    assert cleaner.release(outputs.append) == (0, 0)
    clock.now += 2  # the wait is over: the first, then the later change of its key, in order
    cleaner.release(outputs.append)
    mine = [o for o in outputs if o.key == pupil.key.encode()]
    assert len(mine) == 2
    if severity == "flag":
        flags = [clean_of(registry, o)["dq_flags"] for o in mine]
        assert flags == [["school_npsn:ref"], ["school_npsn:ref"]]
        assert [clean_of(registry, o)["op"] for o in mine] == ["c", "u"]
    else:
        headers = [{k: v.decode() for k, v in o.headers} for o in mine]
        assert {h["error.rule"] for h in headers} == {"school_npsn:ref"}
        assert (
            "field 'school_npsn' value '99999999': no education.school npsn '99999999' known"
            in headers[0]["error.reason"]
        )
    assert len(cleaner.waiting) == 0


def test_the_ledger_commits_no_partition_past_a_waiting_record(pipeline):
    cleaner, _clock, _schools, enrolments, raw, _registry = pipeline
    ledger = HoldingLedger(lambda tp: 100)
    ledger.room = cleaner.waiting
    events = [raw(enrolments[3]), raw(enrolments[4])]  # their schools are not known: both wait
    cleaner.process(events, lambda out: None)
    ledger.observe([((e.topic, e.partition), e.offset) for e in events])
    assert isinstance(ledger, OffsetLedger)
    assert ledger.committable() == {(events[0].topic, 0): events[0].offset}
    cleaner.waiting.take_all()
    assert ledger.committable() == {(events[0].topic, 0): events[-1].offset + 1}


def test_outcomes_and_rule_failures_are_counted_per_system_entity_and_rule(pipeline):
    cleaner, clock, schools, enrolments, raw, _registry = pipeline

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {"system": "sim-education", "entity": "enrolment", **labels}) or 0

    before = (
        sample("backbone_dq_records_total", outcome="flagged"),
        sample("backbone_dq_rule_failures_total", rule="school_npsn:ref", severity="flag"),
        sample("backbone_dq_records_total", outcome="rejected"),
        sample("backbone_dq_rule_failures_total", rule="grade:max", severity="reject"),
    )
    unknown = replace(enrolments[5], after={**enrolments[5].after, "school_npsn": "88888888"})
    too_high = replace(enrolments[6], after={**enrolments[6].after, "grade": 13})
    cleaner.process([raw(unknown), raw(too_high)], lambda out: None)
    clock.now += 31
    cleaner.release(lambda out: None)
    after = (
        sample("backbone_dq_records_total", outcome="flagged"),
        sample("backbone_dq_rule_failures_total", rule="school_npsn:ref", severity="flag"),
        sample("backbone_dq_records_total", outcome="rejected"),
        sample("backbone_dq_rule_failures_total", rule="grade:max", severity="reject"),
    )
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1, 1]


def test_with_the_rules_off_nothing_waits_and_nothing_is_flagged(pipeline):
    cleaner, _clock, _schools, enrolments, raw, registry = pipeline
    off = Cleaner(SYSTEM.catalog, registry, SYSTEM.regions, SECRET, DLQ, sealer=SEALER, dq_rules=False)
    pupil = replace(enrolments[7], after={**enrolments[7].after, "school_npsn": "77777777", "grade": 13})
    outputs: list[Output] = []
    assert off.process([raw(pupil)], outputs.append) == (1, 0)
    assert clean_of(registry, outputs[0])["dq_flags"] == []


def test_after_a_rebalance_the_topic_decides_what_exists_not_what_this_worker_accepted():
    shared: dict[str, Any] = {}
    table = ReferenceTable("state.references", shared)
    assert table.note("education.school", "S1", True) is not None
    assert table.exists("education.school", "S1")  # accepted here, before the topic brings it back
    shared["education.school\x00S1"] = 0  # the partition moved; its new owner saw the school deleted
    assert table.exists("education.school", "S1")
    table.forget_local()
    assert not table.exists("education.school", "S1")
    shared["education.school\x00S1"] = 1
    assert table.exists("education.school", "S1")
