"""PostgreSQL source adapters on real services: a local PostgreSQL 15 server (wal2json), the session's
Kafka + registry, the processor and the sink (chDB) as child processes.

postgres_cdc (logical replication slot) and query_poll (polling by updated_at): the initial snapshot,
inserts, updates and deletes arrive in ClickHouse in order per key and end in the database's state; a
kill -9 of the adapter mid-stream leaves every change exactly once as analysts see it; and (last in
this file, since it stops the shared broker) a Kafka outage loses nothing."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg2
import pytest
import requests
import yaml

from backbone.errors import ConfigError
from backbone.settings import PROJECT_ROOT
from contract.bootstrap import bootstrap
from contract.catalog import catalog_for
from contract.reference import load_regions, villages
from devstack.postgres import LocalPostgres
from producers.emitter import Change
from producers.service import build_adapter
from simulators.licensing import LicensingOffice
from simulators.writers.postgres import PostgresSourceWriter
from tests.helpers import count, query, wait_for

TABLE = "licensing_permit_application"
PASSWORD_ENV = "PG_LICENSING_PASSWORD"


# -- helpers ---------------------------------------------------------------------------------------
def rows(port: str, sql: str) -> list[dict]:
    text = query(port, sql + " FORMAT JSONEachRow")
    return [json.loads(line, parse_float=Decimal) for line in text.splitlines() if line.strip()]


def make_catalog(tmp_path: Path, system: str, adapter: dict) -> Path:
    doc = yaml.safe_load((PROJECT_ROOT / "catalog" / "licensing.yaml").read_text())
    doc["system"] = system
    doc["adapter"] = adapter
    folder = tmp_path / f"catalog-{system}"
    folder.mkdir(parents=True)
    (folder / "licensing.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder


def pipeline(make_settings, tmp_path: Path, system: str, adapter: dict, **overrides: object):
    settings = make_settings(catalog_dir=make_catalog(tmp_path, system, adapter), **overrides)
    bootstrap(settings)
    (entity,) = catalog_for(settings).system(system).entities
    return settings, entity


def start_pipeline(stage_process, settings) -> tuple:
    """Processor and sink, started before the adapter and waited for: the processor's partitions are
    assigned and its timers run (it reports lag per cdc partition), the sink answers queries. (Events
    that arrive while the Faust worker is still starting have been seen to be skipped; see the report.)"""
    processor = stage_process(settings, "processor")
    sink = stage_process(settings, "sink")
    port = sink.env["BACKBONE_QUERY_PORT"]
    metrics_url = f"http://127.0.0.1:{processor.env['BACKBONE_PROCESSOR_METRICS_PORT']}/metrics"
    topic = catalog_for(settings).entities[0].cdc_topic

    def processor_ready() -> bool:
        try:
            text = requests.get(metrics_url, timeout=2).text
        except requests.RequestException:
            return False
        return any(
            line.startswith("backbone_consumer_lag_messages{") and f'topic="{topic}"' in line
            for line in text.splitlines()
        )

    wait_for(processor_ready, 120, "the processor running", alive=(processor, sink))
    wait_for(lambda: count(port, "SELECT 1") == 1, 60, "the sink answering", alive=(processor, sink))
    return processor, sink, port


def new_database(postgres: LocalPostgres) -> tuple[str, str]:
    name = f"lic_{uuid.uuid4().hex[:8]}"
    return name, postgres.create_database(name)


def connection_fields(postgres: LocalPostgres, database: str) -> dict:
    return {
        "host": "127.0.0.1",
        "port": postgres.port,
        "database": database,
        "user": postgres.user,
        "password_env": PASSWORD_ENV,
    }


def checkpoint(settings, system: str) -> dict:
    try:
        return json.loads((settings.run_dir / "checkpoints" / f"{system}.json").read_text())
    except (OSError, ValueError):
        return {}


def office(settings, seed: int) -> LicensingOffice:
    return LicensingOffice(villages(load_regions(settings.regions_csv)), seed=seed)


class History:
    """Changes generated for the database, with deletes of decided applications mixed in, and what
    each key went through (op and status, in order)."""

    def __init__(self, source: LicensingOffice) -> None:
        self.source = source
        self.changes = source.changes()
        self.state: dict[str, dict] = {}
        self.closed: list[str] = []
        self.seen: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self.n = 0

    def take(self, n: int, delete_every: int = 0) -> list[Change]:
        out = []
        for _ in range(n):
            self.n += 1
            if delete_every and self.n % delete_every == 0 and self.closed:
                key = self.closed.pop(0)
                change = Change("d", key, "", self.state[key]["updated_at"], before=self.state.pop(key))
            else:
                change = next(self.changes)
                self.state[change.key] = change.after
                if change.key not in self.source.open and change.after["status"] in ("APPROVED", "REJECTED"):
                    self.closed.append(change.key)
            out.append(change)
        return out

    def record(self, change: Change, op: str | None = None) -> None:
        state = change.after or change.before
        self.seen[change.key].append((op or change.op, state["status"]))


def database_state(dsn: str, where: str = "") -> dict[str, dict]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT application_id, status, fee, investment_value, "
                "floor(extract(epoch FROM updated_at) * 1000)::bigint, village_code "
                f"FROM permit_application {where}"
            )
            return {
                r[0]: {"status": r[1], "fee": r[2], "investment_value": r[3], "updated_ms": r[4], "village": r[5]}
                for r in cur.fetchall()
            }
    finally:
        conn.close()


def current_state(port: str) -> dict[str, dict]:
    found = rows(
        port,
        f"SELECT entity_key, status, toString(fee) AS fee, toString(investment_value) AS inv, "
        f"toUnixTimestamp64Milli(updated_at) AS upd, village_code FROM {TABLE}_current",
    )
    return {
        r["entity_key"]: {
            "status": r["status"],
            "fee": Decimal(r["fee"]),
            "investment_value": Decimal(r["inv"]),
            "updated_ms": int(r["upd"]),
            "village": r["village_code"],
        }
        for r in found
    }


def history_in_store(port: str) -> dict[str, list[tuple[str, str]]]:
    """Per key, (op, status) in source_position order, as analysts see it (FINAL)."""
    found = rows(port, f"SELECT entity_key, op, status, source_position, ts_source FROM {TABLE} FINAL")
    per_key: dict[str, list] = defaultdict(list)
    for r in found:
        per_key[r["entity_key"]].append((r["source_position"], r["ts_source"], r["op"], r["status"]))
    out = {}
    for key, events in per_key.items():
        events.sort()
        # Source time never goes back along the positions of one key (the *_current view relies on it).
        assert [e[1] for e in events] == sorted(e[1] for e in events), (key, events)
        out[key] = [(e[2], e[3]) for e in events]
    return out


def sink_metric(sink, name: str, **labels: str) -> float | None:
    """The value of one series on the sink's metrics endpoint (None when it is not exported)."""
    text = requests.get(f"http://127.0.0.1:{sink.env['BACKBONE_SINK_METRICS_PORT']}/metrics", timeout=5).text
    wanted = sorted(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{([^}}]*)\}} (\S+)$", line)
        if match and sorted(match.group(1).split(",")) == wanted:
            return float(match.group(2))
    return None


