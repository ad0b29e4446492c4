"""The run folder's state file: live addresses of running processes (metrics, query endpoint), read
by `backbone sql`, `backbone status` and the demo's progress display in another terminal."""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

STATE_FILE = "stack.json"


def write_state(run_dir: Path, **values: object) -> None:
    """Addresses of the running demo, for `backbone sql` and `backbone status` in another terminal.
    Many processes register at once: the read-modify-write holds a lock (else one process's
    update drops another's key), and the file is replaced whole (a reader never sees half of it)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / STATE_FILE
    with open(run_dir / (STATE_FILE + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = read_state(run_dir)
        state.update(values)
        state["updated"] = time.time()
        partial = path.with_name(f".{STATE_FILE}.{os.getpid()}")
        partial.write_text(json.dumps(state, indent=2))
        os.replace(partial, path)


def read_state(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def clear_state(run_dir: Path) -> None:
    (run_dir / STATE_FILE).unlink(missing_ok=True)
