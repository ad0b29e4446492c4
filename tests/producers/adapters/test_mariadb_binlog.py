"""The MariaDB binlog adapter on real services: a MariaDB server started for the session (row-based
binlog), the session's Kafka and registry, and the processor and sink as child processes storing into
chDB. Each test writes through MariaDbSourceWriter into a table of its own and checks ClickHouse."""

from __future__ import annotations

import itertools
import json
import re
import signal
import threading
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pymysql
import pytest
import requests
import yaml

from backbone.errors import ConfigError
from backbone.settings import PROJECT_ROOT
from contract.bootstrap import bootstrap
from contract.catalog import catalog_for
from contract.reference import load_regions, villages
from devstack.mariadb import LocalMariaDB
from producers.adapters.mariadb_binlog import file_index
from producers.emitter import Change
from producers.service import build_adapter
from simulators.licensing import LicensingOffice
from simulators.writers.mariadb import MariaDbSourceWriter
from tests.helpers import count, query, wait_for
from tests.producers.adapters.test_postgres import reconciled

SYSTEM = "mariadb-licensing"
TABLE = "licensing_permit_application"
PASSWORD_ENV = "MARIADB_LICENSING_PASSWORD"
_numbers = itertools.count(1)


class Workload:
    """Licensing office changes plus deletes of decided applications, with what each key went through."""

    def __init__(self, regions: list[str], seed: int) -> None:
        self.office = LicensingOffice(regions, seed=seed)
        self.changes = self.office.changes()
        self.rows: dict[str, dict] = {}
        self.history: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self.made = 0

    def next(self, deletes: bool = True) -> Change:
        self.made += 1
        if deletes and self.made % 7 == 0:
            decided = [k for k in self.rows if k not in self.office.open]
            if decided:
                before = self.rows.pop(decided[0])
                self.history[decided[0]].append(("d", before["status"]))
                return Change("d", decided[0], "", datetime.now(UTC), before=before)
        change = next(self.changes)
        self.rows[change.key] = change.after
        self.history[change.key].append((change.op, change.after["status"]))
        return change

    def take(self, n: int, deletes: bool = True) -> list[Change]:
        return [self.next(deletes) for _ in range(n)]


class Source:
    """One test's table, catalog, settings and writer."""

    def __init__(
        self, mariadb: LocalMariaDB, make_settings, tmp_path: Path, batch_size: int, census_seconds: float = 300
    ) -> None:
        n = next(_numbers)
        self.mariadb = mariadb
        self.table = f"permit_application_{n}"
        doc = yaml.safe_load((PROJECT_ROOT / "catalog" / "licensing.yaml").read_text())
        doc["system"] = SYSTEM
        doc["title"] = "Licensing office permit system (MariaDB)"
        doc["adapter"] = {
            "kind": "mariadb_binlog",
            "host": "127.0.0.1",
            "port": mariadb.params["port"],
            "database": mariadb.params["database"],
            "user": mariadb.params["user"],
            "password_env": PASSWORD_ENV,
            "server_id": 5400 + n,
            "tables": {self.table: "permit_application"},
            "batch_size": batch_size,
            "census_seconds": census_seconds,
        }
        catalog = tmp_path / f"catalog{n}"
        catalog.mkdir()
        (catalog / "licensing-mariadb.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        self.settings = make_settings(catalog_dir=catalog)
        bootstrap(self.settings)
        (self.entity,) = catalog_for(self.settings).system(SYSTEM).entities
        self.writer = MariaDbSourceWriter(mariadb.params, self.entity, table=self.table)
        self.writer.create_table()
        self.workload = Workload(villages(load_regions(self.settings.regions_csv)), seed=n)

    def start(self, stage_process) -> tuple:  # noqa: ANN001
        adapter = self.start_adapter(stage_process)
        processor = stage_process(self.settings, "processor")
        sink = stage_process(self.settings, "sink")
        return adapter, processor, sink

    def start_adapter(self, stage_process):  # noqa: ANN001, ANN201
        return stage_process(
            self.settings, "adapters", "run", SYSTEM, **{PASSWORD_ENV: self.mariadb.params["password"]}
        )

    def checkpoint(self) -> dict:
        try:
            return json.loads((self.settings.run_dir / "checkpoints" / f"{SYSTEM}.json").read_text())
        except (OSError, ValueError):
            return {}

    def database_rows(self) -> dict[str, tuple]:
        params = self.mariadb.params
        conn = pymysql.connect(
            host=params["host"],
            port=params["port"],
            user=params["user"],
            password=params["password"],
            database=params["database"],
        )
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT application_id, status, fee, investment_value, updated_at FROM `{self.table}`")
                return {
                    r[0]: (r[1], Decimal(r[2]), Decimal(r[3]), r[4].isoformat(sep=" ", timespec="milliseconds"))
                    for r in cur.fetchall()
                }
        finally:
            conn.close()


def stored_history(port: str) -> dict[str, list[tuple[str, str]]]:
    rows = query(port, f"SELECT entity_key, op, status FROM {TABLE} FINAL ORDER BY entity_key, source_position")
    history: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for line in rows.strip().splitlines():
        key, op, status = line.split("\t")
        history[key].append((op, status))
    return history


def current_rows(port: str) -> dict[str, tuple]:
    rows = query(
        port,
        f"SELECT entity_key, status, toString(fee), toString(investment_value), toString(updated_at) "
        f"FROM {TABLE}_current",
    )
    current = {}
    for line in rows.strip().splitlines():
        key, status, fee, investment, updated = line.split("\t")
        current[key] = (status, Decimal(fee), Decimal(investment), updated)
    return current


def binlog_coordinates(checkpoint: dict) -> tuple[int, int]:
    return file_index(checkpoint["binlog_file"]), int(checkpoint["binlog_pos"])


def captured(adapter) -> float:  # noqa: ANN001
    """The adapter's own count of captured changes, from its metrics endpoint."""
    try:
        text = requests.get(f"http://127.0.0.1:{adapter.env['BACKBONE_PRODUCER_METRICS_PORT']}/metrics", timeout=5).text
    except requests.RequestException:
        return -1
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("backbone_adapter_captured_total{")
    )


