"""Issue 8's corpus: more than a thousand hostile inputs, generated from a seed (the same seed gives
the same bytes), for the three doors of the backbone: push requests (producers.adapters.http_push),
dropped files and their lines (producers.adapters.file_drop), and raw messages produced straight onto
a cdc topic, the processor's input. Good inputs are interleaved with them.

Each input says what a steward expects of it: "refused" (a 4xx, a rejects-report line or a dead letter,
never stored), "stored", or "either" (values that may be legitimate, such as an odd but valid text).
tests/e2e/test_hostile_corpus.py sends it through the real stack and accounts for every input."""

from __future__ import annotations

import csv
import io
import json
import random
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any

import fastavro

from contract.catalog import Entity
from contract.codec import encode
from producers.emitter import Change, envelope_for
from simulators.writers.files import csv_value
from tests.producers.adapters.test_file_drop import office_changes
from tests.producers.adapters.test_hostile_inputs import FIELDS, good_items, hostile_csv_lines, hostile_item, push_body
from tests.producers.adapters.test_http_push import TOKEN

ENTITY_NAME = "permit_application"
MAX_BODY_BYTES = 2 * 1024 * 1024
MAX_BATCH = 100
DROP_HEADER = ["op", *FIELDS, "changed_at"]
# The simulated offices' wall clock while the corpus is made (tests.fakes.freeze): with it, the same
# seed gives the same bytes. In the past, so every time it stamps stays plausible.
CLOCK = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
_RAW = "@@RAW@@"  # stands for a JSON number written as the sender wrote it, not as json.dumps would

# -- values of each category --------------------------------------------------------------------------
# fmt: off
NUMBERS = [
    *"1e400 -1e400 1e1000000 1e999999999 1E+30 1e-999999999 1e-400 NaN Infinity -Infinity 2147483648".split(),
    *"123456789012345678901234567890 99999999999999999.99 0.001 1.005 -0 -0.01 9223372036854775808".split(),
    *"-1e999999999 1E+999999999".split(),  # seconds of CPU each, before contract.coerce bounded them
    "9" * 5000,
]
NUMBER_TEXTS = ["１２３", "١٢٣", "۱۲۳", "1,5", "Rp 1.000", "0x10", "1_000", " 12 ", "1e5", "٣.٥", "Ⅻ", "", "nan"]
DATES: list[Any] = [
    *"0001-01-01T00:00:00Z 1850-06-01T00:00:00+07:00 1969-12-31T23:59:59Z 2101-01-01T00:00:00Z".split(),
    *"9999-12-31T23:59:59Z 2026-02-30T10:00:00Z 2026-13-01T00:00:00Z 2026-11-26T25:00:00Z 2026-11-26".split(),
    *"2026-11-26T08:30:00+25:00 kemarin ２０２６-01-01T00:00:00Z 2026-11-26T08:30:00".split(), 253402300799000, -1,
]
TEXTS = ["\ud800", "abc\udfffdef", "a\x00b", "\u202eevil\u202c", "\ufeffBOM", "\u200b", "e\u0301" * 2000,
         "\x1b[31mred", "line\r\nbreak", "'; DROP TABLE x; --", "\U0001f600" * 100, "x" * 65_537]
REGIONS = ["35.22.99.9999", "35.22.15", "35.22", "３５.２２.１５.２００３", "35-22-15-2003", "35.22.15.2003\x00",
           "35.22.15.2003\u200b", "", " 35.22.15.2003", "x" * 500]
# status moves the lifecycle forbids, from before to after (SUBMITTED -> VERIFIED|REJECTED -> ...)
ILLEGAL_MOVES = [("APPROVED", "SUBMITTED"), ("REJECTED", "APPROVED"), ("SUBMITTED", "APPROVED"),
                 ("VERIFIED", "SUBMITTED"), ("APPROVED", "REJECTED")]
# fmt: on


@dataclass(frozen=True)
class Input:
    """One hostile (or good) input and where it goes in."""

    door: str  # "push", "drop" or "raw"
    label: str  # category: what is hostile about it
    expect: str = "either"  # "refused", "stored" or "either"
    body: bytes | None = None  # push: the request body; raw: the message value
    key: bytes | None = None  # raw: the message key
    token: str | None = TOKEN  # push: the bearer token (None: no Authorization header)
    path: str = ENTITY_NAME  # push: /v1/<path>
    content_type: str = "application/json"  # push
    file: str = ""  # drop: the file's name
    line: int = 0  # drop: the line the row starts on; 0 is the file as a whole
    event_id: str = ""  # raw: the envelope's event id, when the bytes carry one


