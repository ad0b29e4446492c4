"""What the machine allows each stage, measured on the same local stack in the same run (issue 12):
Kafka's own ProducerPerformance and ConsumerPerformance from the broker's jars, with records of the
project's event size; the chDB insert of the clean topic's rows by clickhouse-connect (rows decoded
beforehand) and by FORMAT AvroConfluent (ClickHouse decodes the raw bytes); a fixed calibration loop
and the load average; and each stage's ratio to its ceiling, against the issue's targets.

`python -m bench.ceilings --kafka-bootstrap H:P --registry-url URL --topic-prefix P.` measures them on
a running stack whose licensing topics a bench run filled; `python -m bench.ceilings sink ...` is the
chDB part alone, which bench.run starts as a child process (chDB holds one store per process)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from rich.console import Console
from rich.table import Table

from backbone import kafka
from backbone.settings import Settings, load_settings
from contract.catalog import Entity, catalog_for
from contract.codec import Registry, decode
from contract.rules import DQ_FLAGS
from contract.topics import WEEK_MS, TopicSpec, ensure_topics
from devstack.stack import JMX_AGENT, KAFKA_LOG4J, find_java, kafka_classpath
from sinks import ddl, migrations
from sinks.store import connect

TABLE = "licensing_permit_application"
CALIBRATION_LOOPS = 3_000_000  # fixed work: about 0.2 s of one idle core here
# ProducerPerformance sends at least this many records: a run of 50,000 is over before its JVM has
# warmed up (on this 2-core machine: 18,000/s at 50,000 records, 40,000/s at 200,000, same stack).
PRODUCER_RECORDS_MIN = 200_000
TOOL_TIMEOUT = 600  # seconds for one Kafka tool run: a hung tool fails the bench instead of stalling it
# The targets: a ratio to the ceiling, or (processor) an absolute rate in events/s.
TARGETS: dict[str, tuple[str, float]] = {
    "producer": ("ratio", 0.25),
    "processor": ("events/s", 8000.0),
    "sink_avro": ("ratio", 0.5),
    "processor_workers": ("ratio", 1.7),
}


class Record(NamedTuple):
    partition: int
    offset: int
    key: bytes | None
    value: bytes


# -- machine -------------------------------------------------------------------------------------
def _spin(n: int) -> int:
    x = 0
    for i in range(n):
        x = (x * 31 + i) & 0xFFFFFFFF
    return x


def calibration() -> dict[str, Any]:
    """The load average and the seconds of a fixed pure-Python loop (median of 3): taken at the start
    and the end of a run, they show how much the machine's other work slowed every figure between."""
    runs = []
    for _ in range(3):
        began = time.perf_counter()
        _spin(CALIBRATION_LOOPS)
        runs.append(time.perf_counter() - began)
    return {"at": datetime.now(UTC).isoformat(timespec="seconds"), "load_avg": list(os.getloadavg()),
            "loop_seconds": statistics.median(runs), "loop_runs": runs, "loop_iterations": CALIBRATION_LOOPS}


# -- topics ----------------------------------------------------------------------------------------
def licensing(settings: Settings) -> Entity:
    return next(e for e in catalog_for(settings).entities if e.table == TABLE)


def read_topic(settings: Settings, topic: str, limit: int, timeout: float = 120.0) -> list[Record]:
    """Up to `limit` messages of a topic from its beginning (every partition to its end, or the limit)."""
    consumer = Consumer(kafka.client_config(settings, **{
        "group.id": f"bench-ceilings-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
        "enable.partition.eof": True, "isolation.level": "read_committed"}))
    try:
        partitions = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        records: list[Record] = []
        ended: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(records) < limit and len(ended) < len(partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"ceilings: read {len(records)} of {limit} messages of {topic} in {timeout:.0f}s")
            for msg in consumer.consume(1000, timeout=1):
                err = msg.error()
                if err is None:
                    records.append(Record(msg.partition(), msg.offset(), msg.key(), msg.value()))
                elif err.code() == KafkaError._PARTITION_EOF:
                    ended.add(msg.partition())
                else:
                    raise RuntimeError(f"ceilings: reading {topic}: {err.str()}")
        return records[:limit]
    finally:
        consumer.close()


