"""The alerting configuration, checked by the tools that run it: promtool (rule syntax and the rules'
unit tests in alerts_test.yml), amtool (Alertmanager routing and receivers). A missing binary fails:
scripts/setup.sh installs Debian's prometheus and prometheus-alertmanager."""

from __future__ import annotations

import shutil
import subprocess

import yaml

from backbone.settings import PROJECT_ROOT
from devstack.alert_rules import RULES_FILE, main, render_dir
from devstack.monitoring import find_binary

PROMETHEUS = PROJECT_ROOT / "infra" / "prometheus"
ALERTMANAGER = PROJECT_ROOT / "infra" / "alertmanager"


def run(tool: str, *args: str) -> str:
    binary = shutil.which(tool)
    assert binary, f"{tool} is not installed: run scripts/setup.sh (Debian's prometheus / prometheus-alertmanager)"
    proc = subprocess.run([binary, *args], capture_output=True, text=True, cwd=PROMETHEUS, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{tool} {' '.join(args)} failed:\n{output}"
    return output


def test_rule_files_are_valid():
    out = run("promtool", "check", "rules", "alerts.yml", "catalog_rules.yml")
    assert "SUCCESS" in out


def test_rules_pass_their_unit_tests():
    # Every alert of alerts.yml has at least one case in alerts_test.yml (checked below), each run here.
    assert "SUCCESS" in run("promtool", "test", "rules", "alerts_test.yml")


def test_every_alert_has_a_unit_test():
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    alerts = {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}
    tested = {
        case["alertname"]
        for test in yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts - tested == set(), "alerts without a firing test case"


def test_prometheus_config_is_valid():
    assert "SUCCESS" in run("promtool", "check", "config", "prometheus.yml")


def test_alertmanager_config_is_valid():
    assert "SUCCESS" in run("amtool", "check-config", str(ALERTMANAGER / "alertmanager.yml"))


def test_committed_catalog_rules_are_the_generated_ones():
    assert RULES_FILE.read_text() == render_dir(PROJECT_ROOT / "catalog"), (
        "infra/prometheus/catalog_rules.yml is stale: run .venv/bin/python -m devstack.alert_rules"
    )


def test_generator_check_mode_reports_a_stale_file(tmp_path, capsys):
    stale = tmp_path / "catalog_rules.yml"
    stale.write_text("groups: []\n")
    assert main(["--output", str(stale), "--check"]) == 1
    assert "is stale" in capsys.readouterr().err
    assert main(["--output", str(stale)]) == 0
    assert main(["--output", str(stale), "--check"]) == 0
    text = stale.read_text()
    # One freshness promise per table, with the system's own value from its catalog file.
    assert "record: backbone_catalog_freshness_slo_seconds" in text and "vector(300)" in text


def test_the_servers_are_installed():
    # The alerting integration test runs both; find_binary raises (naming `make setup`) when one is missing.
    assert find_binary("prometheus") and find_binary("prometheus-alertmanager", "alertmanager")
