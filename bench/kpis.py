"""The KPI worker (`backbone kpi`) on a fresh local stack (Kafka + Apicurio in a temporary folder): its
events/s draining a backlog on one worker, then KPI freshness at the demo rate and at 5,000 changes/s.

Changes are permit applications written onto the clean topic as the processor writes them (created,
verified, then approved or rejected: every change moves its permit between groups, and decisions fill
the monthly and daily windows), keyed by permit over the topic's partitions. The source-to-clean part
(adapter and processor) is bench.run's "freshness source→processed"; this bench adds what follows.

- Throughput: `--backlog` changes written first, then the worker started; events/s from the first
  offsets it commits (after its outputs are acknowledged) to the last, and including start-up.
- Freshness: with the worker and the sink running, changes at a fixed rate for `--seconds`; among them
  probes, each creating a permit in a kecamatan of its own, so that its KPI row (permits_by_status) is
  new and says when it came: source change (ts_source) to KPI computed (the row's updated_at) and to
  stored (ts_stored), p50 and p99 over the probes.

    .venv/bin/python -m bench.kpis --backlog 100000 --seconds 20
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import zlib
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from rich.console import Console
from rich.table import Table

from backbone import kafka
from backbone.net import free_port
from backbone.settings import Settings, load_settings
from bench import local_stack, save_results
from bench.clean_records import CleanEncoder
from bench.stages import measure, query, start_child, stored, wait_for
from contract.bootstrap import bootstrap
from contract.catalog import Entity, catalog_for
from devstack.procs import Child

console = Console(width=None if sys.stdout.isatty() else 140)  # no wrapping in logs and pipes
DEMO_RATE = 20.0  # changes/s of one simulated office in `backbone demo` (its --rate default)
KPI_TABLE = "kpi_licensing_permits_by_status"
TYPES = ["PBG", "SIUP", "NIB", "SIP_PRAKTIK", "TDUP", "REKLAME"]
KECAMATAN = [f"Kecamatan {i:02d}" for i in range(1, 29)]
LAG = 50  # a permit is verified 50 changes after it was submitted and decided 50 after that


class PermitWriter:
    """Clean permit changes, encoded with the registered clean schema and produced by key."""

    def __init__(self, settings: Settings, entity: Entity) -> None:
        self.clean = CleanEncoder(settings, entity)
        self.topic = entity.clean_topic
        self.producer = Producer(kafka.client_config(settings, **{"linger.ms": 5}))
        self.seq = 0  # source position: increasing, so each permit's versions are in source order
        self.rnd = random.Random(1)
        self.month = datetime.now(UTC).replace(day=1, hour=3, minute=0, second=0, microsecond=0)

    def send(self, key: str, status: str, kecamatan: str, kind: str) -> datetime:
        """Produce one change; returns its ts_source."""
        self.seq += 1
        now = datetime.now(UTC)
        submitted = self.month + timedelta(hours=zlib.crc32(key.encode()) % 200)
        decided = status in ("APPROVED", "REJECTED")
        value = self.clean.encode(
            key,
            "c" if status == "SUBMITTED" else "u",
            self.seq,
            now,
            application_id=key,
            permit_type=kind,
            status=status,
            applicant_nik="h" * 32,
            applicant_name="h" * 32,
            applicant_address="h" * 32,
            kecamatan_name=kecamatan,
            investment_value=Decimal("0.00"),
            fee=Decimal("150000.00") if status == "APPROVED" else Decimal("0.00"),
            sla_days=5,
            submitted_at=submitted,
            decided_at=submitted + timedelta(days=self.rnd.randint(1, 12)) if decided else None,
            updated_at=now,
        )
        while True:
            try:
                self.producer.produce(self.topic, value, key.encode())
                break
            except BufferError:  # the local queue is full: let librdkafka send
                self.producer.poll(0.05)
        self.producer.poll(0)
        return now

    def change(self, i: int) -> None:
        """The i-th change of the load: a new permit, or one submitted earlier moving on."""
        step, n = i % 3, i // 3
        if step == 0 or n < 2 * LAG:
            self.send(f"L{n}" if step == 0 else f"E{i}", "SUBMITTED", KECAMATAN[n % 28], TYPES[n % 6])
        elif step == 1:
            self.send(f"L{n - LAG}", "VERIFIED", KECAMATAN[(n - LAG) % 28], TYPES[(n - LAG) % 6])
        else:
            k = n - 2 * LAG
            self.send(f"L{k}", "REJECTED" if k % 7 == 0 else "APPROVED", KECAMATAN[k % 28], TYPES[k % 6])

    def flush(self) -> None:
        if self.producer.flush(60):
            raise RuntimeError("changes not acknowledged by Kafka within 60 s")


def committed(settings: Settings, topic: str) -> Any:
    """A callable: the sum of the KPI worker's committed offsets on `topic` (its outputs acknowledged)."""
    reader = Consumer(kafka.client_config(settings, **{"group.id": settings.kpi_app_id, "enable.auto.commit": False}))
    partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]

    def count() -> float:
        return float(sum(max(tp.offset, 0) for tp in reader.committed(partitions, timeout=10)))

    return count


