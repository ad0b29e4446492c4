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
Empty files and files in a wrong encoding are rejected as a whole.

Exactly-once bookkeeping: the event position is "<sha256 of the file, 16 hex>:<line, 8 digits>", so
the same content dropped again under any name yields the same event ids; the checkpoint also keeps
the digests of processed files, so an identical re-drop is skipped and reported as 'duplicate file'.
The checkpoint holds the file being read and its last line handled; after a kill -9 the file is read
again from the line after that (rows re-sent carry the same positions) and its rejects report is cut
back to what was committed. A file moves to done/ (or failed/) only after Kafka acknowledged all its
events and dead letters. Writers must not change a file once it has settled.
"""

from __future__ import annotations

import codecs
import csv
import fnmatch
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from backbone import metrics
from backbone.errors import ConfigError
from backbone.settings import Settings
from contract.catalog import SourceSystem
from contract.codec import Registry
from contract.coerce import FieldErrors, coerce_record, coerce_value
from contract.rules import PayloadRules
from producers.adapters.base import SourceAdapter
from producers.emitter import Change

log = logging.getLogger(__name__)

FORMATS = {".csv": "csv", ".xlsx": "xlsx"}
IGNORED_SUFFIXES = (".tmp", ".part", "~")
REPORT_COLUMNS = ("line", "field", "value", "reason")
ROW_OPS = ("c", "u", "d")
DONE, FAILED, REJECTS = "done", "failed", "rejects"
_CHUNK = 1 << 20
_TIMESTAMP_TYPE = {"type": "long", "logicalType": "timestamp-millis"}


# -- parsing (no Kafka needed) -----------------------------------------------------------------------


class FileRejected(Exception):
    """A whole file cannot be read: the reason starts with a short category ('wrong header: ...')."""

    def __init__(self, reason: str, line: int = 0, field: str = "", value: str = "", original: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line
        self.field = field
        self.value = value
        self.original = original


@dataclass(frozen=True)
class Problem:
    """One line of a rejects report."""

    line: int | str
    field: str
    value: str
    reason: str


@dataclass
class ParsedRow:
    line: int
    original: bytes
    op: str = "c"
    key: str = ""
    record: dict[str, Any] | None = None
    ts_source: datetime | None = None  # from the timestamp column; None: use the file's mtime
    problems: list[Problem] = field(default_factory=list)
    category: str = "bad values"

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def reason(self) -> str:
        """The dead-letter reason: the category, then every problem."""
        details = "; ".join(f"field {p.field!r}: {p.reason}" if p.field else p.reason for p in self.problems)
        return f"{self.category}: {details}"


@dataclass(frozen=True)
class ParseOptions:
    delimiter: str = ","
    encoding: str = "utf-8"
    op_column: str = "op"
    timestamp_column: str | None = None
    sheet: str | None = None
    timezone: tzinfo = UTC

    @property
    def text_encoding(self) -> str:
        """The codec to read with: UTF-8 also accepts a byte-order mark."""
        name = codecs.lookup(self.encoding).name
        return "utf-8-sig" if name in ("utf-8", "utf-8-sig") else name


def is_candidate(name: str) -> bool:
    """Whether a file name in the drop folder is meant to be read (temporary and hidden names are not)."""
    return not name.startswith(".") and not name.endswith(IGNORED_SUFFIXES)


def file_format(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix not in FORMATS:
        raise FileRejected(
            f"unsupported file type: {name!r} has extension {suffix or '(none)'!r}; "
            f"drop {' or '.join(sorted(FORMATS))} files"
        )
    return FORMATS[suffix]


def event_position(digest: str, line: int) -> str:
    """Position of a row: the same content (under any name) gives the same positions and event ids."""
    return f"{digest[:16]}:{line:08d}"


def _line_around(path: Path, offset: int) -> bytes:
    """The raw bytes of the line containing `offset` (at most 4 KiB either side)."""
    with open(path, "rb") as fh:
        start = max(0, offset - 4096)
        fh.seek(start)
        data = fh.read(offset - start + 4096)
    rel = offset - start
    begin = data.rfind(b"\n", 0, rel) + 1
    end = data.find(b"\n", rel)
    return data[begin : end if end >= 0 else len(data)].rstrip(b"\r")


def digest_file(path: Path, encoding: str | None = None) -> str:
    """sha256 of the file's bytes; with `encoding`, also checks that the whole file decodes in it
    (FileRejected with the byte offset and line of the first byte that does not)."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder(encoding)("strict") if encoding else None
    offset = 0
    newlines = 0
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(_CHUNK)
            digest.update(chunk)
            if decoder is not None:
                try:
                    decoder.decode(chunk, final=not chunk)
                except UnicodeDecodeError as exc:
                    # The decoder's input ends with this chunk (after any held-back bytes or a BOM).
                    bad = offset + len(chunk) - len(exc.object) + exc.start
                    line = newlines + chunk[: max(0, bad - offset)].count(b"\n") + 1
                    shown = exc.object[exc.start : exc.end]
                    name = "UTF-8" if encoding == "utf-8-sig" else encoding
                    raise FileRejected(
                        f"bad encoding: not valid {name}: byte {shown.hex(' ')} at offset {bad} (line {line}) "
                        f"cannot be decoded ({exc.reason}); save the file as {name} or set adapter.encoding",
                        line=line,
                        value=f"offset {bad}: 0x{shown.hex()}",
                        original=_line_around(path, bad),
                    ) from None
                newlines += chunk.count(b"\n")
            if not chunk:
                break
            offset += len(chunk)
    return digest.hexdigest()


