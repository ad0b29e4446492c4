"""The local stack's broker runs with the Prometheus JMX exporter agent (infra/kafka/jmx_exporter.yml):
the broker metrics the alert rules use are exported under those names by the real broker."""

from __future__ import annotations

import re

import requests

from backbone.settings import PROJECT_ROOT
from tests.helpers import wait_for

ALERTS = PROJECT_ROOT / "infra" / "prometheus" / "alerts.yml"


def exported_names(text: str) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_the_broker_exports_the_metrics_the_alert_rules_use(local_stack):
    url = local_stack.addresses.kafka_metrics_url
    assert url.startswith("http://127.0.0.1:")
    used = set(re.findall(r"\b(kafka_[a-z0-9_]*[a-z0-9])\b", ALERTS.read_text()))
    assert {
        "kafka_server_replicamanager_underreplicatedpartitions",
        "kafka_controller_kafkacontroller_offlinepartitionscount",
    } <= used
    names: set[str] = set()
    alarming: dict[str, float] = {}

    timeouts = [0]

    def scraped() -> bool:
        try:  # the exporter's first scrapes walk every MBean: slow on a loaded machine, asked again
            text = requests.get(url, timeout=30).text
        except requests.Timeout:
            timeouts[0] += 1
            return False
        names.update(exported_names(text))
        # A healthy single broker: nothing offline, nothing under-replicated (once it has settled).
        alarming.clear()
        alarming.update(
            (line.split(" ")[0], float(line.rsplit(" ", 1)[1]))
            for line in text.splitlines()
            if line.startswith(
                (
                    "kafka_server_replicamanager_underreplicatedpartitions",
                    "kafka_controller_kafkacontroller_offlinepartitionscount",
                )
            )
            and float(line.rsplit(" ", 1)[1]) != 0
        )
        return used <= names and not alarming

    try:
        wait_for(scraped, 120, f"the broker's exporter to serve {sorted(used)}, all at 0", interval=1)
    except AssertionError as exc:
        missing = sorted(used - names)
        slow = f"{timeouts[0]} scrapes over 30 s"
        raise AssertionError(f"{exc}; missing {missing}, non-zero {alarming}, {slow}") from None