def test_catalog_mistakes_name_the_file_and_field(mariadb, make_settings, tmp_path, monkeypatch):
    source = Source(mariadb, make_settings, tmp_path, batch_size=10)
    (path,) = source.settings.catalog_dir.glob("*.yaml")
    doc = yaml.safe_load(path.read_text())
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(ConfigError, match=PASSWORD_ENV):
        build_adapter(source.settings, SYSTEM)
    monkeypatch.setenv(PASSWORD_ENV, mariadb.params["password"])
    del doc["adapter"]["server_id"]
    doc["adapter"]["tables"] = {source.table: "no_such_entity"}
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=re.escape(f"{path}: field 'adapter.server_id' is missing")):
        build_adapter(source.settings, SYSTEM)
    doc["adapter"]["server_id"] = 7
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=rf"field 'adapter.tables.{source.table}' has value 'no_such_entity'"):
        build_adapter(source.settings, SYSTEM)
    doc["adapter"]["tables"] = {"no_such_table": "permit_application"}
    path.write_text(yaml.safe_dump(doc))
    adapter = build_adapter(source.settings, SYSTEM)
    with pytest.raises(ConfigError, match="'no_such_table', which does not exist"):
        adapter.run(threading.Event())


def test_snapshot_then_inserts_updates_deletes_arrive_in_order(mariadb, make_settings, stage_process, tmp_path):
    source = Source(mariadb, make_settings, tmp_path, batch_size=7, census_seconds=0.5)
    # Rows already there before capture starts, some updated since their insert (verified, decided).
    existing = source.workload.take(40, deletes=False)
    assert {c.op for c in existing} == {"c", "u"}
    source.writer.apply_many(existing, batch=5)
    before_capture = {k: list(h) for k, h in source.workload.history.items()}
    snapshot_states = {k: h[-1][1] for k, h in before_capture.items()}
    assert len(set(snapshot_states.values())) > 1
    rows = len(before_capture)
    adapter, processor, sink = source.start(stage_process)
    port = sink.env["BACKBONE_QUERY_PORT"]
    stages = (adapter, processor, sink)

    final = f"SELECT count() FROM {TABLE} FINAL"
    wait_for(lambda: count(port, final) == rows, 120, f"the {rows} snapshot rows stored", alive=stages)
    assert count(port, f"SELECT count() FROM {TABLE} FINAL WHERE op = 'r'") == rows
    assert source.checkpoint()["snapshot_done"] is True
    first_file = file_index(source.checkpoint()["binlog_file"])

    live = source.workload.take(90)
    for change in live[:45]:
        source.writer.apply(change)
    mariadb.admin_sql("FLUSH BINARY LOGS")  # capture continues across a new binlog file
    for change in live[45:]:
        source.writer.apply(change)
    ops = [c.op for c in live]
    assert ops.count("c") and ops.count("u") and ops.count("d"), ops

    total = rows + len(live)
    wait_for(lambda: count(port, final) == total, 90, f"{total} changes stored", alive=stages)
    assert count(port, f"SELECT uniqExact(event_id) FROM {TABLE}") == total
    # Each existing row once as the snapshot read it, then its changes since.
    expected = {
        k: [("r", snapshot_states[k]), *h[len(before_capture[k]) :]] if k in before_capture else h
        for k, h in source.workload.history.items()
    }
    assert stored_history(port) == expected  # every change of every key, in source_position order
    assert current_rows(port) == source.database_rows()
    assert file_index(source.checkpoint()["binlog_file"]) == first_file + 1
    # Reconciled: the census at the binlog coordinates of a consistent snapshot equals the store as of them.
    in_source = len(source.database_rows())

    def clean() -> bool:
        row = reconciled(port, SYSTEM)
        return bool(row and row["checksum_match"] and row["source_rows"] == in_source == row["store_rows"])

    wait_for(clean, 30, "a census reconciled without difference", alive=stages)
    # A clean stop: SIGTERM, the adapter checkpoints and exits within seconds.
    adapter.signal(signal.SIGTERM)
    assert adapter.process.wait(10) == 0


