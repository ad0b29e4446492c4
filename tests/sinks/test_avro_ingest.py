"""The sink's fast path (sinks/avro_ingest.py): the engine decodes the clean topic's bytes with the
real registry's schemas and stores exactly what the Python path stores, with each row's Kafka
partition and offset; what it cannot take exactly goes the Python way and is dead-lettered there."""

from __future__ import annotations

import copy
from datetime import timedelta
from decimal import Decimal
from typing import Any

import clickhouse_connect
import fastavro
import pytest

from backbone.net import free_port
from contract.codec import encode
from contract.deadletter import header
from contract.rules import SOURCE_VERSION
from sinks import avro_ingest
from sinks.avro_ingest import AvroIngest, offset_expression
from tests.helpers import LiveRegistry
from tests.sinks.test_clickhouse_sink import CLEAN_TOPIC, FakeMessage, batch_sink, clean_message
from tests.sinks.test_ddl import CLEAN, T0, TABLE, record

PARTITIONS = (2, 0, 1)


@pytest.fixture
def registry(stack) -> LiveRegistry:
    return LiveRegistry(stack.registry_url)


@pytest.fixture
def client(tmp_path):
    """One chDB store (chDB opens one path per process): the default database."""
    c = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path}/ch")
    yield c
    c.close()


@pytest.fixture
def other(client, tmp_path):
    """A second database of the same store, for the same batch written the other way."""
    client.command("CREATE DATABASE IF NOT EXISTS other")
    c = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path}/ch", database="other")
    yield c
    c.close()


