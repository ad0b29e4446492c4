"""The pipeline bench's stages as child processes: launching one, reading its Prometheus counters and
the rows it stored, and timing it while it drains a backlog. Every wait is bounded."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import requests
from confluent_kafka import Consumer, TopicPartition

from backbone import kafka
from backbone.net import free_port
from backbone.settings import Settings
from devstack.procs import Child
from devstack.progress import scrape

TABLE = "licensing_permit_application"
OUT, FAILED = "backbone_events_out", "backbone_events_failed"  # counter families, per stage and topic
POLL = 0.05  # seconds between polls: the timing resolution of the stage figures


@dataclass
class Throughput:
    events: int
    seconds: float  # from the start of the stage (child process launch) to the last event
    events_per_s: float
    startup_seconds: float | None = None  # start to the first event seen
    steady_events: int | None = None  # events counted between the first and the last observation
    steady_seconds: float | None = None
    steady_events_per_s: float | None = None


def wait_for(condition: Callable[[], bool], timeout: float, what: str, children: Sequence[Child] = ()) -> float:
    """Poll until condition() holds; returns the time it did. Fails on timeout or when a child exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in children:
            if not child.alive():
                raise RuntimeError(
                    f"{child.name} exited while waiting for {what}; {child.log_path}:\n{child.log_tail(30)}"
                )
        if condition():
            return time.monotonic()
        time.sleep(POLL)
    tails = "".join(f"\n{c.name} ({c.log_path}):\n{c.log_tail(30)}" for c in children)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{tails}")


Counts = dict[tuple[str, str], float]  # (counter family, topic) -> value


def stage_counts(url: str, stage: str) -> Counts:
    """A stage's event counters on its Prometheus endpoint, per family and topic; empty until it answers."""
    try:
        scraped = scrape(url)
    except requests.RequestException:
        return {}
    counts: Counts = defaultdict(float)
    for name in (OUT, FAILED):
        for s in scraped.get(name, []):
            if s.name.endswith("_total") and s.labels.get("stage") == stage:
                counts[name, s.labels.get("topic", "")] += s.value
    return counts


def total(counts: Counts, families: Sequence[str], topics: Sequence[str] | None = None) -> float:
    return sum(v for (name, topic), v in counts.items() if name in families and (topics is None or topic in topics))


def counter(url: str, stage: str, families: Sequence[str]) -> float:
    """Sum of a stage's counters on its Prometheus endpoint; 0 until the endpoint answers."""
    return total(stage_counts(url, stage), families)


class KafkaProgress:
    """A stage's progress read from Kafka, not from the stage: the end offsets of the topics it writes
    (the processor), or the offsets its consumer group committed (the sink commits after storing).
    Polled at the bench's resolution without loading the measured process: a /metrics scrape or a
    store query 20 times a second took a tenth of the processor's samples in its profile."""

    def __init__(self, settings: Settings, topics: Sequence[str], group: str | None = None) -> None:
        self.group = group
        self.consumer = Consumer(kafka.client_config(settings, **{
            "group.id": group or f"bench-progress-{time.monotonic_ns()}", "enable.auto.commit": False}))
        listed = self.consumer.list_topics(timeout=10).topics
        self.partitions = [TopicPartition(t, p) for t in topics for p in sorted(listed[t].partitions)]

    def __call__(self) -> float:
        try:
            if self.group is not None:
                return float(sum(max(0, tp.offset) for tp in self.consumer.committed(self.partitions, timeout=5)))
            return float(sum(self.consumer.get_watermark_offsets(tp, timeout=5)[1] for tp in self.partitions))
        except Exception:  # noqa: BLE001 - the broker busy for a moment: no progress seen this poll
            return 0.0

    def close(self) -> None:
        self.consumer.close()


def query_headers(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.query_secret()}"}


def query(settings: Settings, sql: str, fmt: str = "TabSeparated") -> str:
    resp = requests.post(
        f"http://127.0.0.1:{settings.query_port}/",
        params={"default_format": fmt},
        data=sql.encode(),
        headers=query_headers(settings),
        timeout=30,
    )
    resp.raise_for_status()
    return resp.text.strip()


def stored(settings: Settings, where: str = "") -> int:
    try:
        return int(query(settings, f"SELECT count() FROM {TABLE} FINAL {where}") or 0)
    except (requests.RequestException, ValueError):  # sink not serving yet, or table not created yet
        return 0


def start_child(settings: Settings, command: str) -> Child:
    return Child(
        command,
        [sys.executable, "-m", "cli.main", command],
        settings.run_dir / "logs" / f"{command}.log",
        env=settings.as_env(),
        stop_timeout=20,
    ).start()


