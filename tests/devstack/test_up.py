"""`backbone up` on the real stack: the production topology as supervised processes (sink, processor,
KPI worker, the portal and a push adapter from the catalog), Prometheus with the project's rules and Alertmanager.
A stage killed with SIGKILL is started again, and the restart reaches Alertmanager as an alert. The
processes log JSON (BACKBONE_LOG_FORMAT=json): every line of their logs is an object naming its stage."""

from __future__ import annotations

import json
import os
import signal

import requests

from tests.helpers import wait_for
from tests.infra.pushing import SYSTEM, TOKEN, TOKEN_ENV, write_catalog

JOBS = {"sink", "processor", "kpi", "adapter", "lag-exporter"}


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def test_a_killed_stage_is_restarted_and_alerted(make_settings, stage_process, tmp_path):
    settings = make_settings(catalog_dir=write_catalog(tmp_path / "catalog"))
    up = stage_process(settings, "up", **{TOKEN_ENV: TOKEN, "BACKBONE_LOG_FORMAT": "json"})
    state_file = settings.run_dir / "supervisor.json"

    def state() -> dict:
        try:
            return json.loads(state_file.read_text())
        except (OSError, ValueError):
            return {}

    wait_for(lambda: len(state().get("processes", {})) == 6, 180, "the supervised processes", alive=(up,))
    assert set(state()["processes"]) == {"portal", "sink", "processor", "kpi", "lag-exporter", f"adapter {SYSTEM}"}
    prometheus, alertmanager = state()["prometheus"], state()["alertmanager"]

    def jobs_up() -> set[str]:
        answer = requests.get(f"{prometheus}/api/v1/query", params={"query": "up == 1"}, timeout=5).json()
        return {r["metric"]["job"] for r in answer["data"]["result"]}

    wait_for(lambda: jobs_up() == JOBS, 180, "every stage scraped by Prometheus", interval=1, alive=(up,))

    wait_for(lambda: _answers(state()["portal"] + "healthz"), 60, "the public portal", interval=1, alive=(up,))

    before = state()["processes"]["processor"]["pid"]
    os.kill(before, signal.SIGKILL)
    wait_for(
        lambda: (
            state()["processes"]["processor"]["restarts"] == 1 and state()["processes"]["processor"]["pid"] != before
        ),
        60,
        "the processor started again",
        alive=(up,),
    )

    def restart_alerts() -> list[dict]:
        alerts = requests.get(f"{alertmanager}/api/v2/alerts", timeout=5).json()
        return [a["labels"] for a in alerts if a["labels"]["alertname"] == "BackboneStageRestarted"]

    wait_for(lambda: restart_alerts(), 120, "BackboneStageRestarted at Alertmanager", interval=1, alive=(up,))
    assert [(a["stage"], a["severity"]) for a in restart_alerts()] == [("processor", "warning")]
    wait_for(lambda: jobs_up() == JOBS, 60, "the restarted processor scraped again", interval=1, alive=(up,))

    for name, stage, system in (("processor", "processor", ""), (f"adapter {SYSTEM}", "adapter", SYSTEM)):
        lines = [line for line in open(state()["processes"][name]["log"]).read().splitlines() if line.strip()]
        assert lines, f"{name} logged nothing"
        for line in lines:
            entry = json.loads(line)  # fails on any line that is not JSON
            assert (entry["stage"], entry["system"]) == (stage, system), line
            assert {"time", "level", "event_id", "logger", "message"} <= set(entry), line
