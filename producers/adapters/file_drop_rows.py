"""Rows of a dropped file (no Kafka needed): the header check against the entity's payload schema and
each row turned into a typed record, or into the problems that put it in the rejects report."""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from typing import Any

from contract.coerce import FieldErrors, coerce_record, coerce_value
from contract.rules import PayloadRules

ROW_OPS = ("c", "u", "d")
_TIMESTAMP_TYPE = {"type": "long", "logicalType": "timestamp-millis"}


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


def event_position(digest: str, line: int) -> str:
    """Position of a row: the same content (under any name) gives the same positions and event ids."""
    return f"{digest[:16]}:{line:08d}"


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


def cell_text(value: Any) -> str:
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
        header = [cell_text(c).strip() for c in cells]
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
            op = cell_text(raw.pop(opts.op_column)).strip().lower() or "c"
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
                Problem(line, name, cell_text(raw.get(name)), reason)
                for name, reason in exc.errors.items()
                if not any(p.field == name for p in row.problems)
            )
            record = None
        if record is not None:
            for name in self.key:
                if record.get(name) in (None, ""):
                    row.problems.append(Problem(line, name, cell_text(record.get(name)), "key field is empty"))
            for name in self.rules.required:
                if record.get(name) is None and not any(p.field == name for p in row.problems):
                    row.problems.append(Problem(line, name, "", "is required"))
            for name, minimum in self.rules.minimums.items():
                value = record.get(name)
                if value is not None and value < (Decimal(str(minimum)) if isinstance(value, Decimal) else minimum):
                    row.problems.append(
                        Problem(line, name, cell_text(value), f"value {value} is below the minimum {minimum}")
                    )
        if self.has_ts:
            try:
                row.ts_source = coerce_value(_TIMESTAMP_TYPE, _localise(ts_value, opts.timezone))
            except ValueError as exc:
                name = opts.timestamp_column
                if not any(p.field == name for p in row.problems):
                    row.problems.append(Problem(line, name, cell_text(ts_value), f"{exc} (adapter.timestamp_column)"))
        if row.problems or record is None:
            return row
        row.record = record
        row.key = "|".join(str(record[k]) for k in self.key)
        return row
