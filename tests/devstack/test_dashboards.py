"""The provisioned Grafana dashboards (devstack/dashboards.py): committed as generated, laid out and
wired the way Grafana needs (ids, grid, datasources that are provisioned, variables that exist), and
every SQL panel runs on a store made by the sink's own migrations with the KPI tables the sink
creates. Their PromQL runs against a real Prometheus in tests/infra/test_alerting.py."""

from __future__ import annotations

import json
import re

import clickhouse_connect
import pytest
import yaml

from backbone.settings import PROJECT_ROOT, load_settings
from contract.catalog import load_catalog
from contract.kpis import kpis_for, value_schema
from devstack import dashboards
from sinks import migrations
from sinks.kpi_tables import table_sql

PROVISIONING = PROJECT_ROOT / "infra" / "grafana" / "provisioning"
# Grafana's own variables and macros, which need no definition in the dashboard.
_BUILTIN = {"__rate_interval", "__interval", "__timeFilter", "__fromTime", "__toTime", "__interval_s"}
_VARIABLE = re.compile(r"\$\{?(\w+)")


def all_targets() -> list[tuple[str, dict, dict]]:
    """(dashboard file, panel, target) of every query of every dashboard."""
    return [
        (name, panel, target)
        for name in dashboards.DASHBOARDS
        for panel in json.loads(dashboards.render(name))["panels"]
        for target in panel.get("targets", [])
    ]


def grafana_sql(sql: str) -> str:
    """The SQL the ClickHouse plugin sends for a query with Grafana's macros, over the last 30 days."""
    sql = re.sub(r"\$__timeFilter\((\w+)\)", r"(\1 >= now() - INTERVAL 30 DAY AND \1 <= now())", sql)
    return sql.replace("$__fromTime", "(now() - INTERVAL 30 DAY)").replace("$__toTime", "now()")


def test_the_committed_dashboards_are_the_generated_ones():
    for name in dashboards.DASHBOARDS:
        committed = (dashboards.DASHBOARD_DIR / name).read_text()
        assert committed == dashboards.render(name), f"{name} is stale: run `python -m devstack.dashboards`"


def test_every_dashboard_is_wired_to_provisioned_datasources_and_laid_out_on_the_grid():
    provisioned = {
        source["uid"]: source["type"]
        for path in (PROVISIONING / "datasources").glob("*.yml")
        for source in yaml.safe_load(path.read_text())["datasources"]
    }
    uids = set()
    for name in dashboards.DASHBOARDS:
        board = json.loads(dashboards.render(name))
        assert board["uid"] not in uids and len(board["uid"]) <= 40
        uids.add(board["uid"])
        variables = {v["name"] for v in board["templating"]["list"]}
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: panel ids repeat"
        occupied: set[tuple[int, int]] = set()
        for panel in board["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= dashboards.WIDTH, f"{name}: {panel['title']} leaves the grid"
            cells = {
                (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
            }
            assert not cells & occupied, f"{name}: {panel['title']} overlaps another panel"
            occupied |= cells
            if panel["type"] == "row":
                continue
            assert panel["title"] and panel["targets"], f"{name}: a panel without title or query"
            source = panel["datasource"]
            assert provisioned.get(source["uid"]) == source["type"], f"{name}: {panel['title']}: {source}"
            for target in panel["targets"]:
                query = target.get("expr") or target.get("rawSql")
                unknown = set(_VARIABLE.findall(query)) - variables - _BUILTIN
                assert not unknown, f"{name}: {panel['title']} uses undefined variables {unknown}"
        for variable in board["templating"]["list"]:
            assert provisioned.get(variable["datasource"]["uid"]) == variable["datasource"]["type"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store as the sink makes it: migrations, then a table per KPI as its first message would."""
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path_factory.mktemp('dash')}/ch")
    catalog = load_catalog(PROJECT_ROOT / "catalog", PROJECT_ROOT / "schemas")
    migrations.migrate(client, catalog)
    for kpi in kpis_for(load_settings(), catalog):
        for statement in table_sql(kpi.table, value_schema(kpi)):
            client.command(statement)
    yield client
    client.close()


def test_every_sql_panel_runs_on_the_store(store):
    sql_targets = [(name, panel, t) for name, panel, t in all_targets() if "rawSql" in t]
    assert sql_targets, "the data dashboard has no SQL panel"
    failures = []
    for name, panel, target in sql_targets:
        try:
            store.query(grafana_sql(target["rawSql"]))
        except Exception as exc:  # noqa: BLE001 - every failing panel is listed, not only the first
            failures.append(f"{name}: {panel['title']}: {str(exc).splitlines()[0][:300]}")
    assert not failures, "\n".join(failures)


def test_a_broken_query_is_caught(store):
    """The check above can fail: a panel on a table that does not exist is reported."""
    with pytest.raises(Exception, match="(?i)unknown table|doesn't exist|does not exist"):
        store.query(grafana_sql("SELECT count() FROM kpi_licensing_no_such_table WHERE $__timeFilter(updated_at)"))
