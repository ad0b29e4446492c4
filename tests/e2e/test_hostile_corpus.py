"""Issue 8, "hostile input survived": over a thousand generated hostile inputs (tests/hostile_corpus.py)
through the real stack's three doors at once: the push endpoint, the drop folder, and raw bytes on a cdc
topic. Every input is accounted for (a 4xx, a rejects-report line, a dead letter with its reason, or a
stored row), what a steward would refuse is never stored, the good inputs around them are stored, and
no stage process restarted or burnt CPU on a value."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka import Producer

from backbone import kafka
from backbone.sealing import Sealer
from contract.bootstrap import bootstrap
from contract.catalog import catalog_for
from contract.codec import Registry, decode, encode, subject_for
from contract.subjects import entity_value_schema
from devstack.procs import Child
from producers.adapters.file_drop_rows import event_position
from tests import hostile_corpus as corpus
from tests.fakes import SimulatedSystem, freeze
from tests.helpers import query, wait_for
from tests.producers.adapters.test_file_drop import catalog_yaml, office_changes, report_rows
from tests.producers.adapters.test_hostile_inputs import good_items
from tests.producers.adapters.test_http_push import Pushing, fresh_items, write_catalog

pytestmark = pytest.mark.slow

SEED = 8
PUSH_TABLE = "licensing_permit_application"
DROP_DOMAIN = "licensing_files"  # the drop door's copy of the licensing entity, on topics of its own
DROP_TABLE = f"{DROP_DOMAIN}_permit_application"
DROP_SYSTEM = "fd-licensing"
CPU_SECONDS_PER_INPUT = 0.05  # a bound against values that burn CPU, not a speed target


def cpu_seconds(child: Child) -> float:
    """utime + stime of a process and its waited-for children, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


class Outcomes:
    """What the stack did with the inputs, read back from the store, the rejects reports and the dead letters
    (whose sealed originals are opened and decoded, to find the event they carried)."""

    def __init__(self, settings: Any, port: str, registry: Registry) -> None:
        self.port, self.registry = port, registry
        self.sealer = Sealer(settings.dead_letter_secret())
        # (stage, topic, partition, offset, letter id) -> (reason, event id, position) of each dead letter
        self.letters: dict[tuple[str, ...], tuple[str, str, str]] = {}
        self.stored_ids: set[str] = set()  # of the push and raw doors' table
        self.stored_positions: set[str] = set()  # of the drop door's table
        self.dead_ids: set[str] = set()
        self.dead_positions: set[str] = set()
        self.processor_origins: set[tuple[str, ...]] = set()  # (topic, partition, offset) it dead-lettered

    def refresh(self) -> None:
        self.stored_ids = set(query(self.port, f"SELECT event_id FROM {PUSH_TABLE}").split())
        self.stored_positions = set(query(self.port, f"SELECT source_position FROM {DROP_TABLE}").split())
        rows = query(
            self.port,
            "SELECT stage, source_topic, source_partition, source_offset, letter_id, reason, hex(value) "
            "FROM dead_letters WHERE stage != 'adapter' FORMAT TSV",
        )
        for line in rows.splitlines():
            *origin, reason, sealed = line.split("\t")
            if tuple(origin) not in self.letters:
                self.letters[tuple(origin)] = (reason, *self._carried(bytes.fromhex(sealed)))
        self.dead_ids = {event for _, event, _ in self.letters.values() if event}
        self.dead_positions = {position for _, _, position in self.letters.values() if position}
        self.processor_origins = {(t, p, o) for stage, t, p, o, _ in self.letters if stage == "processor"}

    def _carried(self, sealed: bytes) -> tuple[str, str]:
        """(event id, source position) of a dead letter's original, when it is a decodable record."""
        try:
            _, record = decode(self.registry, self.sealer.unseal(sealed))
        except Exception:  # noqa: BLE001 - hostile originals are anything at all
            return "", ""
        source = record.get("source") or {}
        return str(record.get("event_id", "")), str(source.get("position") or record.get("source_position", ""))