def reconciled(port: str, system: str) -> dict | None:
    """The newest row of the reconciliation table for `system`."""
    found = rows(
        port,
        "SELECT source_rows, store_rows, missing, extra, checksum_match, extra_keys, missing_keys "
        f"FROM reconciliation FINAL WHERE system = '{system}' ORDER BY checked_at DESC LIMIT 1",
    )
    return found[0] if found else None


def replica_identity(dsn: str) -> str:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT relreplident FROM pg_class WHERE oid = 'permit_application'::regclass")
            return cur.fetchone()[0]
    finally:
        conn.close()


# -- postgres_cdc ----------------------------------------------------------------------------------
def test_cdc_snapshot_then_changes_in_order_and_exactly_once_after_kill9(
    postgres, make_settings, stage_process, tmp_path
):
    """... and reconciled with the source: zero after this clean run, exactly the rows deleted behind the
    adapter's back (stopped, its slot advanced past the deletes) after that (producers/adapters/census.py,
    sinks/reconciliation.py); the sink exports the system's last change (silent sources)."""
    database, dsn = new_database(postgres)
    system = "pg-licensing"
    slot = "licensing_cdc"
    adapter = {"kind": "postgres_cdc", **connection_fields(postgres, database), "slot": slot}
    adapter.update({"tables": {"permit_application": "permit_application"}, "batch_size": 25, "census_seconds": 0.5})
    # A census that differs from the store is compared again for 2 s before the difference is reported.
    settings, entity = pipeline(make_settings, tmp_path, system, adapter, reconcile_grace_seconds=2)
    env = {PASSWORD_ENV: postgres.password}

    history = History(office(settings, seed=11))
    writer = PostgresSourceWriter(dsn, entity)
    writer.create_table()  # default replica identity: the adapter sets FULL itself
    existing = history.take(20)  # the office's first changes are new applications
    assert {c.op for c in existing} == {"c"}
    writer.apply_many(existing, batch=5)
    for change in existing:
        history.record(change, "r")

    processor, sink, port = start_pipeline(stage_process, settings)
    first = stage_process(settings, "adapters", "run", system, **env)
    wait_for(lambda: checkpoint(settings, system).get("snapshot_done"), 60, "the snapshot", alive=(first,))
    assert replica_identity(dsn) == "f"

    # Changes while the adapter streams; kill -9 once it has checkpointed some of them.
    chunk1 = history.take(300, delete_every=9)
    writing = threading.Thread(target=lambda: [writer.apply(c) or time.sleep(0.004) for c in chunk1])
    writing.start()
    wait_for(lambda: checkpoint(settings, system).get("position"), 60, "changes streamed", 0.02, alive=(first,))
    still_writing = writing.is_alive()
    first.signal(signal.SIGKILL)
    first.process.wait(10)
    assert still_writing, "the adapter was not killed mid-stream"
    writing.join(60)
    # More changes while the adapter is down: the slot keeps them.
    chunk2 = history.take(300, delete_every=7)
    writer.apply_many(chunk2, batch=3)
    second = stage_process(settings, "adapters", "run", system, **env)

    # The server ends the replication connection mid-stream: the adapter reconnects and resumes.
    so_far = len(existing) + len(chunk1) + len(chunk2)
    final = f"SELECT count() FROM {TABLE} FINAL"
    wait_for(lambda: count(port, final) >= so_far, 120, "the backlog captured", alive=(processor, sink, second))
    caught_up = checkpoint(settings, system)["position"]
    chunk3 = history.take(200, delete_every=8)
    writing = threading.Thread(target=lambda: [writer.apply(c) or time.sleep(0.004) for c in chunk3])
    writing.start()
    wait_for(
        lambda: checkpoint(settings, system).get("position", "") > caught_up and writing.is_alive(),
        60,
        "the restarted adapter streaming",
        0.02,
        alive=(second,),
    )
    terminated = psycopg2.connect(dsn)
    with terminated.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = %s", (slot,))
        assert cur.fetchone() == (True,)
    terminated.close()
    writing.join(60)
    writer.close()
    for change in chunk1 + chunk2 + chunk3:
        history.record(change)

    total = so_far + len(chunk3)
    wait_for(lambda: count(port, final) >= total, 120, f"{total} events", alive=(processor, sink, second))
    assert count(port, final) == total
    assert count(port, f"SELECT uniqExact(event_id) FROM {TABLE}") == total
    assert count(port, f"SELECT count() FROM {TABLE} FINAL WHERE op = 'r'") == len(existing)
    assert count(port, "SELECT count() FROM dead_letters") == 0

    assert history_in_store(port) == dict(history.seen)
    assert current_state(port) == database_state(dsn)
    assert "PostgreSQL unavailable" in second.log_path.read_text(errors="replace")  # it did reconnect
    deleted = sum(1 for c in chunk1 + chunk2 + chunk3 if c.op == "d")
    assert deleted > 30 and count(port, f"SELECT count() FROM {TABLE} FINAL WHERE is_deleted") == deleted

    # Reconciled: the source's census as of a position, the store as of the same position, no difference.
    in_source = len(database_state(dsn))

    def clean() -> bool:
        row = reconciled(port, system)
        return bool(row and row["checksum_match"] and row["source_rows"] == in_source)

    wait_for(clean, 30, "a census reconciled without difference", alive=(processor, sink, second))
    assert sink_metric(sink, "backbone_reconciliation_difference_rows", system=system, entity=entity.name) == 0
    # Silent sources: the sink exports when the system last changed (ts_emitted), time() minus it is the silence.
    last_change = sink_metric(sink, "backbone_source_last_change_timestamp_seconds", system=system)
    assert last_change is not None and time.time() - 300 < last_change <= time.time()

    # A clean stop confirms the slot up to the checkpoint.
    assert second.stop() == 0
    state = checkpoint(settings, system)
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            "SELECT confirmed_flush_lsn - %s::pg_lsn FROM pg_replication_slots WHERE slot_name = 'licensing_cdc'",
            (state["lsn_text"],),
        )
        assert cur.fetchone()[0] >= 0
        # Behind the adapter's back: two rows deleted while it is stopped, the slot moved past the deletes.
        gone = sorted(database_state(dsn))[:2]
        cur.execute("DELETE FROM permit_application WHERE application_id = ANY(%s)", (gone,))
        assert cur.rowcount == 2
        cur.execute("SELECT pg_replication_slot_advance('licensing_cdc', pg_current_wal_lsn())")
    third = stage_process(settings, "adapters", "run", system, **env)
    wait_for(
        lambda: (reconciled(port, system) or {}).get("checksum_match") is False,
        60,
        "the difference reported",
        alive=(processor, sink, third),
    )
    row = reconciled(port, system)
    assert (row["source_rows"], row["store_rows"], row["missing"], row["extra"]) == (in_source - 2, in_source, 0, 2)
    assert row["extra_keys"] == gone and row["missing_keys"] == []
    assert sink_metric(sink, "backbone_reconciliation_difference_rows", system=system, entity=entity.name) == 2
    assert count(port, f"SELECT count() FROM {TABLE}_current") == in_source  # the deletes were never captured
    assert third.stop() == 0
    with conn.cursor() as cur:
        cur.execute("SELECT pg_drop_replication_slot('licensing_cdc')")
    conn.close()


