"""The sink as a real process on the real stack (Kafka, registry, chDB): a backfill of 20 years, a
record whose decimal does not fit its column and dead letters with malformed headers, all in its
input at once. It stores what it can, dead-letters the record (and stores that dead letter too),
keeps running, and its store is private."""

from __future__ import annotations

import copy
import os
import stat
from datetime import UTC, datetime
from decimal import Decimal

import fastavro
from confluent_kafka import Producer

from backbone import kafka
from backbone.sealing import Sealer
from contract.catalog import catalog_for
from contract.codec import Registry, encode, subject_for
from contract.rules import PayloadRules
from contract.topics import DLQ_ADAPTER, named
from tests.helpers import count, query, wait_for
from tests.sinks.test_ddl import record

TABLE = "licensing_permit_application"


def test_the_sink_stores_a_backfill_dead_letters_what_does_not_fit_and_keeps_going(pipeline_settings, stage_process):
    settings = pipeline_settings
    [entity] = [e for e in catalog_for(settings).entities if e.table == TABLE]
    clean = PayloadRules.from_schema(entity.payload_schema()).clean_schema()
    schema_id = Registry.for_settings(settings).register(subject_for(entity.clean_topic), clean)
    parsed = fastavro.parse_schema(clean)
    # The same bytes layout with a wider precision: how a producer with a later (or careless)
    # schema writes a fee that Decimal(18, 2) cannot hold; the sink decodes it with schema_id.
    wide = copy.deepcopy(clean)
    for f in wide["fields"]:
        if f["name"] == "fee":
            f["type"] = {**f["type"], "precision": 38}
    wide_parsed = fastavro.parse_schema(wide)

    producer = Producer(kafka.client_config(settings))
    months = [datetime(2005 + m // 12, m % 12 + 1, 10, tzinfo=UTC) for m in range(240)]
    for i, ts in enumerate(months):
        value = encode(schema_id, parsed, record(f"H-{i}", "c", i, ts))
        producer.produce(entity.clean_topic, key=f"H-{i}".encode(), value=value)
    bad = {**record("BAD", "c", 999, months[0]), "fee": Decimal("12345678901234567890.12")}
    producer.produce(entity.clean_topic, key=b"BAD", value=encode(schema_id, wide_parsed, bad))
    sealed = Sealer(settings.dead_letter_secret()).seal(b"a rejected row")
    odd_headers = [
        [("error.stage", b"adapter"), ("source.partition", b"n/a"), ("source.offset", b"12x"), ("error.ts", b"?")],
        [("error.stage", b"adapter"), ("source.partition", b"4294967296"), ("source.offset", b"-")],
        None,
    ]
    for i, headers in enumerate(odd_headers):
        producer.produce(named(settings, DLQ_ADAPTER), key=f"row-{i}".encode(), value=sealed, headers=headers)
    assert producer.flush(30) == 0

    sink = stage_process(settings, "sink")
    port = sink.env["BACKBONE_QUERY_PORT"]
    stored = f"SELECT count() FROM {TABLE} FINAL"
    wait_for(lambda: count(port, stored) >= 240, 90, "240 months of history stored", alive=(sink,))
    unstorable = "SELECT count() FROM dead_letters FINAL WHERE stage = 'sink' AND startsWith(reason, 'unstorable: fee')"
    wait_for(lambda: count(port, unstorable) == 1, 60, "the sink's dead letter stored", alive=(sink,))
    wait_for(
        lambda: count(port, "SELECT count() FROM dead_letters WHERE stage = 'adapter' OR stage = ''") == 3,
        30,
        "dead letters with malformed headers stored",
        alive=(sink,),
    )
    assert count(port, stored) == 240
    assert count(port, f"SELECT uniqExact(toYYYYMM(ts_source)) FROM {TABLE}") == 240
    assert count(port, f"SELECT count() FROM {TABLE} WHERE entity_key = 'BAD'") == 0
    positions = "SELECT source_partition, source_offset FROM dead_letters WHERE stage = 'adapter' ORDER BY _offset"
    assert query(port, positions) == "-1\t-1\n-1\t-1\n"
    assert sink.alive()

    # Private store: the folder 0700, nothing in it readable by the group or others (umask 077).
    assert stat.S_IMODE(settings.chdb_path.stat().st_mode) == 0o700
    loose = [
        path
        for folder, dirs, files in os.walk(settings.chdb_path)
        for path in (os.path.join(folder, n) for n in dirs + files)
        if not os.path.islink(path) and stat.S_IMODE(os.stat(path).st_mode) & 0o077
    ]
    assert loose == []
