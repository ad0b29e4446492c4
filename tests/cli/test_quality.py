"""`backbone quality` on the scripted run of tests/sinks/quality_store.py, read as the command reads
it: through the sink's read-only query endpoint (token, SQL guard, readonly=1)."""

from __future__ import annotations

import json

import clickhouse_connect
import pytest
from rich.console import Console
from typer.testing import CliRunner

from backbone import settings as settings_module
from backbone.settings import load_settings
from cli.main import app
from tests.sinks import quality_store as run
from tests.sinks.quality_store import EXPECTED

TOKEN = "quality-test-token"


@pytest.fixture(scope="module")
def query_port(tmp_path_factory):
    from sinks.query_server import QueryServer

    run_dir = tmp_path_factory.mktemp("quality-cli")
    dsn = f"chdb://{run_dir}/ch"
    writer = clickhouse_connect.get_client(dsn=dsn)
    run.build(writer)
    settings = load_settings(run_dir=run_dir, query_token=TOKEN)
    reader = clickhouse_connect.get_client(dsn=dsn)
    server = QueryServer(reader, settings)
    port = server.start()
    try:
        yield port
    finally:
        server.stop()
        # chDB serves one folder per process at a time: the next module's store opens only after this.
        reader.close()
        writer.close()


def quality(port, monkeypatch, *args):
    monkeypatch.setenv("BACKBONE_QUERY_PORT", str(port))
    monkeypatch.setenv("BACKBONE_QUERY_TOKEN", TOKEN)
    settings_module.get_settings.cache_clear()
    # A wide console whatever the terminal (or none, under xdist): the table's lines are not wrapped.
    monkeypatch.setattr("cli.main.out", Console(width=200))
    try:
        result = CliRunner().invoke(app, ["quality", *args])
    finally:
        settings_module.get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    return result.output


def test_json_has_the_hand_computed_figures(query_port, monkeypatch):
    report = json.loads(quality(query_port, monkeypatch, "--json"))
    systems = {s["system"]: s for s in report["systems"]}
    assert len(systems) == 7 and report["window_days"] == 7
    for name, (received, stored, rejected, flagged, *_, score) in EXPECTED["scorecard"].items():
        s = systems[name]
        assert (s["received"], s["stored"], s["rejected"], s["flagged"], s["score"]) == (
            received,
            stored,
            rejected,
            flagged,
            score,
        )
    # worst score first, silent systems last
    assert [s["system"] for s in report["systems"][:2]] == ["sim-health", "sim-licensing"]
    rules = [(r["severity"], r["rule"], r["records"]) for r in systems["sim-licensing"]["rules"]]
    assert rules[0] == ("flag", "investment_value:max", 3)  # the worst rule first
    assert {(s, r): n for s, r, n in rules} == EXPECTED["rules"]
    [permits] = [e for e in systems["sim-licensing"]["entities"] if e["entity"] == "permit_application"]
    # 8 received (7 on D1, 1 on D2); rejection_reason: 1 of 5 rows not deleted in the window
    assert (permits["received"], permits["rejected"], permits["flagged"], permits["duplicates_dropped"]) == (8, 2, 3, 1)
    assert (permits["least_complete_field"], permits["least_complete_ratio"]) == ("rejection_reason", 0.2)


def test_table_per_system_with_the_worst_rules_first(query_port, monkeypatch):
    text = quality(query_port, monkeypatch)
    assert "sim-licensing: score 61.8" in text
    assert "sim-health: score 0.0" in text
    assert "no records in the window: sim-complaints, sim-education," in text
    licensing = text[text.index("sim-licensing: score") :]
    assert licensing.index("investment_value:max") < licensing.index("decided_at:after")
    assert "rejection_reason 20.0 %" in licensing
