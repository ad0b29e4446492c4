"""The alerting configuration, checked by the tools that run it: promtool (rule syntax and the rules'
unit tests in alerts_test.yml), amtool (Alertmanager routing and receivers). A missing binary fails:
scripts/setup.sh installs Debian's prometheus and prometheus-alertmanager."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace

import yaml

from backbone.settings import PROJECT_ROOT
from contract import working_hours as hours
from contract.catalog import load_catalog
from devstack.alert_rules import RULES_FILE, main, render_dir, working_hours_expr
from devstack.monitoring import find_binary

PROMETHEUS = PROJECT_ROOT / "infra" / "prometheus"
ALERTMANAGER = PROJECT_ROOT / "infra" / "alertmanager"
# promtool unit tests of the rules: alerts_test.yml (every minute), silence_test.yml (a day, every 5 minutes).
RULE_TESTS = ("alerts_test.yml", "silence_test.yml")


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
    # Every alert of alerts.yml has at least one case in RULE_TESTS (checked below), each run here.
    assert "SUCCESS" in run("promtool", "test", "rules", *RULE_TESTS)


def test_every_alert_has_a_unit_test():
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    alerts = {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}
    tested = {
        case["alertname"]
        for name in RULE_TESTS
        for test in yaml.safe_load((PROMETHEUS / name).read_text())["tests"]
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


def test_working_hours_series_follow_the_catalog(tmp_path):
    # The default (Mon-Fri 07:30-16:00 WIB) opens the window freshness_seconds after opening, rounded up to
    # a minute; a round-the-clock system is always inside; days map Monday=0 (Python) to Monday=1 (PromQL).
    catalog = load_catalog(PROJECT_ROOT / "catalog", PROJECT_ROOT / "schemas")
    licensing = catalog.system("sim-licensing")
    expr = working_hours_expr(licensing)
    assert "day_of_week(vector(time() + 25200)) >= 1 <= 5" in expr
    assert ">= 451 < 960" in expr
    assert working_hours_expr(catalog.system("sim-health")) == "vector(1)"
    odd = replace(licensing, working_hours=hours.parse({"days": "mon,wed-thu,sun", "from": "22:00", "to": "24:00"}))
    expr = working_hours_expr(odd)
    days = "(day_of_week(vector(time() + 25200)) >= 0 <= 1 or day_of_week(vector(time() + 25200)) >= 3 <= 4)"
    assert days in expr and ">= 1321 < 1440" in expr  # Sunday-Monday, Wednesday-Thursday
