"""Throughput and freshness of the pipeline on a fresh local stack (Kafka + Apicurio in a temporary folder).

Phases: producer (in-process, as fast as possible), processor (profiled by py-spy) and sink (child
processes draining the backlog), then end-to-end freshness at a fixed rate with both stages running; the
processor with N workers, and the Quix Streams peer on the same backlog (bench/quix_peer.py); then
the stages' ceilings on the same stack and topics (bench/ceilings.py: the ratios, a chart beside the JSON);
then all domains: every simulated system at once on fresh topics, timed per domain. Every wait is bounded."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from rich.console import Console

from backbone.errors import UserError
from backbone.gc_tuning import tune_garbage_collector
from backbone.net import free_port
from backbone.settings import PROJECT_ROOT, Settings, load_settings
from bench import ceilings, chart, local_stack, quix_peer
from bench import portal as portal_bench
from bench.stages import (
    FAILED,
    OUT,
    Counts,
    KafkaProgress,
    Profiler,
    Throughput,
    counter,
    drain,
    freshness_phase,
    metrics_url,
    peak_rss_mib,
    query,
    rules_phase,
    stage_counts,
    stored,
    total,
)
from contract.bootstrap import bootstrap
from contract.catalog import Entity, catalog_for
from contract.topics import DLQ_PROCESSOR, named
from devstack.procs import Child
from simulators.simulate import run_simulator, run_simulators

BAD_RATIO = 0.02  # share of bad events in the all-domains phase (dead-lettered by the processor)

console = Console(width=None if sys.stdout.isatty() else 120)  # no wrapping in logs and pipes


@contextmanager
def keep_signal_handlers() -> Iterator[None]:
    # run_simulator installs its own SIGINT/SIGTERM handlers in the main thread; restore ours afterwards
    # so that Ctrl-C still stops the bench (and its finally blocks) in later phases.
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def producer_phase(settings: Settings, n: int) -> Throughput:
    began = time.monotonic()
    with keep_signal_handlers():
        sent = run_simulator(settings, "licensing", rate=0, count=n, serve_metrics=False)
    seconds = time.monotonic() - began
    if sent != n:
        raise RuntimeError(f"producer: {sent} of {n} events acknowledged")
    return Throughput(n, seconds, n / seconds)


def rows_final(settings: Settings, tables: Sequence[str]) -> int:
    """Rows of these tables, read through FINAL (one row per event id); 0 while one is not there yet."""
    if not tables:
        return 0
    union = " UNION ALL ".join(f"SELECT count() AS c FROM `{t}` FINAL" for t in tables)
    try:
        return int(query(settings, f"SELECT sum(c) FROM ({union})") or 0)
    except (requests.RequestException, ValueError):
        return 0


def domains_phase(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Every simulated system at once (round robin, some bad events) on fresh topics; then the processor and
    the sink drain the backlog, and each domain is timed until all its events are processed, then stored
    (a row through FINAL, or a dead letter). Times count from the stage's start."""
    bootstrap(settings)
    n = args.domain_events
    console.log(f"all domains: {n:,} events per system, {BAD_RATIO:.0%} bad, as fast as possible")
    began = time.monotonic()
    with keep_signal_handlers():
        acked = run_simulators(settings, ["all"], rate=0, count=n, bad_ratio=BAD_RATIO, serve_metrics=False)
    seconds = time.monotonic() - began
    if short := {system: sent for system, sent in acked.items() if sent != n}:
        raise RuntimeError(f"all domains: of {n} events per system, only acknowledged {short}")
    events = sum(acked.values())
    producer = Throughput(events, seconds, events / seconds)

    entities: dict[str, list[Entity]] = defaultdict(list)
    domains: dict[str, dict[str, Any]] = {}
    for system in catalog_for(settings).systems:
        if system.system in acked:
            entities[system.domain] += system.entities
            d = domains.setdefault(system.domain, {"systems": {}, "events": 0})
            d["systems"][system.system] = acked[system.system]
            d["events"] += acked[system.system]
    cdc = {name: [e.cdc_topic for e in es] for name, es in entities.items()}
    clean = {name: [e.clean_topic for e in es] for name, es in entities.items()}
    all_cdc, all_clean = [t for ts in cdc.values() for t in ts], [t for ts in clean.values() for t in ts]
    timeout = 120 + events / 100
    seen: Counts = {}  # the last scrape, shared by a stage's count and finished callbacks

    def scraper(url: str, stage: str, topics: Sequence[str]) -> Callable[[], float]:
        def count() -> float:
            seen.clear()
            seen.update(stage_counts(url, stage))
            return total(seen, (OUT, FAILED), topics)
        return count

    def mark(key: str, done: Callable[[str, dict[str, Any]], bool]) -> Callable[[float, float], bool]:
        def finished(_value: float, started: float) -> bool:
            for name, d in domains.items():
                if key not in d and done(name, d):
                    d[key] = time.monotonic() - started
            return all(key in d for d in domains.values())
        return finished

    def is_processed(name: str, d: dict[str, Any]) -> bool:  # a clean event or a dead letter for each
        return total(seen, (OUT, FAILED), cdc[name] + clean[name]) >= d["events"]

    def is_stored(name: str, d: dict[str, Any]) -> bool:
        # The metrics first (cheap), then the rows; sink dead letters (undecodable) count as stored too.
        if total(seen, (OUT, FAILED), clean[name]) + d["dead_lettered"] < d["events"]:
            return False
        d["rows_final"] = rows_final(settings, [e.table for e in entities[name] if seen.get((OUT, e.clean_topic))])
        return d["rows_final"] + d["dead_lettered"] + total(seen, (FAILED,), clean[name]) >= d["events"]

    children: list[Child] = []
    try:
        console.log("all domains: processor draining the backlog")
        url = metrics_url(settings, "processor")
        processed = drain(settings, "processor", children, events, scraper(url, "processor", all_cdc + all_clean),
                          mark("processed_seconds", is_processed), timeout, args.stall)
        counts = stage_counts(url, "processor")
        for name, d in domains.items():
            d["dead_lettered"] = int(total(counts, (FAILED,), cdc[name]))
        dead = sum(d["dead_lettered"] for d in domains.values())

        console.log("all domains: sink draining the backlog")
        url = metrics_url(settings, "sink")
        sunk = drain(settings, "sink", children, events - dead, scraper(url, "sink", all_clean),
                     mark("stored_seconds", is_stored), timeout, args.stall)
        rss = {child.name: peak_rss_mib(child.pid) for child in children}
    finally:
        for child in reversed(children):
            child.stop()
    return {
        "events_per_system": n, "bad_ratio": BAD_RATIO, "topic_prefix": settings.topic_prefix,
        "producer": asdict(producer), "processor": {**asdict(processed), "dead_lettered": dead},
        "sink": {**asdict(sunk), "rows_final": sum(d["rows_final"] for d in domains.values())},
        "per_domain": domains, "peak_rss_mib": rss,
    }


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def phase_settings(run_dir: Path, tag: str, kafka_bootstrap: str, registry_url: str, **extra: object) -> Settings:
    """A phase of its own: run folder (chDB store), topic prefix, processor app id and sink group."""
    return load_settings(
        run_dir=run_dir, kafka_bootstrap=kafka_bootstrap, registry_url=registry_url,
        topic_prefix=f"{tag}.", processor_app_id=f"{tag}-processor", sink_group_id=f"{tag}-sink",
        pii_key="bench-key-not-secret", processor_metrics_port=free_port(), sink_metrics_port=free_port(),
        query_port=free_port(), **extra,
    )