@dataclass(frozen=True)
class DropFile:
    name: str
    data: bytes
    special: str = ""  # "symlink" or "fifo": made in the folder instead of written


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


# -- push ---------------------------------------------------------------------------------------------


def _push(label: str, item: Any, expect: str = "either", raw: str | None = None, **kw: Any) -> Input:
    body = push_body(item)
    if raw is not None:
        body = body.replace(f'"{_RAW}"'.encode(), raw.encode())
    return Input("push", label, expect, body, **kw)


def _spoiled(base: dict[str, Any], where: str, value: Any) -> dict[str, Any]:
    item = _copy(base)
    if where.startswith("record."):
        item["record"][where[7:]] = value
    else:
        item[where] = value
    return item


def push_inputs(seed: int, goods: list[dict[str, Any]]) -> list[Input]:
    """The push door's inputs: one request each; `goods` (push items of fresh keys) are interleaved."""
    rng = random.Random(seed)
    bases = good_items(10)
    hostile: list[Input] = []
    for _ in range(150):
        hostile.append(_push("values: random hostile fields", hostile_item(rng, rng.choice(bases))))
    for field in ("record.fee", "record.investment_value", "record.sla_days"):
        for text in NUMBERS:
            item = _spoiled(rng.choice(bases), field, _RAW)
            hostile.append(_push(f"numbers: {field}={text[:20]}", item, _number_expect(field, text), raw=text))
        for text in NUMBER_TEXTS:
            item = _spoiled(rng.choice(bases), field, text)
            hostile.append(_push(f"numbers: {field}={text!r}", item, _number_expect(field, text)))
    for field in ("record.submitted_at", "record.updated_at", "record.decided_at", "changed_at"):
        for value in DATES:
            hostile.append(_push(f"dates: {field}={value!r}", _spoiled(rng.choice(bases), field, value)))
    for field in ("record.applicant_name", "record.business_name", "record.application_id"):
        for text in TEXTS:
            hostile.append(_push(f"encodings: {field}={text[:12]!r}", _spoiled(rng.choice(bases), field, text)))
    for code in REGIONS:
        item = _spoiled(rng.choice(bases), "record.village_code", code)
        hostile.append(_push(f"regions: {code[:20]!r}", item, "refused"))
    hostile += _push_lifecycle(rng, bases) + _push_types(rng, bases) + _push_bodies(rng, bases)
    hostile += _push_sizes(bases) + _push_duplicates(bases)
    return _interleave(rng, hostile, [_push("good", g, "stored") for g in goods])


def _number_expect(field: str, text: str) -> str:
    """Refused, but for what a field may hold: zero, a trimmed whole number, 2**31 as money."""
    if text in ("0.001", "-0", " 12 ", "") or text == "2147483648" and not field.endswith("sla_days"):
        return "either"
    return "refused"


def _push_lifecycle(rng: random.Random, bases: list[dict[str, Any]]) -> list[Input]:
    out = []
    for old, new in ILLEGAL_MOVES:
        base = rng.choice(bases)
        item = _spoiled(_spoiled(base, "op", "u"), "record.status", new)
        item["before"] = {**base["record"], "status": old}
        out.append(_push(f"lifecycle: {old} -> {new}", item, "refused"))
        expect = "either" if new == "SUBMITTED" else "refused"
        out.append(_push(f"lifecycle: create in {new}", _spoiled(base, "record.status", new), expect))
    for i in range(5):  # a delete of a key never seen: judged on its before state, stored
        item = _spoiled(_spoiled(rng.choice(bases), "op", "d"), "record.application_id", f"NEVER-SEEN-{i}")
        out.append(_push("lifecycle: delete of an unknown key", item, "stored"))
    # An update without `before`: unchecked until the processor keeps a state per key, so either outcome.
    out.append(_push("lifecycle: update without before", _spoiled(bases[0], "op", "u")))
    return out


