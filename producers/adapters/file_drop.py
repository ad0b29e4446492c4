"""File-drop adapter: CSV and XLSX files dropped into a folder (how many offices exchange data today)
become change events, one per row.

Catalog (`adapter:` of the system's file):

  kind: file_drop
  folder: /srv/drop/dpmptsp    the drop folder (required; `~` expanded, a relative path is taken from the
                               current directory; created when missing). Sub-folders the adapter owns:
                               done/ (processed files), failed/ (files rejected as a whole) and
                               rejects/ (<file>.rejects.csv reports: line, field, value, reason).
  entity: permit_application   the entity every file holds (default: the system's only entity), or
  entities:                    a file-name pattern (fnmatch, matched in order) -> entity map; a file
    "izin_*.csv": permit_application   matching no pattern is rejected as a whole.
  delimiter: ","               CSV field delimiter (one character; default ",").
  encoding: utf-8              CSV text encoding (default utf-8; a UTF-8 byte-order mark is accepted).
                               A file that is not valid in it is rejected with the byte offset and line.
  op_column: op                optional column with the operation per row: c (create, the default for
                               an empty cell or a file without the column), u (update), d (delete).
  timestamp_column: null       optional column with when the row changed in the source (ISO 8601); when
                               a file has it, it is the event's ts_source, otherwise the file's mtime is.
                               It may be a payload field (e.g. updated_at) or an extra column.
  timezone: UTC                zone of timestamps written without an offset (Excel cells never have one),
                               e.g. Asia/Jakarta.
  sheet: null                  XLSX sheet to read (default: the first).
  settle_seconds: 2            a file is read only once its size and mtime have been unchanged for this
                               long (and its mtime is at least this old); 0 takes files at once, for
                               writers that rename complete files into the folder.
  poll_seconds: 1              how often the folder is scanned.
  batch_rows: 500              rows emitted between checkpoints (bounds memory and re-sent rows).
  remember_files: 1000         how many processed files' digests the checkpoint keeps to skip re-drops.

Conventions for writers: files whose names start with '.' or end with .tmp, .part or ~ are never read,
so a writer either writes in place and lets the file settle, or (better) writes `.name.tmp` in the
same folder and renames it to `name.csv` when complete (atomic). Files are taken oldest mtime first.
The format comes from the extension: .csv or .xlsx; anything else goes to failed/.

The first non-blank line (row) is the header: the payload schema's field names (fields with a
default may be left out), plus the optional op and timestamp columns. Missing or unknown columns
reject the whole file, naming them. Each data row becomes one change; rows that do not fit (wrong
number of values, bad types or values, empty key) are written to the rejects report with their line
and field and sent to the dead-letter topic with the row's original bytes (origin "<file>:<line>").
Empty files and files in a wrong encoding are rejected as a whole. A row whose event is too large for
Kafka (over about 1 MB) is rejected alone ('record too large', with the file and line); the rest of the
file goes on. Anything in the folder that is not a regular file (a symbolic link, FIFO, device or socket)
is refused from its metadata (lstat), never opened or read: a rejects-report line and a dead letter naming
it and what it is, and it is moved to failed/; regular files are opened with O_NOFOLLOW and checked again.
Personal data (fields marked "pii" in the schema) never appears in clear in a report, a dead-letter reason
or key, or the log: values show as `pii:<keyed hash>` (producers.adapters.pii), and a line shown whole
(malformed quoting) is not shown at all for an entity with pii fields. Reports, the checkpoint and the
sub-folders are created private (0600/0700).

Exactly-once bookkeeping: the event position is "<sha256 of the file, 16 hex>:<line, 8 digits>", so
the same content dropped again under any name yields the same event ids; the checkpoint also keeps
the digests of processed files, so an identical re-drop is skipped and reported as 'duplicate file'.
The checkpoint holds the file being read and its last line handled; after a kill -9 the file is read
again from the line after that (rows re-sent carry the same positions) and its rejects report is cut
back to what was committed. A file moves to done/ (or failed/) only after Kafka acknowledged all its
events and dead letters. Writers must not change a file once it has settled.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backbone.errors import ConfigError
from backbone.retry import retrying
from backbone.settings import Settings
from contract.catalog import SourceSystem
from contract.census import Census
from contract.codec import Registry
from producers.adapters.base import SourceAdapter
from producers.adapters.census import CensusRunner
from producers.adapters.file_drop_folder import DONE, FAILED, DropFolder
from producers.adapters.file_drop_options import FileDropOptions
from producers.adapters.file_drop_progress import is_current, line_position, remember, restore, start_file
from producers.adapters.file_drop_reader import DropReader, digest_file, file_format, file_kind, not_regular
from producers.adapters.file_drop_rejects import cut_report, report_path, sync_report, write_problems
from producers.adapters.file_drop_rows import FileRejected, ParsedRow, Problem, RowParser, event_position
from producers.adapters.options import load_options
from producers.emitter import Change, TooLarge

log = logging.getLogger(__name__)

_COUNT = re.compile(r"\d+( bytes)?")  # a problem value that is a count, never a cell


class DeadLettersPending(Exception):
    """Kafka has not acknowledged every dead letter yet."""


class FileDropAdapter(SourceAdapter):
    kind = "file_drop"

    def __init__(self, system: SourceSystem, settings: Settings, registry: Registry | None = None) -> None:
        # Configuration is checked before anything connects to Kafka or the registry.
        self.system = system
        self.config = dict(system.adapter)
        self._read_config()
        super().__init__(system, settings, registry)
        self.drop = DropFolder(self.folder, self.options.settle_seconds)
        self.state: dict[str, Any] = {}
        self.census = CensusRunner(self, 0, lambda: (None, []))  # no periodic census: one per file

    # -- configuration -------------------------------------------------------------------------
    def _bad(self, name: str, value: Any, why: str) -> ConfigError:
        return ConfigError(f"{self.system.catalog_file}: field 'adapter.{name}' has value {value!r}: {why}")

    def _read_config(self) -> None:
        self.options = options = load_options(FileDropOptions, self.system)
        self.folder = Path(options.folder).expanduser().absolute()
        names = {e.name for e in self.system.entities}
        entity, patterns = options.entity, options.entities
        if entity is not None and patterns is not None:
            raise self._bad("entities", patterns, "give either adapter.entity or adapter.entities, not both")
        if entity is not None and entity not in names:
            raise self._bad("entity", entity, f"not an entity of {self.system.system} ({', '.join(sorted(names))})")
        for pattern, target in (patterns or {}).items():
            if target not in names:
                raise self._bad(
                    "entities", {pattern: target}, f"expected file-name pattern: entity ({', '.join(sorted(names))})"
                )
        if entity is None and patterns is None:
            if len(names) != 1:
                raise ConfigError(
                    f"{self.system.catalog_file}: field 'adapter.entity' is missing "
                    f"({self.system.system} has several entities; name one, or map file names with adapter.entities)"
                )
            entity = self.system.entities[0].name
        self.entity = entity
        self.patterns: dict[str, str] = dict(patterns or {})
        for e in self.system.entities:
            if options.op_column in {f["name"] for f in e.payload_schema()["fields"]}:
                raise self._bad("op_column", options.op_column, f"is a field of {e.name}; name another column")
        self.parsing = options.parse_options()
        self.poll_seconds = max(0.05, options.poll_seconds)

    def entity_for(self, name: str) -> str:
        if not self.patterns:
            return self.entity
        for pattern, entity in self.patterns.items():
            if fnmatch.fnmatch(name, pattern):
                return entity
        raise FileRejected(
            f"unknown file: {name!r} matches no pattern of adapter.entities ({', '.join(self.patterns)})"
        )

    def parser_for(self, entity: str) -> RowParser:
        e = self.entities[entity]
        return RowParser(e.payload_schema(), e.key, self.parsing)

    # -- the loop ------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.state = restore(self.checkpoints.load())
        log.info("%s: watching %s", self.system.system, self.folder)
        self._finish_move(verify=True)
        while not stop.is_set():
            self.heartbeat.beat()
            path = self.drop.next_ready(self.state.get("current"))
            for name, kind in self.drop.refused:
                self._refuse_entry(name, kind)
            if path is None:
                stop.wait(self.poll_seconds)
                continue
            try:
                self._process(path, stop)
            except FileNotFoundError:
                log.warning("%s: %s disappeared while being read", self.system.system, path.name)
                self.state["current"] = None
        self._checkpoint()
        self.census.close()

    def _checkpoint(self) -> None:
        self._flush_dead_letters()
        self.commit(self.state, numeric_position=line_position(self.state))

    def _flush_dead_letters(self) -> None:
        """Wait for the dead letters' acknowledgements with backoff. (SourceAdapter.wait_acknowledged only
        sleeps in the emitters' flush, so with nothing but dead letters pending it would spin and log.)"""
        for attempt in retrying("kafka", stage="adapter", what="kafka_unavailable", on=DeadLettersPending):
            with attempt:
                if self._dlq.flush(0.5):
                    raise DeadLettersPending(
                        f"{self.system.system}: Kafka has not acknowledged {len(self._dlq)} dead letters yet"
                    )

    def _process(self, path: Path, stop: threading.Event) -> None:
        name = path.name
        st = path.lstat()  # never follows a link; the reader opens with O_NOFOLLOW and checks again
        if not stat.S_ISREG(st.st_mode):
            self._refuse_entry(name, file_kind(st.st_mode))
            return
        mtime = datetime.fromtimestamp(st.st_mtime_ns / 1e9, UTC)
        current = self.state.get("current")
        resuming = is_current(current, name, st)
        if resuming:
            report = report_path(self.folder, name, current)
            cut_report(report, int(current.get("report_bytes") or 0))
        else:
            report = report_path(self.folder, name, None)
            current = start_file(name, st, report.name)
            self.state["current"] = current
            self._checkpoint()  # the report's name is fixed before anything is written to it
        try:
            fmt = file_format(name)
            entity = self.entity_for(name)
            digest = digest_file(path, self.parsing.text_encoding if fmt == "csv" else None)
        except FileRejected as exc:
            self._reject_file(path, exc, report)
            return
        if current["digest"] not in (None, digest):  # same name, size and mtime, other bytes: start over
            current.update(line=0, emitted=0, rejected=0)
        current.update(digest=digest, entity=entity)
        if digest in self.state["digests"]:
            first = self.state["digests"][digest]
            reason = (
                f"duplicate file: the same content was already processed as {first['name']!r} at {first['at']}; skipped"
            )
            write_problems(report, [Problem("", "", f"sha256 {digest}", reason)], truncate=True)
            log.info("%s: %s is a duplicate of %s; skipped", self.system.system, name, first["name"])
            self._done(name, digest, DONE, keep_digest=False)
            return
        if resuming and current["line"]:
            log.info("%s: resuming %s after line %d", self.system.system, name, current["line"])
        self.state["current"] = current
        try:
            with DropReader(path, self.parser_for(entity), fmt) as reader:
                pending = 0
                for row in reader.rows():
                    if row.line <= current["line"]:
                        continue
                    self._handle_row(row, name, digest, entity, mtime, report, current)
                    current["line"] = row.line
                    pending += 1
                    if pending >= self.options.batch_rows:
                        self._commit_rows(report, current)
                        pending = 0
                        if stop.is_set():
                            return  # resumed from the checkpoint on the next start
        except FileRejected as exc:
            self._reject_file(path, exc, report)
            return
        after = path.stat()
        if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
            log.warning("%s: %s changed while being read; read again once settled", self.system.system, name)
            self.state["current"] = None
            self._checkpoint()
            return
        self._commit_rows(report, current)
        log.info(
            "%s: %s done: %d events, %d rows rejected",
            self.system.system,
            name,
            current["emitted"],
            current["rejected"],
        )
        self._done(name, digest, DONE, keep_digest=True, rows=current["emitted"], rejected=current["rejected"])
        # Reconciliation: the file's rows = stored + rejected, checked by the sink (sinks/reconciliation.py).
        rows = current["emitted"] + current["rejected"]
        census = Census(self.system.system, entity, self.kind, "file", digest[:16], source=name, file_rows=rows)
        census.file_rejected = current["rejected"]
        self.census.publish([census])

    def _handle_row(
        self,
        row: ParsedRow,
        name: str,
        digest: str,
        entity: str,
        mtime: datetime,
        report: Path,
        current: dict[str, Any],
    ) -> None:
        if row.ok:
            record = row.record
            try:
                self.emit(
                    Change(
                        row.op,
                        row.key,
                        event_position(digest, row.line),
                        row.ts_source or mtime,
                        before=record if row.op == "d" else None,
                        after=None if row.op == "d" else record,
                        entity=entity,
                    ),
                    refuse_too_large=False,
                )
            except TooLarge as exc:  # this row only: the rest of the file goes on
                row.category = "record too large"
                row.problems = [Problem(row.line, "", f"{len(row.original)} bytes", f"{name} line {row.line}: {exc}")]
            else:
                current["emitted"] += 1
                return
        row.problems = self._masked(entity, row)
        write_problems(report, row.problems)
        key = self.pii.key(entity, row.key).encode() or None
        self.reject(row.reason, row.original, key=key, origin=f"{name}:{row.line}")
        current["rejected"] += 1

    def _masked(self, entity: str, row: ParsedRow) -> list[Problem]:
        """The row's problems with no personal data in clear: values of pii fields and messages naming
        them masked; a whole line shown as a value (malformed CSV) is not shown when the entity has pii."""
        pii = self.pii
        masked = []
        for p in row.problems:
            value, reason = p.value, p.reason
            if p.field and pii.is_pii(entity, p.field):
                value = pii.cell(entity, p.field, value)
                reason = pii.message(entity, p.field, p.value, reason)
            elif not p.field and pii.any(entity) and value and not _COUNT.fullmatch(value):
                value = f"({len(row.original)} bytes, kept sealed in the dead letter)"
            if row.record is not None:
                reason = pii.record_text(entity, reason, row.record)
            masked.append(Problem(p.line, p.field, value, reason))
        return masked

    def _refuse_entry(self, name: str, kind: str) -> None:
        """A directory entry that is not a regular file (link, FIFO, device, socket): refused from its
        metadata alone, never opened or read; reported, dead-lettered with its name, moved to failed/."""
        exc = not_regular(name, kind)
        log.warning("%s: %s", self.system.system, exc.reason)
        report = report_path(self.folder, name, None)
        write_problems(report, [Problem("", "", kind, exc.reason)], truncate=True)
        self.reject(exc.reason, name.encode("utf-8", errors="surrogateescape"), origin=f"{name}:0")
        self._checkpoint()  # the dead letter is acknowledged before the entry leaves the folder
        target = self.drop.set_aside(name)
        if target is not None:
            log.info("%s: moved %s to %s", self.system.system, name, target)
        elif os.path.lexists(self.folder / name):
            log.warning("%s: %s could not be moved to failed/; it is ignored while it stays", self.system.system, name)

    def _commit_rows(self, report: Path, current: dict[str, Any]) -> None:
        size = sync_report(report)
        if size is not None:
            current["report_bytes"] = size
        self._checkpoint()

    # -- rejects, moves --------------------------------------------------------------------------
    def _reject_file(self, path: Path, exc: FileRejected, report: Path) -> None:
        name = path.name
        log.warning("%s: %s rejected: %s", self.system.system, name, exc.reason)
        write_problems(report, [Problem(exc.line or "", exc.field, exc.value, exc.reason)], truncate=True)
        self.reject(exc.reason, exc.original, origin=f"{name}:{exc.line}")
        self._done(name, None, FAILED, keep_digest=False)

    def _done(self, name: str, digest: str | None, to: str, keep_digest: bool, **facts: Any) -> None:
        """Checkpoint the outcome (after Kafka acknowledged everything), then move the file."""
        if keep_digest and digest and self.options.remember_files:
            remember(self.state["digests"], name, digest, self.options.remember_files, **facts)
        self.state["current"] = None
        self.state["pending_move"] = {"name": name, "digest": digest, "to": to}
        self._checkpoint()
        self._finish_move(verify=False)

    def _finish_move(self, verify: bool) -> None:
        move = self.state.get("pending_move")
        if not move:
            return
        # After a crash the name may meanwhile hold a new drop: move only the file we finished.
        target = self.drop.move(move["name"], move["to"], move.get("digest"), verify)
        if target is not None:
            log.info("%s: moved %s to %s", self.system.system, move["name"], target)
        self.state["pending_move"] = None
        self._checkpoint()
