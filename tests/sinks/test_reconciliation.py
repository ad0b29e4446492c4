"""The sink's side of reconciliation on an embedded store (chDB): the store's keys as of a census's source
position, counted with the census's hash, compared, named and recorded; and each system's last change.
The adapters' side, on real databases: tests/producers/adapters/test_reconciliation.py."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import clickhouse_connect
import pytest

from backbone import metrics
from contract.catalog import Catalog, Entity, SourceSystem
from contract.census import Census, buckets_of
from sinks.reconciliation import Reconciler
from sinks.source_activity import SourceActivity

SYSTEM, TOPIC = "pg-licensing", "census"
ENTITY = Entity(SYSTEM, "DPMPTSP", "lic", "app", Path("x.avsc"), ("application_id",), Path("lic.yaml"))
CATALOG = Catalog([SourceSystem(SYSTEM, "t", "DPMPTSP", "lic", {"kind": "postgres_cdc"}, 60, (ENTITY,), Path("x"))])


def pg(lsn: int, index: int | str) -> str:
    return f"{lsn:016X}-{index:010d}" if isinstance(index, int) else f"{lsn:016X}-{index}"


# (key, source position, deleted): a snapshot of a, b, c, e; e deleted before the census at LSN 0x200;
# after it: d created, b deleted, c updated. As of the census the store holds a, b, c.
CHANGES = [
    ("a", pg(0, "snapshot"), 0),
    ("b", pg(0, "snapshot"), 0),
    ("c", pg(0, "snapshot"), 0),
    ("e", pg(0, "snapshot"), 0),
    ("e", pg(0x100, 1), 1),
    ("d", pg(0x300, 1), 0),
    ("b", pg(0x300, 2), 1),
    ("c", pg(0x400, 1), 0),
]
AT = pg(0x200, 0)


def version(position: str) -> int:
    lsn, _, index = position.partition("-")
    return int(lsn, 16) << 40 if index == "snapshot" else (int(lsn, 16) << 40) + int(index) + 1


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    c = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path_factory.mktemp('reconciliation')}/ch")
    # The columns reconciliation reads, as sinks/ddl.py makes them.
    c.command(
        "CREATE TABLE lic_app (event_id String, entity_key String, is_deleted Bool, source_position String, "
        "ts_emitted DateTime64(3, 'UTC')) ENGINE = ReplacingMergeTree ORDER BY (entity_key, event_id)"
    )
    c.command(
        "CREATE TABLE lic_app_state (entity_key String, is_deleted Bool, version UInt128) "
        "ENGINE = ReplacingMergeTree(version, is_deleted) ORDER BY entity_key"
    )
    c.command("CREATE VIEW lic_app_current AS SELECT * FROM lic_app_state FINAL WHERE NOT is_deleted")
    rows = [(f"{k}@{p}", k, bool(d), p, datetime(2026, 1, 1, tzinfo=UTC)) for k, p, d in CHANGES]
    c.insert("lic_app", rows, column_names=["event_id", "entity_key", "is_deleted", "source_position", "ts_emitted"])
    state = [(k, bool(d), version(p)) for k, p, d in CHANGES]
    c.insert("lic_app_state", state, column_names=["entity_key", "is_deleted", "version"])
    yield c
    c.close()


def census(keys: set[str], position: str = AT, mode: str = "position") -> Census:
    return Census(SYSTEM, "app", "postgres_cdc", mode, position, buckets=buckets_of(keys), source="app")


class Msg:
    def __init__(self, value: bytes, topic: str = TOPIC) -> None:
        self._value, self._topic = value, topic

    def topic(self) -> str:
        return self._topic

    def value(self) -> bytes:
        return self._value

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 0


def reconciler(client, grace: float = 60.0) -> Reconciler:
    return Reconciler(client, CATALOG, {"lic_app": "postgres_cdc"}, TOPIC, grace)


def test_the_store_as_of_the_census_position_matches_the_source_then(client):
    row, diff = reconciler(client).compare(census({"a", "b", "c"}), ENTITY)
    assert diff.matches and row[8:13] == [3, 3, 0, 0, True]
    # Compared now instead (mode current), the later changes count: d is there, b is gone.
    _, diff = reconciler(client).compare(census({"a", "b", "c"}, mode="current"), ENTITY)
    assert (diff.missing, diff.extra) == (1, 1)


def test_differences_are_counted_and_the_keys_the_store_knows_named(client):
    # c deleted in the source behind the adapter's back: extra in the store, named.
    row, diff = reconciler(client).compare(census({"a", "b"}), ENTITY)
    assert (diff.missing, diff.extra, row[12], row[13], row[14]) == (0, 1, False, ["c"], [])
    # z never reached the store (not named: the store never held it); e is held as deleted (named).
    row, diff = reconciler(client).compare(census({"a", "b", "c", "z", "e"}), ENTITY)
    assert (diff.missing, diff.extra, row[13], row[14]) == (2, 0, [], ["e"])


def test_a_census_that_differs_is_reported_after_the_grace_with_its_gauge(client):
    gauge = metrics.RECONCILIATION_DIFFERENCE.labels(SYSTEM, "app")
    waiting = reconciler(client, grace=60.0)
    assert waiting.take(Msg(census({"a", "b"}).to_bytes())) and not waiting.take(Msg(b"x", "clean.lic.app"))
    assert waiting.check() == 0 and waiting.pending  # maybe still in flight: compared again later
    assert waiting.take(Msg(b"not json"))  # a broken census is dropped, never stops the sink
    reporting = reconciler(client, grace=1e-9)
    reporting.take(Msg(census({"a", "b"}).to_bytes()))
    assert reporting.check() == 1 and not reporting.pending
    assert gauge._value.get() == 1
    reporting.take(Msg(census({"a", "b", "c"}).to_bytes()))
    assert reporting.check() == 1 and gauge._value.get() == 0
    found = client.query("SELECT extra, checksum_match, extra_keys FROM reconciliation FINAL ORDER BY checked_at")
    assert found.result_rows == [(1, False, ["c"]), (0, True, [])]


def test_a_file_reconciles_its_rows_with_stored_plus_rejected(client):
    client.insert(
        "lic_app",
        [(f"f{i}", f"k{i}", False, f"0123456789abcdef:{i:08d}", datetime(2026, 1, 1, tzinfo=UTC)) for i in (2, 3, 5)],
        column_names=["event_id", "entity_key", "is_deleted", "source_position", "ts_emitted"],
    )
    done = Census(SYSTEM, "app", "file_drop", "file", "0123456789abcdef", file_rows=4, file_rejected=1)
    row, diff = reconciler(client).compare(done, ENTITY)
    assert diff.matches and row[8:13] == [4, 4, 0, 0, True]
    short = Census(SYSTEM, "app", "file_drop", "file", "0123456789abcdef", file_rows=6, file_rejected=1)
    assert reconciler(client).compare(short, ENTITY)[1].missing == 2


def test_the_last_change_of_each_system_comes_from_the_store_at_start_and_from_each_batch(client):
    gauge = metrics.SOURCE_LAST_CHANGE.labels(SYSTEM)
    activity = SourceActivity(client, CATALOG)
    assert gauge._value.get() == datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    later = datetime(2026, 1, 2, tzinfo=UTC)
    activity.stored("lic_app", [later, None])
    assert gauge._value.get() == later.timestamp()
    activity.stored("lic_app", [datetime(2025, 1, 1, tzinfo=UTC)])  # an older change stored later
    assert gauge._value.get() == later.timestamp()