def measure(
    child: Child,
    started: float,
    n: int,
    count: Callable[[], float],
    finished: Callable[[float], bool],
    timeout: float,
    stall: float,
    on_first: Callable[[Child], object] | None = None,
) -> Throughput:
    """Time a child draining n events: start-up included, and from the first event seen to the last.
    on_first(child) is called when the first event is seen (the stage is then under load)."""
    first: list[tuple[float, float]] = []
    last = [0.0, time.monotonic()]  # counter value and when it last moved

    def condition() -> bool:
        now, value = time.monotonic(), count()
        if not first and value > 0:
            first.append((now, value))
            if on_first is not None:
                on_first(child)
        if value != last[0]:
            last[:] = [value, now]
        elif 0 < value < n and now - last[1] > stall:
            # Started but no progress: fail now with the count rather than at the overall timeout.
            raise RuntimeError(
                f"{child.name} stalled at {value:.0f} of {n} events (no progress for {stall:.0f}s); "
                f"{child.log_path}:\n{child.log_tail(30)}"
            )
        return finished(value)

    done = wait_for(condition, timeout, f"{n} events through the {child.name}", [child])
    # The counter can trail the condition (the sink inserts, then counts): then all arrived at once.
    t0, v0 = first[0] if first else (done, n)
    result = Throughput(n, done - started, n / (done - started), startup_seconds=t0 - started)
    # Events counted at the first observation were processed before it: leave them out of the window.
    if done > t0 and n > v0:
        result.steady_events, result.steady_seconds = int(n - v0), done - t0
        result.steady_events_per_s = (n - v0) / (done - t0)
    return result


def metrics_url(settings: Settings, stage: str) -> str:
    """The Prometheus endpoint of a stage (processor or sink)."""
    return f"http://127.0.0.1:{getattr(settings, f'{stage}_metrics_port')}/metrics"


def drain(
    settings: Settings,
    stage: str,
    children: list[Child],
    n: int,
    count: Callable[[], float],
    finished: Callable[[float, float], bool],
    timeout: float,
    stall: float,
    on_first: Callable[[Child], object] | None = None,
) -> Throughput:
    """Start a stage (a child process, added to `children`) on a backlog of n events and time it (see
    `measure`) until finished(count, time the stage was started) holds."""
    started = time.monotonic()
    children.append(child := start_child(settings, stage))
    return measure(child, started, n, count, lambda value: finished(value, started), timeout, stall, on_first)


PROFILE_SECONDS = 6


class Profiler:
    """py-spy sampling a stage's process (and its children) from when it is attached until stopped: a
    flame graph of where the stage spends its time under load. Non-blocking sampling, so the stage is
    not paused at each sample; where ptrace is not permitted the error is kept and the stage runs on."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.proc: subprocess.Popen[str] | None = None
        self.result: dict[str, Any] = {"path": None, "error": None}

    def attach(self, child: Child) -> None:
        py_spy = Path(sys.executable).with_name("py-spy")  # installed in the venv with the dev packages
        if not py_spy.is_file():
            self.result["error"] = f"py-spy is not installed in {py_spy.parent}"
            return
        self.out.parent.mkdir(parents=True, exist_ok=True)
        # A few seconds are enough for the flame graph; sampling the whole phase took CPU from the stage
        # it measures (2 cores: the processor, the broker and py-spy), so its rate read 10-15 % low.
        command = [str(py_spy), "record", "--pid", str(child.pid), "--subprocesses", "--nonblocking",
                   "--duration", str(PROFILE_SECONDS), "--format", "flamegraph", "--output", str(self.out)]
        self.result["command"] = " ".join(command[1:])
        try:
            self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        except OSError as exc:
            self.result["error"] = f"py-spy did not start: {exc}"

    def stop(self) -> dict[str, Any]:
        """Stop sampling (py-spy writes its file on SIGINT); the file's path, or why there is none."""
        if self.proc is None:
            return self.result
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            output, _ = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            output, _ = self.proc.communicate()
        if self.out.is_file() and self.out.stat().st_size:
            self.result["path"] = str(self.out)
        else:
            self.result["error"] = f"py-spy exited with {self.proc.returncode}: {output.strip()[-500:]}"
        return self.result


