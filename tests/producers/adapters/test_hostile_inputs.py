"""Hostile input without Kafka: the push body parser and validator, the drop folder's refusal of
anything but regular files, the masking of personal data, and the private files the adapters create.
The end-to-end counterparts (real Kafka, registry, processor and sink) are in test_file_drop.py and
test_http_push.py."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import sqlite3
import stat
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from backbone.sealing import Sealer
from backbone.settings import PROJECT_ROOT
from contract.catalog import Entity, load_system
from contract.reference import load_regions, villages
from producers.adapters.base import CheckpointStore, bounded_reason
from producers.adapters.file_drop_folder import DropFolder
from producers.adapters.file_drop_reader import DropReader, digest_file, open_regular
from producers.adapters.file_drop_rejects import write_problems
from producers.adapters.file_drop_rows import FileRejected, ParseOptions, Problem, RowParser
from producers.adapters.http_push_changes import MAX_JSON_DEPTH, ChangeValidator, HttpError, parse_json
from producers.adapters.pii import PiiMask
from producers.adapters.query_poll_keys import KnownKeys
from producers.emitter import Change, TooLarge, check_size
from simulators.licensing import LicensingOffice
from simulators.writers.files import csv_value
from tests.fakes import push_creates

SECRET = b"test-pii-key"
REGIONS = load_regions(PROJECT_ROOT / "data" / "bojonegoro_regions.csv")


def licensing() -> Entity:
    return load_system(PROJECT_ROOT / "catalog" / "licensing.yaml", PROJECT_ROOT / "schemas").entities[0]


ENTITY = licensing()
FIELDS = [f["name"] for f in ENTITY.payload_schema()["fields"]]
MASK = PiiMask(SECRET, [ENTITY])


def good_items(n: int, seed: int = 3) -> list[dict[str, Any]]:
    return push_creates(LicensingOffice(villages(REGIONS), seed=seed, start_seq=500_000).changes(), n)


# -- hostile values, generated from a seed -----------------------------------------------------------

HOSTILE_VALUES: list[Any] = [
    "1e400",
    "-1e400",
    "9" * 500,
    "NaN",
    "Infinity",
    "-0",
    "０１２",  # fullwidth digits
    "١٢٣",  # Arabic-Indic digits
    "\ud800",
    "abc\udfffdef",
    "\x00",
    "\u202e\u0644",
    "😀" * 20_000,
    "x" * 70_000,
    "",
    " ",
    "0001-01-01",
    "9999-12-31T23:59:59+14:00",
    "2026-02-30",
    "1969-12-31T23:59:59Z",
    "'; DROP TABLE x; --",
    "\\",
    '"',
    "\r\n",
    None,
    True,
    0,
    -1,
    2**63,
    10**400,
    1.5,
    float("1e308"),
    [],
    {},
    [[[]]],
    {"nested": {"deeper": [1, 2, {"x": None}]}},
]


def hostile_item(rng: random.Random, base: dict[str, Any]) -> dict[str, Any]:
    """A copy of a good item with one to three hostile changes."""
    item = json.loads(json.dumps(base))
    for _ in range(rng.randint(1, 3)):
        where = rng.random()
        value = rng.choice(HOSTILE_VALUES)
        if where < 0.7:
            item["record"][rng.choice(FIELDS)] = value
        elif where < 0.8:
            item["changed_at"] = value
        elif where < 0.85:
            item["op"] = value
        elif where < 0.9:
            item["position"] = value
        elif where < 0.95:
            item["record"][rng.choice(["extra", "\ud800", "x" * 300])] = value
        else:
            item["before"] = value
    return item


def hostile_items(n: int, seed: int = 8) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    bases = good_items(10)
    return [hostile_item(rng, rng.choice(bases)) for _ in range(n)]


def push_body(item: Any) -> bytes:
    """JSON as a sender would write it, lone surrogates and all (as \\u escapes)."""
    return json.dumps(item, ensure_ascii=True, allow_nan=False).encode()


# -- the push endpoint, without HTTP -------------------------------------------------------------------


def check_push(validator: ChangeValidator, body: bytes) -> tuple[int, list[dict[str, Any]]]:
    """What the endpoint decides before Kafka: 200 with nothing, or the status and errors."""
    try:
        document = parse_json(body)
        items = document if isinstance(document, list) else [document]
        if not isinstance(document, list | dict) or not items:
            return 400, [{"message": "body must be a change object or a non-empty array"}]
        validator.changes(ENTITY, items)
    except HttpError as exc:
        return exc.status, exc.errors
    return 200, []


def test_push_parser_refuses_deep_nesting_huge_numbers_and_bad_bytes():
    for body in (b"[" * 100_000 + b"]" * 100_000, b"{" * 100_000, b'{"a":' * (MAX_JSON_DEPTH + 1) + b"1"):
        with pytest.raises(HttpError) as caught:
            parse_json(body)
        assert caught.value.status == 400 and "malformed JSON" in caught.value.errors[0]["message"]
    assert parse_json(b'{"a":' * MAX_JSON_DEPTH + b"1" + b"}" * MAX_JSON_DEPTH)  # exactly the limit is fine
    assert parse_json(b'["[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["]')  # brackets in strings do not count
    for body, message in ((b'{"a": \xff}', "not UTF-8"), (b"[NaN]", "NaN"), (b"1" * 5000, "malformed JSON")):
        with pytest.raises(HttpError) as caught:
            parse_json(body)
        assert caught.value.status == 400 and message in caught.value.errors[0]["message"]
    assert str(parse_json(b"[1e400]")[0]) == "1E+400"  # exact, for the coercion to refuse by field


def test_push_validator_names_the_field_of_hostile_values_without_personal_data():
    validator = ChangeValidator({ENTITY.name: ENTITY}, REGIONS, MASK)
    (good,) = good_items(1)
    cases = {
        "record.fee": 1e400,  # json.dumps writes Infinity: replaced below by the literal
        "record.applicant_name": "Budi \ud800 Santoso",
        "record.applicant_nik": "3522" * 20_000,
        "changed_at": "9999-12-31T23:59:59-14:00",
        "position": "p\udc00",
    }
    for field, value in cases.items():
        item = json.loads(json.dumps(good))
        if field.startswith("record."):
            item["record"][field.split(".")[1]] = value
        else:
            item[field] = value
        body = json.dumps(item, allow_nan=True).replace("Infinity", "1e400").encode()
        status, errors = check_push(validator, body)
        assert status == 422, (field, errors)
        assert [e["field"] for e in errors] == [field], errors
        text = json.dumps(errors)
        assert "Budi" not in text and "3522352235223522" not in text
    status, errors = check_push(validator, json.dumps(good).encode())
    assert status == 200, errors


def test_push_numbers_stay_exact_and_ambiguous_bodies_are_refused():
    """Money sent as a JSON number is judged exactly (as a float 99999999999999.99 became ...98 and
    1e-400 became 0, both accepted); an object naming a field twice is refused, not read either way."""
    validator = ChangeValidator({ENTITY.name: ENTITY}, REGIONS, MASK)
    template = json.dumps(good_items(1)[0]).replace('"fee": "0.00"', '"fee": FEE')
    (change,) = validator.changes(ENTITY, [parse_json(template.replace("FEE", "99999999999999.99").encode())])
    assert change.after["fee"] == Decimal("99999999999999.99")
    for fee in ("1e-400", "0.001", "1e999999999"):
        status, errors = check_push(validator, template.replace("FEE", fee).encode())
        assert status == 422 and [e["field"] for e in errors] == ["record.fee"], (fee, errors)
    with pytest.raises(HttpError) as caught:
        parse_json(template.replace("FEE", "0").replace('"op": "c"', '"op": "c", "op": "d"').encode())
    assert caught.value.status == 400 and "name 'op' is given twice" in caught.value.errors[0]["message"]


def test_a_token_of_bytes_that_are_not_utf8_is_a_401_not_a_500():
    from types import SimpleNamespace

    from producers.adapters.http_push import HttpPushAdapter

    adapter = HttpPushAdapter.__new__(HttpPushAdapter)
    adapter.token = b"t"
    # aiohttp hands header bytes that are not UTF-8 over as lone surrogates (surrogateescape).
    for value in ("Bearer \udce9\udce9", "Bearer \ud800", "Bearer t"):
        assert adapter._authorised(SimpleNamespace(headers={"Authorization": value})) is (value == "Bearer t")


def test_300_hostile_push_items_are_each_accepted_or_refused_with_the_field():
    validator = ChangeValidator({ENTITY.name: ENTITY}, REGIONS, MASK)
    statuses: dict[int, int] = {}
    for item in hostile_items(300):
        status, errors = check_push(validator, push_body(item))
        statuses[status] = statuses.get(status, 0) + 1
        assert status in (200, 422), errors
        for e in errors:
            assert e["index"] == 0 and e["message"], e
        nik = str(item["record"].get("applicant_nik"))
        if len(nik) >= 8:
            assert nik[:60] not in json.dumps(errors, ensure_ascii=False), errors
    assert statuses.get(422, 0) > 200


# -- personal data ------------------------------------------------------------------------------------


def test_pii_mask_hides_values_in_messages_records_and_keys():
    nik = "3522011203900001"
    message = f"value {nik!r} is longer than 65536 characters"
    masked = MASK.message(ENTITY.name, "applicant_nik", nik, message)
    assert nik not in masked and masked.endswith(" is longer than 65536 characters")
    assert masked == MASK.message(ENTITY.name, "applicant_nik", nik, message)  # stable
    assert MASK.message(ENTITY.name, "fee", "abc", "value 'abc' is not a number") == "value 'abc' is not a number"
    # A value the message names but the caller does not know is still hidden.
    assert nik not in MASK.message(ENTITY.name, "applicant_nik", None, message)
    record = {"applicant_nik": nik, "applicant_name": "Siti", "fee": 5}
    assert MASK.record(ENTITY.name, record)["fee"] == 5
    assert nik not in json.dumps(MASK.record(ENTITY.name, record))
    assert nik not in MASK.record_text(ENTITY.name, f"rule broken for {nik} of Siti", record)
    assert MASK.key(ENTITY.name, "DPMPTSP-1") == "DPMPTSP-1"  # application_id is no personal data
    assert bounded_reason("x\udc80" * 5000).encode()  # headers take any reason


def test_file_drop_problems_of_pii_fields_are_masked(tmp_path):
    from producers.adapters.file_drop import FileDropAdapter

    adapter = FileDropAdapter.__new__(FileDropAdapter)
    adapter.pii = MASK
    nik = "3522011203900001"
    parser = RowParser(ENTITY.payload_schema(), ENTITY.key, ParseOptions())
    parser.check_header(["op", *FIELDS])
    item = good_items(1)[0]["record"]
    cells = ["c", *(csv_value(item[f]) if item[f] is not None else "" for f in FIELDS)]
    cells[1 + FIELDS.index("applicant_nik")] = nik * 5000
    row = parser.parse(2, cells, b"original")
    masked = adapter._masked(ENTITY.name, row)
    assert [p.field for p in masked] == ["applicant_nik"]
    assert nik not in masked[0].value + masked[0].reason and masked[0].value.startswith("pii:")
    from producers.adapters.file_drop_rows import ParsedRow

    quoting = ParsedRow(3, f'c,"X,{nik}'.encode(), problems=[Problem(3, "", f'c,"X,{nik}', "malformed CSV")])
    assert nik not in repr(adapter._masked(ENTITY.name, quoting))


def test_known_keys_file_is_private_sealed_and_hashes_pii_keys(tmp_path):
    path = tmp_path / "checkpoints" / "sys.keys.sqlite"
    sealer = Sealer("k")
    nik = "3522011203900001"
    old = os.umask(0o022)
    try:
        keys = KnownKeys(path, sealer, lambda _t, k: MASK.keyed_hash(k))
    finally:
        os.umask(old)
    when = datetime(2026, 1, 1, tzinfo=UTC)
    keys.remember("t", [Change("c", nik, "p1", when, after={"nik": nik, "name": "Siti"})])
    assert keys.mark_vanished("t", iter([[]]), threading.Event())
    ((stored, position, row, _deleted),) = keys.deleted("t", 10)
    assert stored == MASK.keyed_hash(nik) and json.loads(row)["nik"] == nik and position == "p1"
    keys.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    raw = b"".join(p.read_bytes() for p in path.parent.iterdir())
    assert nik.encode() not in raw and b"Siti" not in raw

    # A file of the older version (clear keys and rows) is converted when opened.
    legacy = tmp_path / "legacy.sqlite"
    db = sqlite3.connect(legacy)
    db.execute(
        "CREATE TABLE known (tbl TEXT NOT NULL, key TEXT NOT NULL, position TEXT NOT NULL, "
        "ts TEXT NOT NULL, row TEXT NOT NULL, deleted_ts TEXT, PRIMARY KEY (tbl, key))"
    )
    db.execute("INSERT INTO known VALUES ('t', ?, 'p', ?, ?, NULL)", (nik, when.isoformat(), json.dumps({"nik": nik})))
    db.commit()
    db.close()
    keys = KnownKeys(legacy, sealer, lambda _t, k: MASK.keyed_hash(k))
    assert keys.mark_vanished("t", iter([[nik]]), threading.Event())
    assert keys.deleted("t", 10) == []  # the clear key still present in the source matches its hash
    keys.close()
    assert nik.encode() not in legacy.read_bytes()


def test_files_the_adapters_create_are_private(tmp_path):
    old = os.umask(0o022)
    try:
        store = CheckpointStore(tmp_path / "cp" / "s.json")
        store.save({"a": 1})
        report = tmp_path / "drop" / "rejects" / "x.csv.rejects.csv"
        write_problems(report, [Problem(1, "f", "v", "r")])
        write_problems(report, [Problem(2, "f", "v", "r")])
    finally:
        os.umask(old)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    assert stat.S_IMODE(report.parent.stat().st_mode) == 0o700
    assert len(report.read_text().splitlines()) == 3


# -- the drop folder ------------------------------------------------------------------------------------


def test_links_fifos_and_devices_are_refused_without_opening(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT\n")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "link.csv").symlink_to(secret)
    os.mkfifo(inbox / "pipe.csv")
    (inbox / "sub").mkdir()
    folder = DropFolder(inbox, settle_seconds=0)
    assert folder.next_ready(None) is None
    assert sorted(folder.refused) == [("link.csv", "a symbolic link"), ("pipe.csv", "a FIFO (named pipe)")]
    folder.next_ready(None)
    assert folder.refused == []  # reported once while they stay
    for name in ("link.csv", "pipe.csv"):
        with pytest.raises(FileRejected, match="not a regular file"):
            open_regular(inbox / name)  # a FIFO would block a plain open(); this returns at once
        with pytest.raises(FileRejected):
            digest_file(inbox / name)
    if os.path.exists("/dev/null"):
        with pytest.raises(FileRejected, match="character device"):
            open_regular(Path("/dev/null"))
    assert folder.set_aside("link.csv") == inbox / "failed" / "link.csv"
    assert (inbox / "failed" / "link.csv").is_symlink() and secret.read_text() == "TOP-SECRET-CONTENT\n"


def hostile_csv_lines(n: int, seed: int = 21) -> tuple[str, list[int]]:
    """A CSV of n hostile records (one data line each, no quote left open): text and their start lines."""
    rng = random.Random(seed)
    items = [i["record"] for i in good_items(10)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["op", *FIELDS])
    starts = []
    line = 2
    for _ in range(n):
        record = dict(rng.choice(items))
        cells = ["c", *(csv_value(record[f]) if record[f] is not None else "" for f in FIELDS)]
        kind = rng.random()
        if kind < 0.75:
            for _ in range(rng.randint(1, 3)):
                value = rng.choice(HOSTILE_VALUES)
                text = value if isinstance(value, str) else json.dumps(value)
                text = text.encode("utf-8", errors="replace").decode("utf-8").replace("\x00", "")
                cells[rng.randrange(len(cells))] = text
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="\n").writerow(cells)
            text = buffer.getvalue()
        elif kind < 0.85:
            text = ",".join(cells[: rng.randint(1, len(cells) - 1)]) + "\n"  # too few values
        elif kind < 0.95:
            cells[rng.randrange(len(cells))] = '"ab"c'  # text after a closing quote (strict CSV refuses)
            text = ",".join(cells) + "\n"
        else:
            text = ",".join([*cells, "extra"]) + "\n"
        starts.append(line)
        line += text.count("\n")
        out.write(text)
    return out.getvalue(), starts


def test_300_hostile_csv_lines_are_each_parsed_or_reported(tmp_path):
    text, starts = hostile_csv_lines(300)
    path = tmp_path / "hostile.csv"
    path.write_text(text, encoding="utf-8")
    parser = RowParser(ENTITY.payload_schema(), ENTITY.key, ParseOptions())
    with DropReader(path, parser) as reader:
        rows = list(reader.rows())
    assert [r.line for r in rows] == starts
    assert sum(not r.ok for r in rows) > 150
    for row in rows:
        assert row.ok or all(p.reason for p in row.problems)


def test_too_large_is_checked_before_producing():
    check_size(b"k", b"v" * 1000)
    with pytest.raises(TooLarge, match="record too large"):
        check_size(b"k", b"v" * 2_000_000)


# -- the push endpoint in process (aiohttp, a stand-in for Kafka that acknowledges at once) ----------------


class _InstantProducer:
    """Takes every message and acknowledges it at once; counts them."""

    def __init__(self) -> None:
        self.messages = 0

    def produce(self, topic: str, value: bytes, key: bytes | None = None, on_delivery: Any = None, **_: Any) -> None:
        self.messages += 1
        on_delivery(None, None)

    def poll(self, _timeout: float = 0) -> int:
        return 0


def push_adapter() -> Any:
    """An HttpPushAdapter without Kafka or registry: the real handler, validator and Deliveries."""
    from types import SimpleNamespace

    import fastavro

    from backbone.settings import load_settings
    from contract.subjects import entity_value_schema
    from producers.adapters.http_push import HttpPushAdapter
    from producers.adapters.http_push_delivery import Deliveries
    from producers.emitter import ChangeEmitter, payload_branch, payload_identity

    # The real emitter's encoding, with a producer that acknowledges at once instead of Kafka.
    emitter = ChangeEmitter.__new__(ChangeEmitter)
    emitter.entity, emitter.database, emitter.schema_id = ENTITY, "push", 1
    emitter.parsed = fastavro.parse_schema(entity_value_schema(ENTITY, load_settings()))
    emitter.branch, emitter.identity = payload_branch(emitter.parsed), payload_identity(ENTITY)
    emitter.producer = _InstantProducer()
    emitter._on_delivery = lambda err, msg: None
    adapter = HttpPushAdapter.__new__(HttpPushAdapter)
    adapter.system = SimpleNamespace(system="push-test")
    adapter.entities = {ENTITY.name: ENTITY}
    adapter.options = SimpleNamespace(
        max_body_bytes=4 * 1024 * 1024, max_batch=1000, max_pending=10_000, ack_timeout_seconds=5.0
    )
    adapter.token = b"t"
    adapter.pii = MASK
    adapter.validator = ChangeValidator({ENTITY.name: ENTITY}, REGIONS, MASK)
    adapter.deliveries = Deliveries("push-test", {ENTITY.name: emitter}, 5.0)
    adapter._labels = {"system": "push-test"}
    return adapter, emitter.producer


def test_push_endpoint_answers_hostile_bodies_with_4xx_and_takes_the_good_ones(caplog):
    import asyncio

    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    adapter, producer = push_adapter()
    goods = good_items(4, seed=9)
    nik = "3522019988776655"
    big = json.loads(json.dumps(goods[3]))
    for name in ("applicant_name", "applicant_address", "business_name", "rejection_reason", "applicant_phone"):
        big["record"][name] = "\U0001f600" * 64_000
    bodies: list[tuple[bytes, int, str]] = [
        (json.dumps(goods[0]).encode(), 200, ""),
        (b"[" * 100_000 + b"]" * 100_000, 400, "nested more than"),
        (b'{"record": {"applicant_name": "\xff"}}', 400, "not UTF-8"),
        (b"3", 400, "body must be"),
        (b"[]", 400, "body must be"),
        (json.dumps(goods[1]).replace(goods[1]["record"]["fee"], "x").replace('"x"', "1e400").encode(), 422, ""),
        (json.dumps(goods[1]).replace(goods[1]["record"]["applicant_nik"], nik * 5000).encode(), 422, ""),
        (json.dumps(big, ensure_ascii=False).encode(), 413, "record too large"),
        (json.dumps(goods[2]).encode(), 200, ""),
    ]

    async def scenario() -> list[tuple[int, Any]]:
        adapter.deliveries.loop = asyncio.get_running_loop()
        app = web.Application(client_max_size=adapter.options.max_body_bytes)
        app.router.add_post("/v1/{entity}", adapter._push)
        answers = []
        async with TestClient(TestServer(app)) as client:
            headers = {"Authorization": "Bearer t", "Content-Type": "application/json"}
            for body, _, _ in bodies:
                resp = await client.post(f"/v1/{ENTITY.name}", data=body, headers=headers)
                answers.append((resp.status, await resp.json()))
            for item in hostile_items(300, seed=31):
                resp = await client.post(f"/v1/{ENTITY.name}", data=push_body(item), headers=headers)
                answers.append((resp.status, await resp.json()))
        return answers

    with caplog.at_level("INFO"):
        answers = asyncio.run(scenario())
    for (body, status, message), (got, answer) in zip(bodies, answers, strict=False):
        assert got == status, (body[:80], got, answer)
        if status != 200:
            assert message in answer["errors"][0]["message"], answer
        assert nik not in json.dumps(answer)
    corpus = answers[len(bodies) :]
    assert len(corpus) == 300 and {s for s, _ in corpus} <= {200, 413, 422}
    for status, answer in corpus:
        if status != 200:
            assert all(e["index"] == 0 and e["message"] for e in answer["errors"]), answer
    accepted = sum(a["accepted"] for s, a in answers if s == 200)
    assert producer.messages == accepted  # nothing of a refused request was produced
    assert nik not in caplog.text


# -- the file-drop adapter in process (stand-ins for Kafka that acknowledge at once) -------------------------


class _Taken:
    """A producer stand-in: keeps what was produced, acknowledges at once."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = []

    def produce(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None, **_: Any) -> None:
        self.messages.append((key, value, headers or []))

    def flush(self, _timeout: float = 0) -> int:
        return 0

    def poll(self, _timeout: float = 0) -> int:
        return 0

    def __len__(self) -> int:
        return 0