def test_cdc_configuration_mistakes_name_the_catalog_file_and_field(postgres, make_settings, tmp_path, monkeypatch):
    database, _dsn = new_database(postgres)
    base = {"kind": "postgres_cdc", **connection_fields(postgres, database), "slot": "cfg"}
    base["tables"] = {"permit_application": "permit_application"}
    monkeypatch.setenv(PASSWORD_ENV, postgres.password)
    cases = [
        ({k: v for k, v in base.items() if k != "slot"}, "field 'adapter.slot' is missing"),
        ({**base, "slot": "Bad-Slot"}, "field 'adapter.slot' has value 'Bad-Slot'"),
        ({**base, "tables": {"permit_application": "no_such_entity"}}, "adapter.tables.permit_application"),
        ({**base, "batch_size": 0}, "field 'adapter.batch_size' has value 0"),
        ({**base, "password_env": "PG_NOT_SET_ANYWHERE"}, "environment variable PG_NOT_SET_ANYWHERE is not set"),
    ]
    for i, (adapter, message) in enumerate(cases):
        settings, _ = pipeline(make_settings, tmp_path / f"case{i}", f"pg-cfg{i}", adapter)
        with pytest.raises(ConfigError, match=re.escape(message)) as raised:
            build_adapter(settings, f"pg-cfg{i}")
        assert "licensing.yaml" in str(raised.value) or "PG_NOT_SET" in message
    # A table that does not exist is found when the adapter connects.
    settings, _ = pipeline(make_settings, tmp_path / "missing", "pg-missing", base)
    with pytest.raises(ConfigError, match="adapter.tables.*'public.permit_application'.*does not exist"):
        build_adapter(settings, "pg-missing").run(threading.Event())


