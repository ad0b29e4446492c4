"""The simulated public-works office and the simulated budget through the real pipeline (Kafka,
registry, processor, sink): every package finds the budget line it names (the processor's reference
check passes, no `budget_line_id:ref` flag) and ready_infrastructure_budget shows each with its line."""

from __future__ import annotations

from datetime import UTC, datetime

from simulators.simulate import run_simulators
from tests.fakes import freeze
from tests.helpers import count, wait_for

# Per system: the budget's first 800 changes draft, amend and enact the fiscal year of START (every
# works line among them); the packages of that year's first months are planned for it. A fixed start
# (the simulators' wall clock), as from October packages are planned for the next year.
CHANGES = 800
START = datetime(2026, 1, 12, 3, 0, tzinfo=UTC)  # a Monday, 10:00 in Jakarta
CHANGE_LOGS = ("budget_budget_line", "budget_realisation", "infrastructure_project")


def test_every_project_finds_its_budget_line_through_the_pipeline(pipeline_settings, stage_process, monkeypatch):
    freeze(monkeypatch, START)
    systems = ["sim-regional-budget", "sim-public-works"]
    sent = run_simulators(pipeline_settings, systems, rate=0, count=CHANGES, bad_ratio=0, serve_metrics=False)
    assert sent == {s: CHANGES for s in systems}
    # A package read before its line waits for it (up to 60 s here) instead of being flagged.
    processor = stage_process(pipeline_settings, "processor", BACKBONE_PROCESSOR_REFERENCE_WAIT_SECONDS="60")
    sink = stage_process(pipeline_settings, "sink")
    port = sink.env["BACKBONE_QUERY_PORT"]

    def stored() -> int:
        return sum(max(0, count(port, f"SELECT count() FROM {t} FINAL")) for t in CHANGE_LOGS)

    wait_for(lambda: stored() >= 2 * CHANGES, 300, "every change stored", alive=(processor, sink))
    state = "infrastructure_project_state FINAL"
    projects = count(port, f"SELECT count() FROM {state}")
    assert projects > 50
    assert count(port, f"SELECT count() FROM {state} WHERE has(dq_flags, 'budget_line_id:ref')") == 0
    assert count(port, "SELECT count() FROM ready_infrastructure_budget") == projects
    matched = (
        "SELECT count() FROM ready_infrastructure_budget WHERE line_known AND department_code = 'DPUPR' "
        "AND activity_code LIKE '1.03.%' AND allocation > 0 AND line_projects > 0"
    )
    assert count(port, matched) == projects