def drop_adapter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[Change], _Taken]:
    import fastavro

    from backbone.settings import load_settings
    from contract.codec import encode
    from contract.subjects import entity_value_schema
    from producers.adapters import base
    from producers.adapters.file_drop import FileDropAdapter
    from producers.emitter import envelope_for

    emitted: list[Change] = []
    dlq = _Taken()

    class Emitter:
        def __init__(self, entity: Entity, settings: Any, _registry: Any, database: str = "") -> None:
            self.entity = entity
            self.parsed = fastavro.parse_schema(entity_value_schema(entity, settings))
            self.producer = _Taken()
            self.failed: list[str] = []

        def emit(self, change: Change) -> None:
            value = encode(1, self.parsed, envelope_for(self.entity, change, "drop"))
            check_size(change.key.encode(), value)
            emitted.append(change)

    monkeypatch.setattr(base, "ChangeEmitter", Emitter)
    monkeypatch.setattr(base.kafka, "make_producer", lambda *_a, **_k: dlq)
    inbox = tmp_path / "inbox"
    catalog = tmp_path / "fd.yaml"
    adapter_yaml = {"kind": "file_drop", "folder": str(inbox), "settle_seconds": 0, "poll_seconds": 0.05}
    catalog.write_text(
        "system: fd-test\ntitle: t\ndepartment: DPMPTSP\ndomain: licensing\n"
        f"adapter: {json.dumps(adapter_yaml)}\nfreshness_seconds: 60\nentities:\n"
        "  - name: permit_application\n    schema: licensing/permit_application.avsc\n    key: [application_id]\n"
    )
    system = load_system(catalog, PROJECT_ROOT / "schemas")
    settings = load_settings(run_dir=tmp_path / "run", pii_key="test-key-not-secret")
    return FileDropAdapter(system, settings, registry=object()), emitted, dlq