def throughput_phase(settings: Settings, writer: PermitWriter, n: int, children: list[Child]) -> dict[str, Any]:
    console.log(f"throughput: writing a backlog of {n:,} changes")
    for i in range(n):
        writer.change(i)
    writer.flush()
    console.log("throughput: the KPI worker draining it")
    started = time.monotonic()
    children.append(child := start_child(settings, "kpi"))
    result = measure(child, started, n, committed(settings, writer.topic), lambda v: v >= n, 120 + n / 200, 60)
    return asdict(result)


def quantiles(values: list[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": None, "p99": None}
    return {
        q: round(ordered[min(len(ordered) - 1, int(len(ordered) * f))], 1) for q, f in (("p50", 0.5), ("p99", 0.99))
    }


def freshness_phase(
    settings: Settings, writer: PermitWriter, label: str, rate: float, seconds: float, start: int, children: list[Child]
) -> dict[str, Any]:
    """Changes at `rate` for `seconds` (from change number `start`), one probe in every `every`."""
    every = max(1, round(rate / 50))  # about 50 probes a second, at most every other change
    every = 2 if every == 1 else every
    probes: dict[str, datetime] = {}
    total = int(rate * seconds)
    load_start = os.getloadavg()[0]
    console.log(f"freshness {label}: {total:,} changes at {rate:g}/s")
    began = time.monotonic()
    for j in range(total):
        due = began + j / rate
        if (wait := due - time.monotonic()) > 0:
            time.sleep(wait)
        if j % every:
            writer.change(start + j)
        else:
            name = f"probe-{label}-{j}"
            probes[name] = writer.send(f"{name}-permit", "SUBMITTED", name, "NIB")
    sent_seconds = time.monotonic() - began
    writer.flush()
    like = f"probe-{label}-%"

    def arrived() -> int:
        try:
            return int(
                query(settings, f"SELECT uniqExact(kecamatan_name) FROM {KPI_TABLE} WHERE kecamatan_name LIKE '{like}'")
                or 0
            )
        except Exception:  # noqa: BLE001 - the sink still starting or the table not made yet
            return 0

    wait_for(lambda: arrived() >= len(probes), 120 + total / 500, f"{len(probes)} probe KPI rows stored", children)
    rows = query(
        settings,
        "SELECT kecamatan_name, toUnixTimestamp64Milli(min(updated_at)), "
        f"toUnixTimestamp64Milli(min(ts_stored)) FROM {KPI_TABLE} WHERE kecamatan_name LIKE "
        f"'{like}' GROUP BY kecamatan_name",
    )
    computed, stored = [], []
    for line in rows.splitlines():
        name, updated_ms, stored_ms = line.split("\t")
        source_ms = probes[name].timestamp() * 1000
        computed.append(int(updated_ms) - source_ms)
        stored.append(int(stored_ms) - source_ms)
    return {
        "target_rate": rate,
        "changes": total,
        "probes": len(probes),
        "seconds": round(sent_seconds, 2),
        "achieved_rate": round(total / sent_seconds, 1),
        "source_to_kpi_computed_ms": quantiles(computed),
        "source_to_kpi_stored_ms": quantiles(stored),
        "load_avg_1m": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)},
    }


