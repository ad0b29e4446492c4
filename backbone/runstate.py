"""The run folder's state file: live addresses of running processes (metrics, query endpoint), read
by `backbone sql`, `backbone status` and the demo's progress display in another terminal."""

from __future__ import annotations

import json
import time
from pathlib import Path

STATE_FILE = "stack.json"


def write_state(run_dir: Path, **values: object) -> None:
    """Addresses of the running demo, for `backbone sql` and `backbone status` in another terminal."""
    path = run_dir / STATE_FILE
    state = read_state(run_dir)
    state.update(values)
    state["updated"] = time.time()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=2))


def read_state(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def clear_state(run_dir: Path) -> None:
    (run_dir / STATE_FILE).unlink(missing_ok=True)