def test_a_thousand_hostile_inputs_through_three_doors_are_each_accounted_for(
    make_settings, stage_process, tmp_path, monkeypatch
):
    catalog = write_catalog(tmp_path / "catalog", max_body_bytes=corpus.MAX_BODY_BYTES, max_batch=corpus.MAX_BATCH)
    inbox = tmp_path / "inbox"
    adapter = {
        "kind": "file_drop",
        "folder": str(inbox),
        "timestamp_column": "changed_at",
        "settle_seconds": 0,
        "poll_seconds": 0.2,
    }
    (catalog / "licensing_files.yaml").write_text(
        catalog_yaml(adapter).replace("domain: licensing\n", f"domain: {DROP_DOMAIN}\n")
    )
    settings = make_settings(catalog_dir=catalog)
    bootstrap(settings)
    push = Pushing(settings, stage_process)
    dropper = stage_process(settings, "adapters", "run", DROP_SYSTEM)
    stages = (push.adapter, dropper, push.processor, push.sink)
    pids = [child.pid for child in stages]
    wait_for(lambda: push.stored("SELECT 1") == 1, 90, "the sink's query endpoint", alive=stages)

    freeze(monkeypatch, corpus.CLOCK)  # the same corpus on every run
    registry = Registry.for_settings(settings)
    (entity,) = catalog_for(settings).system("push-licensing").entities
    value_schema = entity_value_schema(entity, settings)
    complaints = SimulatedSystem("sim-complaints")
    (complaint,) = complaints.system.entities
    foreign_schema = entity_value_schema(complaint, settings)
    foreign_id = registry.register(subject_for(f"{settings.topic_prefix}{complaint.cdc_topic}"), foreign_schema)
    foreign = encode(foreign_id, fastavro.parse_schema(foreign_schema), complaints.envelope(complaints.take(1)[0]))
    schema_id = registry.register(subject_for(entity.cdc_topic), value_schema)
    wire = corpus.Wire(entity, schema_id, value_schema, foreign)
    raw = corpus.raw_inputs(SEED, wire, office_changes(20, start_seq=810_000, seed=SEED + 1))
    drop_goods = [c for c in office_changes(200, 910_000, SEED + 2) if c.op == "c"]
    files, dropped = corpus.drop_inputs(SEED, drop_goods)
    pushed = corpus.push_inputs(SEED, fresh_items(settings, 24, start_seq=700_000))
    everything = raw + dropped + pushed
    hostile, goods = corpus.count_by_door(everything), corpus.count_by_door(everything, good=True)
    assert sum(hostile.values()) >= 1000 and min(hostile.values()) >= 200, hostile
    cpu_before = [cpu_seconds(child) for child in stages]

    # Raw door: every message's partition and offset, from its delivery report.
    offsets: dict[int, tuple[int, int]] = {}
    producer = Producer(kafka.client_config(settings, **{"message.max.bytes": 1_040_000}))

    def delivered(i: int) -> Callable[..., None]:
        return lambda err, msg: err or offsets.__setitem__(i, (msg.partition(), msg.offset()))

    for i, item in enumerate(raw):
        producer.produce(entity.cdc_topic, value=item.body, key=item.key, on_delivery=delivered(i))
        producer.poll(0)
    assert producer.flush(60) == 0 and len(offsets) == len(raw)

    # Drop door: complete files renamed into the folder; a link and a FIFO made in place.
    inbox.mkdir(exist_ok=True)
    digests = {}
    for f in files:
        if f.special == "symlink":
            (inbox / f.name).symlink_to(tmp_path / "catalog" / "licensing.yaml")
        elif f.special == "fifo":
            os.mkfifo(inbox / f.name)
        else:
            (inbox / f".{f.name}.tmp").write_bytes(f.data)
            os.replace(inbox / f".{f.name}.tmp", inbox / f.name)
            digests[f.name] = hashlib.sha256(f.data).hexdigest()

    # Push door, while the drop adapter reads: one request per input, answered 4xx, or 2xx with the events' ids.
    answers: dict[int, tuple[int, Any]] = {}
    for i, item in enumerate(pushed):
        headers = {"Content-Type": item.content_type}
        resp = push.post(item.body, token=item.token, path=item.path, headers=headers, timeout=60)
        json_answer = "json" in resp.headers.get("Content-Type", "")
        answers[i] = (resp.status_code, resp.json() if json_answer else resp.text)
    handled = inbox / "done", inbox / "failed"
    wait_for(
        lambda: all(any(os.path.lexists(d / f.name) for d in handled) for f in files),
        120,
        "every dropped file moved to done/ or failed/",
        alive=stages,
    )

    outcomes = Outcomes(settings, push.port, registry)
    seen: list[str] = []  # the outcome of each input
    reports: dict[str, list[dict[str, str]]] = {}

    def outcome(i: int, item: corpus.Input) -> str:
        """What became of an input; "unaccounted: ..." when nothing did."""
        known = outcomes.stored_ids | outcomes.dead_ids
        if item.door == "push":
            status, answer = answers[i - len(raw) - len(dropped)]
            if status != 200:
                return "refused" if 400 <= status < 500 else f"unaccounted: answered {status}: {str(answer)[:200]}"
            ids = {e["event_id"] for e in answer["events"]}
            if ids <= outcomes.stored_ids:
                return "stored"
            return "dead-lettered" if ids <= known else "unaccounted: accepted, neither stored nor dead-lettered"
        if item.door == "raw":
            if (entity.cdc_topic, *map(str, offsets[i])) in outcomes.processor_origins:
                return "dead-lettered"
            if item.event_id in outcomes.stored_ids:
                return "stored"
            return "dead-lettered" if item.event_id in known else "unaccounted: neither stored nor dead-lettered"
        if os.path.lexists(inbox / "failed" / item.file):
            return "refused" if reports.get(item.file) else "unaccounted: rejected as a whole, not in the report"
        if item.line in {int(r["line"] or 0) for r in reports.get(item.file, [])}:
            return "refused"
        position = event_position(digests[item.file], item.line)
        if position in outcomes.stored_positions:
            return "stored"
        return "dead-lettered" if position in outcomes.dead_positions else "unaccounted: not reported nor stored"

    def settled() -> bool:
        outcomes.refresh()
        for path in (inbox / "rejects").glob("*.rejects.csv"):
            reports[path.name.removesuffix(".rejects.csv")] = report_rows(path)
        seen[:] = [outcome(i, item) for i, item in enumerate(everything)]
        return not any(o.startswith("unaccounted") for o in seen)

    try:
        wait_for(settled, 180, "every input accounted for", interval=2, alive=stages)
    except AssertionError as exc:
        missing = [f"{describe(item)}: {o}" for item, o in zip(everything, seen, strict=True) if o[0] == "u"]
        shown = "\n".join(missing[:80])
        raise AssertionError(f"{exc}\n{len(missing)} of {len(everything)} inputs unaccounted:\n{shown}") from None
    tally = Counter((item.door, o) for item, o in zip(everything, seen, strict=True))
    for door in ("push", "drop", "raw"):  # each door used every way out
        assert sum(n for (d, _), n in tally.items() if d == door) == hostile[door] + goods[door], tally
        assert all(tally[door, o] for o in ("refused", "stored") if (door, o) != ("raw", "refused")), tally
    assert tally["raw", "dead-lettered"] >= 150 and tally["drop", "dead-lettered"] > 0, tally

    print(f"outcomes: {dict(tally)}")

    # What a steward would refuse is never stored; what is good (or only odd) is.
    for expect, wrong in (("refused", {"stored"}), ("stored", {"refused", "dead-lettered"})):
        bad = [describe(item) for item, o in zip(everything, seen, strict=True) if item.expect == expect and o in wrong]
        assert not bad, f"{len(bad)} inputs to be {expect} were not:\n" + "\n".join(bad[:80])
    assert all(reason for reason, _, _ in outcomes.letters.values()), "a dead letter without a reason"
    for i, item in enumerate(pushed):
        status, answer = answers[i]
        if status == 422:  # a refused value is named by its field, or its item when the item is not an object
            assert all(e["field"] or e["index"] is not None for e in answer["errors"]), (item.label, answer)

    # The same processes throughout, alive, and a bounded CPU time per input.
    assert [child.pid for child in stages] == pids and all(child.alive() for child in stages)
    handled_by = (len(pushed), len(dropped), len(everything), len(everything))  # the stages' inputs, in order
    for child, before, inputs in zip(stages, cpu_before, handled_by, strict=True):
        used = cpu_seconds(child) - before
        print(f"{child.name} (pid {child.pid}): {used:.1f} s of CPU for {inputs} inputs")
        assert used / inputs < CPU_SECONDS_PER_INPUT, f"{child.name} used {used:.1f} s of CPU for {inputs} inputs"

    # Personal data in clear nowhere outside the raw topics: answers, reports, dead letters, logs.
    niks = {i["record"]["applicant_nik"] for i in good_items(10)} | {c.after["applicant_nik"] for c in drop_goods}
    outside = [str(answer) for _, answer in answers.values()] + [r for r, _, _ in outcomes.letters.values()]
    outside += [p.read_text(errors="replace") for p in (inbox / "rejects").iterdir()]
    outside += [child.log_path.read_text(errors="replace") for child in stages]
    assert not [nik for nik in niks if any(nik in text for text in outside)]
    for child in stages:
        log = child.log_path.read_text(errors="replace")
        assert "Traceback" not in log and "will be read again" not in log, child.log_tail(40)


def describe(item: corpus.Input) -> str:
    where = f" {item.file}:{item.line}" if item.door == "drop" else ""
    return f"{item.door} [{item.expect}] {item.label!r}{where}"