def peak_rss_mib(pid: int | None) -> float | None:
    """VmHWM: the process's peak resident set, read while it still runs."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


# -- freshness: a fixed rate with both stages running ------------------------------------------------
def quantiles_ms(values: list[float]) -> dict[str, float]:
    return {"p50": float(values[0]), "p99": float(values[1])}


def freshness_phase(settings: Settings, rate: float, count: int, children: Sequence[Child]) -> dict[str, Any]:
    """Produce at a fixed rate with both stages running; quantiles of the delays of this phase's rows."""
    from simulators.simulate import run_simulator

    start = datetime.now(UTC)
    stop = threading.Event()
    result: dict[str, Any] = {}

    def produce() -> None:
        began = time.monotonic()
        try:
            result["sent"] = run_simulator(settings, "licensing", rate=rate, count=count, stop=stop,
                                           serve_metrics=False)
        except BaseException as exc:  # re-raised in the main thread
            result["error"] = exc
        result["seconds"] = time.monotonic() - began

    thread = threading.Thread(target=produce, name="bench-simulator", daemon=True)
    thread.start()
    thread.join(count / rate + 60)
    if thread.is_alive():
        stop.set()
        thread.join(10)
        raise TimeoutError(f"freshness: the simulator did not send {count} events at {rate}/s in time")
    if "error" in result:
        raise result["error"]
    # ts_source is taken when the change is generated, after `start`; earlier phases' rows are all older.
    since = f"WHERE ts_source >= toDateTime64('{start:%Y-%m-%d %H:%M:%S.%f}', 3, 'UTC')"
    sent = int(result["sent"])
    wait_for(lambda: stored(settings, since) >= sent, 60 + sent / 100, f"{sent} fresh rows stored", children)
    row = json.loads(query(settings, (
        "SELECT quantiles(0.5, 0.99)(dateDiff('millisecond', ts_source, ts_stored)),"
        " quantiles(0.5, 0.99)(dateDiff('millisecond', ts_source, ts_processed)), count()"
        f" FROM {TABLE} FINAL {since}"), fmt="JSONCompact"))["data"][0]
    return {
        "target_rate": rate, "events": sent, "rows": int(row[2]), "produce_seconds": result["seconds"],
        "achieved_rate": sent / result["seconds"],
        "source_to_stored_ms": quantiles_ms(row[0]), "source_to_processed_ms": quantiles_ms(row[1]),
    }


# -- the data-quality rules: on against off -----------------------------------------------------------
RULES_WAIT_SECONDS = 1.0  # a referrer of an unknown entity waits this long here (30 s in production)


def rules_phase(settings: Settings, per_system: int, bad_ratio: float, timeout: float, stall: float) -> dict[str, Any]:
    """The processor's events/s on one backlog (every simulated system, with bad and doubtful records)
    read twice by two consumer groups: with every data-quality rule on, then with the rules beyond the
    original ones off (BACKBONE_PROCESSOR_DQ_RULES=false: no max, pattern, one_of, compare, references,
    no flags). Same topics, same machine, one run."""
    from contract.bootstrap import bootstrap
    from simulators.simulate import run_simulators

    bootstrap(settings)
    acked = run_simulators(settings, ["all"], rate=0, count=per_system, bad_ratio=bad_ratio, serve_metrics=False)
    n = sum(acked.values())
    results: dict[str, Any] = {"events": n, "bad_ratio": bad_ratio, "reference_wait_seconds": RULES_WAIT_SECONDS}
    # Off first: the second reader of a backlog finds the broker's pages warm, which favours it.
    for label, on in (("rules_off", False), ("rules_on", True)):
        phase = settings.model_copy(
            update={
                "processor_app_id": f"{settings.processor_app_id}-{label}",
                "processor_metrics_port": free_port(),
                "processor_dq_rules": on,
                "processor_reference_wait_seconds": RULES_WAIT_SECONDS,
            }
        )
        children: list[Child] = []
        try:
            url = metrics_url(phase, "processor")
            counts = partial(counter, url, "processor", (OUT, FAILED))
            result = drain(phase, "processor", children, n, counts, lambda v, _s: v >= n, timeout, stall)
            scraped = scrape(url)
            outcomes: dict[str, float] = defaultdict(float)
            for s in scraped.get("backbone_dq_records", []):
                if s.name.endswith("_total"):
                    outcomes[s.labels.get("outcome", "")] += s.value
            results[label] = {**asdict(result), "outcomes": dict(outcomes)}
        finally:
            for child in reversed(children):
                child.stop()
    on_rate, off_rate = (
        results[k]["steady_events_per_s"] or results[k]["events_per_s"] for k in ("rules_on", "rules_off")
    )
    results["on_vs_off"] = on_rate / off_rate if off_rate else None
    return results
