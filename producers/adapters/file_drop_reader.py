"""Reading one dropped file: its format from the extension, its digest (and, for CSV, a check that it
decodes in the configured encoding), then its rows: CSV lines with their original bytes, or XLSX
sheet rows shown as JSON."""

from __future__ import annotations

import codecs
import csv
import errno
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from producers.adapters.file_drop_rows import FileRejected, ParsedRow, Problem, RowParser, cell_text

FORMATS = {".csv": "csv", ".xlsx": "xlsx"}
_CHUNK = 1 << 20


def file_format(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix not in FORMATS:
        raise FileRejected(
            f"unsupported file type: {name!r} has extension {suffix or '(none)'!r}; "
            f"drop {' or '.join(sorted(FORMATS))} files"
        )
    return FORMATS[suffix]


def file_kind(mode: int) -> str:
    """What a directory entry is, in words (for refusing anything but a regular file)."""
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISREG, "a regular file"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def not_regular(name: str, kind: str) -> FileRejected:
    return FileRejected(
        f"not a regular file: {name!r} is {kind}; it was neither opened nor read (drop plain files only)",
        value=kind,
    )


def open_regular(path: Path) -> int:
    """A read-only descriptor of `path`, refused (FileRejected, nothing read) unless it is a regular
    file: symbolic links are not followed (O_NOFOLLOW) and a FIFO or device is never waited on."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):
            raise not_regular(path.name, "a symbolic link") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise not_regular(path.name, file_kind(mode))
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_binary(path: Path) -> Any:
    return os.fdopen(open_regular(path), "rb")


def _line_around(path: Path, offset: int) -> bytes:
    """The raw bytes of the line containing `offset` (at most 4 KiB either side)."""
    with open_binary(path) as fh:
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
    with open_binary(path) as fh:
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


class DropReader:
    """Reads one dropped file: checks it is not empty and its header on open, then yields rows."""

    def __init__(self, path: Path, parser: RowParser, fmt: str | None = None) -> None:
        self.path = path
        self.parser = parser
        self.format = fmt or file_format(path.name)
        self.options = parser.options
        self._close: list[Any] = []
        self.csv_error = ""
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
            if cells is None or any(c not in (None, "") and cell_text(c).strip() for c in cells):
                return line, cells, original
        return None

    def rows(self) -> Iterator[ParsedRow]:
        item = self._first
        spreadsheet = self.format == "xlsx"
        while item is not None:
            line, cells, original = item
            if cells is None:  # malformed CSV quoting, or a field beyond the csv module's size limit
                why = f"malformed CSV quoting ({self.csv_error})" if self.csv_error else "malformed CSV quoting"
                yield ParsedRow(
                    line,
                    original,
                    problems=[Problem(line, "", original.decode(errors="replace")[:200], why)],
                    category="malformed CSV",
                )
            else:
                yield self.parser.parse(line, cells, original, spreadsheet)
            item = self._next_nonblank()

    def _csv_rows(self) -> Iterator[tuple[int, list[Any] | None, bytes]]:
        encoding = self.options.text_encoding
        raw_encoding = "utf-8" if encoding == "utf-8-sig" else encoding
        fh = open(open_regular(self.path), encoding=encoding, newline="")  # noqa: SIM115 - closed by close()
        self._close.append(fh)
        tap = _LineTap(fh)
        reader = csv.reader(tap, delimiter=self.options.delimiter, strict=True)
        while True:
            try:
                cells: list[Any] | None = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                cells = None
                self.csv_error = str(exc)
                if not tap.lines:  # the error came at the end of the file (an unclosed quote)
                    tap.lines.append("")
            start = tap.count - len(tap.lines) + 1
            text = "".join(tap.lines).rstrip("\r\n")
            tap.lines.clear()
            yield start, cells, text.encode(raw_encoding, errors="replace")

    def _xlsx_rows(self) -> Iterator[tuple[int, list[Any] | None, bytes]]:
        import openpyxl

        raw = open_binary(self.path)
        self._close.append(raw)
        try:
            workbook = openpyxl.load_workbook(raw, read_only=True, data_only=True)
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
                original = json.dumps({k: v for k, v in shown.items() if v is not None}, default=cell_text).encode()
            else:
                original = json.dumps([c for c in cells if c is not None], default=cell_text).encode()
                if any(c not in (None, "") for c in cells):
                    header = [cell_text(c).strip() for c in cells]
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