def _localise(value: Any, tz: tzinfo) -> Any:
    """A timestamp without an offset gets the configured zone; anything else is left to coerce."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=tz)
    if isinstance(value, str) and value.strip():
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return value
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)
    return value


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _type_parts(avro_type: Any) -> tuple[bool, Any]:
    if isinstance(avro_type, list):
        rest = [t for t in avro_type if t != "null"]
        return "null" in avro_type, rest[0] if len(rest) == 1 else rest
    return False, avro_type


class RowParser:
    """Checks a header and turns rows (lists of cells) into typed records of one entity."""

    def __init__(self, schema: dict[str, Any], key: tuple[str, ...], options: ParseOptions) -> None:
        self.schema = schema
        self.key = tuple(key)
        self.options = options
        self.rules = PayloadRules.from_schema(schema)
        self.fields = {f["name"]: f for f in schema["fields"]}
        self.header: list[str] = []
        self.has_op = False
        self.has_ts = False

    def _kind(self, name: str) -> tuple[bool, str, str | None]:
        nullable, base = _type_parts(self.fields[name]["type"])
        kind = base.get("type") if isinstance(base, dict) else base
        logical = base.get("logicalType") if isinstance(base, dict) else None
        return nullable, str(kind), logical

    def check_header(self, cells: list[Any], original: bytes = b"", line: int = 1) -> None:
        """Sets the header; FileRejected naming the missing, unknown or repeated columns."""
        header = [_shown(c).strip() for c in cells]
        while header and header[-1] == "":
            header.pop()
        opts = self.options
        extra = {c for c in (opts.op_column, opts.timestamp_column) if c}
        seen: set[str] = set()
        repeated = sorted({c for c in header if c in seen or seen.add(c)})
        unknown = [c for c in header if c not in self.fields and c not in extra]
        missing = [n for n, f in self.fields.items() if n not in header and "default" not in f]
        problems = []
        if missing:
            problems.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown column(s) {', '.join(repr(c) for c in unknown)}")
        if repeated:
            problems.append(f"repeated column(s) {', '.join(repeated)}")
        if problems:
            expected = ", ".join(self.fields) + f" (optional: {', '.join(sorted(extra))})" * bool(extra)
            raise FileRejected(
                f"wrong header: {'; '.join(problems)}; expected the columns {expected}",
                line=line,
                field=", ".join(missing + unknown + repeated),
                value=opts.delimiter.join(header),
                original=original,
            )
        self.header = header
        self.has_op = opts.op_column in header
        self.has_ts = bool(opts.timestamp_column) and opts.timestamp_column in header

    def parse(self, line: int, cells: list[Any], original: bytes, spreadsheet: bool = False) -> ParsedRow:
        row = ParsedRow(line, original)
        width = len(self.header)
        if spreadsheet:  # empty cells right of the header are no values
            while len(cells) > width and cells[-1] in (None, ""):
                cells = cells[:-1]
            cells = list(cells) + [None] * (width - len(cells))
        if len(cells) != width:
            row.category = "wrong number of values"
            row.problems.append(
                Problem(line, "", str(len(cells)), f"line {line} has {len(cells)} values but the header has {width}")
            )
            return row
        raw = dict(zip(self.header, cells, strict=True))
        opts = self.options
        if self.has_op:
            op = _shown(raw.pop(opts.op_column)).strip().lower() or "c"
            if op not in ROW_OPS:
                row.problems.append(Problem(line, opts.op_column, op, f"value {op!r} is not one of c, u, d"))
            row.op = op
        ts_value = None
        if self.has_ts:
            name = opts.timestamp_column
            ts_value = raw.get(name) if name in self.fields else raw.pop(name)
        for name, value in list(raw.items()):
            nullable, kind, logical = self._kind(name)
            if isinstance(value, str) and value.strip() == "":
                if nullable:
                    raw[name] = None
                elif kind == "string":
                    row.problems.append(Problem(line, name, value, "is empty; the field is required"))
            elif logical in ("timestamp-millis", "timestamp-micros"):
                raw[name] = _localise(value, opts.timezone)
            elif kind == "string" and isinstance(value, float) and value.is_integer():
                raw[name] = str(int(value))  # a spreadsheet number in a text column
        try:
            record = coerce_record(self.schema, raw)
        except FieldErrors as exc:
            row.problems.extend(
                Problem(line, name, _shown(raw.get(name)), reason)
                for name, reason in exc.errors.items()
                if not any(p.field == name for p in row.problems)
            )
            record = None
        if record is not None:
            for name in self.key:
                if record.get(name) in (None, ""):
                    row.problems.append(Problem(line, name, _shown(record.get(name)), "key field is empty"))
            for name in self.rules.required:
                if record.get(name) is None and not any(p.field == name for p in row.problems):
                    row.problems.append(Problem(line, name, "", "is required"))
            for name, minimum in self.rules.minimums.items():
                value = record.get(name)
                if value is not None and value < (Decimal(str(minimum)) if isinstance(value, Decimal) else minimum):
                    row.problems.append(
                        Problem(line, name, _shown(value), f"value {value} is below the minimum {minimum}")
                    )
        if self.has_ts:
            try:
                row.ts_source = coerce_value(_TIMESTAMP_TYPE, _localise(ts_value, opts.timezone))
            except ValueError as exc:
                name = opts.timestamp_column
                if not any(p.field == name for p in row.problems):
                    row.problems.append(Problem(line, name, _shown(ts_value), f"{exc} (adapter.timestamp_column)"))
        if row.problems or record is None:
            return row
        row.record = record
        row.key = "|".join(str(record[k]) for k in self.key)
        return row


class DropReader:
    """Reads one dropped file: checks it is not empty and its header on open, then yields rows."""

    def __init__(self, path: Path, parser: RowParser, fmt: str | None = None) -> None:
        self.path = path
        self.parser = parser
        self.format = fmt or file_format(path.name)
        self.options = parser.options
        self._close: list[Any] = []
        try:
            self._rows = self._csv_rows() if self.format == "csv" else self._xlsx_rows()
            first = self._next_nonblank()
            if first is None:
                size = path.stat().st_size
                raise FileRejected(f"empty file: {size} bytes and no header line" if size else "empty file: 0 bytes")
            line, cells, original = first
            if cells is None:
                raise FileRejected(
                    "wrong header: malformed CSV quoting in the header line",
                    line=line,
                    value=original.decode(errors="replace")[:200],
                    original=original,
                )
            parser.check_header(cells, original, line)
            self._first = self._next_nonblank()
            if self._first is None:
                raise FileRejected(
                    "empty file: a header but no data rows", line=line, value=original.decode(errors="replace")
                )
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> DropReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        while self._close:
            self._close.pop().close()

    def _next_nonblank(self) -> tuple[int, list[Any], bytes] | None:
        for line, cells, original in self._rows:
            if cells is None or any(c not in (None, "") and _shown(c).strip() for c in cells):
                return line, cells, original
        return None

    def rows(self) -> Iterator[ParsedRow]:
        item = self._first
        spreadsheet = self.format == "xlsx"
        while item is not None:
            line, cells, original = item
            if cells is None:  # malformed CSV quoting
                yield ParsedRow(
                    line,
                    original,
                    problems=[Problem(line, "", original.decode(errors="replace")[:200], "malformed CSV quoting")],
                    category="malformed CSV",
                )
            else:
                yield self.parser.parse(line, cells, original, spreadsheet)
            item = self._next_nonblank()

    def _csv_rows(self) -> Iterator[tuple[int, list[Any] | None, bytes]]:
        encoding = self.options.text_encoding
        raw_encoding = "utf-8" if encoding == "utf-8-sig" else encoding
        fh = open(self.path, encoding=encoding, newline="")  # noqa: SIM115 - closed by close()
        self._close.append(fh)
        tap = _LineTap(fh)
        reader = csv.reader(tap, delimiter=self.options.delimiter, strict=True)
        while True:
            try:
                cells: list[Any] | None = next(reader)
            except StopIteration:
                return
            except csv.Error:
                cells = None
                if not tap.lines:  # the error came at the end of the file (an unclosed quote)
                    tap.lines.append("")
            start = tap.count - len(tap.lines) + 1
            text = "".join(tap.lines).rstrip("\r\n")
            tap.lines.clear()
            yield start, cells, text.encode(raw_encoding, errors="replace")

    def _xlsx_rows(self) -> Iterator[tuple[int, list[Any] | None, bytes]]:
        import openpyxl

        try:
            workbook = openpyxl.load_workbook(self.path, read_only=True, data_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure means the same to the office
            raise FileRejected(f"unreadable workbook: not a valid XLSX file ({type(exc).__name__}: {exc})") from None
        self._close.append(workbook)
        sheet_name = self.options.sheet
        if sheet_name is not None and sheet_name not in workbook.sheetnames:
            raise FileRejected(
                f"missing sheet: no sheet named {sheet_name!r} (sheets: {', '.join(workbook.sheetnames)})",
                value=sheet_name,
            )
        sheet = workbook[sheet_name] if sheet_name is not None else workbook.worksheets[0]
        header: list[str] = []
        rows = sheet.iter_rows(min_row=1, values_only=True)
        line = 0
        while True:
            line += 1
            try:
                values = next(rows)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001 - a damaged workbook can fail anywhere inside
                raise FileRejected(
                    f"unreadable workbook: row {line} cannot be read ({type(exc).__name__}: {exc})", line=line
                ) from None
            cells = list(values)
            if header:
                shown = {header[i] if i < len(header) else f"column {i + 1}": c for i, c in enumerate(cells)}
                original = json.dumps({k: v for k, v in shown.items() if v is not None}, default=_shown).encode()
            else:
                original = json.dumps([c for c in cells if c is not None], default=_shown).encode()
                if any(c not in (None, "") for c in cells):
                    header = [_shown(c).strip() for c in cells]
            yield line, cells, original


class _LineTap:
    """Feeds a text file to csv.reader line by line, keeping the lines of the current record."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh
        self.lines: list[str] = []
        self.count = 0

    def __iter__(self) -> _LineTap:
        return self

    def __next__(self) -> str:
        text = next(self.fh)
        self.lines.append(text)
        self.count += 1
        return text


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