# -- query_poll ------------------------------------------------------------------------------------
def poll_cursor(settings, system: str) -> datetime | None:
    """The updated_at the poller has checkpointed up to."""
    last = (checkpoint(settings, system).get("tables", {}).get("permit_application") or {}).get("last")
    return datetime.fromisoformat(last[0]["v"]) if last else None


def test_query_poll_initial_load_kill9_then_changes_in_order_with_deletes(
    postgres, make_settings, stage_process, tmp_path
):
    database, dsn = new_database(postgres)
    system = "poll-licensing"
    adapter = {"kind": "query_poll", "driver": "postgres", **connection_fields(postgres, database)}
    adapter.update(
        {
            "tables": {"permit_application": "permit_application"},
            "cursor_column": "updated_at",
            "created_column": "submitted_at",
            "deleted_column": "deleted_at",
            "reconcile_seconds": 1,
            "batch_size": 20,
            "poll_seconds": 0.2,
        }
    )
    settings, entity = pipeline(make_settings, tmp_path, system, adapter)
    env = {PASSWORD_ENV: postgres.password}
    history = History(office(settings, seed=23))
    writer = PostgresSourceWriter(dsn, entity)
    writer.create_table()
    with writer.conn.cursor() as cur:
        cur.execute("ALTER TABLE permit_application ADD COLUMN deleted_at timestamptz")
    writer.conn.commit()
    clock = {"max": None}

    def apply(change: Change) -> None:
        if change.op == "d":  # soft delete: flag it, and move the cursor column like any update
            clock["max"] += timedelta(microseconds=1)  # the simulator's clock moves minutes per change
            with writer.conn.cursor() as cur:
                cur.execute(
                    "UPDATE permit_application SET deleted_at = now(), updated_at = %s WHERE application_id = %s",
                    (clock["max"], change.key),
                )
            writer.conn.commit()
        else:
            writer.apply(change)
            clock["max"] = max(clock["max"] or change.after["updated_at"], change.after["updated_at"])

    # Initial load: the rows exist before the adapter starts; it reads each row's latest state.
    for change in history.take(900):
        apply(change)
    existing = database_state(dsn)
    processor, sink, port = start_pipeline(stage_process, settings)
    first = stage_process(settings, "adapters", "run", system, **env)
    wait_for(lambda: poll_cursor(settings, system), 60, "the first batch checkpointed", 0.02, alive=(first,))
    first.signal(signal.SIGKILL)
    first.process.wait(10)
    assert checkpoint(settings, system)["tables"]["permit_application"]["initial_done"] is False
    second = stage_process(settings, "adapters", "run", system, **env)
    final = f"SELECT count() FROM {TABLE} FINAL"
    wait_for(lambda: count(port, final) >= len(existing), 120, "the initial load", alive=(processor, sink, second))
    assert count(port, final) == len(existing)
    assert count(port, f"SELECT uniqExact(event_id) FROM {TABLE}") == len(existing)
    assert count(port, f"SELECT count() FROM {TABLE} FINAL WHERE op = 'c'") == sum(
        1 for s in existing.values() if s["status"] == "SUBMITTED"
    )
    assert current_state(port) == existing
    for key, s in existing.items():
        history.seen[key] = [("c" if s["status"] == "SUBMITTED" else "u", s["status"])]

    # Changes in rounds (in order, a round ends before a key's second change; each round captured
    # before the next), so that every version is seen and the per-key order can be compared change by
    # change. The writes stay in updated_at order, as a real clock would have them.
    pending = history.take(400, delete_every=8)
    rounds = 0
    while pending:
        keys: set[str] = set()
        for change in pending:
            if change.key in keys:
                break
            keys.add(change.key)
            apply(change)
            history.record(change)
        pending = pending[len(keys) :]
        target = clock["max"]

        def captured(target: datetime = target) -> bool:
            cursor = poll_cursor(settings, system)
            return cursor is not None and cursor >= target

        wait_for(captured, 30, "the round captured", 0.05, alive=(second,))
        rounds += 1
    # Hard deletes, found by key reconciliation.
    alive = database_state(dsn, "WHERE deleted_at IS NULL")
    gone = sorted(alive)[:7]
    with writer.conn.cursor() as cur:
        cur.execute("DELETE FROM permit_application WHERE application_id = ANY(%s)", (gone,))
    writer.conn.commit()
    for key in gone:
        history.seen[key].append(("d", alive[key]["status"]))
    writer.close()

    expected = sum(len(v) for v in history.seen.values())
    wait_for(lambda: count(port, final) >= expected, 120, f"{expected} events", alive=(processor, sink, second))
    assert count(port, final) == expected
    assert count(port, f"SELECT uniqExact(event_id) FROM {TABLE}") == expected
    assert history_in_store(port) == dict(history.seen)
    assert current_state(port) == database_state(dsn, "WHERE deleted_at IS NULL")
    assert count(port, "SELECT count() FROM dead_letters") == 0
    assert rounds > 1


