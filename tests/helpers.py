"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from confluent_kafka import Producer

from backbone import kafka
from backbone.net import free_port
from backbone.settings import Settings, load_settings
from bench.clean_records import CleanEncoder
from contract.catalog import catalog_for
from contract.codec import Registry
from devstack.procs import Child

# The query endpoint's token in every test pipeline (conftest's make_settings sets it).
QUERY_TOKEN = "test-query-token"
QUERY_HEADERS = {"Authorization": f"Bearer {QUERY_TOKEN}"}


def settings_env(settings: Settings) -> dict[str, str]:
    return settings.as_env()


def wait_for(
    condition: Callable[[], object], timeout: float, what: str, interval: float = 0.25, alive: tuple[Child, ...] = ()
) -> object:
    """Poll until `condition()` is truthy; fail with `what` after `timeout` seconds (showing the end of
    each `alive` process's log), or at once when one of them has exited."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for child in alive:
            if not child.alive():
                raise AssertionError(f"{child.name} exited while waiting for {what}:\n{child.log_tail(30)}")
        last = condition()
        if last:
            return last
        time.sleep(interval)
    tails = "".join(f"\n--- {child.name}:\n{child.log_tail(15)}" for child in alive)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r}){tails}")


def query(port: str, sql: str) -> str:
    resp = requests.post(f"http://127.0.0.1:{port}/", data=sql, headers=QUERY_HEADERS, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.text


def count(port: str, sql: str) -> int:
    try:
        return int(query(port, sql).strip() or 0)
    except (requests.ConnectionError, AssertionError):
        return -1


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for 127.0.0.1 signed by it, made with openssl:
    (ca.pem, server.pem, server.key)."""
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=backbone test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "san.cnf")
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"


# -- KPIs: clean records written straight onto a clean topic, KPI tables read back ----------------


class CleanWriter:
    """Clean records of one entity (bench/clean_records.py), produced by key onto its clean topic."""

    def __init__(self, settings: Settings, entity_name: str) -> None:
        entity = next(e for e in catalog_for(settings).entities if e.name == entity_name)
        self.clean = CleanEncoder(settings, entity)
        self.topic = entity.clean_topic
        self.producer = Producer(kafka.client_config(settings))
        self.seq = 0

    def send(self, key: str, op: str, position: int | None = None, **payload: Any) -> tuple[str, bytes]:
        """Produce one change; returns (key, bytes) so that the very same message can be sent again.
        `payload` holds the entity's fields (a village_code given there replaces the default)."""
        if position is None:
            self.seq += 1
            position = self.seq
        value = self.clean.encode(key, op, position, datetime.now(UTC), **payload)
        self.raw(key, value)
        return key, value

    def raw(self, key: str, value: bytes) -> None:
        # One partition: the script's order is the order read, so which windows have closed when
        # a late change arrives is known (across partitions, event-time order is not defined).
        self.producer.produce(self.topic, value, key.encode(), partition=0)
        assert self.producer.flush(30) == 0


def kpi_rows(port: str, table: str) -> dict[tuple, dict[str, Any]] | None:
    """A KPI table's current rows by (group values..., window_start), or None before it exists."""
    try:
        text = query(port, f"SELECT * EXCEPT (version, updated_at, ts_stored) FROM {table} FINAL FORMAT JSONEachRow")
    except (AssertionError, requests.ConnectionError):  # the sink starting, the table not made yet
        return None
    out = {}
    for line in text.splitlines():
        row = json.loads(line)
        out[(*json.loads(row["group_key"])[:-1], row["window_start"])] = row
    return out


def kpi_figures(port: str, wanted: dict[str, tuple[str, ...]], keep_empty: bool = False) -> dict[str, dict]:
    """{table: {group: (columns...)}} of the `wanted` KPI tables and columns; groups whose count is 0
    are left out unless `keep_empty`."""
    result = {}
    for table, columns in wanted.items():
        found = kpi_rows(port, table) or {}
        result[table] = {g: tuple(r[c] for c in columns) for g, r in found.items() if keep_empty or r["count"]}
    return result


def settle(
    read: Callable[[], object], expected: object, what: str, alive: tuple[Child, ...], timeout: float = 120
) -> None:
    """Wait until `read()` equals `expected`; on timeout, fail showing the difference."""
    seen: dict[str, object] = {}

    def check() -> bool:
        seen["value"] = read()
        return seen["value"] == expected

    try:
        wait_for(check, timeout, what, alive=alive)
    except AssertionError:
        assert seen.get("value") == expected, what
        raise


STAGE_PORTS = ("SINK_METRICS", "PROCESSOR_METRICS", "PRODUCER_METRICS", "KPI_METRICS", "QUERY")


def module_settings(stack: Any, run_dir: Path, tag: str, **overrides: object) -> Settings:
    """Settings of one isolated pipeline for a test module on the shared stack: its own topics and
    consumer groups (tagged with `tag`, the process and the time, so reruns never share them)."""
    run = f"{tag}{os.getpid()}-{datetime.now().timestamp():.0f}"
    values: dict[str, object] = {
        "run_dir": run_dir,
        "kafka_bootstrap": stack.kafka_bootstrap,
        "registry_url": stack.registry_url,
        "topic_prefix": f"{run}.",
        "processor_app_id": f"test-processor-{run}",
        "sink_group_id": f"test-sink-{run}",
        "kpi_app_id": f"test-kpi-{run}",
        "pii_key": "test-key-not-secret",
        "query_token": QUERY_TOKEN,
        "sink_batch_seconds": 0.2,
    }
    return load_settings(**{**values, **overrides})


def stage_child(settings: Settings, stage: str, log_name: str | None = None) -> Child:
    """`backbone <stage>` as a child process (not started) with free ports for every endpoint."""
    return Child(
        stage,
        [sys.executable, "-m", "cli", stage],
        settings.run_dir / "logs" / f"{log_name or stage}.log",
        env={**settings.as_env(), **{f"BACKBONE_{p}_PORT": str(free_port()) for p in STAGE_PORTS}},
        stop_timeout=20,
    )


class LiveRegistry(Registry):
    """The real registry with the fake's `add`: each distinct schema under its own subject (no
    compatibility between them), so tests can mix schemas freely."""

    def add(self, schema: dict[str, Any]) -> int:
        digest = hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()[:16]
        return self.register(f"test-{os.getpid()}-{digest}", schema, compatibility="NONE")
