"""File-drop adapter: CSV and XLSX files dropped into a folder become change events.

The first tests need no Kafka: they drive the parsing functions, the settle rule and the drop writer
directly. The end-to-end tests share one pipeline (real Kafka and registry, the processor and the sink
as child processes, chDB) and run the adapter as `backbone adapters run fd-licensing`."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from confluent_kafka import Consumer

from backbone.errors import ConfigError
from backbone.net import free_port
from backbone.sealing import Sealer
from backbone.settings import PROJECT_ROOT, Settings, load_settings
from contract.bootstrap import bootstrap
from contract.catalog import Entity, load_system
from contract.reference import load_regions, villages
from contract.topics import DLQ_ADAPTER, named
from devstack.procs import Child
from producers.adapters.file_drop import FileDropAdapter
from producers.adapters.file_drop_folder import SettleTracker, is_candidate
from producers.adapters.file_drop_reader import DropReader, digest_file
from producers.adapters.file_drop_rows import FileRejected, ParseOptions, RowParser, event_position
from producers.emitter import Change
from simulators.licensing import LicensingOffice
from simulators.writers.files import CsvDropWriter, csv_value
from tests.helpers import QUERY_TOKEN, count, query, settings_env, wait_for

SYSTEM = "fd-licensing"
TABLE = "licensing_permit_application"
SETTLE = 1.5
BATCH = 50


# -- helpers -----------------------------------------------------------------------------------------


def licensing_entity() -> Entity:
    system = load_system(PROJECT_ROOT / "catalog" / "licensing.yaml", PROJECT_ROOT / "schemas")
    return system.entities[0]


ENTITY = licensing_entity()
FIELDS = [f["name"] for f in ENTITY.payload_schema()["fields"]]
VILLAGES = villages(load_regions(PROJECT_ROOT / "data" / "bojonegoro_regions.csv"))


def office_changes(n: int, start_seq: int, seed: int = 5) -> list[Change]:
    changes = LicensingOffice(VILLAGES, seed=seed, start_seq=start_seq).changes()
    return [next(changes) for _ in range(n)]


def csv_text(changes: list[Change], extra: dict[str, list[str]] | None = None) -> str:
    """op + payload columns (+ extra columns), as an office export would have them."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    extra = extra or {}
    writer.writerow(["op", *FIELDS, *extra])
    for i, change in enumerate(changes):
        state = change.before if change.op == "d" else change.after
        writer.writerow([change.op, *(csv_value(state[f]) for f in FIELDS), *(v[i] for v in extra.values())])
    return buffer.getvalue()


def latin1_csv(changes: list[Change], row: int) -> bytes:
    """An office saving as latin-1: the 'é' of one row's address is the single byte 0xe9."""
    changes[row].after["applicant_address"] = "Jl. Désa Ngasem No. 4"
    return csv_text(changes).encode("latin-1")


def parser(**options: object) -> RowParser:
    return RowParser(ENTITY.payload_schema(), ENTITY.key, ParseOptions(**options))


def read_all(path: Path, **options: object) -> list:
    with DropReader(path, parser(**options)) as reader:
        return list(reader.rows())


def drop_atomically(folder: Path, name: str, data: bytes) -> Path:
    """The atomic convention: write a temporary name in the folder, then rename."""
    tmp = folder / f".{name}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, folder / name)
    return folder / name


def report_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# -- parsing, no Kafka ---------------------------------------------------------------------------------


def test_csv_with_bom_op_column_and_multiline_cell_parses_with_source_line_numbers(tmp_path):
    changes = office_changes(5, start_seq=10)
    changes[1].after["applicant_address"] = "Jl. Veteran No. 3,\nRT 01/RW 02"  # a quoted cell over two lines
    deleted = Change("d", changes[0].key, "x", changes[0].ts_source, before=dict(changes[0].after))
    text = csv_text([*changes, deleted])
    path = tmp_path / "permits.csv"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())

    rows = read_all(path)
    assert [r.line for r in rows] == [2, 3, 5, 6, 7, 8]  # the second row spans lines 3 and 4
    assert all(r.ok for r in rows), [r.problems for r in rows]
    assert [r.op for r in rows] == [c.op for c in changes] + ["d"]
    assert rows[1].record["applicant_address"] == "Jl. Veteran No. 3,\nRT 01/RW 02"
    assert rows[0].key == changes[0].key
    assert rows[0].record["fee"] == changes[0].after["fee"] and isinstance(rows[0].record["fee"], Decimal)
    assert rows[0].record["submitted_at"] == changes[0].after["submitted_at"]
    assert rows[0].record["applicant_phone"] == changes[0].after["applicant_phone"]
    assert rows[0].ts_source is None  # no timestamp column: the adapter uses the file's mtime
    assert rows[1].original.decode().startswith("c,") and "\nRT 01/RW 02" in rows[1].original.decode()
    # An empty cell of a nullable field is null, not an empty string.
    assert any(r.record["decided_at"] is None and r.record["rejection_reason"] is None for r in rows)


def test_wrong_header_rejects_the_file_naming_the_columns(tmp_path):
    text = csv_text(office_changes(2, start_seq=20)).replace(",fee,", ",fees,", 1)
    header, rest = text.split("\n", 1)
    path = tmp_path / "wrong.csv"
    path.write_text(f"{header},nik\n" + "\n".join(line + ",x" for line in rest.splitlines()) + "\n")
    with pytest.raises(FileRejected) as info:
        DropReader(path, parser())
    reason = info.value.reason
    assert reason.startswith("wrong header: missing column(s) fee; unknown column(s) 'fees', 'nik'")
    assert info.value.line == 1 and info.value.field == "fee, fees, nik"
    assert info.value.original == f"{header},nik".encode()


