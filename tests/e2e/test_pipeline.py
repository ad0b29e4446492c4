"""End to end on the real stack: simulator -> Kafka -> Faust processor -> Kafka -> sink -> chDB."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import requests
from confluent_kafka import Consumer

from backbone.sealing import Sealer
from contract.catalog import catalog_for
from contract.codec import Registry
from contract.reference import load_regions
from contract.topics import DLQ_PROCESSOR, named
from producers.emitter import ChangeEmitter
from simulators.licensing import LicensingOffice
from simulators.simulate import run_simulator
from tests.helpers import QUERY_HEADERS, count, query, wait_for

TABLE = "licensing_permit_application"


def test_n_events_become_n_rows_enriched(pipeline_settings, stage_process):
    n = 400
    sent = run_simulator(pipeline_settings, "licensing", rate=0, count=n, serve_metrics=False)
    assert sent == n
    processor = stage_process(pipeline_settings, "processor")
    sink = stage_process(pipeline_settings, "sink")
    port = sink.env["BACKBONE_QUERY_PORT"]
    stored = f"SELECT count() FROM {TABLE} FINAL"
    wait_for(lambda: count(port, stored) >= n, 120, f"{n} rows in {TABLE}", alive=(processor, sink))
    assert count(port, stored) == n
    assert count(port, f"SELECT uniqExact(event_id) FROM {TABLE}") == n

    regions = load_regions(pipeline_settings.regions_csv)
    rows = query(port, f"SELECT village_code, village_name, kecamatan_code, kecamatan_name FROM {TABLE} FINAL")
    checked = 0
    for line in rows.strip().splitlines():
        code, village, kec_code, kec_name = line.split("\t")
        assert village == regions[code]["name"]
        assert kec_code == regions[code]["parent"]
        assert kec_name == regions[kec_code]["name"]
        checked += 1
    assert checked == n
    # Personal data never reaches the store in clear.
    names = query(port, f"SELECT applicant_name, applicant_nik FROM {TABLE} LIMIT 50").split()
    assert all(len(v) == 32 and all(c in "0123456789abcdef" for c in v) for v in names)


def _dead_letters(settings, expected: int, timeout: float = 30) -> list:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": "test-dlq-reader",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([named(settings, DLQ_PROCESSOR)])
    found: list = []
    try:
        wait_for(
            lambda: (
                found.extend(m for m in consumer.consume(100, timeout=0.5) if not m.error()) or len(found) >= expected
            ),
            timeout,
            f"{expected} dead letters",
        )
    finally:
        consumer.close()
    return found


def test_invalid_event_is_dead_lettered_and_later_events_arrive(pipeline_settings, stage_process):
    (entity,) = catalog_for(pipeline_settings).system("sim-licensing").entities
    emitter = ChangeEmitter(entity, pipeline_settings, Registry(pipeline_settings.registry_url))
    villages = sorted(c for c, r in load_regions(pipeline_settings.regions_csv).items() if r["level"] == "village")
    changes = LicensingOffice(villages, seed=7).changes()
    good = [next(changes) for _ in range(60)]
    bad = next(changes)
    bad.after["village_code"] = "35.22.99.9999"
    for change in good[:30]:
        emitter.emit(change)
    emitter.emit(bad)
    emitter.produce_raw(b"garbage-key", b"this is not avro")
    for change in good[30:]:
        emitter.emit(change)
    emitter.flush()

    processor = stage_process(pipeline_settings, "processor")
    sink = stage_process(pipeline_settings, "sink")
    port = sink.env["BACKBONE_QUERY_PORT"]
    wait_for(
        lambda: count(port, f"SELECT count() FROM {TABLE} FINAL") == 60,
        120,
        "the 60 valid events stored",
        alive=(processor, sink),
    )

    letters = _dead_letters(pipeline_settings, 2)
    # One per bad record (a processor that re-read a partition may have dead-lettered one twice).
    origins = {(dict(m.headers())["source.partition"], dict(m.headers())["source.offset"]) for m in letters}
    assert len(origins) == 2
    reasons = {m.key(): dict(m.headers())[("error.reason")].decode() for m in letters}
    assert "unknown village code" in reasons[bad.key.encode()] and "35.22.99.9999" in reasons[bad.key.encode()]
    assert reasons[b"garbage-key"].startswith("undecodable")
    # The original bytes, untouched but sealed: only the dead-letter key opens them.
    sealer = Sealer(pipeline_settings.dead_letter_secret())
    assert any(sealer.unseal(m.value()) == b"this is not avro" for m in letters)
    assert not any(b"this is not avro" in m.value() for m in letters)
    # The store keeps them too, for operators.
    wait_for(lambda: count(port, "SELECT count() FROM dead_letters FINAL") == 2, 30, "dead letters in ClickHouse")


def test_sink_killed_mid_stream_stores_every_event_once(pipeline_settings, stage_process):
    n = 3000
    produced = threading.Thread(
        target=run_simulator,
        args=(pipeline_settings, "licensing"),
        kwargs={"rate": 600, "count": n, "serve_metrics": False},
    )
    produced.start()
    processor = stage_process(pipeline_settings, "processor")
    sink = stage_process(pipeline_settings, "sink")
    port = sink.env["BACKBONE_QUERY_PORT"]
    raw = f"SELECT count() FROM {TABLE}"
    wait_for(lambda: count(port, raw) >= 500, 120, "the first rows stored", alive=(processor, sink))
    sink.signal(signal.SIGKILL)
    sink.process.wait(10)
    assert count(port, raw) == -1  # it is really gone
    produced.join(60)
    assert not produced.is_alive()

    restarted = stage_process(pipeline_settings, "sink")
    port = restarted.env["BACKBONE_QUERY_PORT"]
    final = f"SELECT count() FROM {TABLE} FINAL"
    wait_for(lambda: count(port, final) == n, 120, f"{n} rows after the restart", alive=(processor, restarted))
    assert count(port, f"SELECT uniqExact(event_id) FROM {TABLE}") == n
    assert count(port, f"SELECT count() FROM {TABLE}_current") == count(
        port, f"SELECT uniqExact(entity_key) FROM {TABLE}"
    )


def test_query_endpoint_is_read_only_and_time_limited(make_settings, stage_process):
    settings = make_settings(query_timeout_seconds=1)
    from contract.bootstrap import bootstrap

    bootstrap(settings)
    sink = stage_process(settings, "sink")
    url = f"http://127.0.0.1:{sink.env['BACKBONE_QUERY_PORT']}/"
    wait_for(lambda: count(sink.env["BACKBONE_QUERY_PORT"], "SELECT 1") == 1, 60, "the query endpoint", alive=(sink,))
    for statement in (
        "INSERT INTO dead_letters (stage) VALUES ('x')",
        "DROP TABLE dead_letters",
        "CREATE TABLE x (a Int8) ENGINE = Memory",
        "ALTER TABLE dead_letters DELETE WHERE 1",
        "SELECT 1 SETTINGS readonly = 0",
    ):
        resp = requests.post(url, data=statement, headers=QUERY_HEADERS, timeout=10)
        assert resp.status_code == 403, (statement, resp.status_code, resp.text)
        assert "read-only" in resp.text or "readonly" in resp.text
    assert count(sink.env["BACKBONE_QUERY_PORT"], "SELECT count() FROM dead_letters") == 0
    slow = requests.get(
        url, params={"query": "SELECT sum(number) FROM numbers(100000000000)"}, headers=QUERY_HEADERS, timeout=30
    )
    assert slow.status_code == 504 and "Timeout exceeded" in slow.text
    fmt = requests.get(url, params={"query": "SELECT 1 AS one FORMAT JSONEachRow"}, headers=QUERY_HEADERS, timeout=10)
    # `backbone sql` finds the endpoint and its token by itself; a file probe is refused in one line.
    env = {**os.environ, **settings.as_env(), "BACKBONE_QUERY_PORT": sink.env["BACKBONE_QUERY_PORT"]}
    answer = subprocess.run(
        [sys.executable, "-m", "cli", "sql", "--raw", "SELECT 41 + 1"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert answer.returncode == 0 and answer.stdout == "42\n", answer.stderr
    probe = subprocess.run(
        [sys.executable, "-m", "cli", "sql", f"SELECT file('{settings.run_dir}/pii.key')"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert probe.returncode == 2 and "HTTP 403" in probe.stderr and "Traceback" not in probe.stderr
    assert fmt.status_code == 200 and fmt.json() == {"one": 1}
