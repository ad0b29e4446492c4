"""`backbone status --json`: each stage and each departmental system as healthy, degraded or down, with
the reason, from the run state (var/stack.json: who runs where) and one scrape of each metrics endpoint.

The thresholds are the alert rules' (infra/prometheus/alerts.yml), read from counters since each
process started rather than from rates: a quick answer for an operator or a health check, while
Prometheus and Alertmanager watch the trends."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from backbone.net import port_open
from backbone.runstate import read_state
from contract.catalog import Catalog, SourceSystem

STUCK_SECONDS = 120  # BackboneStageStuck
LAG_MESSAGES = 10_000  # BackboneConsumerLagHigh
DEAD_LETTER_RATIO = 0.05  # BackboneDeadLettersHigh
CHECKPOINT_SECONDS = 600  # BackboneAdapterCheckpointStalled
ORDER = ("healthy", "degraded", "down")


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass
class Health:
    name: str
    status: str = "healthy"
    reasons: list[str] = field(default_factory=list)
    url: str = ""

    def worse(self, status: str, reason: str) -> None:
        if ORDER.index(status) > ORDER.index(self.status):
            self.status = status
        self.reasons.append(reason)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["reason"] = "; ".join(data.pop("reasons")) or "ok"
        return data


def scrape(url: str) -> list[Sample] | None:
    """Every sample of a metrics endpoint, or None when it does not answer."""
    try:
        text = requests.get(url, timeout=2).text
    except requests.RequestException:
        return None
    return [Sample(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def p99(samples: list[Sample], table: str) -> float | None:
    """Upper bound of the bucket holding the 99th percentile of a table's freshness since the sink started."""
    buckets = sorted(
        (float(s.labels["le"]), s.value)
        for s in samples
        if s.name == "backbone_freshness_seconds_bucket" and s.labels.get("table") == table
    )
    if not buckets or buckets[-1][1] == 0:
        return None
    return next(bound for bound, cumulative in buckets if cumulative >= 0.99 * buckets[-1][1])


def stage_health(name: str, url: str, samples: list[Sample] | None, now: float) -> Health:
    health = Health(name, url=url)
    if samples is None:
        health.worse("down", "its metrics endpoint does not answer")
        return health
    if any(s.name == "backbone_up" and s.value == 0 for s in samples):
        health.worse("down", "stopped")
    for s in samples:
        if s.name == "backbone_heartbeat_timestamp_seconds" and now - s.value > STUCK_SECONDS:
            health.worse("down", f"stuck: its work loop last turned {now - s.value:.0f} s ago")
    lag = total(samples, "backbone_consumer_lag_messages")
    if lag > LAG_MESSAGES:
        health.worse("degraded", f"{lag:,.0f} messages behind")
    if health.status == "healthy":
        read, written = total(samples, "backbone_events_in_total"), total(samples, "backbone_events_out_total")
        health.reasons.append(f"running: {read:,.0f} events read, {written:,.0f} written, lag {lag:,.0f}")
    return health


def system_health(
    system: SourceSystem, scrapes: dict[str, list[Sample] | None], urls: dict[str, str], now: float
) -> Health:
    health = Health(system.system)
    adapter = f"adapter_{system.system}"
    cdc = [e.cdc_topic for e in system.entities]
    if adapter in urls:
        health.url = urls[adapter]
        samples = scrapes.get(adapter)
        if samples is None:
            health.worse("down", "its adapter does not answer")
        else:
            beats = [s.value for s in samples if s.name == "backbone_heartbeat_timestamp_seconds"]
            if beats and now - max(beats) > STUCK_SECONDS:
                health.worse("down", f"its adapter is stuck ({now - max(beats):.0f} s without a turn)")
            checkpoints = [s.value for s in samples if s.name == "backbone_adapter_checkpoint_timestamp_seconds"]
            captured = total(samples, "backbone_adapter_captured_total", system=system.system)
            if captured and (not checkpoints or now - max(checkpoints) > CHECKPOINT_SECONDS):
                health.worse("degraded", "its adapter captured changes but has not checkpointed for 10 minutes")
    elif system.adapter.get("kind") == "simulator" and any(
        total(scrapes.get("producer") or [], "backbone_events_out_total", stage="producer", topic=t) for t in cdc
    ):
        health.url = urls.get("producer", "")
    else:
        health.worse("down", "no adapter or simulator of this system runs")
    processor, sink = scrapes.get("processor") or [], scrapes.get("sink") or []
    read = sum(total(processor, "backbone_events_in_total", topic=t) for t in cdc)
    rejected = sum(total(s or [], "backbone_adapter_rejected_total", system=system.system) for s in scrapes.values())
    topics = cdc + [e.clean_topic for e in system.entities]
    failed = sum(total(processor + sink, "backbone_events_failed_total", topic=t) for t in topics) + rejected
    if failed and failed > DEAD_LETTER_RATIO * (read + rejected):
        health.worse("degraded", f"{failed:,.0f} of {read + rejected:,.0f} inputs dead-lettered")
    for entity in system.entities:
        p = p99(sink, entity.table)
        if p is not None and p > system.freshness_seconds:
            health.worse(
                "degraded", f"{entity.table}: p99 freshness up to {p:g} s, promised {system.freshness_seconds} s"
            )
    if health.status == "healthy":
        health.reasons.append(f"{read:,.0f} events processed")
    return health


def _reachable(address: str) -> bool:
    host, _, port = address.split(",")[0].rpartition(":")
    return port.isdigit() and port_open(host or "127.0.0.1", int(port))


def collect_status(run_dir: Path, catalog: Catalog, now: float | None = None) -> dict[str, Any]:
    """Stages (and the broker and registry the run state names) and systems, with an overall status."""
    now = time.time() if now is None else now
    state = read_state(run_dir)
    urls = {k.removesuffix("_metrics_url"): v for k, v in state.items() if k.endswith("_metrics_url")}
    scrapes = {name: scrape(url) for name, url in urls.items()}
    stages = [stage_health(name, url, scrapes[name], now) for name, url in sorted(urls.items())]
    if state.get("kafka_bootstrap"):
        kafka = Health("kafka", url=state["kafka_bootstrap"])
        if not _reachable(state["kafka_bootstrap"]):
            kafka.worse("down", "the broker does not accept connections")
        stages.insert(0, kafka)
    if state.get("registry_url"):
        registry = Health("registry", url=state["registry_url"])
        try:
            requests.get(f"{state['registry_url']}/subjects", timeout=2).raise_for_status()
        except requests.RequestException:
            registry.worse("down", "the registry does not answer")
        stages.insert(1 if state.get("kafka_bootstrap") else 0, registry)
    systems = [system_health(s, scrapes, urls, now) for s in catalog.systems]
    everything = stages + systems
    if not urls:
        overall = "down"
    else:
        overall = max((h.status for h in everything), key=ORDER.index, default="down")
    return {
        "status": overall,
        "stages": [h.as_dict() for h in stages],
        "systems": [h.as_dict() for h in systems],
        "checked_at": now,
    }