def _push_types(rng: random.Random, bases: list[dict[str, Any]]) -> list[Input]:
    base = rng.choice(bases)
    cases: dict[str, list[Any]] = {
        "record": [[1, 2], "text", 5, None], "before": ["text"], "op": [1, "C", "x", None, ["c"]],
        "changed_at": [1764145800, ["2026"]], "position": [{}, "", "p" * 2000, 7], "extra": [1],
        "record.sla_days": [True], "record.fee": [[1]], "record.status": [{"s": 1}, 0],
        "record.permit_type": ["nib"], "record.extra_field": ["x"],
    }  # fmt: skip
    out = [_push(f"types: {w}={v!r:.20}", _spoiled(base, w, v), "refused") for w, vs in cases.items() for v in vs]
    out.append(_push("types: item not an object", [base, 3], "refused"))
    out.append(_push("types: record missing", {"op": "c", "changed_at": base["changed_at"]}, "refused"))
    return out


def _push_bodies(rng: random.Random, bases: list[dict[str, Any]]) -> list[Input]:
    good = push_body(rng.choice(bases))
    deep = {"op": "c", "record": {}}
    inner = deep["record"]
    for _ in range(40):
        inner["x"] = {}
        inner = inner["x"]
    # fmt: off
    bodies = [
        b"[" * 100_000 + b"]" * 100_000, b"{" * 100_000, b'{"a":' * 33 + b"1" + b"}" * 33, push_body(deep), b"",
        b"null", b"3", b'"text"', b"[]", b"{}", b"\xff\xfe" + good.decode().encode("utf-16-le"), b"\xef\xbb\xbf" + good,
        good[: len(good) // 2], good + b" trailing", b'{"op": "c", "record": {"x": "\xff"}}', b"[NaN]",
        good.replace(b'"op": "c"', b'"op": "c", "op": "d"'), b"1" * 5000, b"\x00" * 64,
    ]
    # fmt: on
    out = [Input("push", f"body: {b[:16]!r}", "refused", b) for b in bodies]
    out.append(Input("push", "body: text/plain", "refused", good, content_type="text/plain"))
    latin = "application/json; charset=latin-1"
    out.append(Input("push", "body: latin-1 charset", "refused", good, content_type=latin))
    for token in ("wrong", "", TOKEN + "x", TOKEN[:-1], "Basic " + TOKEN, "\u00e9" * 8, None):
        out.append(Input("push", f"token: {str(token)[:8]!r}", "refused", good, token=token))
    for path in ("no_such_entity", "..%2F..%2Fetc", "PERMIT_APPLICATION"):
        out.append(Input("push", f"entity: {path}", "refused", good, path=path))
    return out


def _push_sizes(bases: list[dict[str, Any]]) -> list[Input]:
    big = _copy(bases[1])
    for name in ("applicant_name", "applicant_address", "business_name", "rejection_reason", "applicant_phone"):
        big["record"][name] = "\U0001f600" * 64_000
    too_large_event = json.dumps(big, ensure_ascii=False).encode()
    return [
        Input("push", "sizes: event too large for Kafka", "refused", too_large_event),
        Input("push", "sizes: body over max_body_bytes", "refused", b" " * (MAX_BODY_BYTES + 1) + b"{}"),
        _push("sizes: batch over max_batch", [bases[0]] * (MAX_BATCH + 1), "refused"),
        _push("sizes: text over 64 KiB", _spoiled(bases[2], "record.business_name", "x" * 70_000), "refused"),
    ]


def _push_duplicates(bases: list[dict[str, Any]]) -> list[Input]:
    first = _spoiled(bases[3], "position", "dup-position-1")
    other = _spoiled(_spoiled(first, "record.business_name", "Another content"), "record.fee", "1.00")
    return [
        _push("duplicates: replayed body", bases[4], "stored"),
        _push("duplicates: replayed body", bases[4], "stored"),
        _push("duplicates: same position, first content", first, "stored"),
        _push("duplicates: same position, other content", other, "stored"),
        _push("duplicates: one item twice in a request", [bases[5], bases[5]], "stored"),
    ]


def _interleave(rng: random.Random, hostile: list[Input], goods: list[Input]) -> list[Input]:
    """The hostile inputs in a seeded order, with the good ones spread evenly among them."""
    rng.shuffle(hostile)
    step = max(1, len(hostile) // (len(goods) + 1))
    out = list(hostile)
    for i, good in enumerate(goods):
        out.insert((i + 1) * step + i, good)
    return out


# -- file drop ------------------------------------------------------------------------------------------


def _cells(change: Change, op: str = "", changed_at: str = "", **values: str) -> list[str]:
    state = change.before if change.op == "d" else change.after
    cells = {"op": op or change.op, **{f: csv_value(state[f]) for f in FIELDS}}
    cells["changed_at"] = changed_at or change.ts_source.isoformat()
    cells.update(values)
    return [cells[c] for c in DROP_HEADER]


def csv_bytes(rows: list[list[str]], header: list[str] = DROP_HEADER) -> tuple[bytes, list[int]]:
    """A CSV file of rows: its bytes and the line each row starts on."""
    out, starts, line = io.StringIO(), [], 2
    csv.writer(out, lineterminator="\n").writerow(header)
    for cells in rows:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(cells)
        starts.append(line)
        line += buffer.getvalue().count("\n")
        out.write(buffer.getvalue())
    return out.getvalue().encode("utf-8", errors="surrogatepass"), starts


def drop_inputs(seed: int, goods: list[Change]) -> tuple[list[DropFile], list[Input]]:
    """The file-drop door: files and, per file, its inputs (each row, or the file as a whole)."""
    rng = random.Random(seed)
    files: list[DropFile] = []
    inputs: list[Input] = []
    text, starts = hostile_csv_lines(300, seed=seed)
    files.append(DropFile("hostile.csv", text.encode()))
    inputs += [Input("drop", "values: random hostile cells", file="hostile.csv", line=s) for s in starts]
    bases = [c for c in office_changes(60, start_seq=900_000, seed=seed) if c.op == "c"]
    good_iter = iter(goods)
    rows: dict[str, list[tuple[list[str], str, str]]] = {}

    def row(file: str, label: str, cells: list[str], expect: str = "either") -> None:
        rows.setdefault(file, []).append((cells, label, expect))
        if rng.random() < 0.12:  # a good row now and then, among the hostile ones
            rows[file].append((_cells(next(good_iter)), "good", "stored"))

    for field in ("fee", "investment_value", "sla_days"):
        for text in NUMBERS + NUMBER_TEXTS:
            cells = _cells(rng.choice(bases), **{field: text})
            row("numbers.csv", f"numbers: {field}={text[:20]!r}", cells, _number_expect(field, text))
    for field in ("submitted_at", "decided_at", "changed_at"):
        for value in DATES:
            row("dates.csv", f"dates: {field}={value!r}", _cells(rng.choice(bases), **{field: str(value)}))
    for field in ("applicant_name", "business_name", "application_id"):
        for text in [t for t in TEXTS if t.encode(errors="ignore").decode() == t]:  # lone surrogates: whole files
            row("encodings.csv", f"encodings: {field}={text[:12]!r}", _cells(rng.choice(bases), **{field: text}))
    for code in REGIONS:
        row("regions.csv", f"regions: {code[:20]!r}", _cells(rng.choice(bases), village_code=code), "refused")
    for _, new in ILLEGAL_MOVES:  # files carry no before image: an update passes unchecked (known gap)
        row("lifecycle.csv", f"lifecycle: update to {new} without before", _cells(rng.choice(bases), "u", status=new))
    for i, op in enumerate(("d", "d", "x", "C", "delete", "\u202ed")):
        cells = _cells(rng.choice(bases), op, application_id=f"FD-NEVER-SEEN-{i}")
        expect = {"d": "stored", "C": "either"}.get(op, "refused")
        row("lifecycle.csv", f"lifecycle: op {op!r} of an unknown key", cells, expect)
    twice = _cells(bases[0])
    for label in ("duplicates: a row", "duplicates: the same row again"):
        row("duplicates.csv", label, twice, "stored")
    row("duplicates.csv", "duplicates: same key, other content", _cells(bases[0], business_name="Other"), "stored")
    emoji = {
        f: "\U0001f600" * 64_000 for f in ("applicant_name", "applicant_address", "business_name", "rejection_reason")
    }
    row("oversized.csv", "sizes: row too large for Kafka", _cells(bases[1], **emoji), "refused")
    row("oversized.csv", "sizes: text over 64 KiB", _cells(bases[2], business_name="x" * 70_000), "refused")
    row("oversized.csv", "sizes: extra cells", [*_cells(bases[3]), "extra"], "refused")
    row("oversized.csv", "sizes: too few cells", _cells(bases[3])[:4], "refused")
    for name, entries in rows.items():
        data, starts = csv_bytes([cells for cells, _, _ in entries])
        files.append(DropFile(name, data))
        for (_, label, expect), line in zip(entries, starts, strict=True):
            inputs.append(Input("drop", label, expect, file=name, line=line))
    for whole in _whole_files(bases):
        files.append(whole)
        inputs.append(Input("drop", f"files: {whole.name}", "refused", file=whole.name))
    return files, inputs


def _whole_files(bases: list[Change]) -> Iterator[DropFile]:
    """Files refused as a whole."""
    good, _ = csv_bytes([_cells(bases[4])])
    for name, data in {
        "latin1.csv": good.replace(b"DPMPTSP", b"DPMPTSP\xe9", 1),
        "surrogates.csv": good.replace(b"DPMPTSP", b"DPMPTSP\xed\xa0\x80", 1),  # U+D800 written as UTF-8
        "utf16.csv": b"\xff\xfe" + good.decode().encode("utf-16-le"),
        "double_bom.csv": b"\xef\xbb\xbf\xef\xbb\xbf" + good,
        "bom_only.csv": b"\xef\xbb\xbf",
        "empty.csv": b"",
        "header_only.csv": good.split(b"\n")[0] + b"\n",
        "wrong_header.csv": good.replace(b"fee", b"fees", 1),
        "nul_header.csv": good.replace(b"op,", b"op\x00,", 1),
        "garbage.xlsx": bytes(random.Random(7).randrange(256) for _ in range(4096)),
        "zip_not_xlsx.xlsx": b"PK\x03\x04" + b"\x00" * 200,
        "notes.txt": good,
    }.items():
        yield DropFile(name, data)
    yield DropFile("link.csv", b"", "symlink")
    yield DropFile("pipe.csv", b"", "fifo")


# -- raw messages onto a cdc topic -----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Wire:
    """How the raw door writes Avro: the topic's value schema (its id and the schema) and its entity,
    and one valid event of another entity framed with that entity's own schema id."""

    entity: Entity
    schema_id: int
    schema: dict[str, Any]
    foreign_body: bytes

    def envelope(self, change: Change, **fields: Any) -> dict[str, Any]:
        return {**envelope_for(self.entity, change, "raw", now=change.ts_source), **fields}

    def body(self, envelope: dict[str, Any]) -> bytes:
        return encode(self.schema_id, self._parsed(38 if _beyond_precision(envelope) else 0), envelope)

    @cache  # noqa: B019 - a handful of Wire objects per test run
    def _parsed(self, precision: int) -> Any:
        """The schema, parsed; with precision 38 its decimals take more digits than the topic's schema
        allows (the bytes on the wire are the same: a sender that ignored the declared precision)."""
        text = json.dumps(self.schema)
        return fastavro.parse_schema(
            json.loads(text.replace('"precision": 18', f'"precision": {precision}') if precision else text)
        )


def _beyond_precision(envelope: dict[str, Any]) -> bool:
    state = envelope.get("after") or {}
    return any(isinstance(v, Decimal) and len(v.as_tuple().digits) > 18 for v in state.values())


def _raw(label: str, wire: Wire, change: Change, expect: str, key: bytes | None = None, **fields: Any) -> Input:
    envelope = wire.envelope(change, **fields)
    key = change.key.encode() if key is None else key
    return Input("raw", label, expect, wire.body(envelope), key=key, event_id=envelope["event_id"])


def raw_inputs(seed: int, wire: Wire, goods: list[Change]) -> list[Input]:
    """The raw door's inputs: message values and keys as they land on the cdc topic."""
    rng = random.Random(seed)
    bases = [c for c in office_changes(200, start_seq=800_000, seed=seed) if c.op == "c"]
    updates = [c for c in office_changes(200, start_seq=850_000, seed=seed) if c.op == "u" and c.before]
    valid = wire.body(wire.envelope(bases[0]))
    out: list[Input] = []

    def raw_bytes(label: str, value: bytes | None, key: bytes | None = b"raw-key") -> None:
        out.append(Input("raw", label, "refused", value, key=key))

    frame = struct.Struct(">bI").pack
    for value in (
        b"", None, b"\x00", b"\x00\x00\x00", b"\x01" + valid[1:], b"{}", push_body(good_items(1)[0]), valid[:5],
        frame(0, 999_999) + valid[5:], frame(0, 0) + valid[5:], frame(0, 2**32 - 1) + valid[5:],
        b"\x00" * 5 + b"\xff" * 64, wire.foreign_body,
    ):  # fmt: skip
        raw_bytes(f"framing: {(value or b'')[:8]!r}", value)
    for _ in range(60):
        raw_bytes("framing: random bytes", b"\x00" + bytes(rng.randrange(256) for _ in range(rng.randint(4, 300))))
    for i in range(50):
        body = wire.body(wire.envelope(bases[i % len(bases)]))
        raw_bytes("truncated: cut short", body[: rng.randint(6, len(body) - 1)])
    for i in range(40):
        body = wire.body(wire.envelope(bases[i % len(bases)]))
        junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 9)))
        raw_bytes("trailing: bytes after the record", body + junk)
    # A string whose length claims far more bytes than the message has; invalid UTF-8 in a string.
    raw_bytes("truncated: huge length prefix", valid[:5] + b"\xfe\xff\xff\xff\xff\xff\xff\xff\x7f" + valid[6:])
    raw_bytes("encodings: invalid UTF-8 in a string", valid.replace(bases[0].key.encode(), b"\xff" * len(bases[0].key)))
    out += _raw_values(rng, wire, bases, updates)
    goods_in = [_raw("good", wire, c, "stored") for c in goods]
    return _interleave(rng, out, goods_in)


