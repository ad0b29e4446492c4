"""The drop folder: which names are meant to be read, when a file has settled (is complete), which
file comes next, and the sub-folders processed files move to."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

from producers.adapters.file_drop_progress import is_current
from producers.adapters.file_drop_reader import digest_file, file_kind
from producers.adapters.file_drop_rows import FileRejected

IGNORED_SUFFIXES = (".tmp", ".part", "~")
DONE, FAILED, REJECTS = "done", "failed", "rejects"


def is_candidate(name: str) -> bool:
    """Whether a file name in the drop folder is meant to be read (temporary and hidden names are not)."""
    return not name.startswith(".") and not name.endswith(IGNORED_SUFFIXES)


class SettleTracker:
    """Decides when a file is complete: its size and mtime unchanged for `settle` seconds of watching
    and its mtime at least `settle` seconds old."""

    def __init__(self, settle: float) -> None:
        self.settle = settle
        self._seen: dict[str, tuple[int, int, float]] = {}

    def ready(self, name: str, size: int, mtime_ns: int, now: float | None = None, wall: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        wall = time.time() if wall is None else wall
        seen = self._seen.get(name)
        if seen is None or seen[:2] != (size, mtime_ns):
            self._seen[name] = (size, mtime_ns, now)
            return self.settle <= 0
        age = wall - mtime_ns / 1e9
        if 0 <= age < self.settle:  # (a future mtime, from a skewed clock, is judged by watching only)
            return False
        return now - seen[2] >= self.settle

    def keep_only(self, names: set[str]) -> None:
        for name in set(self._seen) - names:
            del self._seen[name]


def free_name(folder: Path, name: str, suffix_after: str = "") -> Path:
    """folder/name, or name with .2, .3 ... before its extension when taken."""
    stem, ext = (name, "") if suffix_after else (Path(name).stem, Path(name).suffix)
    candidate = folder / f"{name}{suffix_after}"
    k = 2
    while os.path.lexists(candidate):
        candidate = folder / (f"{name}.{k}{suffix_after}" if suffix_after else f"{stem}.{k}{ext}")
        k += 1
    return candidate


class DropFolder:
    """The folder the adapter watches: picks the next settled file (oldest mtime first) and moves
    finished files to done/ or failed/."""

    def __init__(self, path: Path, settle_seconds: float) -> None:
        self.path = path
        self.tracker = SettleTracker(settle_seconds)
        # Entries that are not regular files (symbolic links, FIFOs, devices, sockets): (name, kind),
        # found by the last scan from their own metadata (lstat), never opened; the adapter refuses them.
        self.refused: list[tuple[str, str]] = []
        self._refused_seen: set[tuple[str, int, int]] = set()

    def next_ready(self, current: dict[str, Any] | None) -> Path | None:
        """The file interrupted by a stop or crash (`current`, unchanged) at once, else the oldest settled one.
        Entries that are not regular files are collected in `refused` (once each) instead."""
        ready: list[tuple[int, str]] = []
        names: set[str] = set()
        self.refused = []
        seen: set[tuple[str, int, int]] = set()
        for entry in os.scandir(self.path):
            if not is_candidate(entry.name):
                continue
            try:
                st = entry.stat(follow_symlinks=False)  # lstat: a link's target is never looked at
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                continue  # done/, failed/, rejects/ and any folder of the office's own
            if not stat.S_ISREG(st.st_mode):
                mark = (entry.name, st.st_ino, st.st_mode)
                seen.add(mark)
                if mark not in self._refused_seen:
                    self.refused.append((entry.name, file_kind(st.st_mode)))
                continue
            names.add(entry.name)
            if is_current(current, entry.name, st):
                return Path(entry.path)  # the file interrupted by a stop or crash: resume at once
            if self.tracker.ready(entry.name, st.st_size, st.st_mtime_ns):
                ready.append((st.st_mtime_ns, entry.name))
        self.tracker.keep_only(names)
        self._refused_seen = seen  # reported once while they stay; a new entry under the name is new
        return self.path / min(ready)[1] if ready else None

    def set_aside(self, name: str) -> Path | None:
        """Move a refused entry itself (a link is moved, not followed) to failed/; None when it cannot be."""
        source = self.path / name
        try:
            target = free_name(self.path / FAILED, name)
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.replace(source, target)
            return target
        except OSError:
            return None

    def move(self, name: str, to: str, digest: str | None, verify: bool) -> Path | None:
        """Move `name` to the sub-folder `to` (under a free name); None when it is gone. With `verify`
        (after a crash the name may meanwhile hold a new drop) only a file with `digest` is moved."""
        source = self.path / name
        try:
            st = source.lstat()
            if stat.S_ISREG(st.st_mode) and not (verify and digest and digest_file(source) != digest):
                target = free_name(self.path / to, name)
                target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.replace(source, target)
                return target
        except (FileNotFoundError, FileRejected):
            pass
        return None
