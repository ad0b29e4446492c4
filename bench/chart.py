"""One picture of a bench run: each stage's rate against the ceiling measured in the same run (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on the bench machine

import matplotlib.pyplot as plt  # noqa: E402 - after the backend is chosen

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
