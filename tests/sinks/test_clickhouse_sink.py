"""The sink's batches on the embedded engine (chDB): one bad message never stops it. Backfills
spanning many monthly partitions, decimals that do not fit their column, malformed dead-letter
headers; the dead_letters retention and masked view; the store folder's mode. The batch tests run
twice: decoded in Python, and decoded by the engine (FORMAT AvroConfluent, the real registry)."""

from __future__ import annotations

import copy
import stat
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import clickhouse_connect
import pytest

from backbone.sealing import MAGIC, Sealer
from backbone.settings import PROJECT_ROOT, load_settings
from contract.catalog import Catalog
from contract.codec import encode
from contract.deadletter import dead_letter_headers, header
from contract.positions import version_of
from contract.rules import SOURCE_VERSION, event_id
from sinks import ddl
from sinks.avro_ingest import AvroIngest
from sinks.clickhouse_sink import Sink
from sinks.kpi_tables import KpiTables
from sinks.reconciliation import Reconciler
from sinks.source_activity import SourceActivity
from sinks.store import connect
from sinks.table_writer import TableWriter
from tests.fakes import FakeRegistry
from tests.helpers import LiveRegistry
from tests.sinks.test_ddl import CLEAN, T0, TABLE, record

CLEAN_TOPIC = "clean.licensing.permit_application"
DLQ_TOPICS = ("dlq.processor", "dlq.sink", "dlq.adapter")
SEALER = Sealer("sink-test-key")
REGIONS_CSV = PROJECT_ROOT / "data" / "bojonegoro_regions.csv"


class FakeMessage:
    def __init__(
        self, topic: str, offset: int, value: bytes, key: bytes | None = b"k", headers=None, partition: int = 0
    ) -> None:
        self._topic, self._offset, self._value, self._key, self._headers = topic, offset, value, key, headers
        self._partition = partition

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers

    def error(self) -> None:
        return None


class FakeProducer:
    def __init__(self) -> None:
        self.produced: list[dict[str, Any]] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.produced.append({"topic": topic, **kwargs})

    def flush(self, _timeout: float) -> int:
        return 0


@pytest.fixture
def client(tmp_path):
    c = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path}/ch")
    yield c
    c.close()


@pytest.fixture(params=["python", "engine"])
def sink(request, client):
    """The sink's batch logic on chDB, without Kafka: messages in, a fake producer for its dead letters.
    `python`: every record decoded in Python; `engine`: the engine decodes the bytes with the schemas
    of the real registry, the way the running sink stores what it can."""
    if request.param == "engine":
        registry_url = request.getfixturevalue("stack").registry_url
        return batch_sink(client, LiveRegistry(registry_url), AvroIngest(client, registry_url))
    return batch_sink(client, FakeRegistry(), AvroIngest(client, "", enabled=False))


def batch_sink(client: Any, registry: Any, fast: AvroIngest) -> Sink:
    s = Sink.__new__(Sink)
    s.client, s.writer, s.registry, s.fast = client, TableWriter(client, 28), registry, fast
    s.dlq_topics, s.tables = DLQ_TOPICS, {CLEAN_TOPIC: TABLE}
    s.kinds, s.docs, s.reference = {TABLE: "simulator"}, {}, {"ref.regions": "ref_regions"}
    s.kpi_tables = KpiTables.__new__(KpiTables)  # no KPI topics in these batches
    s.kpi_tables.client, s.kpi_tables.registry, s.kpi_tables.tables = client, s.registry, {}
    s.kpi_tables.topics, s.kpi_tables.ready, s.kpi_tables.batch = [], {}, []
    s.dlq, s.sealer, s.stored = FakeProducer(), SEALER, 0
    # No census in these batches; each system's last change is kept (sinks/reconciliation.py, source_activity.py).
    s.reconciler, s.activity = Reconciler(client, Catalog(), {}, "census", 60.0), SourceActivity(client, Catalog())
    s.schema_id = s.registry.add(CLEAN)
    return s


def wider_fee(precision: int = 30) -> dict[str, Any]:
    """A later schema whose `fee` is wider than the column the first one made (Decimal(18, 2))."""
    schema = copy.deepcopy(CLEAN)
    for f in schema["fields"]:
        if f["name"] == "fee":
            f["type"] = {**f["type"], "precision": precision}
    return schema