def _free_name(folder: Path, name: str, suffix_after: str = "") -> Path:
    """folder/name, or name with .2, .3 ... before its extension when taken."""
    stem, ext = (name, "") if suffix_after else (Path(name).stem, Path(name).suffix)
    candidate = folder / f"{name}{suffix_after}"
    k = 2
    while candidate.exists():
        candidate = folder / (f"{name}.{k}{suffix_after}" if suffix_after else f"{stem}.{k}{ext}")
        k += 1
    return candidate


# -- the adapter ---------------------------------------------------------------------------------------


class FileDropAdapter(SourceAdapter):
    kind = "file_drop"

    def __init__(self, system: SourceSystem, settings: Settings, registry: Registry | None = None) -> None:
        # Configuration is checked before anything connects to Kafka or the registry.
        self.system = system
        self.config = dict(system.adapter)
        self._read_config()
        super().__init__(system, settings, registry)
        self.tracker = SettleTracker(self.settle_seconds)
        self.state: dict[str, Any] = {}

    # -- configuration -------------------------------------------------------------------------
    def _bad(self, name: str, value: Any, why: str) -> ConfigError:
        return ConfigError(f"{self.system.catalog_file}: field 'adapter.{name}' has value {value!r}: {why}")

    def _number(self, name: str, default: float, minimum: float, whole: bool = False) -> float:
        value = self.setting(name, default, kind=(int, float))
        if isinstance(value, bool) or value is None or value < minimum or (whole and int(value) != value):
            raise self._bad(name, value, f"expected a {'whole ' * whole}number >= {minimum}")
        return int(value) if whole else float(value)

    def _read_config(self) -> None:
        folder = self.setting("folder", kind=str)
        if not folder.strip():
            raise self._bad("folder", folder, "expected a folder path")
        self.folder = Path(folder).expanduser().absolute()
        names = {e.name for e in self.system.entities}
        entity = self.setting("entity", None, kind=str)
        patterns = self.setting("entities", None, kind=dict)
        if entity is not None and patterns is not None:
            raise self._bad("entities", patterns, "give either adapter.entity or adapter.entities, not both")
        if entity is not None and entity not in names:
            raise self._bad("entity", entity, f"not an entity of {self.system.system} ({', '.join(sorted(names))})")
        for pattern, target in (patterns or {}).items():
            if not isinstance(pattern, str) or target not in names:
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

        delimiter = self.setting("delimiter", ",", kind=str)
        if len(delimiter) != 1 or delimiter in '\r\n"':
            raise self._bad("delimiter", delimiter, "expected one character (not a quote or line break)")
        encoding = self.setting("encoding", "utf-8", kind=str)
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise self._bad("encoding", encoding, "unknown encoding (e.g. utf-8, cp1252, latin-1)") from None
        op_column = self.setting("op_column", "op", kind=str)
        timestamp_column = self.setting("timestamp_column", None, kind=str)
        zone = self.setting("timezone", "UTC", kind=str)
        try:
            tz: tzinfo = UTC if zone.upper() == "UTC" else ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise self._bad("timezone", zone, "unknown time zone (e.g. UTC, Asia/Jakarta)") from None
        for e in self.system.entities:
            if op_column in {f["name"] for f in e.payload_schema()["fields"]}:
                raise self._bad("op_column", op_column, f"is a field of {e.name}; name another column")
        self.options = ParseOptions(
            delimiter=delimiter,
            encoding=encoding,
            op_column=op_column,
            timestamp_column=timestamp_column,
            sheet=self.setting("sheet", None, kind=str),
            timezone=tz,
        )
        self.settle_seconds = self._number("settle_seconds", 2, 0)
        self.poll_seconds = max(0.05, self._number("poll_seconds", 1, 0))
        self.batch_rows = int(self._number("batch_rows", 500, 1, whole=True))
        self.remember_files = int(self._number("remember_files", 1000, 0, whole=True))

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
        return RowParser(e.payload_schema(), e.key, self.options)

    # -- the loop ------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        saved = self.checkpoints.load() or {}
        self.state = {
            "digests": dict(saved.get("digests") or {}),
            "current": saved.get("current"),
            "pending_move": saved.get("pending_move"),
        }
        log.info("%s: watching %s", self.system.system, self.folder)
        self._finish_move(verify=True)
        while not stop.is_set():
            path = self._next_ready()
            if path is None:
                stop.wait(self.poll_seconds)
                continue
            try:
                self._process(path, stop)
            except FileNotFoundError:
                log.warning("%s: %s disappeared while being read", self.system.system, path.name)
                self.state["current"] = None
        self._checkpoint()

    def _checkpoint(self) -> None:
        self._flush_dead_letters()
        current = self.state.get("current")
        self.commit(self.state, numeric_position=float(current["line"]) if current else None)

    def _flush_dead_letters(self) -> None:
        """Wait for the dead letters' acknowledgements with backoff. (SourceAdapter.wait_acknowledged only
        sleeps in the emitters' flush, so with nothing but dead letters pending it would spin and log.)"""
        delay = 0.5
        while len(self._dlq):
            if self._dlq.flush(delay):
                metrics.RETRIES.labels("adapter", "kafka_unavailable").inc()
                log.warning(
                    "%s: Kafka has not acknowledged %d dead letters yet; waiting", self.system.system, len(self._dlq)
                )
                delay = min(delay * 2, 10)

    def _next_ready(self) -> Path | None:
        current = self.state.get("current") or {}
        ready: list[tuple[int, str]] = []
        names: set[str] = set()
        for entry in os.scandir(self.folder):
            if not is_candidate(entry.name):
                continue
            try:
                if not entry.is_file():
                    continue
                st = entry.stat()
            except FileNotFoundError:
                continue
            names.add(entry.name)
            if entry.name == current.get("name") and (st.st_size, st.st_mtime_ns) == (
                current.get("size"),
                current.get("mtime_ns"),
            ):
                return Path(entry.path)  # the file interrupted by a stop or crash: resume at once
            if self.tracker.ready(entry.name, st.st_size, st.st_mtime_ns):
                ready.append((st.st_mtime_ns, entry.name))
        self.tracker.keep_only(names)
        return self.folder / min(ready)[1] if ready else None

    def _process(self, path: Path, stop: threading.Event) -> None:
        name = path.name
        st = path.stat()
        mtime = datetime.fromtimestamp(st.st_mtime_ns / 1e9, UTC)
        current = self.state.get("current")
        resuming = bool(current) and (current["name"], current["size"], current["mtime_ns"]) == (
            name,
            st.st_size,
            st.st_mtime_ns,
        )
        if resuming:
            report = self._report_path(name, current)
            self._cut_report(report, int(current.get("report_bytes") or 0))
        else:
            report = self._report_path(name, None)
            current = {
                "name": name,
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "digest": None,
                "entity": None,
                "line": 0,
                "report": report.name,
                "report_bytes": 0,
                "emitted": 0,
                "rejected": 0,
            }
            self.state["current"] = current
            self._checkpoint()  # the report's name is fixed before anything is written to it
        try:
            fmt = file_format(name)
            entity = self.entity_for(name)
            digest = digest_file(path, self.options.text_encoding if fmt == "csv" else None)
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
            self._write_problems(report, [Problem("", "", f"sha256 {digest}", reason)], truncate=True)
            log.info("%s: %s is a duplicate of %s; skipped", self.system.system, name, first["name"])
            self._done(name, digest, DONE, remember=False)
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
                    if pending >= self.batch_rows:
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
        self._done(name, digest, DONE, remember=True, rows=current["emitted"], rejected=current["rejected"])

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
            self.emit(
                Change(
                    row.op,
                    row.key,
                    event_position(digest, row.line),
                    row.ts_source or mtime,
                    before=record if row.op == "d" else None,
                    after=None if row.op == "d" else record,
                    entity=entity,
                )
            )
            current["emitted"] += 1
            return
        self._write_problems(report, row.problems)
        self.reject(row.reason, row.original, key=row.key.encode() or None, origin=f"{name}:{row.line}")
        current["rejected"] += 1

    def _commit_rows(self, report: Path, current: dict[str, Any]) -> None:
        if report.exists():
            with open(report, "rb+") as fh:
                os.fsync(fh.fileno())
            current["report_bytes"] = report.stat().st_size
        self._checkpoint()

    # -- rejects, moves --------------------------------------------------------------------------
    def _report_path(self, name: str, current: dict[str, Any] | None) -> Path:
        folder = self.folder / REJECTS
        if current and current.get("report"):
            return folder / current["report"]
        return _free_name(folder, name, ".rejects.csv")

    @staticmethod
    def _cut_report(report: Path, size: int) -> None:
        """Back to what the checkpoint covers: rows after it are reported again."""
        if not report.exists():
            return
        if size == 0:
            report.unlink()
        else:
            os.truncate(report, size)

    @staticmethod
    def _write_problems(report: Path, problems: list[Problem], truncate: bool = False) -> None:
        report.parent.mkdir(parents=True, exist_ok=True)
        new = truncate or not report.exists()
        with open(report, "w" if truncate else "a", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            if new:
                writer.writerow(REPORT_COLUMNS)
            for p in problems:
                writer.writerow((p.line, p.field, p.value, p.reason))

    def _reject_file(self, path: Path, exc: FileRejected, report: Path) -> None:
        name = path.name
        log.warning("%s: %s rejected: %s", self.system.system, name, exc.reason)
        self._write_problems(report, [Problem(exc.line or "", exc.field, exc.value, exc.reason)], truncate=True)
        self.reject(exc.reason, exc.original, origin=f"{name}:{exc.line}")
        self._done(name, None, FAILED, remember=False)

    def _done(self, name: str, digest: str | None, to: str, remember: bool, **facts: Any) -> None:
        """Checkpoint the outcome (after Kafka acknowledged everything), then move the file."""
        digests = self.state["digests"]
        if remember and digest and self.remember_files:
            digests[digest] = {"name": name, "at": datetime.now(UTC).isoformat(timespec="seconds"), **facts}
            while len(digests) > self.remember_files:
                digests.pop(next(iter(digests)))
        self.state["current"] = None
        self.state["pending_move"] = {"name": name, "digest": digest, "to": to}
        self._checkpoint()
        self._finish_move(verify=False)

    def _finish_move(self, verify: bool) -> None:
        move = self.state.get("pending_move")
        if not move:
            return
        source = self.folder / move["name"]
        try:
            # After a crash the name may meanwhile hold a new drop: move only the file we finished.
            if source.is_file() and not (verify and move.get("digest") and digest_file(source) != move["digest"]):
                target = _free_name(self.folder / move["to"], move["name"])
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, target)
                log.info("%s: moved %s to %s", self.system.system, move["name"], target)
        except FileNotFoundError:
            pass
        self.state["pending_move"] = None
        self._checkpoint()
