"""Cleaner.process on a mixed batch, with a fake registry: one output per input, dead letters intact."""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import fastavro
import pytest

from backbone.sealing import Sealer
from backbone.settings import PROJECT_ROOT
from contract.catalog import Catalog, load_catalog
from contract.codec import encode
from contract.reference import load_regions, villages
from contract.rules import compose_envelope, load_envelope_template, pseudonymise, scope_secret
from producers.emitter import Change, envelope_for
from simulators.licensing import LicensingOffice
from stream_processors.cleaning import Cleaner, Output, RawEvent
from tests.fakes import FakeRegistry

SCHEMAS = PROJECT_ROOT / "schemas"
CATALOG = load_catalog(PROJECT_ROOT / "catalog", SCHEMAS)
ENTITY = CATALOG.entity_for_topic("cdc.licensing.permit_application")
REGIONS = load_regions(PROJECT_ROOT / "data" / "bojonegoro_regions.csv")
SECRET = b"unit-test-key"
DLQ = "dlq.processor"
SEALER = Sealer("unit-test-dead-letter-key")


def envelope(change: Change) -> dict[str, Any]:
    """The envelope the emitter builds (producers.emitter.envelope_for)."""
    return envelope_for(ENTITY, change)


@pytest.fixture
def setup():
    registry = FakeRegistry()
    value = compose_envelope(load_envelope_template(SCHEMAS), ENTITY.payload_schema(), ENTITY.name)
    schema_id = registry.register(f"{ENTITY.cdc_topic}-value", value)
    registry.registered.clear()
    cleaner = Cleaner(CATALOG, registry, REGIONS, SECRET, DLQ, sealer=SEALER)
    office = LicensingOffice(villages(REGIONS), seed=3)
    changes = list(itertools.islice(office.changes(), 6))

    def raw(offset: int, value: bytes | None, key: bytes | None = b"k") -> RawEvent:
        return RawEvent(ENTITY.cdc_topic, 2, offset, key, value)

    def body(change: Change) -> bytes:
        return encode(schema_id, registry.schemas[schema_id][1], envelope(change))

    return registry, cleaner, changes, raw, body


def headers(out: Output) -> dict[str, str]:
    return {k: v.decode() for k, v in out.headers or []}


def test_mixed_batch_one_output_per_input_and_dead_letters_intact(setup):
    registry, cleaner, changes, raw, body = setup
    bad_village = Change(**{**vars(changes[3]), "after": {**changes[3].after, "village_code": "35.22.99.9999"}})
    negative_fee = Change(**{**vars(changes[4]), "after": {**changes[4].after, "fee": Decimal("-1000.00")}})
    truncated = body(changes[5])[:40]
    unknown_id = b"\x00\x00\x00\x03\xe7" + body(changes[0])[5:]
    events = [
        raw(10, body(changes[0]), changes[0].key.encode()),
        raw(11, b"not avro", b"garbage-key"),
        raw(12, body(changes[1]), changes[1].key.encode()),
        raw(13, truncated),
        raw(14, body(bad_village)),
        raw(15, body(changes[2]), changes[2].key.encode()),
        raw(16, body(negative_fee)),
        raw(17, None, None),
        raw(18, unknown_id),
    ]
    outputs: list[Output] = []
    ok, failed = cleaner.process(events, outputs.append)

    assert (ok, failed) == (3, 6)
    assert len(outputs) == len(events)
    expected_reasons = {
        11: "undecodable: not Confluent-framed Avro",
        13: "undecodable: Avro body does not match schema id 1",
        14: "invalid: field 'village_code' value '35.22.99.9999': unknown village code",
        16: "invalid: field 'fee' value -1000.00: below the minimum 0",
        17: "undecodable: not Confluent-framed Avro",
        18: "undecodable: schema id 999 unknown to the registry",
    }
    for event, out in zip(events, outputs, strict=True):
        if event.offset in expected_reasons:
            h = headers(out)
            assert out.topic == DLQ
            assert SEALER.unseal(out.value) == (event.value or b"") and out.key == event.key
            assert h["error.stage"] == "processor"
            assert h["error.reason"].startswith(expected_reasons[event.offset]), h["error.reason"]
            assert (h["source.topic"], h["source.partition"], h["source.offset"]) == (
                ENTITY.cdc_topic,
                "2",
                str(event.offset),
            )
            assert datetime.fromisoformat(h["error.ts"]).tzinfo is not None
        else:
            assert out.topic == ENTITY.clean_topic and out.key == event.key and not out.headers


def test_clean_outputs_decode_with_the_registered_clean_schema(setup):
    registry, cleaner, changes, raw, body = setup
    outputs: list[Output] = []
    cleaner.process([raw(i, body(c), c.key.encode()) for i, c in enumerate(changes)], outputs.append)
    assert registry.registered == [f"{ENTITY.clean_topic}-value"]  # once per (topic, schema id)
    for change, out in zip(changes, outputs, strict=True):
        clean_id = int.from_bytes(out.value[1:5], "big")
        schema, parsed = registry.schema_by_id(clean_id)
        assert schema["name"] == "PermitApplicationClean"
        record = fastavro.schemaless_reader(io.BytesIO(out.value[5:]), parsed, None)
        assert record["entity_key"] == change.key and record["op"] == change.op
        assert record["status"] == change.after["status"]
        assert record["applicant_name"] == pseudonymise(
            scope_secret(SECRET, "licensing"), change.after["applicant_name"]
        )
        assert change.after["applicant_nik"] not in json.dumps(record, default=str)
        assert record["village_name"] == REGIONS[change.after["village_code"]]["name"]


def _pseudonyms(setup, catalog: Catalog) -> list[str]:
    registry, _, changes, raw, body = setup
    outputs: list[Output] = []
    cleaner = Cleaner(catalog, registry, REGIONS, SECRET, DLQ, sealer=SEALER)
    cleaner.process([raw(i, body(c), c.key.encode()) for i, c in enumerate(changes)], outputs.append)
    decoded = []
    for out in outputs:
        _, parsed = registry.schema_by_id(int.from_bytes(out.value[1:5], "big"))
        decoded.append(fastavro.schemaless_reader(io.BytesIO(out.value[5:]), parsed, None)["applicant_nik"])
    return decoded


def test_pseudonyms_join_within_a_scope_and_not_across_scopes(setup):
    """Each domain hashes with its own key derived from the master key; a system the catalog puts in
    another scope (`pseudonym_scope:`) hashes with that scope's key, and nothing else changes."""
    _, _, changes, _, _ = setup
    own = _pseudonyms(setup, CATALOG)
    moved = Catalog(
        [
            dataclasses.replace(
                s, entities=tuple(dataclasses.replace(e, pseudonym_scope="population") for e in s.entities)
            )
            for s in CATALOG.systems
        ]
    )
    shared = _pseudonyms(setup, moved)
    niks = [c.after["applicant_nik"] for c in changes]
    assert own == [pseudonymise(scope_secret(SECRET, "licensing"), n) for n in niks]
    assert shared == [pseudonymise(scope_secret(SECRET, "population"), n) for n in niks]
    assert not set(own) & set(shared)
    assert scope_secret(SECRET, "licensing") != scope_secret(SECRET, "health") != SECRET
