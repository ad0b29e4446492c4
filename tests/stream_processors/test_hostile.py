"""Hostile inputs through the processor's Cleaner (issue 8): each gives exactly one output, a clean
record or a dead letter naming the field and value, and none stops the batch."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import fastavro
import pytest
from confluent_kafka import Producer

import stream_processors.cleaning as cleaning
import stream_processors.plans as plans
from backbone.errors import ServiceUnavailable
from contract.codec import SchemaRejected, encode
from contract.deadletter import Output, RawEvent
from contract.subjects import entity_value_schema
from producers.emitter import Change
from stream_processors.cleaning import Cleaner
from tests.fakes import DLQ, SEALER, SECRET, FakeRegistry, SimulatedSystem

LICENSING = SimulatedSystem("sim-licensing")
PERMIT = LICENSING.entities["permit_application"]
COMPLAINTS = SimulatedSystem("sim-complaints")
COMPLAINT = COMPLAINTS.system.entities[0]
HEALTH = SimulatedSystem("sim-health")
BEDS = HEALTH.entities["bed_occupancy"]  # an entity without transitions


class RefusingRegistry(FakeRegistry):
    """A registry that refuses (or cannot be reached for) the subjects named, and counts calls."""

    def __init__(self, refuse: set[str], unreachable: bool = False) -> None:
        super().__init__()
        self.refuse = refuse
        self.unreachable = unreachable
        self.calls: list[str] = []

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        self.calls.append(subject)
        if subject in self.refuse:
            if self.unreachable:
                raise ServiceUnavailable("schema registry at http://registry is unreachable")
            raise SchemaRejected(f"schema for subject {subject!r} refused by the registry: incompatible with version 1")
        return super().register(subject, schema)


class Pipeline:
    """A Cleaner on a registry holding the cdc schemas of licensing, complaints and health."""

    def __init__(self, registry: FakeRegistry | None = None, **kwargs: Any) -> None:
        self.registry = registry or FakeRegistry()
        self.ids = {}
        for sim in (LICENSING, COMPLAINTS, HEALTH):
            for entity in sim.entities.values():
                self.ids[entity.name] = self.registry.add(entity_value_schema(entity, sim.settings))
        self.cleaner = Cleaner(
            LICENSING.catalog, self.registry, LICENSING.regions, SECRET, DLQ, sealer=SEALER, **kwargs
        )
        self.offset = 0

    def body(self, sim: SimulatedSystem, change: Change, **envelope: Any) -> bytes:
        name = sim.entity_of(change)
        schema_id = self.ids[name]
        return encode(schema_id, self.registry.schemas[schema_id][1], {**sim.envelope(change), **envelope})

    def raw(self, topic: str, value: bytes | None, key: bytes | None) -> RawEvent:
        self.offset += 1
        return RawEvent(topic, 0, self.offset, key, value)

    def event(self, sim: SimulatedSystem, change: Change, topic: str | None = None, **envelope: Any) -> RawEvent:
        entity = sim.entities[sim.entity_of(change)]
        return self.raw(topic or entity.cdc_topic, self.body(sim, change, **envelope), change.key.encode())

    def run(self, events: list[RawEvent]) -> tuple[tuple[int, int], list[Output]]:
        outputs: list[Output] = []
        counts = self.cleaner.process(events, outputs.append)
        assert len(outputs) == len(events)  # exactly one output per input
        return counts, outputs


def reason(out: Output) -> str:
    assert out.topic == DLQ, f"not a dead letter: {out.topic}"
    return dict(out.headers or [])["error.reason"].decode()


def decoded(registry: FakeRegistry, out: Output) -> dict[str, Any]:
    _, parsed = registry.schema_by_id(int.from_bytes(out.value[1:5], "big"))
    return fastavro.schemaless_reader(io.BytesIO(out.value[5:]), parsed, None)


def permits(n: int = 8) -> list[Change]:
    return [c for c in LICENSING.take(60, seed=5) if c.op in ("c", "r")][:n]


def updates(n: int = 4) -> list[Change]:
    return [c for c in LICENSING.take(200, seed=5) if c.op == "u"][:n]


# -- 1. a clean schema the registry refuses -------------------------------------------------------


def test_refused_clean_schema_dead_letters_that_plan_and_the_rest_goes_on():
    clean_subject = f"{PERMIT.clean_topic}-value"
    pipe = Pipeline(RefusingRegistry({clean_subject}))
    good = COMPLAINTS.take(5, seed=2)
    refused = permits(3)
    events = [pipe.event(COMPLAINTS, c) for c in good[:2]]
    events += [pipe.event(LICENSING, c) for c in refused]
    events += [pipe.event(COMPLAINTS, c) for c in good[2:]]
    (ok, failed), outputs = pipe.run(events)

    assert (ok, failed) == (5, 3)
    for out in outputs[2:5]:
        text = reason(out)
        assert text.startswith("schema: clean schema of schema id")
        assert repr(clean_subject) in text and "incompatible with version 1" in text
    assert all(out.topic == COMPLAINT.clean_topic for out in outputs[:2] + outputs[5:])
    # Asked once: the refusal is remembered, no registry round trip per event.
    assert pipe.registry.calls.count(clean_subject) == 1


def test_refused_plan_is_asked_again_after_a_while(monkeypatch):
    clean_subject = f"{PERMIT.clean_topic}-value"
    registry = RefusingRegistry({clean_subject})
    pipe = Pipeline(registry)
    change = permits(1)[0]
    (_, failed), _ = pipe.run([pipe.event(LICENSING, change)])
    assert failed == 1
    registry.refuse.clear()  # fixed in the registry meanwhile
    later = time.monotonic() + plans.REFUSAL_RETRY_SECONDS + 1
    monkeypatch.setattr(plans.time, "monotonic", lambda: later)
    (ok, _), outputs = pipe.run([pipe.event(LICENSING, change)])
    assert ok == 1 and outputs[0].topic == PERMIT.clean_topic
    assert registry.calls.count(clean_subject) == 2


def test_unreachable_registry_still_fails_the_batch_to_be_read_again():
    pipe = Pipeline(RefusingRegistry({f"{PERMIT.clean_topic}-value"}, unreachable=True))
    with pytest.raises(ServiceUnavailable):
        pipe.run([pipe.event(LICENSING, permits(1)[0])])


# -- 2. a clean output too large for the producer -------------------------------------------------


def _producible(out: Output) -> None:
    """librdkafka checks message.max.bytes in produce(), before any broker: it must accept."""
    producer = Producer({"bootstrap.servers": "127.0.0.1:9", "message.timeout.ms": 1, "log_level": 0})
    producer.produce(out.topic, value=out.value, key=out.key, headers=out.headers)
    producer.purge()


def test_a_one_megabyte_event_is_dead_lettered_and_its_letter_fits():
    pipe = Pipeline()
    changes = permits(3)
    big = Change(**{**vars(changes[1]), "after": {**changes[1].after, "business_name": "x" * 1_000_000}})
    events = [pipe.event(LICENSING, c) for c in (changes[0], big, changes[2])]
    assert len(events[1].value) > 1_000_000
    (ok, failed), outputs = pipe.run(events)

    assert (ok, failed) == (2, 1)
    text = reason(outputs[1])
    assert text.startswith(f"too_large: the clean record for {PERMIT.clean_topic} is ")
    assert "message.max.bytes 1000000" in text
    # The original cannot travel whole in a dead letter: its beginning does, and the reason says so.
    assert "too large for a dead letter" in text
    kept = SEALER.unseal(outputs[1].value)
    assert events[1].value.startswith(kept) and len(kept) > 900_000
    for out in outputs:
        _producible(out)


def test_output_bound_follows_the_producer_limit():
    pipe = Pipeline(max_message_bytes=1500)
    changes = permits(2)
    long_name = Change(**{**vars(changes[1]), "after": {**changes[1].after, "business_name": "y" * 1200}})
    (ok, failed), outputs = pipe.run([pipe.event(LICENSING, changes[0]), pipe.event(LICENSING, long_name)])
    assert (ok, failed) == (1, 1)
    assert "more than the producer takes (message.max.bytes 1500)" in reason(outputs[1])
    assert cleaning.message_size(outputs[1].key, outputs[1].value, outputs[1].headers) <= 1500


# -- 3. framed with another entity's schema id ----------------------------------------------------


def test_schema_id_of_another_entity_is_dead_lettered_and_the_partition_goes_on():
    pipe = Pipeline()
    good = permits(2)
    complaint = COMPLAINTS.take(1, seed=3)[0]
    stranger = pipe.raw(PERMIT.cdc_topic, pipe.body(COMPLAINTS, complaint), complaint.key.encode())
    events = [pipe.event(LICENSING, good[0]), stranger, pipe.event(LICENSING, good[1]), stranger]
    (ok, failed), outputs = pipe.run(events)

    assert (ok, failed) == (2, 2)
    expected = (
        f"schema: schema id {pipe.ids[COMPLAINT.name]} belongs to subject '{COMPLAINT.cdc_topic}-value', "
        f"not '{PERMIT.cdc_topic}-value'"
    )
    assert reason(outputs[1]) == expected and reason(outputs[3]) == expected
    assert SEALER.unseal(outputs[1].value) == stranger.value
    # Its derived clean schema never reached the licensing clean subject.
    assert pipe.registry.registered == [f"{PERMIT.clean_topic}-value"]


# -- 4. trailing bytes after a valid body ---------------------------------------------------------


def test_trailing_bytes_after_the_avro_body_are_refused():
    pipe = Pipeline()
    change = permits(1)[0]
    padded = pipe.raw(PERMIT.cdc_topic, pipe.body(LICENSING, change) + b"\x02hidden", change.key.encode())
    (ok, failed), outputs = pipe.run([padded, pipe.event(LICENSING, change)])
    assert (ok, failed) == (1, 1)
    assert reason(outputs[0]) == (
        f"undecodable: Avro body does not match schema id {pipe.ids[PERMIT.name]}: 7 trailing byte(s) after the record"
    )


# -- 5. implausible timestamps --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "accepted"),
    [
        ("ts_source", datetime(9999, 12, 31, tzinfo=UTC), False),
        ("ts_source", datetime(1969, 12, 31, 23, tzinfo=UTC), False),
        ("ts_source", "now+400d", False),
        ("ts_source", "now+30d", True),  # a polled source's business clock runs ahead
        ("ts_source", "now+1h", True),
        ("ts_emitted", datetime(9999, 1, 1, tzinfo=UTC), False),
        ("submitted_at", datetime(9999, 1, 1, tzinfo=UTC), False),
        ("submitted_at", datetime(1965, 5, 1, tzinfo=UTC), False),
        ("decided_at", datetime(1900, 1, 1, tzinfo=UTC), False),
        ("submitted_at", "now+30d", True),  # a business clock ahead of the wall clock
    ],
)
def test_implausible_timestamps_are_rejected(field, value, accepted):
    pipe = Pipeline()
    change = permits(1)[0]
    now = datetime.now(UTC)
    if isinstance(value, str):
        ahead = {"now+400d": timedelta(days=400), "now+1h": timedelta(hours=1), "now+30d": timedelta(days=30)}
        value = now + ahead[value]
    if field.startswith("ts_"):
        event = pipe.event(LICENSING, change, **{field: value})
    else:
        event = pipe.event(LICENSING, Change(**{**vars(change), "after": {**change.after, field: value}}))
    (ok, failed), outputs = pipe.run([event])
    if accepted:
        assert ok == 1 and outputs[0].topic == PERMIT.clean_topic
        return
    text = reason(outputs[0])
    assert text.startswith(f"invalid: field {field!r} value {value.year:04d}-"), text
    assert "outside the plausible window (1970-01-01 to " in text


# -- 6. updates without before --------------------------------------------------------------------


def test_update_without_before_passes_without_the_lifecycle_check():
    # File drops and query polling cannot send a before image; the processor keeps no per-key state.
    pipe = Pipeline()
    update = updates(1)[0]
    blind = Change(**{**vars(update), "before": None})
    (ok, failed), outputs = pipe.run([pipe.event(LICENSING, blind), pipe.event(LICENSING, update)])
    assert (ok, failed) == (2, 0)


def test_update_without_before_is_accepted_when_the_entity_has_no_lifecycle():
    pipe = Pipeline()
    census = next(c for c in HEALTH.take(200, seed=4) if c.entity == BEDS.name and c.op == "u")
    blind = Change(**{**vars(census), "before": None})
    (ok, _), outputs = pipe.run([pipe.event(HEALTH, blind)])
    assert ok == 1 and outputs[0].topic == BEDS.clean_topic


# -- 7. message key and record key differ ---------------------------------------------------------


def test_message_key_differing_from_the_record_key_is_rejected():
    pipe = Pipeline()
    change = permits(1)[0]
    other = pipe.raw(PERMIT.cdc_topic, pipe.body(LICENSING, change), b"PRM-SOMEONE-ELSE")
    keyless = pipe.raw(PERMIT.cdc_topic, pipe.body(LICENSING, change), None)
    (ok, failed), outputs = pipe.run([other, keyless, pipe.event(LICENSING, change)])
    assert (ok, failed) == (1, 2)
    assert reason(outputs[0]) == (
        f"invalid: message key 'PRM-SOMEONE-ELSE' differs from the record's key {change.key!r}"
    )
    assert reason(outputs[1]) == f"invalid: message key none differs from the record's key {change.key!r}"
    assert outputs[2].key == change.key.encode()


# -- 8. a delete of a key never seen --------------------------------------------------------------


def test_delete_of_a_key_never_seen_is_accepted_on_its_before_state_alone():
    state = permits(1)[0].after
    unseen = Change("d", state["application_id"], "999999999999", datetime.now(UTC), before=dict(state))
    event = Pipeline().event(LICENSING, unseen)
    outputs = []
    for _ in range(2):  # a fresh processor each time: always the same answer
        pipe = Pipeline()
        (ok, failed), out = pipe.run([event])
        assert (ok, failed) == (1, 0)
        record = decoded(pipe.registry, out[0])
        assert record["is_deleted"] is True and record["entity_key"] == unseen.key
        outputs.append({k: v for k, v in record.items() if k != "ts_processed"})
    assert outputs[0] == outputs[1]
    empty = Change("d", state["application_id"], "999999999998", datetime.now(UTC))
    pipe = Pipeline()
    (_, failed), out = pipe.run([pipe.event(LICENSING, empty)])
    assert failed == 1 and reason(out[0]) == "invalid: field 'before' is empty for op 'd'"


# -- anything else --------------------------------------------------------------------------------


def test_an_unforeseen_failure_is_dead_lettered_not_raised():
    pipe = Pipeline()
    change = permits(1)[0]
    stray = pipe.raw("cdc.nobody.nothing", pipe.body(LICENSING, change), change.key.encode())
    (ok, failed), outputs = pipe.run([stray, pipe.event(LICENSING, change)])
    assert (ok, failed) == (1, 1)
    assert reason(outputs[0]).startswith("unexpected: KeyError")


def test_reasons_never_carry_personal_data_in_clear():
    pipe = Pipeline()
    change = permits(1)[0]
    after = dict(change.after, village_code="35.22.99.9999", fee=Decimal("-1.00"))
    old = dict(change.after, status="APPROVED")
    events = [
        pipe.event(LICENSING, Change(**{**vars(change), "after": after})),
        pipe.event(LICENSING, Change(**{**vars(change), "op": "u", "before": old})),
        pipe.event(LICENSING, Change(**{**vars(change), "after": dict(after, submitted_at=datetime(1960, 1, 1))})),
    ]
    _, outputs = pipe.run(events)
    for out in outputs:
        text = reason(out)
        for name in ("applicant_nik", "applicant_name", "applicant_address"):
            assert change.after[name] not in text
