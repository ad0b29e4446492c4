"""How a bench run is shown: its table (printed) and one picture of each stage's rate against the
ceiling measured in the same run (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on the bench machine

import matplotlib.pyplot as plt  # noqa: E402 - after the backend is chosen
from rich.table import Table  # noqa: E402

from bench.ceilings import calibration_note  # noqa: E402


def draw(report: dict[str, Any], path: Path) -> Path:
    """Horizontal bars, one pair per ratio line of a bench.run report: the stage and its ceiling, on a
    log scale (the ceilings are up to tens of times the stages), each pair labelled with its ratio."""
    lines = report["ratios"]
    title = (f"stages against their ceilings, same run: {report['events']:,} events, {report['machine']['cores']} "
             f"cores, {report['timestamp']}\n{calibration_note(report)}")
    fig, ax = plt.subplots(figsize=(10, 1.2 + 1.1 * len(lines)), dpi=120)
    height = 0.38
    for i, line in enumerate(reversed(lines)):
        y = i
        ax.barh(y + height / 2, line["rate"], height, color="#2f6db3", label="stage" if i == 0 else None)
        ax.barh(y - height / 2, line["ceiling_rate"], height, color="#bbbbbb", label="ceiling" if i == 0 else None)
        ax.text(line["rate"], y + height / 2, f" {line['rate']:,.0f}/s", va="center", fontsize=8)
        ax.text(line["ceiling_rate"], y - height / 2, f" {line['ceiling_rate']:,.0f}/s", va="center", fontsize=8)
    labels = []
    for line in reversed(lines):
        ratio = "-" if line["ratio"] is None else f"{line['ratio']:.2f}"
        verdict = f", target {line['target']}: {line['verdict']}" if line["target"] else ""
        labels.append(f"{line['stage']} / {line['ceiling']}\nratio {ratio}{verdict}")
    ax.set_yticks(range(len(lines)), labels, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(left=min(min(r["rate"], r["ceiling_rate"]) for r in lines) / 3,
                right=max(max(r["rate"], r["ceiling_rate"]) for r in lines) * 4)
    ax.set_xlabel("events or rows per second (log scale)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def table(report: dict[str, Any]) -> Table:
    """The run's table: each stage's rate, freshness, peak memory, the rules and all-domains phases."""
    machine = report["machine"]
    out = Table(title=f"backbone bench: {report['events']:,} events, {machine['cores']} cores, "
                      f"load {machine['load_avg_1m_start']:.1f}→{machine['load_avg_1m_end']:.1f}",
                header_style="bold")
    for column in ("stage", "events", "seconds", "events/s", "p50 ms", "p99 ms", "peak RSS MiB"):
        out.add_column(column, justify="left" if column == "stage" else "right", no_wrap=True)

    def f(value: float | None, spec: str = ",.0f") -> str:
        return "-" if value is None else format(value, spec)

    stages, rss, fresh = report["stages"], report["peak_rss_mib"], report["freshness"]
    producer = stages["producer"]
    out.add_row("producer", f(producer["events"]), f(producer["seconds"], ".2f"), f(producer["events_per_s"]))
    for name in ("processor", "sink"):
        s = stages[name]
        out.add_row(name, f(s["steady_events"]), f(s["steady_seconds"], ".2f"), f(s["steady_events_per_s"]),
                    "", "", f(rss.get(name)))
        out.add_row(f"  incl. start-up ({f(s['startup_seconds'], '.1f')}s)", f(s["events"]), f(s["seconds"], ".2f"),
                    f(s["events_per_s"]))
    for key in ("quix_peer", "processor_workers"):
        if (s := stages.get(key)) is not None:
            label = "Quix Streams peer" if key == "quix_peer" else f"processor, {s['workers']} workers"
            out.add_row(label, f(s["steady_events"]), f(s["steady_seconds"], ".2f"), f(s["steady_events_per_s"]))
    for label, key in (("stored", "source_to_stored_ms"), ("processed", "source_to_processed_ms")):
        out.add_row(f"freshness source→{label}", f(fresh["events"]), f(fresh["produce_seconds"], ".2f"),
                    f(fresh["achieved_rate"]), f(fresh[key]["p50"]), f(fresh[key]["p99"]))
    out.caption = ("processor/sink rows: first event seen → last (backlog drained); "
                   f"freshness at {fresh['target_rate']:g}/s target, p50/p99 from ClickHouse")
    if rules := report.get("rules"):
        out.add_section()
        for label in ("rules_on", "rules_off"):
            r = rules[label]
            out.add_row(f"processor, {label.replace('_', ' ')}", f(r["steady_events"]), f(r["steady_seconds"], ".2f"),
                        f(r["steady_events_per_s"]))
    if (dom := report.get("domains")) is None:
        return out
    out.add_section()
    p = dom["producer"]
    out.add_row("all domains: producer", f(p["events"]), f(p["seconds"], ".2f"), f(p["events_per_s"]))
    for name in ("processor", "sink"):
        s = dom[name]
        out.add_row(f"all domains: {name}", f(s["steady_events"]), f(s["steady_seconds"], ".2f"),
                    f(s["steady_events_per_s"]), "", "", f(dom["peak_rss_mib"].get(name)))
    per = dom["per_domain"]
    for name, d in [*per.items(), ("total", {
            "events": sum(d["events"] for d in per.values()),
            "dead_lettered": sum(d["dead_lettered"] for d in per.values()),
            "processed_seconds": max(d["processed_seconds"] for d in per.values()),
            "stored_seconds": max(d["stored_seconds"] for d in per.values())})]:
        out.add_row(f"  {name} ({d['dead_lettered']:,} dead)", f(d["events"]),
                    f"{d['processed_seconds']:.1f} / {d['stored_seconds']:.1f}")
    out.caption += (f"; all domains: {dom['events_per_system']:,} events per system, {dom['bad_ratio']:.0%} bad; "
                    "per-domain seconds: processed / stored, from the stage's start")
    return out
