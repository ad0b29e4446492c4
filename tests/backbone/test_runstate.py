"""The run folder's state file under concurrent registration: every process's keys survive, and a
reader never sees a half-written file."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from backbone.runstate import read_state, write_state

WRITERS, ROUNDS = 8, 40


def _register(run_dir: Path, name: str) -> None:
    for i in range(ROUNDS):
        write_state(run_dir, **{f"{name}_url": f"http://127.0.0.1/{name}", f"{name}_round": i})


def test_concurrent_writers_keep_each_others_keys(tmp_path: Path) -> None:
    write_state(tmp_path, first="kept")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_register, args=(tmp_path, f"p{n}")) for n in range(WRITERS)]
    for proc in procs:
        proc.start()
    seen_empty = 0
    while any(proc.is_alive() for proc in procs):
        seen_empty += read_state(tmp_path).get("first") != "kept"
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    state = read_state(tmp_path)
    assert state["first"] == "kept" and seen_empty == 0
    assert all(state[f"p{n}_url"].endswith(f"/p{n}") and state[f"p{n}_round"] == ROUNDS - 1 for n in range(WRITERS))
