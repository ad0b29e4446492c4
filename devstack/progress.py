"""Live progress of a running pipeline, read from each stage's Prometheus endpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families
from rich.table import Table

from backbone.runstate import read_state


@dataclass
class Progress:
    produced: float = 0
    processed: float = 0
    dead_lettered: float = 0
    stored: float = 0
    lag: float = 0
    freshness_p50: float | None = None
    freshness_p99: float | None = None
    urls: dict[str, str] = field(default_factory=dict)
    down: list[str] = field(default_factory=list)


def _quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Upper bound of the bucket holding the q-quantile (cumulative buckets, as Prometheus keeps them)."""
    if not buckets or buckets[-1][1] == 0:
        return None
    target = q * buckets[-1][1]
    for bound, cumulative in buckets:
        if cumulative >= target:
            return bound
    return None


def scrape(url: str) -> dict[str, list]:
    text = requests.get(url, timeout=1).text
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def collect(run_dir: Path) -> Progress:
    state = read_state(run_dir)
    progress = Progress(urls={k: v for k, v in state.items() if k.endswith("_url")})
    freshness: dict[float, float] = {}
    for name, url in progress.urls.items():
        if not name.endswith("metrics_url"):
            continue
        try:
            families = scrape(url)
        except requests.RequestException:
            progress.down.append(name.removesuffix("_metrics_url"))
            continue
        for s in families.get("backbone_events_out", []):
            if not s.name.endswith("_total"):
                continue
            stage, topic = s.labels.get("stage"), s.labels.get("topic", "")
            if stage == "producer":
                progress.produced += s.value
            elif stage == "processor":
                progress.processed += s.value
            elif stage == "sink" and not topic.startswith("dlq."):
                progress.stored += s.value
        for s in families.get("backbone_events_failed", []):
            if s.name.endswith("_total"):
                progress.dead_lettered += s.value
        for s in families.get("backbone_consumer_lag_messages", []):
            progress.lag += s.value
        for s in families.get("backbone_freshness_seconds", []):
            if s.name.endswith("_bucket"):
                bound = float(s.labels["le"])
                freshness[bound] = freshness.get(bound, 0) + s.value
    buckets = sorted(freshness.items())
    progress.freshness_p50 = _quantile(buckets, 0.5)
    progress.freshness_p99 = _quantile(buckets, 0.99)
    return progress


def render(progress: Progress) -> Table:
    table = Table(title="backbone", show_header=True, header_style="bold")
    for column in ("produced", "processed", "dead-lettered", "stored", "lag", "freshness p50 / p99"):
        table.add_column(column, justify="right")

    def fmt(v: float | None) -> str:
        return "-" if v is None else ("≤ " + (f"{v:g}s" if v != float("inf") else "∞"))

    table.add_row(
        f"{progress.produced:,.0f}",
        f"{progress.processed:,.0f}",
        f"{progress.dead_lettered:,.0f}",
        f"{progress.stored:,.0f}",
        f"{progress.lag:,.0f}",
        f"{fmt(progress.freshness_p50)} / {fmt(progress.freshness_p99)}",
    )
    caption = [f"{k.removesuffix('_url').replace('_', ' ')}: {v}" for k, v in sorted(progress.urls.items())]
    if progress.down:
        caption.append("not answering: " + ", ".join(progress.down))
    table.caption = "\n".join(caption)
    return table
