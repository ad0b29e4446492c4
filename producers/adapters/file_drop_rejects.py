"""Rejects reports: `rejects/<file>.rejects.csv` next to the drop folder's files, one line per
problem (line, field, value, reason), kept in step with the checkpoint."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from producers.adapters.file_drop_folder import REJECTS, free_name
from producers.adapters.file_drop_rows import Problem

REPORT_COLUMNS = ("line", "field", "value", "reason")


def report_path(folder: Path, name: str, current: dict[str, Any] | None) -> Path:
    """The report of file `name`: the one the checkpoint names, else a free name in rejects/."""
    reports = folder / REJECTS
    if current and current.get("report"):
        return reports / current["report"]
    return free_name(reports, name, ".rejects.csv")


def cut_report(report: Path, size: int) -> None:
    """Back to what the checkpoint covers: rows after it are reported again."""
    if not report.exists():
        return
    if size == 0:
        report.unlink()
    else:
        os.truncate(report, size)


def write_problems(report: Path, problems: list[Problem], truncate: bool = False) -> None:
    """Append (or, with `truncate`, write anew) lines to a report; created private (0600 in a 0700 folder).
    The problems must already be free of personal data (the adapter masks them, see producers.adapters.pii)."""
    report.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    new = truncate or not report.exists()
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_TRUNC if truncate else os.O_APPEND)
    fd = os.open(report, flags, 0o600)
    with open(fd, "w", newline="", encoding="utf-8", errors="replace") as fh:
        writer = csv.writer(fh)
        if new:
            writer.writerow(REPORT_COLUMNS)
        for p in problems:
            writer.writerow((p.line, p.field, p.value, p.reason))


def sync_report(report: Path) -> int | None:
    """Make the report durable before a checkpoint covers it; its size, or None when there is none."""
    if not report.exists():
        return None
    with open(report, "rb+") as fh:
        os.fsync(fh.fileno())
    return report.stat().st_size