def mixed_batch(sink: Any) -> list[FakeMessage]:
    """Creates, updates and deletes of 12 entities over three partitions, with offset gaps (as
    transaction markers leave them), partitions interleaved the way a consumer hands them out."""
    changes = []
    for i in range(36):
        key, step = f"M-{i % 12}", i // 12
        op = ("c", "u", "d")[step] if i % 3 else ("c", "u", "u")[step]
        changes.append(
            record(key, op, 100 + i, T0 + timedelta(minutes=i), status=("SUBMITTED", "VERIFIED", "REJECTED")[step])
        )
    messages, offsets = [], dict.fromkeys(PARTITIONS, 40)
    for i, change in enumerate(changes):
        partition = PARTITIONS[(i // 5) % 3]
        offsets[partition] += 2 if i % 7 == 0 else 1
        messages.append(clean_message(sink, offsets[partition], change, partition=partition))
    return messages


def rows(client: Any, sql: str) -> list[tuple]:
    return client.query(sql).result_rows


def test_the_engine_stores_what_python_stores_without_decoding_in_python(client, other, registry, monkeypatch):
    engine_store, python_store = client, other
    engine = batch_sink(engine_store, registry, AvroIngest(engine_store, registry.url))
    python = batch_sink(python_store, registry, AvroIngest(python_store, "", enabled=False))
    batch = mixed_batch(engine)
    assert python.write_batch(batch) == len(batch)

    def no_python_decode(*_args: Any) -> None:
        raise AssertionError("the engine path decoded a record in Python")

    monkeypatch.setattr("sinks.clickhouse_sink.decode", no_python_decode)
    assert engine.write_batch(batch) == len(batch)
    assert engine.dlq.produced == python.dlq.produced == []
    every = f"SELECT * EXCEPT ts_stored FROM {TABLE} ORDER BY _partition, _offset"
    assert rows(engine_store, every) == rows(python_store, every)
    positions = rows(engine_store, f"SELECT _partition, _offset FROM {TABLE} ORDER BY _partition, _offset")
    assert positions == sorted((m.partition(), m.offset()) for m in batch)
    state = f"SELECT * EXCEPT ts_stored FROM {TABLE}_state FINAL ORDER BY entity_key"
    assert rows(engine_store, state) == rows(python_store, state)
    assert len(rows(engine_store, state)) == 4  # 8 of the 12 entities deleted
    assert engine.stored == python.stored == len(batch)


def over_precision(sink: Any, offset: int, fee: Decimal) -> FakeMessage:
    """A record of the clean schema whose fee has more digits than Decimal(18, 2) allows (a writer
    that does not check precision): the bytes encoded with a wider decimal, framed with CLEAN's id."""
    wide = copy.deepcopy(CLEAN)
    for f in wide["fields"]:
        if f["name"] == "fee":
            f["type"] = {**f["type"], "precision": 40}
    rec = {**record(f"P-{offset}", "c", offset, T0), "fee": fee, SOURCE_VERSION: str(offset)}
    return FakeMessage(CLEAN_TOPIC, offset, encode(sink.schema_id, fastavro.parse_schema(wide), rec))


@pytest.mark.parametrize(
    "fee",
    [Decimal("12345678901234567.00"), Decimal("1234567890123456789012345.00")],
    ids=["over-the-precision", "over-the-storage-width"],
)
def test_a_decimal_over_its_column_goes_the_python_way_and_is_dead_lettered(client, registry, fee):
    sink = batch_sink(client, registry, AvroIngest(client, registry.url))
    batch = [clean_message(sink, i, record(f"P-{i}", "c", i, T0)) for i in range(4)]
    batch.insert(2, over_precision(sink, 9, fee))
    sink.write_batch(batch)
    assert rows(client, f"SELECT count() FROM {TABLE}") == [(4,)]
    [letter] = sink.dlq.produced
    assert header(letter["headers"], "error.reason").startswith("unstorable: fee: "), letter
    assert header(letter["headers"], "source.offset") == "9"


def test_records_without_a_source_version_get_theirs_in_python(client, registry):
    """Clean records written before the processor added source_version (an older clean schema, or
    the field left empty): the version is computed from the source position, as before."""
    sink = batch_sink(client, registry, AvroIngest(client, registry.url))
    older = copy.deepcopy(CLEAN)
    older["fields"] = [f for f in older["fields"] if f["name"] != SOURCE_VERSION]
    first = [clean_message(sink, i, record("V", "c" if i == 0 else "u", i + 1, T0), older) for i in range(2)]
    empty = clean_message(sink, 5, {**record("V", "u", 7, T0, status="VERIFIED"), SOURCE_VERSION: None})
    sink.write_batch([*first, empty])
    assert rows(client, f"SELECT version, status FROM {TABLE}_state FINAL") == [(7, "VERIFIED")]
    assert rows(client, f"SELECT count() FROM {TABLE}") == [(3,)]


def test_a_registry_the_engine_cannot_reach_leaves_batches_to_python_then_rests(client, registry):
    unreachable = f"http://127.0.0.1:{free_port()}/apis/ccompat/v7"
    sink = batch_sink(client, registry, AvroIngest(client, unreachable))
    for n in range(4):
        sink.write_batch([clean_message(sink, n * 10 + i, record(f"R-{n}-{i}", "c", i, T0)) for i in range(3)])
    assert rows(client, f"SELECT count() FROM {TABLE}") == [(12,)]
    assert sink.dlq.produced == []
    assert TABLE in sink.fast.resting  # after three failures in a row: Python only, for a while


def test_offset_expression_gives_each_row_its_partition_and_offset(client):
    positions = [(0, 5), (0, 6), (0, 8), (3, 1), (3, 2), (1, 9), (0, 9), (0, 10), (2, 100)]
    messages = [FakeMessage("t", offset, b"", partition=partition) for partition, offset in positions]
    partition, offset = offset_expression(messages)
    got = rows(client, f"SELECT {partition}, {offset} FROM numbers({len(messages)}) SETTINGS max_threads = 1")
    assert got == positions
    single = offset_expression(messages[:2])
    assert single == ("0", "rowNumberInAllBlocks() + 5")


def test_schemas_the_engine_cannot_map_like_python_are_left_to_python():
    nested = {"type": "record", "name": "Inner", "fields": [{"name": "x", "type": "int"}]}
    for avro_type in (
        nested,
        ["null", "string", "long"],
        {"type": "array", "items": nested},
        {"type": "array", "items": {"type": "bytes", "logicalType": "decimal", "precision": 9}},
    ):
        assert not avro_ingest.fast_columns({"fields": [{"name": "f", "type": avro_type}]}), avro_type
    assert avro_ingest.fast_columns(CLEAN)