def test_query_poll_rows_sharing_a_timestamp_are_read_once_across_batches(
    postgres, make_settings, tmp_path, monkeypatch
):
    database, dsn = new_database(postgres)
    system = "poll-ties"
    adapter = {"kind": "query_poll", **connection_fields(postgres, database), "created_column": "submitted_at"}
    adapter.update({"tables": {"permit_application": "permit_application"}, "batch_size": 3, "poll_seconds": 0.1})
    settings, entity = pipeline(make_settings, tmp_path, system, adapter)
    monkeypatch.setenv(PASSWORD_ENV, postgres.password)
    writer = PostgresSourceWriter(dsn, entity)
    writer.create_table()
    creates = (c for c in office(settings, seed=41).changes() if c.op == "c")
    rows = [next(creates) for _ in range(12)]
    same = rows[3].after["updated_at"]
    for change in rows[2:10]:  # eight rows share one timestamp: batches of 3 end in the middle of them
        change.after["updated_at"] = change.after["submitted_at"] = same
    writer.apply_many(rows, batch=12)

    def run_once(expected: int) -> list[Change]:
        captured: list[Change] = []
        polls: list[int] = []
        poller = build_adapter(settings, system)
        emit, poll = poller.emit, poller._poll
        poller.emit = lambda change: captured.append(change) or emit(change)
        poller._poll = lambda *args: polls.append(1) or poll(*args)
        stop = threading.Event()
        thread = threading.Thread(target=poller.run, args=(stop,))
        thread.start()
        try:
            wait_for(
                lambda: (
                    len(captured) >= expected
                    and checkpoint(settings, system).get("tables", {}).get("permit_application", {}).get("initial_done")
                ),
                30,
                f"{expected} rows polled",
            )
            done = len(polls)
            wait_for(lambda: len(polls) >= done + 2, 30, "two more polls")  # which find nothing more
        finally:
            stop.set()
            thread.join(10)
        assert not thread.is_alive()
        return captured

    first = run_once(12)
    assert sorted(c.key for c in first) == sorted(c.key for c in rows)  # each row once
    assert [c.position for c in first] == sorted(c.position for c in first)
    assert {c.op for c in first} == {"c"} and all(c.snapshot for c in first)
    # Two more rows with the same timestamp as the checkpoint, and keys after it: read after a restart.
    later = [next(creates) for _ in range(2)]
    for change in later:
        change.after["updated_at"] = change.after["submitted_at"] = rows[-1].after["updated_at"]
    writer.apply_many(later)
    writer.close()
    second = run_once(2)
    assert [c.key for c in second] == [c.key for c in later]
    assert not any(c.snapshot for c in second)