def test_adapter_killed_mid_stream_loses_nothing_and_duplicates_nothing(
    mariadb, make_settings, stage_process, tmp_path
):
    source = Source(mariadb, make_settings, tmp_path, batch_size=100)
    adapter, processor, sink = source.start(stage_process)
    port = sink.env["BACKBONE_QUERY_PORT"]
    n = 1500
    changes = source.workload.take(n)
    applied = []
    stop = threading.Event()

    def write() -> None:
        for change in changes:  # about 300 changes per second
            if stop.wait(1 / 300):
                return
            source.writer.apply(change)
            applied.append(change)

    writer = threading.Thread(target=write, daemon=True)
    wait_for(lambda: source.checkpoint().get("snapshot_done"), 60, "the (empty) snapshot", alive=(adapter,))
    first_pos = source.checkpoint()["binlog_pos"]
    writer.start()
    try:
        wait_for(
            lambda: len(applied) >= 300 and source.checkpoint().get("binlog_pos", 0) > first_pos,
            60,
            "the adapter checkpointing part of the stream",
            alive=(adapter,),
        )
        adapter.signal(signal.SIGKILL)
        adapter.process.wait(10)
        assert len(applied) < n  # killed mid-stream: the source keeps changing
        restarted = source.start_adapter(stage_process)
        writer.join(60)
        assert not writer.is_alive() and len(applied) == n
    finally:
        stop.set()
    final = f"SELECT count() FROM {TABLE} FINAL"
    wait_for(lambda: count(port, final) == n, 120, f"{n} changes stored", alive=(restarted, processor, sink))
    assert count(port, f"SELECT uniqExact(event_id) FROM {TABLE}") == n
    assert stored_history(port) == source.workload.history
    assert current_rows(port) == source.database_rows()


def test_broker_outage_loses_nothing(mariadb, make_settings, stage_process, tmp_path, local_stack):
    source = Source(mariadb, make_settings, tmp_path, batch_size=100)
    adapter, processor, sink = source.start(stage_process)
    port = sink.env["BACKBONE_QUERY_PORT"]
    final = f"SELECT count() FROM {TABLE} FINAL"
    wait_for(lambda: source.checkpoint().get("snapshot_done"), 60, "the (empty) snapshot", alive=(adapter,))
    first = source.workload.take(100)
    source.writer.apply_many(first, batch=10)
    wait_for(lambda: count(port, final) == 100, 90, "the first 100 changes stored", alive=(adapter, processor, sink))

    local_stack.stop_kafka()
    try:
        second = source.workload.take(200)
        for change in second:
            source.writer.apply(change)
        # The adapter reads on from the binlog, then holds its batch (unacknowledged, not checkpointed)
        # and reads no further until the broker is back: memory stays bounded.
        wait_for(
            lambda: captured(adapter) > 100 and "has not acknowledged" in adapter.log_path.read_text(),
            60,
            "the adapter capturing during the outage and waiting for Kafka",
            alive=(adapter,),
        )
        held = binlog_coordinates(source.checkpoint())
    finally:
        local_stack.restart_kafka()
    total = len(first) + len(second)
    wait_for(lambda: count(port, final) == total, 180, f"{total} changes stored", alive=(adapter, processor, sink))
    assert binlog_coordinates(source.checkpoint()) > held
    assert count(port, f"SELECT uniqExact(event_id) FROM {TABLE}") == total
    assert stored_history(port) == source.workload.history
    assert current_rows(port) == source.database_rows()
