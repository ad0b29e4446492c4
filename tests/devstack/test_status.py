"""`backbone status --json` and `backbone health` on a running pipeline (an http_push adapter, the
processor, the sink as child processes): healthy with events flowing; stuck when the heartbeats are
old (seen from a clock ten minutes ahead); down, naming the adapter, once the adapter stops. Then the
verdicts on the metrics of degraded stages and systems, from samples as the stages export them."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from backbone.settings import load_settings
from contract.catalog import catalog_for
from devstack.status import Sample, collect_status, stage_health, system_health
from tests.helpers import wait_for
from tests.infra.pushing import SYSTEM, PushPipeline


def status_json(settings) -> tuple[int, dict]:  # noqa: ANN001 - Settings
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "status", "--json"],
        capture_output=True,
        text=True,
        env=settings.as_env(),
        timeout=60,
    )
    return proc.returncode, json.loads(proc.stdout)


def health_check(settings, url: str) -> tuple[int, str]:  # noqa: ANN001 - Settings
    """`backbone health --port N` on a stage's metrics URL: (exit status, verdict)."""
    port = url.rsplit(":", 1)[1].split("/")[0]
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "health", "--port", port],
        capture_output=True,
        text=True,
        env=settings.as_env(),
        timeout=60,
    )
    return proc.returncode, proc.stdout.split(":")[0]


def by_name(report: dict, kind: str) -> dict[str, dict]:
    return {h["name"]: h for h in report[kind]}


def test_status_json_healthy_stuck_and_down(make_settings, stage_process, tmp_path):
    pipeline = PushPipeline(make_settings, stage_process, tmp_path)
    settings = pipeline.settings
    assert pipeline.push(pipeline.new_items(3)) == 200

    def healthy() -> bool:
        code, report = status_json(settings)
        system = by_name(report, "systems")[SYSTEM]
        # Every stage registered (the sink's migrations may still run while the others already work).
        registered = set(by_name(report, "stages")) == {"processor", "sink", f"adapter_{SYSTEM}"}
        return code == 0 and report["status"] == "healthy" and system["reason"] == "3 events processed" and registered

    wait_for(healthy, 120, "a healthy status with the 3 pushed events processed", interval=1, alive=pipeline.stages)
    _, report = status_json(settings)
    stages = by_name(report, "stages")
    assert set(stages) == {"processor", "sink", f"adapter_{SYSTEM}"}
    assert all(h["status"] == "healthy" and h["url"].endswith("/metrics") for h in stages.values())
    assert stages["processor"]["reason"].startswith("running: 3 events read, 3 written")
    # The containers' health check on the same endpoints: 0 while the work loop turns.
    assert health_check(settings, stages["processor"]["url"]) == (0, "healthy")
    adapter_url = stages[f"adapter_{SYSTEM}"]["url"]

    # Ten minutes from now no work loop has turned: every stage is stuck, and the system with its adapter.
    later = collect_status(settings.run_dir, catalog_for(settings), now=time.time() + 600)
    assert later["status"] == "down"
    for health in later["stages"]:
        assert health["status"] == "down" and health["reason"].startswith("stuck: its work loop last turned"), health
    assert by_name(later, "systems")[SYSTEM]["reason"].startswith("its adapter is stuck")

    pipeline.adapter.stop()
    code, report = status_json(settings)
    assert code == 2 and report["status"] == "down"
    adapter = by_name(report, "stages")[f"adapter_{SYSTEM}"]
    assert (adapter["status"], adapter["reason"]) == ("down", "its metrics endpoint does not answer")
    system = by_name(report, "systems")[SYSTEM]
    assert (system["status"], system["reason"]) == ("down", "its adapter does not answer")
    assert by_name(report, "stages")["processor"]["status"] == "healthy"
    assert health_check(settings, adapter_url) == (1, "down")


def test_status_json_with_nothing_running_is_down(tmp_path):
    code, report = status_json(load_settings(run_dir=tmp_path / "run"))
    assert code == 2 and report["status"] == "down" and report["stages"] == []
    assert {h["status"] for h in report["systems"]} == {"down"}


def _sample(name: str, value: float, **labels: str) -> Sample:
    return Sample(name, labels, value)


def test_lag_degrades_a_stage_and_a_stopped_stage_is_down():
    now = time.time()
    lagging = [
        _sample("backbone_heartbeat_timestamp_seconds", now - 1, stage="sink"),
        _sample("backbone_consumer_lag_messages", 8000, stage="sink", topic="clean.a.b", partition="0"),
        _sample("backbone_consumer_lag_messages", 4000, stage="sink", topic="clean.a.b", partition="1"),
    ]
    health = stage_health("sink", "http://x/metrics", lagging, now)
    assert (health.status, health.reasons) == ("degraded", ["12,000 messages behind"])
    stopped = stage_health("sink", "", [*lagging, _sample("backbone_up", 0, stage="sink")], now)
    assert stopped.status == "down" and "stopped" in stopped.reasons


def test_dead_letters_freshness_and_checkpoints_degrade_a_system():
    catalog = catalog_for(load_settings())
    system = catalog.system("sim-licensing")  # promises 60 s
    (entity,) = system.entities
    now = time.time()
    adapter = [
        _sample("backbone_heartbeat_timestamp_seconds", now - 1, stage="adapter", system=system.system),
        _sample("backbone_adapter_captured_total", 100, system=system.system, entity=entity.name),
        _sample("backbone_adapter_checkpoint_timestamp_seconds", now - 900, system=system.system),
        _sample("backbone_adapter_rejected_total", 4, system=system.system, reason="http 422"),
    ]
    processor = [
        _sample("backbone_events_in_total", 96, stage="processor", topic=entity.cdc_topic),
        _sample("backbone_events_failed_total", 6, stage="processor", topic=entity.cdc_topic, reason="invalid"),
    ]
    buckets = {"0.5": 90, "60": 95, "120": 100, "+Inf": 100}
    sink = [_sample("backbone_freshness_seconds_bucket", n, table=entity.table, le=le) for le, n in buckets.items()]
    scrapes = {f"adapter_{system.system}": adapter, "processor": processor, "sink": sink}
    urls = {name: f"http://{name}/metrics" for name in scrapes}
    health = system_health(system, scrapes, urls, now)
    assert health.status == "degraded"
    assert health.reasons == [
        "its adapter captured changes but has not checkpointed for 10 minutes",
        "10 of 100 inputs dead-lettered",
        f"{entity.table}: p99 freshness up to 120 s, promised 60 s",
    ]
