"""Updates without a `before` image (file drops, query polling) are checked against the processor's
last lifecycle state of the entity; the state survives a restart through its topic, and an event
read again after a crash is not judged against a state that already includes it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from contract.codec import encode
from contract.deadletter import Output, RawEvent
from contract.reference import villages
from contract.rules import compose_envelope, load_envelope_template
from producers.emitter import Change, envelope_for
from simulators.licensing import LicensingOffice
from stream_processors.cleaning import Cleaner
from stream_processors.lifecycle import LifecycleState
from tests.fakes import SEALER, FakeRegistry
from tests.stream_processors.test_cleaning import CATALOG, ENTITY, REGIONS, SCHEMAS, SECRET

STATE_TOPIC = "state.lifecycle"


@pytest.fixture
def pipeline():
    registry = FakeRegistry()
    value = compose_envelope(load_envelope_template(SCHEMAS), ENTITY.payload_schema(), ENTITY.name)
    schema_id = registry.register(f"{ENTITY.cdc_topic}-value", value)
    created = next(c for c in LicensingOffice(villages(REGIONS), seed=5).changes() if c.op == "c")
    return registry, schema_id, created


def run(cleaner: Cleaner, registry: FakeRegistry, schema_id: int, changes: list[tuple[int, Change]]) -> list[Output]:
    outputs: list[Output] = []
    events = [
        RawEvent(
            ENTITY.cdc_topic,
            1,
            offset,
            c.key.encode(),
            encode(schema_id, registry.schemas[schema_id][1], envelope_for(ENTITY, c)),
        )
        for offset, c in changes
    ]
    cleaner.process(events, outputs.append)
    return outputs


def update(created: Change, n: int, **after: Any) -> Change:
    """An update as a file drop sends it: the new record only, no before image; `n` orders it in
    the source (the simulators' positions are sequence numbers)."""
    position = f"{int(created.position) + n:012d}"
    return replace(created, op="u", position=position, before=None, after={**created.after, **after})


def verdicts(outputs: list[Output]) -> list[str]:
    """'clean', 'dead' or 'state' per output, in order."""
    return ["state" if o.topic == STATE_TOPIC else "dead" if o.topic.startswith("dlq") else "clean" for o in outputs]


def test_an_update_without_before_is_checked_against_the_last_state(pipeline):
    registry, schema_id, created = pipeline
    state = LifecycleState(STATE_TOPIC)
    cleaner = Cleaner(CATALOG, registry, REGIONS, SECRET, "dlq.processor", sealer=SEALER, lifecycle=state)
    outputs = run(
        cleaner,
        registry,
        schema_id,
        [
            (10, created),  # SUBMITTED
            (11, update(created, 1, status="VERIFIED")),  # allowed
            (12, update(created, 2, status="SUBMITTED")),  # VERIFIED -> SUBMITTED: refused
            (13, update(created, 3, status="APPROVED")),  # VERIFIED -> APPROVED: allowed
        ],
    )
    assert verdicts(outputs) == ["clean", "state", "clean", "state", "dead", "clean", "state"]
    reason = dict(outputs[4].headers or [])["error.reason"].decode()
    assert "transition 'VERIFIED' -> 'SUBMITTED' is not allowed" in reason
    assert all(o.partition == 1 for o in outputs if o.topic == STATE_TOPIC)  # partitioned like the input

    # After a restart: the state comes back from its topic, and the check holds.
    restored = LifecycleState(STATE_TOPIC)
    restored.load(1, [(o.key, o.value) for o in outputs if o.topic == STATE_TOPIC], {ENTITY.cdc_topic})
    again = Cleaner(CATALOG, registry, REGIONS, SECRET, "dlq.processor", sealer=SEALER, lifecycle=restored)
    later = run(again, registry, schema_id, [(14, update(created, 4, status="VERIFIED"))])  # APPROVED -> VERIFIED
    assert verdicts(later) == ["dead"]


def test_an_event_read_again_is_not_judged_against_its_own_state(pipeline):
    """After a crash the state may be ahead of the committed offsets, and an adapter may send changes
    again: a change not later in the source than the state is accepted as it was the first time, and
    the state stays the latest."""
    registry, schema_id, created = pipeline
    state = LifecycleState(STATE_TOPIC)
    cleaner = Cleaner(CATALOG, registry, REGIONS, SECRET, "dlq.processor", sealer=SEALER, lifecycle=state)
    first = [(10, created), (11, update(created, 1, status="VERIFIED")), (12, update(created, 2, status="APPROVED"))]
    assert verdicts(run(cleaner, registry, schema_id, first)) == ["clean", "state"] * 3
    assert verdicts(run(cleaner, registry, schema_id, first[1:])) == ["clean", "state"] * 2  # re-read
    # Sent again by an adapter that restarted mid-file: new offsets, the same source positions.
    resent = [(20 + i, change) for i, (_, change) in enumerate(first[1:])]
    assert verdicts(run(cleaner, registry, schema_id, resent)) == ["clean", "state"] * 2
    assert verdicts(run(cleaner, registry, schema_id, [(13, update(created, 3, status="VERIFIED"))])) == ["dead"]


def test_deletes_end_the_state_and_an_older_record_cannot_bring_it_back(pipeline):
    registry, schema_id, created = pipeline
    state = LifecycleState(STATE_TOPIC)
    cleaner = Cleaner(CATALOG, registry, REGIONS, SECRET, "dlq.processor", sealer=SEALER, lifecycle=state)
    deleted = replace(created, op="d", position=f"{int(created.position) + 9:012d}", before=created.after, after=None)
    outputs = run(cleaner, registry, schema_id, [(10, created), (11, deleted)])
    assert verdicts(outputs) == ["clean", "state", "clean", "state"]
    older = [(outputs[1].key, outputs[1].value)]  # the state of the creation, read back late
    state.load(1, older, {ENTITY.cdc_topic})
    key = (ENTITY.cdc_topic, created.key.encode())
    assert state.known[key][1:] == (int(created.position) + 9, None)
    state.keep_only(set())  # the partition went to another worker
    assert not state.known


def test_only_status_fields_are_kept_never_personal_data(pipeline):
    registry, schema_id, created = pipeline
    state = LifecycleState(STATE_TOPIC)
    cleaner = Cleaner(CATALOG, registry, REGIONS, SECRET, "dlq.processor", sealer=SEALER, lifecycle=state)
    (_, record) = run(cleaner, registry, schema_id, [(10, created)])
    assert record.value == b'{"version":%d,"fields":{"status":"SUBMITTED"}}' % int(created.position)
    assert created.after["applicant_nik"].encode() not in record.key + record.value


def test_state_records_that_are_not_ours_are_ignored():
    state = LifecycleState(STATE_TOPIC)
    topic = ENTITY.cdc_topic
    junk = [
        (None, b"x"),
        (b"no-separator", b"{}"),
        (topic.encode() + b"\x00k", b"not json"),
        (topic.encode() + b"\x00k", b'{"version": "x"}'),
        (b"other.topic\x00k", b'{"version":1,"fields":{}}'),
    ]
    state.load(0, junk, {topic})
    assert not state.known


def test_a_status_skipped_between_two_sightings_is_accepted_an_impossible_one_is_not(pipeline):
    """A poll or a daily file may not see every status (or a row was refused upstream): from the last
    state the new status must be reachable. With a before image the move itself is checked."""
    registry, schema_id, created = pipeline
    state = LifecycleState(STATE_TOPIC)
    cleaner = Cleaner(CATALOG, registry, REGIONS, SECRET, "dlq.processor", sealer=SEALER, lifecycle=state)
    skipped = update(created, 1, status="APPROVED")  # SUBMITTED -> (VERIFIED, unseen) -> APPROVED
    assert verdicts(run(cleaner, registry, schema_id, [(10, created), (11, skipped)])) == ["clean", "state"] * 2
    strict = replace(update(created, 2, status="APPROVED"), before=created.after)  # a before image says so
    assert verdicts(run(cleaner, registry, schema_id, [(12, strict)])) == ["dead"]