def mean_bytes(values: list[bytes | None]) -> float:
    return sum(len(v or b"") for v in values) / max(1, len(values))


# -- Kafka's own tools -----------------------------------------------------------------------------
def kafka_tool(settings: Settings, tool: str, args: list[str]) -> str:
    """Run a class of kafka-tools (on the broker's classpath, with its Java) and return its output."""
    jars = [j for j in kafka_classpath(settings.kafka_version).split(":") if not Path(j).name.startswith(JMX_AGENT)]
    java = find_java(17, settings.java_home, "BACKBONE_JAVA_HOME") / "bin" / "java"
    command = [str(java), "-Xmx512m", "-cp", ":".join(jars), f"-Dlog4j2.configurationFile={KAFKA_LOG4J}",
               f"org.apache.kafka.tools.{tool}", *args]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"ceilings: {tool} did not finish in {TOOL_TIMEOUT}s") from None
    if out.returncode != 0:
        tail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-10:])
        raise RuntimeError(f"ceilings: {tool} exited with {out.returncode}:\n{tail}")
    return out.stdout


_PRODUCED = re.compile(r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
                       r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th")


def producer_performance(settings: Settings, n: int, record_size: int) -> dict[str, Any]:
    """ProducerPerformance as fast as it goes (n records, at least PRODUCER_RECORDS_MIN) into a topic like
    the cdc topic (same partitions), with the capture profile's settings (idempotent, acks=all, linger,
    compression)."""
    n = max(n, PRODUCER_RECORDS_MIN)
    topic = f"{settings.topic_prefix}ceiling.producer-performance"
    ensure_topics(settings, [TopicSpec(topic, settings.topic_partitions, {"retention.ms": str(WEEK_MS)})])
    capture = kafka.PROFILES["capture"]
    props = {"bootstrap.servers": settings.kafka_bootstrap, "acks": "all", "enable.idempotence": "true",
             "linger.ms": str(capture["linger.ms"]), "compression.type": capture["compression.type"],
             "max.block.ms": "30000"}  # a missing topic fails in 30 s instead of blocking each record
    out = kafka_tool(settings, "ProducerPerformance", [
        "--topic", topic, "--num-records", str(n), "--record-size", str(record_size), "--throughput", "-1",
        "--producer-props", *(f"{k}={v}" for k, v in props.items())])
    found = _PRODUCED.findall(out)  # progress lines every 5 s, then the summary (the one with percentiles)
    if not found:
        raise RuntimeError(f"ceilings: no summary in ProducerPerformance's output:\n{out[-2000:]}")
    sent, rate, mb, avg, worst, p50, p95, p99 = found[-1]
    return {"topic": topic, "records": int(sent), "record_size": record_size, "records_per_s": float(rate),
            "mb_per_s": float(mb), "latency_ms": {"avg": float(avg), "max": float(worst), "p50": int(p50),
                                                  "p95": int(p95), "p99": int(p99)},
            "props": {k: v for k, v in props.items() if k != "bootstrap.servers"}}


def consumer_performance(settings: Settings, topic: str, n: int) -> dict[str, Any]:
    """ConsumerPerformance reading n messages of the processor's input topic from its beginning. Its
    fetch rate leaves the group join out, as the stages' steady rates leave their start-up out."""
    out = kafka_tool(settings, "ConsumerPerformance", [
        "--bootstrap-server", settings.kafka_bootstrap, "--topic", topic, "--messages", str(n),
        "--group", f"bench-ceilings-{uuid.uuid4().hex[:8]}", "--timeout", "60000"])
    lines = [line for line in out.splitlines() if line.count(",") == 9]  # header, then one row of figures
    header = next((line for line in lines if line.startswith("start.time")), None)
    row = next((line for line in lines if line[:1].isdigit()), None)
    if header is None or row is None:
        raise RuntimeError(f"ceilings: no figures in ConsumerPerformance's output:\n{out[-2000:]}")
    figures = dict(zip((h.strip() for h in header.split(",")), (v.strip() for v in row.split(",")), strict=True))
    return {"topic": topic, "messages": int(figures["data.consumed.in.nMsg"]),
            "messages_per_s": float(figures["nMsg.sec"]), "fetch_messages_per_s": float(figures["fetch.nMsg.sec"]),
            "mb_per_s": float(figures["MB.sec"]), "rebalance_ms": float(figures["rebalance.time.ms"]),
            "fetch_ms": float(figures["fetch.time.ms"])}


# -- the sink's ceilings (in a child process: its own chDB store) ------------------------------------
def timed_batches(records: list[Any], size: int, insert: Any) -> dict[str, Any]:
    began = time.perf_counter()
    for start in range(0, len(records), size):
        insert(records[start:start + size])
    seconds = time.perf_counter() - began
    return {"rows": len(records), "seconds": seconds, "rows_per_s": len(records) / seconds, "batch_size": size}


def sink_ceilings(settings: Settings, n: int, store: Path) -> dict[str, Any]:
    """n messages of the clean topic inserted into a fresh chDB store, in the sink's batch size, into
    tables like the sink's change log: (1) decoded beforehand (untimed), inserted as columns by
    clickhouse-connect; (2) the raw bytes with FORMAT AvroConfluent, ClickHouse decoding them with the
    schemas from the registry's Confluent-compatible API, the topic and stored time filled in SQL."""
    entity = licensing(settings)
    records = read_topic(settings, entity.clean_topic, n)
    client = connect(settings.model_copy(update={"clickhouse_dsn": f"chdb://{store}"}))
    layout = migrations.entity_layout(entity)
    registry = Registry.for_settings(settings)
    now = datetime.now(UTC)
    rows = []
    for r in records:
        record = decode(registry, r.value)[1]
        record[DQ_FLAGS] = record.get(DQ_FLAGS) or []
        record.update(_topic=entity.clean_topic, _partition=r.partition, _offset=r.offset, ts_stored=now)
        rows.append([record.get(name) for name in layout.names])

    def columnar(batch: list[list[Any]]) -> None:
        client.insert("cc_" + TABLE, [list(c) for c in zip(*batch, strict=True)], column_names=layout.names,
                      column_oriented=True, settings={"max_partitions_per_insert_block": 0})

    in_sql = {"_topic": ddl.literal(entity.clean_topic), "ts_stored": "now64(3)"}
    avro_columns = [c for c in layout.names if c not in dict(ddl.INGEST_COLUMNS)]
    avro_settings = {"format_avro_schema_registry_url": settings.registry_url, "max_partitions_per_insert_block": 0}

    def avro_confluent(batch: list[Record]) -> None:
        client.raw_insert("avro_" + TABLE, avro_columns, insert_block=b"".join(r.value for r in batch),
                          fmt="AvroConfluent", settings=avro_settings)

    for prefix, defaults in (("cc_", {}), ("avro_", in_sql)):
        table = dataclasses.replace(layout, name=prefix + TABLE, defaults={**layout.defaults, **defaults})
        client.command(ddl.create_table_sql(table))
    # One small insert each first, then emptied: the schema fetch and the client's first-use costs are
    # start-up, which the stages' steady rates leave out too.
    columnar(rows[:100])
    avro_confluent(records[:100])
    for prefix in ("cc_", "avro_"):
        client.command(f"TRUNCATE TABLE {prefix}{TABLE}")
    size = settings.sink_batch_size
    result = {"clean_topic": entity.clean_topic, "clean_value_bytes": mean_bytes([r.value for r in records]),
              "clickhouse_connect": timed_batches(rows, size, columnar),
              "avro_confluent": timed_batches(records, size, avro_confluent)}
    # Both tables must hold the same rows: one per event id through FINAL (a replayed event is a duplicate).
    key = [layout.names.index(c) for c in ("entity_key", "event_id")]
    distinct = len({(row[key[0]], row[key[1]]) for row in rows})
    counts = {p: int(client.command(f"SELECT count() FROM {p}{TABLE} FINAL")) for p in ("cc_", "avro_")}
    if set(counts.values()) != {distinct}:
        raise RuntimeError(f"ceilings: {distinct} distinct events inserted, the tables hold {counts}")
    return {**result, "distinct_events": distinct}


def sink_child(settings: Settings, n: int, work: Path) -> dict[str, Any]:
    """sink_ceilings in a child process (the bench's own process may hold another chDB store)."""
    work.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "bench.ceilings", "sink", "--events", str(n), "--store", str(work / "chdb")]
    try:
        out = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **settings.as_env()},
                             timeout=TOOL_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"ceilings: the chDB inserts did not finish in {TOOL_TIMEOUT}s") from None
    if out.returncode != 0:
        raise RuntimeError(f"ceilings: the chDB inserts failed:\n{out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- all of them, and the ratios -------------------------------------------------------------------
def measure(settings: Settings, n: int, work: Path) -> dict[str, Any]:
    """Every ceiling, on the topics a bench run filled (n events of the licensing entity)."""
    began = time.monotonic()
    entity = licensing(settings)
    cdc = read_topic(settings, entity.cdc_topic, n)
    key_bytes, value_bytes = mean_bytes([r.key for r in cdc]), mean_bytes([r.value for r in cdc])
    # Same record size as the project's events: key and value bytes (ProducerPerformance sends no key).
    record_size = round(key_bytes + value_bytes)
    return {
        "events": n,
        "cdc_topic": entity.cdc_topic,
        "cdc_key_bytes": key_bytes,
        "cdc_value_bytes": value_bytes,
        "producer_performance": producer_performance(settings, n, record_size),
        "consumer_performance": consumer_performance(settings, entity.cdc_topic, len(cdc)),
        "chdb": sink_child(settings, n, work),
        "seconds": time.monotonic() - began,
    }


def _rate(stage: dict[str, Any]) -> float:
    return float(stage.get("steady_events_per_s") or stage["events_per_s"])


def ratios(stages: dict[str, Any], ceilings: dict[str, Any]) -> list[dict[str, Any]]:
    """Each stage against its ceiling: the stages' steady rates (producer: whole run), per line the
    target of the issue and whether it is met."""
    chdb = ceilings["chdb"]
    producer, consumer, columnar = (ceilings["producer_performance"], ceilings["consumer_performance"],
                                    chdb["clickhouse_connect"])
    processor = _rate(stages["processor"])
    sink = _rate(stages["sink"])
    lines = [  # (line, stage, its rate, ceiling, the ceiling's rate)
        ("producer", "producer", _rate(stages["producer"]), "ProducerPerformance", producer["records_per_s"]),
        ("processor", "processor", processor, "ConsumerPerformance (fetch)", consumer["fetch_messages_per_s"]),
        ("sink_clickhouse_connect", "sink", sink, "chDB insert, clickhouse-connect", columnar["rows_per_s"]),
        ("sink_avro", "sink", sink, "chDB insert, FORMAT AvroConfluent", chdb["avro_confluent"]["rows_per_s"]),
    ]
    if "quix_peer" in stages:  # the Python peer doing the same job: the issue wants about twice its rate
        lines.append(("processor_vs_quix", "processor", processor, "Quix Streams app, same job",
                      _rate(stages["quix_peer"])))
    if "processor_workers" in stages:  # N workers in one group against one worker, same run
        workers = stages["processor_workers"]
        lines.append(("processor_workers", f"processor, {workers['workers']} workers", _rate(workers),
                      "processor, 1 worker", processor))
    out = []
    for line, stage, rate, ceiling, ceiling_rate in lines:
        ratio = rate / ceiling_rate if ceiling_rate else None
        kind, goal = TARGETS.get(line, ("", 0.0))
        met = None if not kind else (rate >= goal if kind == "events/s" else ratio is not None and ratio >= goal)
        out.append({"line": line, "stage": stage, "rate": rate, "ceiling": ceiling, "ceiling_rate": ceiling_rate,
                    "ratio": ratio, "target": f">= {goal:g} {kind}" if kind else None,
                    "verdict": None if met is None else ("pass" if met else "short")})
    return out


def calibration_note(report: dict[str, Any]) -> str:
    start, end = report["calibration"]["start"], report["calibration"]["end"]
    return (f"calibration loop {start['loop_seconds']:.3f}s → {end['loop_seconds']:.3f}s, load "
            f"{start['load_avg'][0]:.2f} → {end['load_avg'][0]:.2f} (1 min), start → end of the run")


def ratio_table(report: dict[str, Any]) -> Table:
    """The ratios of a report (bench.run's, or this module's own)."""
    lines = report["ratios"]
    table = Table(title="stages against their ceilings, same run", header_style="bold")
    for column in ("stage", "rate /s", "ceiling", "ceiling /s", "ratio", "target", "verdict"):
        table.add_column(column, justify="left" if column in ("stage", "ceiling", "target") else "right")
    for r in lines:
        table.add_row(r["stage"], f"{r['rate']:,.0f}", r["ceiling"], f"{r['ceiling_rate']:,.0f}",
                      "-" if r["ratio"] is None else f"{r['ratio']:.2f}", r["target"] or "-", r["verdict"] or "-")
    table.caption = calibration_note(report)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.ceilings", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", nargs="?", choices=("all", "sink"), default="all")
    parser.add_argument("--events", type=int, default=50_000, help="messages of each topic to use")
    parser.add_argument("--kafka-bootstrap", help="default: BACKBONE_KAFKA_BOOTSTRAP")
    parser.add_argument("--registry-url", help="Confluent-compatible API; default: BACKBONE_REGISTRY_URL")
    parser.add_argument("--topic-prefix", help="the bench run's topic prefix, e.g. bench123-456.")
    parser.add_argument("--store", type=Path, help="sink part: folder of the fresh chDB store")
    args = parser.parse_args(argv)
    given = {k: v for k, v in (("kafka_bootstrap", args.kafka_bootstrap), ("registry_url", args.registry_url),
                               ("topic_prefix", args.topic_prefix)) if v is not None}
    settings = load_settings(**given)
    if args.part == "sink":
        if args.store is None:
            parser.error("sink needs --store")
        print(json.dumps(sink_ceilings(settings, args.events, args.store)))
        return 0
    with tempfile.TemporaryDirectory(prefix="backbone-ceilings-") as tmp:
        start = calibration()
        result = measure(settings, args.events, Path(tmp))
        end = calibration()
    print(json.dumps({"ceilings": result, "calibration": {"start": start, "end": end}}, indent=2))
    console = Console(stderr=True)
    console.print(f"record bytes {result['cdc_key_bytes'] + result['cdc_value_bytes']:.0f}; "
                  f"ProducerPerformance {result['producer_performance']['records_per_s']:,.0f}/s, "
                  f"ConsumerPerformance {result['consumer_performance']['fetch_messages_per_s']:,.0f}/s, "
                  f"clickhouse-connect {result['chdb']['clickhouse_connect']['rows_per_s']:,.0f} rows/s, "
                  f"AvroConfluent {result['chdb']['avro_confluent']['rows_per_s']:,.0f} rows/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