# -- broker outage (last: it stops the session's Kafka) ----------------------------------------------
def test_kafka_outage_loses_nothing_for_both_adapters(postgres, make_settings, stage_process, tmp_path, local_stack):
    env = {PASSWORD_ENV: postgres.password}
    cdc_db, cdc_dsn = new_database(postgres)
    poll_db, poll_dsn = new_database(postgres)
    cdc_adapter = {"kind": "postgres_cdc", **connection_fields(postgres, cdc_db), "slot": "outage_cdc"}
    cdc_adapter.update({"tables": {"permit_application": "permit_application"}, "batch_size": 50})
    poll_adapter = {"kind": "query_poll", **connection_fields(postgres, poll_db), "created_column": "submitted_at"}
    poll_adapter.update({"tables": {"permit_application": "permit_application"}, "batch_size": 50, "poll_seconds": 0.2})
    cdc_settings, entity = pipeline(make_settings, tmp_path, "pg-outage", cdc_adapter)
    poll_settings, _ = pipeline(make_settings, tmp_path, "poll-outage", poll_adapter)

    cdc_history = History(office(cdc_settings, seed=31))
    cdc_writer = PostgresSourceWriter(cdc_dsn, entity)
    cdc_writer.create_table()
    poll_writer = PostgresSourceWriter(poll_dsn, entity)
    poll_writer.create_table()
    creates = (c for c in office(poll_settings, seed=37).changes() if c.op == "c")  # one version per key

    cdc = stage_process(cdc_settings, "adapters", "run", "pg-outage", **env)
    poll = stage_process(poll_settings, "adapters", "run", "poll-outage", **env)
    wait_for(lambda: checkpoint(cdc_settings, "pg-outage").get("snapshot_done"), 60, "the slot", alive=(cdc,))
    before = cdc_history.take(100, delete_every=10)
    cdc_writer.apply_many(before)
    poll_writer.apply_many([next(creates) for _ in range(100)])
    wait_for(lambda: checkpoint(cdc_settings, "pg-outage").get("position"), 60, "cdc capturing", alive=(cdc,))
    wait_for(lambda: poll_cursor(poll_settings, "poll-outage"), 60, "poll capturing", alive=(poll,))

    during = cdc_history.take(300, delete_every=10)
    try:
        local_stack.stop_kafka()
        cdc_writer.apply_many(during, batch=2)
        poll_writer.apply_many([next(creates) for _ in range(300)], batch=2)
        # Both adapters read the new rows and are now waiting for Kafka (never dropping them); the
        # broker stays down until the CDC adapter has waited ~10 s (its second warning), longer than
        # the server's walsender timeout.
        for child, times in ((poll, 1), (cdc, 2)):
            wait_for(
                lambda child=child, times=times: (
                    child.log_path.read_text(errors="replace").count("not acknowledged") >= times
                ),
                90,
                f"{child.name} waiting for Kafka",
                alive=(child,),
            )
    finally:
        local_stack.restart_kafka()
    cdc_writer.close()
    poll_writer.close()

    for settings, expected, dsn, adapter in ((cdc_settings, 400, cdc_dsn, cdc), (poll_settings, 400, poll_dsn, poll)):
        processor, sink, port = start_pipeline(stage_process, settings)
        final = f"SELECT count() FROM {TABLE} FINAL"
        wait_for(
            lambda port=port, final=final, expected=expected: count(port, final) >= expected,
            180,
            f"{expected} events after the outage",
            alive=(processor, sink, adapter),
        )
        assert count(port, final) == expected
        assert count(port, f"SELECT uniqExact(event_id) FROM {TABLE}") == expected
        assert current_state(port) == database_state(dsn)
        processor.stop()
        sink.stop()
    # The replication stream outlived the outage (longer than the walsender timeout): no reconnection.
    assert "PostgreSQL unavailable" not in cdc.log_path.read_text(errors="replace")