def csv_row_with(columns: list[str], row: str, **values: str) -> str:
    """A CSV line with some cells replaced."""
    cells = next(csv.reader([row]))
    for name, value in values.items():
        cells[columns.index(name)] = value
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(cells)
    return out.getvalue()


def bad_types_csv(changes: list[Change]) -> tuple[str, dict[int, list[tuple[str, str, str]]]]:
    """A CSV with good and bad rows, and the (field, value, reason) problems expected per line."""
    lines = csv_text(changes).splitlines()
    header, rows = lines[0], lines[1:]
    cols = header.split(",")

    def with_values(row: str, **values: str) -> str:
        return csv_row_with(cols, row, **values)

    body = [
        rows[0],  # line 2: good
        with_values(rows[1], fee="abc"),  # line 3
        with_values(rows[2], status="DONE", sla_days="2.5"),  # line 4
        "c,DPMPTSP-X,NIB",  # line 5: too few values
        rows[3],  # line 6: good
        with_values(rows[4], op="x", investment_value="-5"),  # line 7
        with_values(rows[5], application_id="", submitted_at="kemarin"),  # line 8
    ]
    expected = {
        3: [("fee", "abc", "value 'abc' is not a number")],
        4: [
            ("status", "DONE", "value 'DONE' is not one of SUBMITTED, VERIFIED, APPROVED, REJECTED"),
            ("sla_days", "2.5", "value '2.5' is not a whole number"),
        ],
        5: [("", "3", f"line 5 has 3 values but the header has {len(cols)}")],
        7: [
            ("op", "x", "value 'x' is not one of c, u, d"),
            ("investment_value", "-5.00", "value -5.00 is below the minimum 0"),
        ],
        8: [
            ("application_id", "", "is empty; the field is required"),
            (
                "submitted_at",
                "kemarin",
                "value 'kemarin' is not a timestamp (ISO 8601, e.g. 2026-11-26T08:30:00+07:00)",
            ),
        ],
    }
    return header + "\n" + "\n".join(body) + "\n", expected


def test_bad_rows_are_reported_with_line_field_value_and_reason(tmp_path):
    changes = [c for c in office_changes(30, start_seq=30) if c.op == "c"][:6]
    text, expected = bad_types_csv(changes)
    path = tmp_path / "bad_types.csv"
    path.write_text(text)
    rows = read_all(path)
    assert [r.line for r in rows if r.ok] == [2, 6]
    got = {r.line: sorted((p.field, p.value, p.reason) for p in r.problems) for r in rows if not r.ok}
    assert got == {line: sorted(problems) for line, problems in expected.items()}
    short = next(r for r in rows if r.line == 5)
    assert short.original == b"c,DPMPTSP-X,NIB"  # the row's own bytes, for the dead letter
    assert short.reason.startswith("wrong number of values: line 5 has 3 values")
    assert next(r for r in rows if r.line == 3).reason == "bad values: field 'fee': value 'abc' is not a number"


def test_bad_encoding_is_rejected_with_the_byte_offset(tmp_path):
    data = latin1_csv(office_changes(3, start_seq=40), row=1)
    lines = data.split(b"\n")
    path = tmp_path / "latin1.csv"
    path.write_bytes(data)
    offset = data.index(b"\xe9")
    with pytest.raises(FileRejected) as info:
        digest_file(path, "utf-8-sig")
    assert info.value.reason.startswith(
        f"bad encoding: not valid UTF-8: byte e9 at offset {offset} (line 3) cannot be decoded"
    )
    assert info.value.line == 3 and info.value.original == lines[2]
    # With a BOM the offset still counts from the file's first byte; the BOM itself is fine.
    path.write_bytes(b"\xef\xbb\xbf" + data)
    with pytest.raises(FileRejected, match=f"at offset {offset + 3} "):
        digest_file(path, "utf-8-sig")
    # Declared as latin-1 the same file is valid.
    path.write_bytes(data)
    assert digest_file(path, "latin-1") == hashlib.sha256(path.read_bytes()).hexdigest()
    assert "Désa" in read_all(path, encoding="latin-1")[1].record["applicant_address"]