def test_file_drop_adapter_refuses_hostile_entries_and_rows_and_accounts_for_each(tmp_path, monkeypatch, caplog):
    adapter, emitted, dlq = drop_adapter(tmp_path, monkeypatch)
    inbox = adapter.folder
    inbox.mkdir(parents=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-4242\n")
    (inbox / "link.csv").symlink_to(secret)
    os.mkfifo(inbox / "pipe.csv")
    header = ",".join(["op", *FIELDS])
    rows = []
    for item in good_items(3, seed=4):
        buffer = io.StringIO()
        cells = ["c", *(csv_value(item["record"][f]) if item["record"][f] is not None else "" for f in FIELDS)]
        csv.writer(buffer, lineterminator="").writerow(cells)
        rows.append(buffer.getvalue())
    big_cells = next(csv.reader([rows[1]]))
    for name in ("applicant_name", "applicant_phone", "applicant_address", "business_name", "rejection_reason"):
        big_cells[1 + FIELDS.index(name)] = "\U0001f600" * 64_000
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(big_cells)
    nik = "3522019988776655"
    broken = rows[2].replace(good_items(3, seed=4)[2]["record"]["applicant_nik"], f'"{nik}"x')
    (inbox / "mixed.csv").write_text("\n".join([header, rows[0], buffer.getvalue(), broken, rows[2]]) + "\n")
    hostile, starts = hostile_csv_lines(300)
    (inbox / "hostile.csv").write_text(hostile)

    stop = threading.Event()
    with caplog.at_level("INFO"):
        runner = threading.Thread(target=adapter.run, args=(stop,))
        runner.start()
        done = inbox / "done"
        deadline = time.monotonic() + 60
        while not ((done / "mixed.csv").exists() and (done / "hostile.csv").exists()):
            assert time.monotonic() < deadline and runner.is_alive()
            time.sleep(0.05)
        stop.set()
        runner.join(10)
    assert os.path.islink(inbox / "failed" / "link.csv") and stat.S_ISFIFO(
        os.lstat(inbox / "failed" / "pipe.csv").st_mode
    )
    reports = {p.name: list(csv.DictReader(p.open(encoding="utf-8"))) for p in (inbox / "rejects").iterdir()}
    assert reports["link.csv.rejects.csv"][0]["reason"].startswith("not a regular file: 'link.csv' is a symbolic link")
    assert reports["pipe.csv.rejects.csv"][0]["reason"].startswith("not a regular file: 'pipe.csv' is a FIFO")
    mixed = reports["mixed.csv.rejects.csv"]
    assert [r["line"] for r in mixed] == ["3", "4"]
    assert "mixed.csv line 3: record too large" in mixed[0]["reason"]
    keys = {c.key for c in emitted}
    assert {good_items(3, seed=4)[i]["record"]["application_id"] for i in (0, 2)} <= keys
    facts = adapter.checkpoints.load()["digests"]
    (hostile_facts,) = [f for f in facts.values() if f["name"] == "hostile.csv"]
    reported = {int(r["line"]) for r in reports["hostile.csv.rejects.csv"]}
    assert hostile_facts["rows"] + hostile_facts["rejected"] == 300
    assert len(reported) == hostile_facts["rejected"] and reported <= set(starts)
    # The same producer also sends each file's census (reconciliation), which is no dead letter.
    letters = [(k, v, h) for k, v, h in dlq.messages if "source.topic" in dict(h)]
    assert len(dlq.messages) - len(letters) <= 4  # at most one census per file
    origins = {dict(h)["source.topic"].decode() for _, _, h in letters}
    assert {"fd-test:link.csv:0", "fd-test:pipe.csv:0", "fd-test:mixed.csv:3", "fd-test:mixed.csv:4"} <= origins
    assert len([o for o in origins if o.startswith("fd-test:hostile.csv:")]) == hostile_facts["rejected"]
    assert all(len(v) < 1_000_000 for _, v, _ in dlq.messages)
    outside = [p.read_bytes() for p in (inbox / "rejects").iterdir()]
    outside += [b"".join(v for _, v in h) + (k or b"") for k, _, h in dlq.messages]
    outside += [caplog.text.encode()]
    for text in outside:
        assert b"TOP-SECRET" not in text and nik.encode() not in text
    for path in [adapter.checkpoints.path, *(inbox / "rejects").iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