def run(args: argparse.Namespace, work: Path, bootstrap_servers: str, registry_url: str) -> dict[str, Any]:
    stamp = f"{os.getpid()}-{int(time.time())}"
    settings = load_settings(
        run_dir=work / "run",
        kafka_bootstrap=bootstrap_servers,
        registry_url=registry_url,
        topic_prefix="kb.",
        kpi_app_id=f"bench-kpi-{stamp}",
        sink_group_id=f"bench-sink-{stamp}",
        kpi_metrics_port=free_port(),
        sink_metrics_port=free_port(),
        query_port=free_port(),
        processor_metrics_port=free_port(),
    )
    bootstrap(settings)
    entity = next(e for e in catalog_for(settings).entities if e.name == "permit_application")
    writer = PermitWriter(settings, entity)
    children: list[Child] = []
    report: dict[str, Any] = {"backlog": args.backlog}
    load_start = os.getloadavg()[0]
    try:
        report["throughput"] = throughput_phase(settings, writer, args.backlog, children)
        report["throughput"]["load_avg_1m"] = {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)}
        console.log("starting the sink; waiting for the backlog's KPI rows")
        children.append(start_child(settings, "sink"))
        wait_for(lambda: stored(settings) >= args.backlog, 300, "the backlog's changes stored", children)
        next_change = args.backlog
        report["freshness"] = {}
        for label, rate in (("demo", DEMO_RATE), ("5k", args.rate)):
            report["freshness"][label] = freshness_phase(
                settings, writer, label, rate, args.seconds, next_change, children
            )
            next_change += int(rate * args.seconds)
    finally:
        for child in reversed(children):
            child.stop()
    return report


def render(report: dict[str, Any]) -> Table:
    t = report["throughput"]
    table = Table(title=f"KPI worker (one worker, {os.cpu_count()} cores): throughput and freshness")
    for column in ("phase", "changes", "s", "changes/s", "computed p50/p99", "stored p50/p99", "load"):
        table.add_column(column, justify="left" if column == "phase" else "right", no_wrap=True)
    load = t["load_avg_1m"]
    table.add_row(
        "backlog drained (steady)",
        f"{t['steady_events'] or 0:,}",
        f"{t['steady_seconds'] or 0:.2f}",
        f"{t['steady_events_per_s'] or 0:,.0f}",
        "",
        "",
        f"{load['start']:.1f}→{load['end']:.1f}",
    )
    table.add_row(
        f"  incl. start-up ({t['startup_seconds']:.1f}s)",
        f"{t['events']:,}",
        f"{t['seconds']:.2f}",
        f"{t['events_per_s']:,.0f}",
    )
    for f in report["freshness"].values():
        c, s, load = f["source_to_kpi_computed_ms"], f["source_to_kpi_stored_ms"], f["load_avg_1m"]
        table.add_row(
            f"freshness at {f['target_rate']:g}/s ({f['probes']} probes)",
            f"{f['changes']:,}",
            f"{f['seconds']:.2f}",
            f"{f['achieved_rate']:,.0f}",
            f"{c['p50']:,.0f} / {c['p99']:,.0f}",
            f"{s['p50']:,.0f} / {s['p99']:,.0f}",
            f"{load['start']:.1f}→{load['end']:.1f}",
        )
    table.caption = (
        "clean permit changes → KPI worker → kpi topic → sink → kpi table; ms from the change's "
        "ts_source to the KPI row's updated_at (computed) and ts_stored (stored); load: 1-minute "
        "load average at start → end"
    )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.kpis", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backlog", type=int, default=100_000, help="changes in the throughput phase")
    parser.add_argument("--rate", type=float, default=5000.0, help="changes/s of the second freshness phase")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each freshness phase")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-kpis-") as tmp:
        work = Path(tmp)
        console.log("starting the local stack (Kafka, Apicurio Registry)")
        with local_stack(work) as addresses:
            report = run(args, work, addresses.kafka_bootstrap, addresses.registry_url)
    console.print(render(report))
    save_results("kpis", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