def clean_message(
    sink: Sink, offset: int, rec: dict[str, Any], schema: dict[str, Any] = CLEAN, partition: int = 0
) -> FakeMessage:
    """The record as the processor writes it, with the version it computes from the source position."""
    if SOURCE_VERSION in {f["name"] for f in schema["fields"]} and rec.get(SOURCE_VERSION) is None:
        millis = int(rec["ts_source"].timestamp() * 1000)
        kind = sink.kinds.get(TABLE, "simulator")
        rec = {**rec, SOURCE_VERSION: str(version_of(kind, rec["source_position"], millis, rec["op"]))}
    schema_id = sink.registry.add(schema)
    value = encode(schema_id, sink.registry.schema_by_id(schema_id)[1], rec)
    return FakeMessage(CLEAN_TOPIC, offset, value, partition=partition)


def test_a_batch_spanning_240_months_is_stored(sink, client):
    """A backfill of 20 years: 240 monthly partitions in one batch (ClickHouse's default guard is 100)."""
    months = [datetime(2005 + m // 12, m % 12 + 1, 15, tzinfo=UTC) for m in range(240)]
    batch = [clean_message(sink, i, record(f"H-{i}", "c", i, ts)) for i, ts in enumerate(months)]
    assert sink.write_batch(batch) == 240
    assert sink.dlq.produced == []
    assert client.query(f"SELECT count(), uniqExact(toYYYYMM(ts_source)) FROM {TABLE}").result_rows == [(240, 240)]
    partitions = client.query(f"SELECT uniqExact(partition) FROM system.parts WHERE table = '{TABLE}' AND active")
    assert partitions.result_rows == [(240,)]
    assert client.query(f"SELECT count() FROM {TABLE}_state FINAL").result_rows == [(240,)]


def test_the_state_table_follows_updates_and_deletes_in_source_order(sink, client):
    """Fed in the same batch as the change log; a late or repeated change never replaces a newer one."""
    t = [T0 + timedelta(minutes=m) for m in range(6)]
    first = [
        record("A", "c", 1, t[0]),
        record("B", "c", 2, t[0]),
        record("A", "u", 5, t[2], status="VERIFIED"),
        record("C", "c", 3, t[1]),
    ]
    sink.write_batch([clean_message(sink, i, r) for i, r in enumerate(first)])
    second = [
        record("B", "d", 6, t[3]),
        record("A", "u", 4, t[4], status="REJECTED"),  # an earlier change delivered late (its clock ran ahead)
        first[2],  # a duplicate delivery
        record("C", "u", 7, t[5], status="VERIFIED"),
        record("C", "u", 8, t[5], status="REJECTED"),  # same millisecond: the position decides
    ]
    sink.write_batch([clean_message(sink, 10 + i, r) for i, r in enumerate(second)])
    current = client.query(f"SELECT entity_key, status FROM {TABLE}_current ORDER BY entity_key").result_rows
    assert current == [("A", "VERIFIED"), ("C", "REJECTED")]
    state = client.query(f"SELECT entity_key, version FROM {TABLE}_state FINAL ORDER BY entity_key").result_rows
    assert state == [("A", 5), ("C", 8)]  # B's delete hides it under FINAL
    assert client.query(f"SELECT count() FROM {TABLE} FINAL").result_rows == [(8,)]


def test_reference_topics_fill_the_dimensions(sink, client):
    """ref.regions and ref.departments as the bootstrap publishes them; a tombstone removes a code and
    a record that is not JSON becomes a dead letter."""
    import json

    from contract.departments import load_departments
    from contract.reference import load_regions
    from sinks import migrations

    migrations.migrate(client, Catalog([]))
    sink.reference = {"ref.regions": "ref_regions", "ref.departments": "ref_departments"}
    regions = load_regions(REGIONS_CSV)
    departments = load_departments()
    batch = [
        FakeMessage("ref.regions", i, json.dumps(v).encode(), json.dumps(c).encode())
        for i, (c, v) in enumerate(regions.items())
    ]
    batch += [
        FakeMessage("ref.departments", i, json.dumps(v).encode(), json.dumps(c).encode())
        for i, (c, v) in enumerate(departments.items())
    ]
    batch += [FakeMessage("ref.departments", 999, None, b'"DISDIK"'), FakeMessage("ref.regions", 999, b"{", b'"x"')]
    sink.write_batch(batch)
    villages = client.query("SELECT village_type, count() FROM dim_village GROUP BY ALL ORDER BY 1").result_rows
    assert villages == [("desa", 419), ("kelurahan", 11)]
    assert client.query("SELECT count() FROM dim_kecamatan").result_rows == [(28,)]
    assert client.query("SELECT count() FROM dim_village WHERE kecamatan_name = ''").result_rows == [(0,)]
    got = client.query("SELECT count(), countIf(department_code = 'DISDIK') FROM dim_department").result_rows
    assert got == [(len(departments) - 1, 0)]
    [letter] = sink.dlq.produced
    assert header(letter["headers"], "error.reason").startswith("unstorable: reference record")


@pytest.mark.parametrize(
    "fee",
    [Decimal("12345678901234567890.12"), Decimal("10000000000000000.00")],
    ids=["wider-than-the-storage", "one-digit-over-the-precision"],
)
def test_an_unstorable_decimal_is_dead_lettered_and_its_neighbours_stored(sink, client, fee):
    rows = [record(f"N-{i}", "c", i, T0 + timedelta(minutes=i)) for i in range(5)]
    rows[2] = {**rows[2], "fee": fee}
    # Written with a wider decimal (a producer's later schema) than the table's Decimal(18, 2).
    batch = [clean_message(sink, i, r, wider_fee() if i == 2 else CLEAN) for i, r in enumerate(rows)]
    sink.write_batch(batch)
    got = client.query(f"SELECT entity_key FROM {TABLE} ORDER BY entity_key").result_rows
    assert got == [("N-0",), ("N-1",), ("N-3",), ("N-4",)]
    [letter] = sink.dlq.produced
    assert letter["topic"] == "dlq.sink"
    assert header(letter["headers"], "error.reason").startswith("unstorable: fee: ")
    assert header(letter["headers"], "source.offset") == "2"
    assert SEALER.unseal(letter["value"]) == batch[2].value()  # the original bytes, sealed


def test_a_decimal_with_more_decimal_places_is_never_rounded(client):
    """The client would store 1.234 as 1.23 in Decimal(18, 2): such a row is refused, not rounded."""
    layout = TableWriter(client).layout(TABLE, 1, CLEAN)
    assert "would be rounded" in layout.row_problem({"fee": Decimal("1.234")})
    assert layout.row_problem({"fee": Decimal("1.230")}) is None
    assert layout.row_problem({"fee": Decimal("9999999999999999.99")}) is None
    assert "not a finite number" in layout.row_problem({"fee": Decimal("NaN")})


def test_a_value_the_client_cannot_convert_is_found_and_dead_lettered(sink, client, monkeypatch):
    """Beyond the checks made up front: the rows the client refuses are isolated by halving the batch."""
    monkeypatch.setattr(ddl.TableLayout, "row_problem", lambda self, rec: None)
    rows = [record(f"B-{i}", "c", i, T0) for i in range(8)]
    rows[5] = {**rows[5], "fee": Decimal("12345678901234567890.12")}
    sink.write_batch([clean_message(sink, i, r, wider_fee() if i == 5 else CLEAN) for i, r in enumerate(rows)])
    assert client.query(f"SELECT count() FROM {TABLE}").result_rows == [(7,)]
    [letter] = sink.dlq.produced
    assert header(letter["headers"], "source.offset") == "5"
    assert header(letter["headers"], "error.reason").startswith("unstorable: ")


def test_dead_letters_with_malformed_headers_are_stored(sink, client):
    good = dead_letter_headers("processor", "bad village", "cdc.x", 3, 42)
    malformed = [
        ("error.stage", b"adapter"),
        ("error.reason", b"bad row"),
        ("source.topic", b"file:x"),
        ("source.partition", b"not-a-number"),
        ("source.offset", b"99999999999999999999999"),  # beyond Int64
        ("error.ts", b"yesterday"),
    ]
    out_of_range = [("source.partition", b"4294967296"), ("source.offset", b""), ("error.ts", b"9999-01-01T00:00:00")]
    sealed = SEALER.seal(b"original")
    batch = [
        FakeMessage("dlq.processor", 0, sealed, headers=good),
        FakeMessage("dlq.adapter", 1, sealed, key=None, headers=malformed),
        FakeMessage("dlq.adapter", 2, b"clear bytes from an old stage", headers=out_of_range),
        FakeMessage("dlq.adapter", 3, sealed, headers=None),
    ]
    sink.write_batch(batch)
    assert sink.dlq.produced == []
    got = client.query(
        "SELECT _offset, stage, source_partition, source_offset, startsWith(value, {magic:String}) FROM dead_letters"
        " ORDER BY _offset",
        parameters={"magic": MAGIC.decode()},
    ).result_rows
    # Only sealed bytes in the store: the clear value of an old stage is sealed by the sink.
    assert got == [
        (0, "processor", 3, 42, True),
        (1, "adapter", -1, -1, True),
        (2, "", -1, -1, True),
        (3, "", -1, -1, True),
    ]


def test_dead_letters_have_a_ttl_and_existing_tables_get_it(client):
    client.command(ddl.dead_letters_ddl(28).replace("TTL toDateTime(ts_stored) + toIntervalDay(28)", ""))
    assert "TTL" not in client.command("SHOW CREATE TABLE dead_letters")
    TableWriter(client, 28)
    assert "TTL toDateTime(ts_stored) + toIntervalDay(28)" in client.command("SHOW CREATE TABLE dead_letters")
    TableWriter(client, 7)  # the setting changed
    assert "TTL toDateTime(ts_stored) + toIntervalDay(7)" in client.command("SHOW CREATE TABLE dead_letters")


def test_new_dead_letters_table_has_the_retention_from_the_settings(tmp_path):
    settings = load_settings(run_dir=tmp_path / "run", dead_letter_retention_days=90)
    client = connect(settings)
    try:
        TableWriter(client, settings.dead_letter_retention_days)
        assert "TTL toDateTime(ts_stored) + toIntervalDay(90)" in client.command("SHOW CREATE TABLE dead_letters")
    finally:
        client.close()


def test_masked_view_has_no_key_or_value(client):
    TableWriter(client)
    columns = [r[0] for r in client.query(f"DESCRIBE TABLE {ddl.DEAD_LETTERS_MASKED_VIEW}").result_rows]
    assert "key" not in columns and "value" not in columns
    assert {"stage", "reason", "source_topic", "letter_id", "ts_stored"} <= set(columns)


@pytest.mark.parametrize("existing", [False, True], ids=["new", "made-earlier-under-a-looser-umask"])
def test_the_chdb_folder_is_private(tmp_path, existing):
    settings = load_settings(run_dir=tmp_path / "run")
    if existing:
        settings.chdb_path.mkdir(parents=True)
        settings.chdb_path.chmod(0o755)
    client = connect(settings)
    try:
        TableWriter(client)
        assert stat.S_IMODE(settings.chdb_path.stat().st_mode) == 0o700
    finally:
        client.close()


# Source positions of three changes of one entity, in source order, as each adapter kind writes them.
POSITIONS = {
    "postgres_cdc": ["0000000000000000-snapshot", "00000000016B3A10-0000000002", "00000000016B3A10-0000000010"],
    "mariadb_binlog": ["00000001:0000000004:000000", "00000001:0000001200:000003", "00000002:0000000004:000000"],
    "query_poll": [
        "2025-03-03T02:00:00.000000Z|X",
        "2025-03-03T02:05:00.000000Z|X",
        "2025-03-03T02:05:00.000000Z|X|deleted",  # a hard delete found by reconciliation
    ],
    "file_drop": ["f" * 16 + ":00000009", "0" * 16 + ":00000002", "7" * 16 + ":00000001"],  # files dropped in turn
    "http_push": ["7", "8", "12"],
    "simulator": ["000000000001", "000000000002", "000000000003"],
}


@pytest.mark.parametrize("kind", sorted(POSITIONS))
def test_updates_and_deletes_of_every_adapter_kind_reach_the_state_table(sink, client, kind):
    """Delivered newest first (a re-read after a crash, a replay): the state still ends at the delete."""
    sink.kinds = {TABLE: kind}
    first, second, third = POSITIONS[kind]
    t = [T0 + timedelta(minutes=m) for m in range(3)]
    changes = [
        at(record("X", "c", 0, t[0]), first),
        at(record("X", "u", 0, t[1], status="VERIFIED"), second),
        at(record("X", "d", 0, t[2]), third),
        at(record("Y", "c", 0, t[0]), first),
        at(record("Y", "u", 0, t[1], status="REJECTED"), second),
    ]
    for i, change in enumerate(reversed(changes)):
        sink.write_batch([clean_message(sink, i, change)])
    assert client.query(f"SELECT entity_key, status FROM {TABLE}_current").result_rows == [("Y", "REJECTED")]
    assert client.query(f"SELECT count() FROM {TABLE}_state FINAL").result_rows == [(1,)]


def at(rec: dict[str, Any], position: str) -> dict[str, Any]:
    """A clean record moved to another source position (and so another event id)."""
    return {**rec, "source_position": position, "event_id": event_id("sim", "permit", rec["entity_key"], position)}