def test_empty_and_header_only_files_are_rejected(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(FileRejected, match=r"^empty file: 0 bytes$"):
        DropReader(empty, parser())
    blank = tmp_path / "blank.csv"
    blank.write_bytes(b"\xef\xbb\xbf\n\n")
    with pytest.raises(FileRejected, match=r"^empty file: 5 bytes and no header line$"):
        DropReader(blank, parser())
    header_only = tmp_path / "header.csv"
    header_only.write_text(csv_text([]))
    with pytest.raises(FileRejected, match=r"^empty file: a header but no data rows$"):
        DropReader(header_only, parser())
    workbook = openpyxl.Workbook()
    workbook.save(tmp_path / "empty.xlsx")
    with pytest.raises(FileRejected, match=r"^empty file"):
        DropReader(tmp_path / "empty.xlsx", parser())
    (tmp_path / "broken.xlsx").write_bytes(b"PK\x03\x04 not really a workbook")
    with pytest.raises(FileRejected, match=r"^unreadable workbook: not a valid XLSX file"):
        DropReader(tmp_path / "broken.xlsx", parser())


def test_same_content_under_any_name_gives_the_same_positions(tmp_path):
    text = csv_text(office_changes(4, start_seq=50))
    (tmp_path / "a.csv").write_text(text)
    (tmp_path / "copy of a.csv").write_text(text)
    da, db = digest_file(tmp_path / "a.csv", "utf-8-sig"), digest_file(tmp_path / "copy of a.csv", "utf-8-sig")
    assert da == db
    pa = [event_position(da, r.line) for r in read_all(tmp_path / "a.csv")]
    pb = [event_position(db, r.line) for r in read_all(tmp_path / "copy of a.csv")]
    assert pa == pb == [f"{da[:16]}:{line:08d}" for line in (2, 3, 4, 5)]


def xlsx_file(path: Path, changes: list[Change], changed_at: list[datetime] | None = None) -> None:
    """A workbook with typed cells (numbers, naive datetimes), as Excel would save it."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Permohonan"
    sheet.append(["op", *FIELDS, *(["changed_at"] if changed_at else [])])
    for i, change in enumerate(changes):
        cells = []
        for name in FIELDS:
            value = change.after[name]
            if isinstance(value, datetime):
                value = value.astimezone(UTC).replace(tzinfo=None, microsecond=value.microsecond // 1000 * 1000)
            elif isinstance(value, Decimal):
                value = float(value)
            cells.append(value)
        sheet.append([change.op, *cells, *([changed_at[i]] if changed_at else [])])
    workbook.save(path)


def test_xlsx_rows_parse_with_typed_cells_and_the_timestamp_column(tmp_path):
    changes = office_changes(6, start_seq=60)
    local = [datetime(2026, 3, 2, 9, 0) + timedelta(minutes=i) for i in range(6)]  # Jakarta wall-clock times
    xlsx_file(tmp_path / "permits.xlsx", changes, local)
    rows = read_all(tmp_path / "permits.xlsx", timestamp_column="changed_at", timezone=ZoneInfo("Asia/Jakarta"))
    assert [r.line for r in rows] == [2, 3, 4, 5, 6, 7]
    assert all(r.ok for r in rows), [r.problems for r in rows]
    assert [r.ts_source for r in rows] == [
        datetime(2026, 3, 2, 2, 0, tzinfo=UTC) + timedelta(minutes=i) for i in range(6)
    ]
    for row, change in zip(rows, changes, strict=True):
        assert row.key == change.key and row.op == change.op
        assert row.record["fee"] == change.after["fee"] and row.record["sla_days"] == change.after["sla_days"]
        assert row.record["applicant_nik"] == change.after["applicant_nik"]
    assert json.loads(rows[0].original)["application_id"] == changes[0].key


def test_settle_rule_and_ignored_names():
    tracker = SettleTracker(2.0)
    wall = 1_000_000.0
    mtime_ns = int((wall - 10) * 1e9)
    assert not tracker.ready("a.csv", 100, mtime_ns, now=0.0, wall=wall)  # first sight
    assert not tracker.ready("a.csv", 100, mtime_ns, now=1.9, wall=wall + 1.9)
    assert tracker.ready("a.csv", 100, mtime_ns, now=2.0, wall=wall + 2.0)
    # Still growing: every change of size or mtime starts the wait again.
    assert not tracker.ready("g.csv", 10, mtime_ns, now=0.0, wall=wall)
    assert not tracker.ready("g.csv", 20, mtime_ns + 1, now=2.5, wall=wall + 2.5)
    assert not tracker.ready("g.csv", 20, mtime_ns + 1, now=4.0, wall=wall + 4.0)
    assert tracker.ready("g.csv", 20, mtime_ns + 1, now=4.5, wall=wall + 4.5)
    # Watched long enough, but written a moment ago (e.g. touched by a slow writer): not yet.
    fresh = int((wall + 9.5) * 1e9)
    assert not tracker.ready("f.csv", 5, fresh, now=0.0, wall=wall)
    assert not tracker.ready("f.csv", 5, fresh, now=10.0, wall=wall + 10.0)
    assert tracker.ready("f.csv", 5, fresh, now=11.5, wall=wall + 11.5)
    assert SettleTracker(0).ready("atomic.csv", 5, fresh, now=0.0, wall=wall)
    for name in (".hidden.csv", "x.csv.tmp", "x.csv.part", "x.csv~", ".x.csv.tmp"):
        assert not is_candidate(name)
    assert is_candidate("permohonan 2026-03.csv") and is_candidate("x.xlsx")


def test_csv_drop_writer_drops_complete_files_atomically(tmp_path):
    now = [0.0]
    writer = CsvDropWriter(tmp_path, ENTITY, rows_per_file=4, seconds_per_file=5, clock=lambda: now[0])
    changes = office_changes(10, start_seq=70)
    dropped = [writer.write(c) for c in changes[:9]]
    assert [p is not None for p in dropped] == [False, False, False, True] * 2 + [False]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in writer.files)  # no temp left
    now[0] = 4.9
    assert writer.flush_if_due() is None
    now[0] = 5.0
    assert writer.flush_if_due() is not None  # the row waited long enough
    writer.write(changes[9])
    writer.close()
    assert writer.rows_written == 10 and len(writer.files) == 4
    rows = [r for path in writer.files for r in read_all(path)]
    assert [(r.op, r.key) for r in rows] == [(c.op, c.key) for c in changes]
    assert [r.record for r in rows] == [c.after for c in changes]


def test_config_errors_name_the_catalog_file_and_field(tmp_path):
    settings = load_settings(run_dir=tmp_path / "run")
    cases = [
        ({}, "field 'adapter.folder' is missing"),
        ({"folder": str(tmp_path), "entity": "permit"}, "field 'adapter.entity' has value 'permit': not an entity"),
        ({"folder": str(tmp_path), "encoding": "klingon"}, "field 'adapter.encoding' has value 'klingon'"),
        ({"folder": str(tmp_path), "settle_seconds": -1}, "field 'adapter.settle_seconds' has value -1"),
        ({"folder": str(tmp_path), "delimiter": ";;"}, "field 'adapter.delimiter' has value ';;'"),
        ({"folder": str(tmp_path), "op_column": "status"}, "field 'adapter.op_column' has value 'status'"),
        ({"folder": str(tmp_path), "timezone": "Mars/Base"}, "field 'adapter.timezone' has value 'Mars/Base'"),
    ]
    for adapter, message in cases:
        catalog = tmp_path / f"c{uuid.uuid4().hex[:6]}.yaml"
        catalog.write_text(catalog_yaml({"kind": "file_drop", **adapter}))
        system = load_system(catalog, PROJECT_ROOT / "schemas")
        with pytest.raises(ConfigError) as info:
            FileDropAdapter(system, settings)  # fails before connecting anywhere
        assert re.match(rf"{re.escape(str(catalog))}(:\d+)?: {re.escape(message)}", str(info.value)), str(info.value)


def catalog_yaml(adapter: dict) -> str:
    return (
        "system: fd-licensing\n"
        "title: Licensing office permits dropped as files (test)\n"
        "department: DPMPTSP\n"
        "domain: licensing\n"
        f"adapter: {json.dumps(adapter)}\n"
        "freshness_seconds: 60\n"
        "entities:\n"
        "  - name: permit_application\n"
        "    schema: licensing/permit_application.avsc\n"
        "    key: [application_id]\n"
    )


# -- end to end on the real stack ---------------------------------------------------------------------


@dataclass
class Pipeline:
    settings: Settings
    inbox: Path
    port: str
    processor: Child
    sink: Child
    start: Callable[..., Child]

    def query(self, sql: str) -> str:
        return query(self.port, sql)

    def count(self, sql: str) -> int:
        return count(self.port, sql)

    def adapter(self) -> Child:
        return self.start("adapters", "run", SYSTEM)

    def checkpoint(self) -> dict:
        try:
            return json.loads((self.settings.run_dir / "checkpoints" / f"{SYSTEM}.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}


def _start_child(settings: Settings, started: list[Child], *args: str) -> Child:
    extra = {
        name: str(free_port())
        for name in (
            "BACKBONE_SINK_METRICS_PORT",
            "BACKBONE_PROCESSOR_METRICS_PORT",
            "BACKBONE_PRODUCER_METRICS_PORT",
            "BACKBONE_QUERY_PORT",
        )
    }
    child = Child(
        args[0],
        [sys.executable, "-m", "cli", *args],
        settings.run_dir / "logs" / f"{args[0]}-{len(started)}.log",
        env={**settings_env(settings), **extra},
        stop_timeout=20,
    )
    started.append(child.start())
    return child


@pytest.fixture(scope="module")
def pipeline(stack, tmp_path_factory) -> Iterator[Pipeline]:
    """One isolated pipeline for the module (like conftest's make_settings and stage_process, shared
    so the processor and sink start once): its own catalog with the fd-licensing file-drop system."""
    root = tmp_path_factory.mktemp("file_drop")
    inbox = root / "inbox"
    inbox.mkdir()
    (root / "catalog").mkdir()
    adapter = {
        "kind": "file_drop",
        "folder": str(inbox),
        "entity": "permit_application",
        "timestamp_column": "changed_at",
        "settle_seconds": SETTLE,
        "poll_seconds": 0.2,
        "batch_rows": BATCH,
    }
    (root / "catalog" / "fd-licensing.yaml").write_text(catalog_yaml(adapter))
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
    settings = load_settings(
        run_dir=root / "run",
        kafka_bootstrap=stack.kafka_bootstrap,
        registry_url=stack.registry_url,
        topic_prefix=f"fd{tag}.",
        processor_app_id=f"test-processor-fd-{tag}",
        sink_group_id=f"test-sink-fd-{tag}",
        pii_key="test-key-not-secret",
        query_token=QUERY_TOKEN,
        sink_batch_seconds=0.2,
        catalog_dir=root / "catalog",
    )
    bootstrap(settings)
    started: list[Child] = []
    processor = _start_child(settings, started, "processor")
    sink = _start_child(settings, started, "sink")
    pipe = Pipeline(
        settings,
        inbox,
        sink.env["BACKBONE_QUERY_PORT"],
        processor,
        sink,
        lambda *a: _start_child(settings, started, *a),
    )
    wait_for(lambda: pipe.count("SELECT 1") == 1, 90, "the sink's query endpoint", alive=(processor, sink))
    try:
        yield pipe
    finally:
        for child in reversed(started):
            child.stop()


@pytest.fixture
def adapter(pipeline) -> Iterator[Child]:
    child = pipeline.adapter()
    yield child
    assert child.stop() == 0, child.log_tail(30)


def stored(pipe: Pipeline, digest: str, what: str = "count()", final: bool = True) -> int:
    return pipe.count(
        f"SELECT {what} FROM {TABLE}{' FINAL' if final else ''} WHERE startsWith(source_position, '{digest[:16]}:')"
    )


def dead_letters(settings: Settings, origin_prefix: str, expected: int, timeout: float = 30) -> list:
    """Messages of dlq.adapter whose origin starts with `origin_prefix` ('fd-licensing:<file>:')."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"test-dlq-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([named(settings, DLQ_ADAPTER)])
    found: list = []

    def more() -> bool:
        for m in consumer.consume(200, timeout=0.5):
            if not m.error() and dict(m.headers())["source.topic"].decode().startswith(origin_prefix):
                found.append(m)
        return len(found) >= expected

    try:
        wait_for(more, timeout, f"{expected} dead letters from {origin_prefix}")
        more()  # anything beyond the expected number is a failure below
    finally:
        consumer.close()
    return found


def test_good_csv_and_xlsx_land_in_clickhouse(pipeline, adapter):
    inbox = pipeline.inbox
    # 1. An office's export written by the drop writer (atomic rename), 60 changes with updates.
    writer = CsvDropWriter(inbox, ENTITY, rows_per_file=60)
    for change in office_changes(60, start_seq=100_000):
        writer.write(change)
    (written,) = writer.files
    written_digest = hashlib.sha256(written.read_bytes()).hexdigest()
    written_mtime_ms = written.stat().st_mtime_ns // 1_000_000
    # 2. A hand-made CSV with a byte-order mark and a delete.
    changes = [c for c in office_changes(20, start_seq=200_000) if c.op == "c"][:6]
    gone = Change("d", changes[0].key, "", changes[0].ts_source, before=dict(changes[0].after))
    bom = b"\xef\xbb\xbf" + csv_text([*changes, gone]).encode()
    drop_atomically(inbox, "bom.csv", bom)
    bom_digest = hashlib.sha256(bom).hexdigest()
    # 3. An XLSX with typed cells and the configured timestamp column.
    xlsx_changes = office_changes(40, start_seq=300_000)
    changed_at = [datetime(2026, 3, 2, 1, 0) + timedelta(minutes=i) for i in range(40)]
    xlsx_file(inbox.parent / "staging.xlsx", xlsx_changes, changed_at)
    data = (inbox.parent / "staging.xlsx").read_bytes()
    drop_atomically(inbox, "permohonan.xlsx", data)
    xlsx_digest = hashlib.sha256(data).hexdigest()

    done = inbox / "done"
    for name in (written.name, "bom.csv", "permohonan.xlsx"):
        wait_for(lambda n=name: (done / n).exists(), 60, f"{name} moved to done/", alive=(adapter,))
    for digest, n in ((written_digest, 60), (bom_digest, 7), (xlsx_digest, 40)):
        wait_for(lambda d=digest, n=n: stored(pipeline, d) == n, 90, f"{n} rows", alive=(pipeline.sink, adapter))
        assert stored(pipeline, digest, "uniqExact(event_id)") == n
    assert not (inbox / "rejects").exists() or not any((inbox / "rejects").iterdir())

    # ts_source: the file's mtime, unless the timestamp column is there.
    ts = "toUnixTimestamp64Milli(ts_source)"
    assert stored(pipeline, written_digest, f"uniqExact({ts})") == 1
    assert stored(pipeline, written_digest, f"any({ts})") == written_mtime_ms
    xlsx_ts = pipeline.query(
        f"SELECT {ts} FROM {TABLE} FINAL WHERE startsWith(source_position, '{xlsx_digest[:16]}:') "
        "ORDER BY source_position"
    ).split()
    assert [int(v) for v in xlsx_ts] == [int(t.replace(tzinfo=UTC).timestamp() * 1000) for t in changed_at]
    # Positions are the file's digest and the line; the delete arrived as a delete.
    positions = pipeline.query(
        f"SELECT source_position, op, is_deleted, entity_key FROM {TABLE} FINAL "
        f"WHERE startsWith(source_position, '{bom_digest[:16]}:') ORDER BY source_position"
    ).splitlines()
    assert [p.split("\t")[0] for p in positions] == [event_position(bom_digest, line) for line in range(2, 9)]
    assert positions[-1].split("\t")[1:] == ["d", "true", changes[0].key]
    # Values survive the trip (numbers from Excel cells included).
    fees = pipeline.query(
        f"SELECT application_id, toString(fee) FROM {TABLE} FINAL "
        f"WHERE startsWith(source_position, '{xlsx_digest[:16]}:') ORDER BY source_position"
    ).splitlines()
    assert [(f.split("\t")[0], Decimal(f.split("\t")[1])) for f in fees] == [
        (c.key, c.after["fee"]) for c in xlsx_changes
    ]


def test_bad_inputs_are_reported_and_dead_lettered(pipeline, adapter):
    inbox = pipeline.inbox
    # Wrong columns: 'fee' misspelt, an unknown 'nik' column.
    text = csv_text(office_changes(2, start_seq=400_000)).replace(",fee,", ",fees,", 1)
    header, rest = text.split("\n", 1)
    wrong = f"{header},nik\n" + "\n".join(line + ",x" for line in rest.splitlines()) + "\n"
    drop_atomically(inbox, "wrong_columns.csv", wrong.encode())
    # Bad types and values in some rows; the good rows still land.
    changes = [c for c in office_changes(30, start_seq=410_000) if c.op == "c"][:6]
    bad_text, expected = bad_types_csv(changes)
    drop_atomically(inbox, "bad_types.csv", bad_text.encode())
    bad_digest = hashlib.sha256(bad_text.encode()).hexdigest()
    # Latin-1 bytes in a UTF-8 file.
    latin = latin1_csv(office_changes(3, start_seq=420_000), row=2)
    lines = latin.split(b"\n")
    drop_atomically(inbox, "bad_encoding.csv", latin)
    # Nothing at all.
    drop_atomically(inbox, "empty.csv", b"")

    failed, done, rejects = inbox / "failed", inbox / "done", inbox / "rejects"
    for path in (
        failed / "wrong_columns.csv",
        done / "bad_types.csv",
        failed / "bad_encoding.csv",
        failed / "empty.csv",
    ):
        wait_for(path.exists, 60, f"{path.parent.name}/{path.name}", alive=(adapter,))

    def only_reason(name: str) -> dict[str, str]:
        (row,) = report_rows(rejects / f"{name}.rejects.csv")
        return row

    wrong_row = only_reason("wrong_columns.csv")
    assert wrong_row["reason"].startswith("wrong header: missing column(s) fee; unknown column(s) 'fees', 'nik'")
    assert wrong_row["line"] == "1" and wrong_row["field"] == "fee, fees, nik"
    offset = latin.index(b"\xe9")
    encoding_row = only_reason("bad_encoding.csv")
    assert encoding_row["reason"].startswith(f"bad encoding: not valid UTF-8: byte e9 at offset {offset} (line 4)")
    assert encoding_row["line"] == "4"
    assert only_reason("empty.csv")["reason"] == "empty file: 0 bytes"
    got = {}
    for row in report_rows(rejects / "bad_types.csv.rejects.csv"):
        got.setdefault(int(row["line"]), []).append((row["field"], row["value"], row["reason"]))
    assert {k: sorted(v) for k, v in got.items()} == {k: sorted(v) for k, v in expected.items()}

    # The same problems went to the dead-letter topic with the original bytes and where they came from.
    letters = dead_letters(pipeline.settings, f"{SYSTEM}:", 8)
    by_origin = {dict(m.headers())["source.topic"].decode(): m for m in letters}
    assert sorted(by_origin) == sorted(
        [f"{SYSTEM}:bad_types.csv:{line}" for line in expected]
        + [f"{SYSTEM}:wrong_columns.csv:1", f"{SYSTEM}:bad_encoding.csv:4", f"{SYSTEM}:empty.csv:0"]
    )
    reason = {o.split(":", 1)[1]: dict(m.headers())["error.reason"].decode() for o, m in by_origin.items()}
    assert reason["bad_types.csv:3"] == "bad values: field 'fee': value 'abc' is not a number"
    assert reason["bad_types.csv:5"].startswith("wrong number of values: line 5 has 3 values")
    assert reason["wrong_columns.csv:1"] == wrong_row["reason"]
    assert reason["bad_encoding.csv:4"] == encoding_row["reason"]
    assert reason["empty.csv:0"] == "empty file: 0 bytes"
    bad_lines = bad_text.encode().split(b"\n")
    # The original bytes are kept for replay, sealed with the dead-letter key.
    sealer = Sealer(pipeline.settings.dead_letter_secret())
    for line in expected:
        assert sealer.unseal(by_origin[f"{SYSTEM}:bad_types.csv:{line}"].value()) == bad_lines[line - 1]
    assert sealer.unseal(by_origin[f"{SYSTEM}:bad_encoding.csv:4"].value()) == lines[3]
    assert sealer.unseal(by_origin[f"{SYSTEM}:wrong_columns.csv:1"].value()) == f"{header},nik".encode()
    # The good rows of bad_types.csv (lines 2 and 6) are stored, nothing else from these files.
    wait_for(lambda: stored(pipeline, bad_digest) == 2, 60, "the 2 good rows", alive=(pipeline.sink,))
    assert pipeline.query(
        f"SELECT source_position FROM {TABLE} FINAL WHERE startsWith(source_position, '{bad_digest[:16]}:') "
        "ORDER BY source_position"
    ).split() == [event_position(bad_digest, 2), event_position(bad_digest, 6)]
    # Reconciled: the file's rows = stored + rejected, one row of the reconciliation table for the file.
    rows = str(2 + len(expected))
    wait_for(
        lambda: (
            pipeline.query(
                "SELECT source_rows, store_rows, missing, extra, checksum_match FROM reconciliation FINAL "
                f"WHERE mode = 'file' AND source = 'bad_types.csv' AND source_position = '{bad_digest[:16]}'"
            ).split()
            == [rows, rows, "0", "0", "true"]
        ),
        60,
        "the file reconciled",
        alive=(pipeline.sink,),
    )
    # The sink keeps the adapter's dead letters for operators too.
    wait_for(
        lambda: pipeline.count("SELECT count() FROM dead_letters WHERE stage = 'adapter'") >= 8,
        60,
        "adapter dead letters in ClickHouse",
    )


def test_a_file_dropped_twice_produces_no_duplicates(pipeline, adapter):
    inbox = pipeline.inbox
    data = csv_text(office_changes(25, start_seq=500_000)).encode()
    digest = hashlib.sha256(data).hexdigest()
    drop_atomically(inbox, "export-monday.csv", data)
    wait_for((inbox / "done" / "export-monday.csv").exists, 60, "the first drop processed", alive=(adapter,))
    wait_for(lambda: stored(pipeline, digest) == 25, 90, "25 rows", alive=(pipeline.sink,))
    # The same bytes again, under another name (an office re-sending yesterday's export).
    drop_atomically(inbox, "export-monday (1).csv", data)
    wait_for((inbox / "done" / "export-monday (1).csv").exists, 60, "the re-drop handled", alive=(adapter,))
    (row,) = report_rows(inbox / "rejects" / "export-monday (1).csv.rejects.csv")
    assert row["reason"].startswith("duplicate file: the same content was already processed as 'export-monday.csv'")
    assert row["value"] == f"sha256 {digest}"
    # Give a re-send (there must be none) the time to reach the store, then count.
    marker = csv_text(office_changes(1, start_seq=510_000)).encode()
    drop_atomically(inbox, "after.csv", marker)
    wait_for(
        lambda: stored(pipeline, hashlib.sha256(marker).hexdigest()) == 1, 90, "a later file", alive=(pipeline.sink,)
    )
    assert stored(pipeline, digest) == 25
    assert stored(pipeline, digest, "uniqExact(event_id)") == 25
    assert stored(pipeline, digest, final=False) == 25  # not even a replayed copy was sent


def test_a_half_written_file_is_not_read_until_it_settles(pipeline, adapter):
    inbox = pipeline.inbox
    data = csv_text(office_changes(40, start_seq=600_000)).encode()
    digest = hashlib.sha256(data).hexdigest()
    path = inbox / "growing.csv"
    # A slow writer: a piece every 0.3 s (shorter than the settle time), cutting rows in half.
    pieces = [data[i : i + len(data) // 15 + 1] for i in range(0, len(data), len(data) // 15 + 1)]
    deadline = time.monotonic() + 60
    with open(path, "wb") as fh:
        for piece in pieces:
            fh.write(piece)
            fh.flush()
            time.sleep(0.3)  # the writer's pace, not a wait for the adapter
            assert path.exists(), "the adapter took a file that was still being written"
            assert (pipeline.checkpoint().get("current") or {}).get("name") != "growing.csv"
            assert not (inbox / "rejects" / "growing.csv.rejects.csv").exists()
            assert time.monotonic() < deadline
    grown_at = time.monotonic()
    wait_for((inbox / "done" / "growing.csv").exists, 60, "the settled file processed", alive=(adapter,))
    assert time.monotonic() - grown_at >= SETTLE - 0.3  # it waited for the file to settle
    assert not (inbox / "rejects" / "growing.csv.rejects.csv").exists()  # no half rows were read
    wait_for(lambda: stored(pipeline, digest) == 40, 90, "all 40 rows", alive=(pipeline.sink,))
    assert stored(pipeline, digest, "uniqExact(event_id)") == 40


def test_kill_9_mid_file_and_restart_stores_every_row_exactly_once(pipeline):
    inbox = pipeline.inbox
    n = 4000
    header, *rows = csv_text(office_changes(n, start_seq=700_000)).splitlines()
    bad_lines = [2 + i for i in range(n) if i % 400 == 123 or (1500 <= i < 1800 and i % 7 == 0)]
    for line in bad_lines:
        rows[line - 2] = csv_row_with(header.split(","), rows[line - 2], fee="banyak")
    data = ("\n".join([header, *rows]) + "\n").encode()
    digest = hashlib.sha256(data).hexdigest()
    good = n - len(bad_lines)
    first = pipeline.adapter()
    drop_atomically(inbox, "big.csv", data)

    report_path = inbox / "rejects" / "big.csv.rejects.csv"

    def frozen_mid_batch() -> int:
        """Freeze the adapter; keep it frozen when it is halfway through the file and has reported
        rejected rows after its last checkpoint (so the restart must cut the report back)."""
        first.signal(signal.SIGSTOP)
        current = pipeline.checkpoint().get("current") or {}
        line = current.get("line", 0) if current.get("name") == "big.csv" else 0
        reported = [int(r["line"]) for r in report_rows(report_path) if r["line"]] if report_path.exists() else []
        if 10 * BATCH < line < n and any(r > line for r in reported):
            return line
        first.signal(signal.SIGCONT)
        return 0

    line = wait_for(frozen_mid_batch, 60, "the adapter halfway through big.csv", interval=0.02, alive=(first,))
    first.kill()  # SIGKILL: no chance to commit or clean up
    assert first.process.returncode == -signal.SIGKILL
    assert (inbox / "big.csv").exists() and not (inbox / "done" / "big.csv").exists()
    committed = pipeline.checkpoint()["current"]["line"]
    assert committed == line

    second = pipeline.adapter()
    try:
        wait_for((inbox / "done" / "big.csv").exists, 90, "big.csv finished after the restart", alive=(second,))
        wait_for(lambda: stored(pipeline, digest) == good, 120, f"{good} rows", alive=(pipeline.sink, second))
        assert stored(pipeline, digest, "uniqExact(event_id)") == good
        assert stored(pipeline, digest, "uniqExact(source_position)") == good
        # Re-sent at most the rows after the last checkpoint (one batch), with the same ids.
        assert good <= stored(pipeline, digest, final=False) <= good + BATCH
        log = second.log_path.read_text()
        assert f"resuming big.csv after line {committed}" in log
        # The rejects report was cut back to the checkpoint: every bad line is in it exactly once.
        report = report_rows(report_path)
        assert [int(r["line"]) for r in report] == bad_lines
        assert {(r["field"], r["value"]) for r in report} == {("fee", "banyak")}
        assert any(line <= committed for line in bad_lines) and any(line > committed for line in bad_lines)
    finally:
        assert second.stop() == 0, second.log_tail(30)


def emoji_row(changes: list[Change], fields: list[str], chars: int) -> str:
    """A CSV line of the first change with `fields` filled with `chars` 4-byte characters each (text
    values within the 64 KiB bound, but an event of over 1 MB: too large for Kafka)."""
    lines = csv_text(changes[:1]).splitlines()
    cols = lines[0].split(",")
    return csv_row_with(cols, lines[1], **{f: "\U0001f600" * chars for f in fields})


def test_hostile_entries_rows_and_personal_data_are_refused_and_accounted(pipeline, adapter, tmp_path):
    from tests.producers.adapters.test_hostile_inputs import hostile_csv_lines

    inbox = pipeline.inbox
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-4242\n")
    # 1. Not regular files: a symbolic link to a secret, a FIFO. Refused from lstat, never opened.
    (inbox / "link.csv").symlink_to(secret)
    os.mkfifo(inbox / "pipe.csv")
    # 2. A row too large for Kafka between two good rows: the good rows are stored.
    good = [c for c in office_changes(30, start_seq=600_000) if c.op == "c"][:4]
    lines = csv_text(good[:3]).splitlines()
    big = emoji_row(good[3:], ["applicant_name", "applicant_phone", "applicant_address", "business_name"], 64_000)
    big = csv_row_with(lines[0].split(","), big, rejection_reason="\U0001f600" * 64_000)
    oversized = "\n".join([lines[0], lines[1], big, lines[2]]) + "\n"
    assert len(oversized.encode()) > 1_200_000
    drop_atomically(inbox, "oversized.csv", oversized.encode())
    # 3. Bad rows carrying a NIK: a NIK beyond the text bound, and a row with broken quoting.
    nik_changes = [c for c in office_changes(30, start_seq=610_000) if c.op == "c"][:4]
    nik_lines = csv_text(nik_changes).splitlines()
    cols = nik_lines[0].split(",")
    long_nik = "3522" * 17_000
    clear_nik = "3522019988776655"
    broken = csv_row_with(cols, nik_lines[3], applicant_nik=clear_nik).replace(clear_nik, f'"{clear_nik}"x', 1)
    nik_text = "\n".join(
        [nik_lines[0], nik_lines[1], csv_row_with(cols, nik_lines[2], applicant_nik=long_nik), broken, nik_lines[4]]
    )
    drop_atomically(inbox, "nik.csv", (nik_text + "\n").encode())
    # 4. 300 generated hostile lines in one file.
    hostile, starts = hostile_csv_lines(300)
    drop_atomically(inbox, "hostile.csv", hostile.encode())

    failed, done, rejects = inbox / "failed", inbox / "done", inbox / "rejects"
    for path in (
        failed / "link.csv",
        failed / "pipe.csv",
        done / "oversized.csv",
        done / "nik.csv",
        done / "hostile.csv",
    ):
        wait_for(lambda p=path: os.path.lexists(p), 90, f"{path.parent.name}/{path.name}", alive=(adapter,))
    assert (failed / "link.csv").is_symlink() and secret.read_text() == "TOP-SECRET-4242\n"
    with pytest.raises(OSError) as no_reader:  # nobody ever opened the FIFO for reading
        os.open(failed / "pipe.csv", os.O_WRONLY | os.O_NONBLOCK)
    assert no_reader.value.errno == 6  # ENXIO

    (link_row,) = report_rows(rejects / "link.csv.rejects.csv")
    assert link_row["reason"].startswith("not a regular file: 'link.csv' is a symbolic link")
    (pipe_row,) = report_rows(rejects / "pipe.csv.rejects.csv")
    assert pipe_row["reason"].startswith("not a regular file: 'pipe.csv' is a FIFO")
    (big_row,) = report_rows(rejects / "oversized.csv.rejects.csv")
    assert big_row["line"] == "3" and "oversized.csv line 3: record too large" in big_row["reason"]
    oversized_digest = hashlib.sha256(oversized.encode()).hexdigest()
    wait_for(lambda: stored(pipeline, oversized_digest) == 2, 90, "the 2 good rows around the large one")
    nik_rows = report_rows(rejects / "nik.csv.rejects.csv")
    assert [(r["line"], r["field"]) for r in nik_rows] == [("3", "applicant_nik"), ("4", "")]
    assert nik_rows[0]["value"].startswith("pii:") and "longer than 65536" in nik_rows[0]["reason"]
    nik_digest = hashlib.sha256((nik_text + "\n").encode()).hexdigest()
    wait_for(lambda: stored(pipeline, nik_digest) == 2, 90, "the 2 good rows of nik.csv")

    # Every hostile line is accounted for: emitted, or a line of the rejects report.
    hostile_digest = hashlib.sha256(hostile.encode()).hexdigest()
    facts = pipeline.checkpoint()["digests"][hostile_digest]
    reported = [int(r["line"]) for r in report_rows(rejects / "hostile.csv.rejects.csv")]
    assert facts["rows"] + facts["rejected"] == 300
    assert len(set(reported)) == facts["rejected"] and set(reported) <= set(starts)
    assert facts["rejected"] > 100

    letters = []
    for name, n in (("link.csv", 1), ("pipe.csv", 1), ("oversized.csv", 1), ("nik.csv", 2)):
        letters += dead_letters(pipeline.settings, f"{SYSTEM}:{name}:", n)
    headers = {dict(m.headers())["source.topic"].decode(): dict(m.headers()) for m in letters}
    assert "not a regular file" in headers[f"{SYSTEM}:link.csv:0"]["error.reason"].decode()
    assert "FIFO" in headers[f"{SYSTEM}:pipe.csv:0"]["error.reason"].decode()
    assert "record too large" in headers[f"{SYSTEM}:oversized.csv:3"]["error.reason"].decode()
    assert f"{SYSTEM}:nik.csv:3" in headers and f"{SYSTEM}:nik.csv:4" in headers
    # No secret content and no clear NIK anywhere outside the cdc topic: reports, dead letters, the log.
    seen = [p.read_bytes() for p in rejects.iterdir()]
    seen += [b"".join(v or b"" for _, v in m.headers()) + (m.key() or b"") for m in letters]
    seen.append(adapter.log_path.read_bytes())
    for text in seen:
        assert b"TOP-SECRET" not in text
        assert clear_nik.encode() not in text and long_nik[:40].encode() not in text
    assert adapter.alive()