def drain_processor(settings: Settings, children: list[Child], n: int, timeout: float, stall: float,
                    on_first: Callable[[Child], object] | None = None) -> Throughput:
    """Start the processor on a backlog of n events and time it until each has an output. Progress
    from Kafka (clean records and dead letters written), not by scraping the processor."""
    written = KafkaProgress(settings, [ceilings.licensing(settings).clean_topic, named(settings, DLQ_PROCESSOR)])
    try:
        return drain(settings, "processor", children, n, written, lambda value, _started: value >= n,
                     timeout, stall, on_first=on_first)
    finally:
        written.close()


def workers_phase(args: argparse.Namespace, settings: Settings, timeout: float) -> dict[str, Any]:
    """`backbone processor --workers N` on a backlog of its own (fresh topics, as many events as the
    one-worker phase): the rate of N processes in one group, to set against one worker's."""
    bootstrap(settings)
    producer_phase(settings, args.events)
    children: list[Child] = []
    try:
        drained = drain_processor(settings, children, args.events, timeout, args.stall)
    finally:
        for child in children:
            child.stop()
    return {**asdict(drained), "workers": settings.processor_workers}


def run_phases(
    args: argparse.Namespace, work: Path, kafka_bootstrap: str, registry_url: str, profile: Path
) -> dict[str, Any]:
    n, tag, calibration_start = args.events, f"bench{os.getpid()}-{int(time.time())}", ceilings.calibration()
    settings = phase_settings(work / "pipeline", tag, kafka_bootstrap, registry_url)
    bootstrap(settings)
    timeout = 120 + n / 100  # generous: ~100 events/s plus start-up, so a stall fails instead of hanging
    console.log(f"producer: {n:,} events, as fast as possible")
    producer = producer_phase(settings, n)
    children: list[Child] = []
    try:
        console.log("processor: draining the backlog")
        url = metrics_url(settings, "processor")
        clean_topic = ceilings.licensing(settings).clean_topic
        profiler = Profiler(profile)  # attached once the processor is under load, stopped when it is drained
        try:
            processed = drain_processor(settings, children, n, timeout, args.stall, on_first=profiler.attach)
        finally:
            profiled = profiler.stop()
        failed = counter(url, "processor", (FAILED,))

        console.log("sink: draining the backlog")
        # Progress from the sink group's commits (made once a batch is stored), not from store queries.
        clean_events = int(KafkaProgress(settings, [clean_topic])())
        committed = KafkaProgress(settings, [clean_topic], group=settings.sink_group_id)
        try:
            sunk = drain(settings, "sink", children, clean_events, committed,
                         lambda value, _started: value >= clean_events, timeout, args.stall)
        finally:
            committed.close()
        rows = stored(settings)

        fresh_count = max(1, min(int(args.rate * args.fresh_seconds), 100_000))
        console.log(f"freshness: {fresh_count:,} events at {args.rate:g}/s")
        fresh = freshness_phase(settings, args.rate, fresh_count, children)
        rss = {child.name: peak_rss_mib(child.pid) for child in children}
    finally:
        for child in reversed(children):
            child.stop()
    stages = {"producer": asdict(producer), "processor": {**asdict(processed), "dead_lettered": failed},
              "sink": {**asdict(sunk), "rows_final": rows}}
    if args.workers > 1:
        console.log(f"processor: {args.workers} workers in one group, draining a backlog of {n:,} of their own")
        stages["processor_workers"] = workers_phase(args, phase_settings(
            work / "workers", f"{tag}-workers", kafka_bootstrap, registry_url, processor_workers=args.workers), timeout)
    if not args.skip_peer:
        console.log("Quix Streams peer: the same job on the same backlog (a venv of its own, made once)")
        stages["quix_peer"] = quix_peer.measure(settings, ceilings.TABLE, clean_events, work / "quix-peer",
                                                timeout, args.stall)
    # The ceilings on the same stack and topics, with the stages stopped (issue 12): ratios, not only rates.
    console.log("ceilings: ProducerPerformance, ConsumerPerformance, chDB inserts (clickhouse-connect, AvroConfluent)")
    ceiling = ceilings.measure(settings, n, work / "ceilings")
    domains = None if args.skip_domains else domains_phase(
        args, phase_settings(work / "domains", f"{tag}-domains", kafka_bootstrap, registry_url))
    rules = None
    if not args.skip_rules:
        console.log("data-quality rules: the processor with every rule on, then with the new ones off")
        rules = rules_phase(phase_settings(work / "rules", f"{tag}-rules", kafka_bootstrap, registry_url),
                            args.domain_events, BAD_RATIO, 120 + 7 * args.domain_events / 100, args.stall)
    calibration_end = ceilings.calibration()
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        # Load and a fixed calibration loop before and after: other work on the machine skews every figure.
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_avg_1m_start": calibration_start["load_avg"][0],
                    "load_avg_1m_end": calibration_end["load_avg"][0]},
        "calibration": {"start": calibration_start, "end": calibration_end},
        "git_commit": git_commit(),
        "events": n,
        "settings": {k: getattr(settings, k) for k in (
            "topic_partitions", "processor_batch_size", "processor_batch_seconds", "sink_batch_size",
            "sink_batch_seconds")},
        "stages": stages,
        "ceilings": ceiling,
        "ratios": ceilings.ratios(stages, ceiling),
        "processor_profile": profiled,
        "freshness": fresh,
        "peak_rss_mib": rss,
        "domains": domains,
        "rules": rules,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.run", description=__doc__)
    parser.add_argument("--events", type=int, default=50_000, help="events for the throughput phases")
    parser.add_argument("--rate", type=float, default=2000.0, help="events/s in the freshness phase")
    parser.add_argument("--fresh-seconds", type=float, default=10.0, help="length of the freshness phase")
    parser.add_argument("--domain-events", type=int, default=3000, help="events per system, all-domains phase")
    parser.add_argument("--workers", type=int, default=2, help="processor workers of the scale-out phase (1: skip it)")
    parser.add_argument("--skip-peer", action="store_true", help="skip the Quix Streams peer")
    parser.add_argument("--skip-domains", action="store_true", help="skip the all-domains phase")
    parser.add_argument("--skip-rules", action="store_true", help="skip the data-quality rules phase")
    parser.add_argument("--skip-portal", action="store_true", help="skip the portal bench")
    parser.add_argument("--stall", type=float, default=30.0, help="fail a stage after this long without progress")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "results", help="folder for the JSON")
    args = parser.parse_args(argv)
    if args.events < 1 or args.domain_events < 1 or args.workers < 1 or args.rate <= 0 or args.fresh_seconds <= 0:
        parser.error("--events, --domain-events, --workers, --rate and --fresh-seconds must be positive")

    # SIGTERM as an exception, so the finally blocks stop the children and the stack.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    tune_garbage_collector()  # as the `backbone` command does: the producer phase runs in this process
    stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    profile = args.out / f"{stamp}-processor-profile.svg"
    try:
        with tempfile.TemporaryDirectory(prefix="backbone-bench-") as tmp:
            work = Path(tmp)
            console.log("starting the local stack (Kafka, Apicurio Registry)")
            with local_stack(work) as addresses:
                report = run_phases(args, work, addresses.kafka_bootstrap, addresses.registry_url, profile)
    except (UserError, RuntimeError, TimeoutError) as exc:  # a failed run says why in one message, no traceback
        console.print(f"[bold red]bench failed:[/] {exc}", highlight=False)
        return 1

    console.print(chart.table(report))
    console.print(ceilings.ratio_table(report))
    if error := report["processor_profile"]["error"]:
        console.print(f"[yellow]no processor profile:[/] {error}", highlight=False)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{stamp}.json"
    text = json.dumps(report, indent=2, default=str) + "\n"
    path.write_text(text)
    (args.out / "latest.json").write_text(text)
    shutil.copyfile(chart.draw(report, path.with_suffix(".png")), args.out / "latest.png")
    if profile.is_file():
        shutil.copyfile(profile, args.out / "latest-processor-profile.svg")
    console.print(f"results: {path} (chart {path.with_suffix('.png').name}, processor profile {profile.name})")
    # The public portal against the store: bytes and latency per page kind (its own store, filled synthetically).
    return 0 if args.skip_portal else portal_bench.main(["--out", str(args.out)])


if __name__ == "__main__":
    sys.exit(main())