def _raw_values(rng: random.Random, wire: Wire, bases: list[Change], updates: list[Change]) -> list[Input]:
    """Well-framed envelopes with hostile values, keys, lifecycles and duplicates."""
    picks = iter(bases[1:])
    out: list[Input] = []
    for when in [datetime(year, 1, 1, tzinfo=UTC) for year in (9999, 1969, 1, 2060)]:  # 2060: beyond a year ahead
        for name in ("ts_source", "ts_emitted"):
            out.append(_raw(f"dates: {name}={when:%Y}", wire, next(picks), "refused", **{name: when}))
    for field, value, expect in (
        ("submitted_at", datetime(9999, 12, 31, tzinfo=UTC), "refused"),
        ("updated_at", datetime(1850, 1, 1, tzinfo=UTC), "refused"),
        ("decided_at", datetime(2101, 1, 1, tzinfo=UTC), "either"),
        ("fee", Decimal("-1.00"), "refused"), ("fee", Decimal("123456789012345678901234567890.00"), "refused"),
        ("investment_value", Decimal("9999999999999999.99"), "stored"),
        ("sla_days", 0, "refused"), ("sla_days", -(2**31), "refused"),
        ("village_code", "35.22.99.9999", "refused"), ("village_code", "35.22.15", "refused"),
        ("status", "APPROVED", "refused"), ("application_id", "", "refused"),
        ("applicant_name", "\u202e\x00\ufeff", "stored"), ("business_name", "\U0001f600" * 1000, "stored"),
    ):  # fmt: skip
        change = next(picks)
        after = {**change.after, field: value}
        key = str(after["application_id"])
        out.append(_raw(f"values: {field}={str(value)[:20]}", wire, replace(change, after=after, key=key), expect))
    for old, new in ILLEGAL_MOVES:
        change = updates[len(out) % len(updates)]
        bad = replace(change, before={**change.before, "status": old}, after={**change.after, "status": new})
        out.append(_raw(f"lifecycle: {old} -> {new}", wire, bad, "refused"))
    for change in updates[:5]:  # without before: unchecked until the processor keeps a state per key
        out.append(_raw("lifecycle: update without before", wire, replace(change, before=None), "either"))
    for i in range(5):
        change = next(picks)
        key = f"RAW-NEVER-SEEN-{i}"
        gone = replace(change, op="d", key=key, before={**change.after, "application_id": key}, after=None)
        out.append(_raw("lifecycle: delete of an unknown key", wire, gone, "stored"))
    out.append(_raw("lifecycle: create without after", wire, replace(next(picks), after=None), "refused"))
    for key in (b"other-key", b"", b"\xff\xfe", b"x" * 5000):
        out.append(_raw(f"keys: message key {key[:10]!r}", wire, next(picks), "refused", key=key))
    envelope = wire.envelope(next(picks))
    out.append(Input("raw", "keys: no message key", "refused", wire.body(envelope), event_id=envelope["event_id"]))
    twice = next(picks)
    for label in ("duplicates: an event", "duplicates: the same event again"):
        out.append(_raw(label, wire, twice, "stored"))
    other = replace(twice, after={**twice.after, "business_name": "Same id, other content"})
    out.append(_raw("duplicates: same event id, other content", wire, other, "stored"))
    return out


def count_by_door(inputs: list[Input], good: bool = False) -> dict[str, int]:
    return dict(Counter(item.door for item in inputs if (item.label == "good") == good))
