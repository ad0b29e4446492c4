"""Alerts that reach someone, on the real things: a pipeline (an http_push adapter, the processor and
the sink as child processes), Debian's Prometheus scraping them with the project's rules (every `for`
shortened to seconds, scrapes and evaluations every second), and Debian's Alertmanager with the
project's routing, its webhooks sent to a small HTTP receiver in this test. Stopping the adapter
fires its alert at the receiver; restarting it resolves the alert. The metric names and label values
the rules and their promtool fixtures use are checked against what the running stages export."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Producer

from backbone.settings import PROJECT_ROOT
from contract.catalog import catalog_for, load_catalog
from contract.topics import DLQ_ADAPTER, DLQ_PROCESSOR, DLQ_SINK, REF_REGIONS
from devstack.alert_rules import render_dir
from devstack.monitoring import (
    LocalAlertmanager,
    LocalPrometheus,
    Target,
    alertmanager_config,
    prometheus_config,
    rules_with,
)
from tests.helpers import wait_for
from tests.infra.dashboards import declared_names, promql_problems
from tests.infra.pushing import DOMAIN, SYSTEM, PushPipeline

PROMETHEUS_DIR = PROJECT_ROOT / "infra" / "prometheus"


class Inbox:
    """The webhook receiver: every notification Alertmanager POSTs, with the receiver (the URL path)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with inbox.lock:
                    inbox.received.append((self.path.strip("/"), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def receivers(self, alertname: str, status: str, **labels: str) -> set[str]:
        """Receivers that got a notification with this alert in this status."""
        with self.lock:
            received = list(self.received)
        return {
            receiver
            for receiver, body in received
            for alert in body["alerts"]
            if alert["status"] == status
            and alert["labels"].get("alertname") == alertname
            and all(alert["labels"].get(k) == v for k, v in labels.items())
        }


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    box = Inbox()
    yield box
    box.server.shutdown()


@pytest.fixture
def alerting(tmp_path: Path, inbox: Inbox) -> Iterator[Callable[..., LocalPrometheus]]:
    """Start Alertmanager (webhooks to the inbox) and Prometheus (the project's rules, `for: 3s`)."""
    servers: list[LocalAlertmanager | LocalPrometheus] = []

    def start(targets: list[Target], catalog_dir: Path) -> LocalPrometheus:
        rules = tmp_path / "rules"
        rules.mkdir()
        (rules / "alerts.yml").write_text(yaml.safe_dump(rules_with(for_duration="3s"), sort_keys=False))
        (rules / "catalog_rules.yml").write_text(render_dir(catalog_dir))
        manager = LocalAlertmanager(tmp_path / "alertmanager", alertmanager_config(inbox.url, group_wait="1s"))
        servers.append(manager.start())
        config = prometheus_config(
            targets, [rules / "alerts.yml", rules / "catalog_rules.yml"], manager.address, "1s", "1s"
        )
        prometheus = LocalPrometheus(tmp_path / "prometheus", config)
        servers.append(prometheus.start())
        return prometheus

    yield start
    for server in reversed(servers):
        server.stop()


# -- what the rules and their fixtures use, against what the stages export --------------------------
_SELECTOR = re.compile(r"(?<![\w:])(backbone_[a-z0-9_]+|up)\b\s*(\{[^}]*\})?")
_MATCHER = re.compile(r'(\w+)\s*(=~|!=|!~|=)\s*"([^"]*)"')
_TOPIC = re.compile(r"(?:.*\.)?(?:cdc|clean)\.([^.]+)\.([^.]+)")
_FROM_RULES = ("backbone_catalog_",)  # series the rules record themselves
_FREE = {"job", "instance", "le", "domain"}  # target labels and histogram buckets: any value
# Exported only where a database adapter publishes censuses: its names and labels are checked against a
# scrape of the sink by tests/producers/adapters/test_reconciliation.py instead.
# Every group's lag comes from `backbone lag-exporter`, checked on the real broker by
# tests/devstack/test_group_lag.py.
_ELSEWHERE = {"backbone_reconciliation_difference_rows", "backbone_consumer_group_lag_messages"}


def used_selectors() -> list[tuple[str, str, list[tuple[str, str, str]]]]:
    """(where, metric, equality matchers) of every backbone metric in alerts.yml and alerts_test.yml."""
    texts = [
        (f"alerts.yml {rule.get('alert') or rule.get('record')}", rule["expr"])
        for group in yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    ]
    texts += [
        (f"{name} {test['name']}", series["series"])
        for name in ("alerts_test.yml", "silence_test.yml")
        for test in yaml.safe_load((PROMETHEUS_DIR / name).read_text())["tests"]
        for series in test["input_series"]
    ]
    found = []
    for where, text in texts:
        for match in _SELECTOR.finditer(text):
            name, matchers = match.group(1), _MATCHER.findall(match.group(2) or "")
            if not name.startswith(_FROM_RULES):
                # Equality only, and `label=""` (the label is absent) says nothing about values.
                found.append((where, name, [m for m in matchers if m[1] == "=" and m[2]]))
    return found


def unknown_uses(scraped: list[dict[str, str]]) -> list[str]:
    """Every metric name, label name and label value used by the rules or their fixtures that the running
    stages do not export. system/table/topic values may also name the repo's catalog (the test runs
    one system); broker and node exporter metrics are not checked (no exporter runs locally)."""
    catalog = load_catalog(PROJECT_ROOT / "catalog", PROJECT_ROOT / "schemas")
    labels_of: dict[str, set[str]] = {}
    values: dict[str, set[str]] = {}
    for series in scraped:
        labels_of.setdefault(series["__name__"], set()).update(series)
        for label, value in series.items():
            values.setdefault(label, set()).add(value)
    known = {
        "system": values.get("system", set()) | {s.system for s in catalog.systems},
        "table": values.get("table", set()) | {e.table for e in catalog.entities},
        "entity": {e.name for e in catalog.entities},
    }
    problems = []
    for where, name, matchers in used_selectors():
        if name in _ELSEWHERE:
            continue
        if name not in labels_of:
            problems.append(f"{where}: metric {name} is not exported")
            continue
        for label, _op, value in matchers:
            if label not in labels_of[name] and label not in _FREE:
                problems.append(f"{where}: {name} has no label {label}")
            elif label == "topic":
                match = _TOPIC.fullmatch(value)
                fixed = {DLQ_PROCESSOR, DLQ_SINK, DLQ_ADAPTER, REF_REGIONS}
                if not (value in fixed or (match and f"{match.group(1)}_{match.group(2)}" in known["table"])):
                    problems.append(f"{where}: topic {value!r} is no topic of the catalog")
            elif label == "partition":
                if not value.isdigit():
                    problems.append(f"{where}: partition {value!r}")
            elif label in known:
                if value not in known[label]:
                    problems.append(f"{where}: {label}={value!r} is neither exported nor in the catalog")
            elif label not in _FREE and value not in values.get(label, set()):
                problems.append(f"{where}: {name}{{{label}={value!r}}}: the stages never export this value")
    return problems


def test_a_stopped_adapter_fires_its_alert_and_a_restart_resolves_it(
    make_settings, stage_process, tmp_path, alerting, inbox
):
    pipeline = PushPipeline(make_settings, stage_process, tmp_path)
    adapter_labels = {"stage": "adapter", "system": SYSTEM, "domain": DOMAIN}
    targets = [
        Target("processor", pipeline.metrics_address("processor"), {"stage": "processor"}),
        Target("sink", pipeline.metrics_address("sink"), {"stage": "sink"}),
        Target("adapter", pipeline.metrics_address("adapter"), adapter_labels),
    ]
    prometheus = alerting(targets, pipeline.catalog_dir)

    # Traffic, so that every series exists: pushes stored, one push refused, one undecodable event.
    items = pipeline.new_items(5)
    assert pipeline.push(items) == 200
    assert pipeline.push([dict(items[0], record={**items[0]["record"], "status": "PENDING"})]) == 422
    producer = Producer({"bootstrap.servers": pipeline.settings.kafka_bootstrap})
    producer.produce(catalog_for(pipeline.settings).entities[0].cdc_topic, b"\x00not avro", b"key")
    assert producer.flush(30) == 0

    problems: list[str] = []

    def settled() -> bool:
        problems[:] = unknown_uses(prometheus.series('{__name__=~"backbone_.+|up"}'))
        return not problems

    try:
        wait_for(settled, 180, "every metric the rules use in Prometheus", interval=1, alive=pipeline.stages)
    except AssertionError:
        pytest.fail("\n".join(["used by the rules or their fixtures, not exported:", *problems]))
    # The dashboards' queries: accepted by this Prometheus, on metrics these processes declare.
    declared = declared_names([f"http://{t.address}/metrics" for t in targets])
    declared |= {s["__name__"] for s in prometheus.series('{__name__=~"backbone_catalog_.+"}')} | _ELSEWHERE
    assert not promql_problems(prometheus.url, declared), "\n".join(promql_problems(prometheus.url, declared))
    up = {r["metric"]["job"]: r["value"][1] for r in prometheus.query("up")}
    assert up == {"processor": "1", "sink": "1", "adapter": "1"}
    assert not inbox.receivers("BackboneStageDown", "firing", system=SYSTEM)

    pipeline.adapter.stop()
    # Routed by severity (critical pages) and by domain (licensing's owners), nowhere else.
    receivers = {"operators-page", "owners-services"}
    wait_for(
        lambda: (
            inbox.receivers("BackboneStageDown", "firing", system=SYSTEM, stage="adapter", domain=DOMAIN) >= receivers
        ),
        90,
        "the adapter's BackboneStageDown at the webhook",
        interval=0.5,
    )
    assert inbox.receivers("BackboneStageDown", "firing", system=SYSTEM) == receivers

    pipeline.restart_adapter()  # on the same metrics port
    wait_for(
        lambda: inbox.receivers("BackboneStageDown", "resolved", system=SYSTEM) == receivers,
        120,
        "the resolved notification",
        interval=0.5,
    )
