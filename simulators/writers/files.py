"""Writes simulated changes as files dropped into a folder, the way an office exports them: how the
demo's simulated offices feed a `file_drop` adapter (producers/adapters/file_drop.py).

Rows are accumulated in memory and written as one CSV file every `rows_per_file` rows or
`seconds_per_file` seconds, whichever comes first. Each file is written under a temporary name in the
same folder (`.<name>.tmp`, which the adapter never reads), flushed to disk and then renamed into
place, so the adapter never sees a half-written file.

    writer = CsvDropWriter(folder, entity, rows_per_file=200)
    for change in office.changes():
        writer.write(change)
    writer.close()  # drops the last, partial file
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from contract.catalog import Entity
from producers.emitter import Change


def csv_value(value: Any) -> str:
    """A payload value as the text a file-drop adapter reads back to the same value."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


class CsvDropWriter:
    """Drops changes of one entity as CSV files (header: op column, then the payload fields)."""

    def __init__(
        self,
        folder: Path | str,
        entity: Entity,
        rows_per_file: int = 500,
        seconds_per_file: float = 10.0,
        delimiter: str = ",",
        op_column: str = "op",
        prefix: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rows_per_file < 1 or seconds_per_file <= 0:
            raise ValueError("rows_per_file must be >= 1 and seconds_per_file > 0")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.entity = entity
        self.fields = [f["name"] for f in entity.payload_schema()["fields"]]
        self.rows_per_file = rows_per_file
        self.seconds_per_file = seconds_per_file
        self.delimiter = delimiter
        self.op_column = op_column
        self.prefix = prefix or entity.name
        self.clock = clock
        self.rows: list[list[str]] = []
        self.started: float | None = None
        self.files: list[Path] = []  # every file dropped, in order
        self.rows_written = 0
        self._seq = 0

    def write(self, change: Change) -> Path | None:
        """Add one change; returns the file dropped when this filled one (or its time was up)."""
        if change.entity not in (None, self.entity.name):
            raise ValueError(f"change of entity {change.entity!r} given to the writer of {self.entity.name!r}")
        state = change.before if change.op == "d" else change.after
        if state is None:
            raise ValueError(
                f"change {change.key} at {change.position} has no {'before' if change.op == 'd' else 'after'}"
            )
        self.rows.append([change.op, *(csv_value(state.get(name)) for name in self.fields)])
        if self.started is None:
            self.started = self.clock()
        return self.flush_if_due()

    def write_all(self, changes: Iterable[Change]) -> list[Path]:
        dropped = [p for p in (self.write(c) for c in changes) if p is not None]
        return dropped

    def flush_if_due(self) -> Path | None:
        """Drop the pending rows if there are enough of them or they waited long enough."""
        if not self.rows:
            return None
        if len(self.rows) >= self.rows_per_file or self.clock() - (self.started or 0) >= self.seconds_per_file:
            return self.flush()
        return None

    def flush(self) -> Path | None:
        """Drop the pending rows now as one file (atomically: temporary name, fsync, rename)."""
        if not self.rows:
            return None
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=self.delimiter, lineterminator="\n")
        writer.writerow([self.op_column, *self.fields])
        writer.writerows(self.rows)
        target = self._next_name()
        tmp = self.folder / f".{target.name}.tmp"
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(buffer.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(tmp, target)
        dir_fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self.rows_written += len(self.rows)
        self.rows = []
        self.started = None
        self.files.append(target)
        return target

    def _next_name(self) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        while True:
            self._seq += 1
            target = self.folder / f"{self.prefix}-{stamp}-{os.getpid()}-{self._seq:06d}.csv"
            if not target.exists():
                return target

    def close(self) -> Path | None:
        return self.flush()

    def __enter__(self) -> CsvDropWriter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
