"""The file-drop adapter's checkpoint: the file being read (`current`, with its last line handled and
its rejects report's committed size), the move still to do (`pending_move`) and the digests of
processed files (`digests`, to skip identical re-drops)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any


def restore(saved: dict[str, Any] | None) -> dict[str, Any]:
    """The state kept in the checkpoint (a fresh one when there is none)."""
    saved = saved or {}
    return {
        "digests": dict(saved.get("digests") or {}),
        "current": saved.get("current"),
        "pending_move": saved.get("pending_move"),
    }


def is_current(current: dict[str, Any] | None, name: str, st: os.stat_result) -> bool:
    """Whether the file `name` is the one the checkpoint was reading, unchanged since."""
    return bool(current) and (current.get("name"), current.get("size"), current.get("mtime_ns")) == (
        name,
        st.st_size,
        st.st_mtime_ns,
    )


def start_file(name: str, st: os.stat_result, report_name: str) -> dict[str, Any]:
    """Progress of a file read from its start."""
    return {
        "name": name,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "digest": None,
        "entity": None,
        "line": 0,
        "report": report_name,
        "report_bytes": 0,
        "emitted": 0,
        "rejected": 0,
    }


def line_position(state: dict[str, Any]) -> float | None:
    """The checkpoint's numeric position (for the metric): the line reached in the current file."""
    current = state.get("current")
    return float(current["line"]) if current else None


def remember(digests: dict[str, Any], name: str, digest: str, limit: int, **facts: Any) -> None:
    """Keep the digest of a processed file (at most `limit`, the oldest forgotten first)."""
    digests[digest] = {"name": name, "at": datetime.now(UTC).isoformat(timespec="seconds"), **facts}
    while len(digests) > limit:
        digests.pop(next(iter(digests)))
