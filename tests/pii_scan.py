"""A scan for personal data in clear: the values the raw `cdc.*` topics carried in fields marked
`"pii": true`, searched for in every other copy a run leaves - each ClickHouse table and view, each
Kafka topic of the pipeline other than `cdc.*` (keys, values and headers), and each file under the
run folder (logs, checkpoints, state, the store's own files)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from backbone import kafka
from backbone.settings import Settings
from contract.catalog import Catalog
from contract.codec import Registry, decode
from contract.topics import admin_client
from tests.helpers import query

MIN_LENGTH = 8  # shorter values (a short first name, a house number) would match unrelated text
MAX_VALUES = 3000  # the longest, most telling values: each is searched for in every copy


@dataclass(frozen=True)
class Hit:
    value: str  # shown only in the failure message of a test run on synthetic data
    where: str


def _read_topic(settings: Settings, topic: str) -> Iterator[tuple[bytes | None, bytes | None, list]]:
    """Every message of `topic` from its beginning to its current end: (key, value, headers)."""
    consumer = Consumer(kafka.client_config(settings, **{"group.id": "pii-scan", "enable.auto.commit": False}))
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        ends: dict[int, int] = {}
        for p in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        while ends:
            message = consumer.poll(5.0)
            if message is None:
                raise AssertionError(f"{topic}: no message within 5 s while partitions {sorted(ends)} remain")
            if message.error():
                continue
            yield message.key(), message.value(), list(message.headers() or [])
            if message.offset() + 1 >= ends.get(message.partition(), 0):
                ends.pop(message.partition(), None)
    finally:
        consumer.close()


def clear_values(settings: Settings, catalog: Catalog) -> set[str]:
    """The personal values the raw topics carried (before and after images). A value that a source
    also published in a field that is not personal, or within one (a headmaster is an official; the
    simulators draw officials and citizens from one pool of names) is left out: finding it proves
    nothing."""
    registry = Registry.for_settings(settings)
    personal: set[str] = set()
    public: set[str] = set()
    for entity in catalog.entities:
        pii = {f["name"] for f in entity.payload_schema()["fields"] if f.get("pii") is True}
        for _key, raw, _headers in _read_topic(settings, entity.cdc_topic):
            try:
                _, event = decode(registry, raw)
            except Exception:  # noqa: BLE001 - hostile bytes the simulators sent on purpose
                continue
            for image in (event.get("before"), event.get("after")):
                for name, value in (image or {}).items():
                    if isinstance(value, str) and len(value.strip()) >= MIN_LENGTH:
                        (personal if name in pii else public).add(value.strip())
    published = "\x00".join(public)  # "Drs. Nur Setiawan, M.Pd." publishes "Nur Setiawan" too
    longest = sorted(personal - public, key=lambda v: (-len(v), v))
    return set([v for v in longest if v not in published][:MAX_VALUES])


def _hits(values: Iterable[str], haystack: bytes, where: str) -> list[Hit]:
    return [Hit(v, where) for v in values if v.encode() in haystack]


def scan_topics(settings: Settings, values: set[str], prefixes: tuple[str, ...]) -> list[Hit]:
    """Every topic whose name starts with one of `prefixes`, except the raw `cdc.*` ones."""
    names = admin_client(settings).list_topics(timeout=10).topics
    hits: list[Hit] = []
    for topic in sorted(names):
        if not topic.startswith(prefixes) or topic.startswith(settings.topic_prefix + "cdc."):
            continue
        parts = []
        for key, value, headers in _read_topic(settings, topic):
            parts += [key or b"", value or b""]
            parts += [(k.encode() + b"=" + (v or b"")) for k, v in headers]
        hits += _hits(values, b"\x00".join(parts), f"topic {topic}")
    return hits


def scan_store(port: str, values: set[str]) -> list[Hit]:
    """Every table and view the query endpoint shows, dumped whole."""
    hits: list[Hit] = []
    for table in query(port, "SHOW TABLES").split():
        dump = query(port, f"SELECT * FROM `{table}` FORMAT TSVRaw").encode()
        hits += _hits(values, dump, f"table {table}")
    return hits


def scan_files(folder: Path, values: set[str]) -> list[Hit]:
    hits: list[Hit] = []
    # os.walk, not rglob: a running store merges parts and removes their folders while we walk, and
    # os.walk skips a folder that vanished (rglob raises); the merged rows are in the new part.
    paths = (Path(root) / name for root, _dirs, names in os.walk(folder) for name in names)
    for path in sorted(p for p in paths if not p.is_symlink()):
        try:
            content = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            continue  # removed since listed (a store part merged away: its rows are in the new part)
        hits += _hits(values, content, f"file {path.relative_to(folder)}")
    return hits
