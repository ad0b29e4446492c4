"""Issue 8 on the real stack: good events mixed with every kind of hostile input, through real Kafka,
the real registry and the real processor. Every good event is stored, every hostile one is
dead-lettered once with its reason, and the processor neither dies nor re-reads a batch."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import fastavro
from confluent_kafka import Consumer, Producer

from backbone import kafka
from contract.catalog import catalog_for
from contract.codec import Registry, encode, subject_for
from contract.reference import load_regions
from contract.subjects import entity_value_schema
from contract.topics import DLQ_PROCESSOR, named
from producers.emitter import Change, ChangeEmitter
from simulators.licensing import LicensingOffice
from tests.fakes import SimulatedSystem
from tests.helpers import count, wait_for

TABLE = "licensing_permit_application"


def _letters(settings, expected: int, timeout: float = 60) -> dict[bytes | None, list[str]]:
    """The processor's dead letters: reasons by message key, once `expected` distinct inputs arrived."""
    consumer = Consumer(
        kafka.client_config(
            settings,
            **{"group.id": "test-hostile-dlq", "auto.offset.reset": "earliest", "enable.auto.commit": False},
        )
    )
    consumer.subscribe([named(settings, DLQ_PROCESSOR)])
    found: list = []

    def origins() -> int:
        found.extend(m for m in consumer.consume(100, timeout=0.5) if not m.error())
        return len({(dict(m.headers())["source.partition"], dict(m.headers())["source.offset"]) for m in found})

    try:
        wait_for(lambda: origins() >= expected, timeout, f"{expected} dead letters")
        consumer.consume(100, timeout=2)  # nothing more should come
    finally:
        consumer.close()
    by_key: dict[bytes | None, list[str]] = {}
    for m in found:
        by_key.setdefault(m.key(), []).append(dict(m.headers())["error.reason"].decode())
    return by_key


def test_hostile_inputs_are_dead_lettered_and_good_ones_stored(pipeline_settings, stage_process):
    settings = pipeline_settings
    catalog = catalog_for(settings)
    (entity,) = catalog.system("sim-licensing").entities
    complaint = catalog.system("sim-complaints").entities[0]
    registry = Registry.for_settings(settings)
    emitter = ChangeEmitter(entity, settings, registry)
    villages = sorted(c for c, r in load_regions(settings.regions_csv).items() if r["level"] == "village")
    changes = LicensingOffice(villages, seed=11).changes()
    good = [next(changes) for _ in range(60)]

    def body(change: Change, **envelope) -> bytes:
        return encode(emitter.schema_id, emitter.parsed, {**emitter.envelope(change), **envelope})

    # Another entity's schema id (a valid one) on the licensing topic.
    complaints = SimulatedSystem("sim-complaints")
    complaint_schema = entity_value_schema(complaint, settings)
    complaint_id = registry.register(subject_for(complaint.cdc_topic), complaint_schema)
    stranger = complaints.take(1, seed=2)[0]
    stranger_body = encode(complaint_id, fastavro.parse_schema(complaint_schema), complaints.envelope(stranger))
    # A writer schema whose derived clean schema the registry refuses (sla_days a string, not an int),
    # registered under a subject of its own and framed on the licensing topic.
    drifted = copy.deepcopy(entity_value_schema(entity, settings))
    for f in drifted["fields"]:
        for t in f["type"] if isinstance(f["type"], list) else []:
            if isinstance(t, dict) and t.get("name") == "PermitApplication":
                for field in t["fields"]:
                    if field["name"] == "sla_days":
                        field["type"] = "string"
                        field.pop("min", None)
    drifted_id = registry.register(f"{settings.topic_prefix}hostile.drifted-value", drifted)
    drifted_parsed = fastavro.parse_schema(drifted)
    first = good[0]
    drifted_event = {**emitter.envelope(first), "after": {**first.after, "sla_days": "five"}}
    drifted_body = encode(drifted_id, drifted_parsed, drifted_event)
    # A delete of a key never seen: accepted on its before state.
    state = dict(good[0].after, application_id="DPMPTSP-NEVER-SEEN")
    unseen = Change("d", "DPMPTSP-NEVER-SEEN", "999999999999", datetime.now(UTC), before=state)
    # An event of about a megabyte: its clean record is larger than the processor's producer takes.
    big = Change(
        **{**vars(good[1]), "key": "DPMPTSP-BIG", "after": {**good[1].after, "business_name": "x" * 1_000_000}}
    )
    big.after["application_id"] = "DPMPTSP-BIG"
    big_body = body(big)

    hostile: dict[bytes, tuple[bytes, str]] = {
        b"h-garbage": (b"this is not avro", "undecodable: not Confluent-framed Avro"),
        b"h-trailing": (body(good[2]) + b"\x00junk", "5 trailing byte(s) after the record"),
        b"h-schema": (
            stranger_body,
            f"schema: schema id {complaint_id} belongs to subject '{complaint.cdc_topic}-value', "
            f"not '{entity.cdc_topic}-value'",
        ),
        b"h-refused": (drifted_body, f"'{entity.clean_topic}-value'"),
        b"h-ts-future": (body(good[3], ts_source=datetime(9999, 1, 1, tzinfo=UTC)), "field 'ts_source' value 9999-"),
        b"h-ts-past": (body(good[4], ts_source=datetime(1969, 7, 20, tzinfo=UTC)), "field 'ts_source' value 1969-"),
        b"h-key": (body(good[5]), f"message key 'h-key' differs from the record's key '{good[5].key}'"),
    }

    for change in good[:30]:
        emitter.emit(change)
    for key, (value, _) in hostile.items():
        emitter.produce_raw(key, value)
    emitter.emit(unseen)
    emitter.flush()
    # The big one through a producer that takes it (the broker does: up to 1 MiB).
    raw = Producer(kafka.client_config(settings, **{"message.max.bytes": 1_040_000}))
    raw.produce(entity.cdc_topic, value=big_body, key=b"DPMPTSP-BIG")
    assert raw.flush(30) == 0
    for change in good[30:]:
        emitter.emit(change)
    emitter.flush()

    processor = stage_process(settings, "processor")
    sink = stage_process(settings, "sink")
    port = sink.env["BACKBONE_QUERY_PORT"]
    stored = f"SELECT count() FROM {TABLE} FINAL"
    wait_for(lambda: count(port, stored) == len(good) + 1, 180, "every good event stored", alive=(processor, sink))
    assert count(port, f"SELECT count() FROM {TABLE} FINAL WHERE entity_key = 'DPMPTSP-NEVER-SEEN' AND is_deleted") == 1

    letters = _letters(settings, len(hostile) + 1)
    assert set(letters) == {*hostile, b"DPMPTSP-BIG"}, sorted(k or b"" for k in letters)
    for key, (_, expected) in hostile.items():
        assert any(expected in r for r in letters[key]), (key, letters[key])
    assert any(r.startswith("schema: clean schema of schema id") for r in letters[b"h-refused"])
    (too_large,) = set(letters[b"DPMPTSP-BIG"])
    assert too_large.startswith(f"too_large: the clean record for {entity.clean_topic} is ")
    assert "too large for a dead letter" in too_large
    wait_for(
        lambda: count(port, "SELECT count() FROM dead_letters FINAL") == len(hostile) + 1,
        60,
        "the dead letters in ClickHouse",
        alive=(processor, sink),
    )
    # Still alive, and no batch ever failed (so none was re-read).
    assert processor.alive()
    log = processor.log_path.read_text(errors="replace")
    assert "will be read again" not in log, processor.log_tail(40)
    assert count(port, stored) == len(good) + 1
