"""The provisioned Grafana dashboards, written from here into infra/grafana/dashboards/ (like the
catalog's alert rules: `python -m devstack.dashboards`; a test fails while a committed file is
stale). Three dashboards:
  backbone          the pipeline per stage: liveness, throughput, dead letters, lag, freshness;
  backbone-systems  one departmental system at a time ($system): capture, checkpoints, silence
                    against its freshness target, data quality, reconciliation with its source;
  backbone-data     the data itself through the ClickHouse datasource: KPIs, the quality
                    scorecard, reconciliation rows.
Every PromQL and SQL query here is run by tests/devstack/test_dashboards.py against what the
stages export and what the store holds, so a renamed metric or table breaks the build, not a panel."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from backbone.settings import PROJECT_ROOT

DASHBOARD_DIR = PROJECT_ROOT / "infra" / "grafana" / "dashboards"
PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}
CLICKHOUSE = {"type": "grafana-clickhouse-datasource", "uid": "clickhouse"}
SCHEMA_VERSION = 39
WIDTH = 24


def _targets(datasource: dict[str, str], queries: list[tuple[str, str]]) -> list[dict[str, Any]]:
    targets = []
    for ref, (query, legend) in zip("ABCDEFGH", queries, strict=False):
        if datasource is PROMETHEUS:
            targets.append({"datasource": datasource, "refId": ref, "expr": query, "legendFormat": legend})
        else:  # the ClickHouse plugin: raw SQL, shown as a table
            targets.append(
                {
                    "datasource": datasource,
                    "refId": ref,
                    "editorType": "sql",
                    "format": 1,
                    "queryType": "table",
                    "rawSql": query,
                }
            )
    return targets


def panel(
    kind: str,
    title: str,
    queries: list[tuple[str, str]],
    unit: str = "short",
    description: str = "",
    datasource: dict[str, str] = PROMETHEUS,
    width: int = 12,
    height: int = 8,
) -> dict[str, Any]:
    """One panel; ids and positions are given when the dashboard is laid out."""
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": datasource,
        "targets": _targets(datasource, queries),
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "gridPos": {"w": width, "h": height},
    }


def row(title: str) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "gridPos": {"w": WIDTH, "h": 1}}


def _layout(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Left to right, top to bottom, a new line at each row header or when the line is full."""
    x = y = line_height = 0
    out = []
    for number, item in enumerate(panels, start=1):
        w, h = item["gridPos"]["w"], item["gridPos"]["h"]
        if item["type"] == "row" or x + w > WIDTH:
            x, y, line_height = 0, y + line_height, 0
        out.append({**item, "id": number, "gridPos": {"x": x, "y": y, "w": w, "h": h}})
        x, line_height = x + w, max(line_height, h)
        if item["type"] == "row":
            x, y, line_height = 0, y + h, 0
    return out


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: list[dict[str, Any]],
    variables: list[dict[str, Any]],
    refresh: str = "30s",
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["backbone"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "refresh": refresh,
        "schemaVersion": SCHEMA_VERSION,
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": variables},
        "annotations": {"list": []},
        "links": [{"title": "Backbone", "type": "dashboards", "tags": ["backbone"], "asDropdown": True}],
        "panels": _layout(panels),
    }


def _variable(name: str, label: str, query: str, multi: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": PROMETHEUS,
        "query": {"query": query, "refId": "StandardVariableQuery"},
        "definition": query,
        "refresh": 2,
        "includeAll": multi,
        "multi": multi,
        "sort": 1,
    }


def _rate(metric: str, by: str, selector: str = "") -> str:
    return f"sum by ({by}) (rate({metric}{selector}[$__rate_interval]))"


def _quantile(q: float, metric: str, by: str) -> str:
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket[$__rate_interval])))"


def pipeline() -> dict[str, Any]:
    stage = '{stage=~"$stage"}'
    panels = [
        row("Liveness"),
        panel(
            "stat",
            "Stages up",
            [("min by (stage) (backbone_up" + stage + ")", "{{stage}}")],
            width=8,
            description="1 while the stage's process runs; see the heartbeat for a stuck loop.",
        ),
        panel(
            "timeseries",
            "Seconds since each work loop's heartbeat",
            [
                (
                    "max by (stage, system) (time() - backbone_heartbeat_timestamp_seconds" + stage + ")",
                    "{{stage}} {{system}}",
                )
            ],
            unit="s",
            width=16,
            description="Beats from the work loop itself: a climbing line is a stuck stage (BackboneStageStuck).",
        ),
        row("Throughput"),
        panel(
            "timeseries",
            "Events in per stage",
            [(_rate("backbone_events_in_total", "stage", stage), "{{stage}}")],
            unit="ops",
        ),
        panel(
            "timeseries",
            "Events out per stage",
            [(_rate("backbone_events_out_total", "stage", stage), "{{stage}}")],
            unit="ops",
        ),
        panel(
            "timeseries",
            "Dead letters per stage and reason",
            [(_rate("backbone_events_failed_total", "stage, reason", stage), "{{stage}} {{reason}}")],
            unit="ops",
        ),
        panel(
            "timeseries",
            "Consumer lag per topic and partition",
            [
                (
                    "sum by (stage, topic, partition) (backbone_consumer_lag_messages" + stage + ")",
                    "{{stage}} {{topic}}[{{partition}}]",
                )
            ],
        ),
        panel(
            "timeseries",
            "Every consumer group's lag, as the broker sees it (lag-exporter)",
            [("sum by (group, topic) (backbone_consumer_group_lag_messages)", "{{group}} {{topic}}")],
            width=24,
        ),
        row("Latency"),
        panel(
            "timeseries",
            "Freshness p50 / p99 (source change to stored row)",
            [
                (
                    _quantile(0.5, "backbone_freshness_seconds", "table"),
                    "p50 {{table}}",
                ),
                (
                    _quantile(0.99, "backbone_freshness_seconds", "table"),
                    "p99 {{table}}",
                ),
            ],
            unit="s",
        ),
        panel(
            "timeseries",
            "Processing latency p99",
            [
                (
                    _quantile(0.99, "backbone_processing_latency_seconds", "stage"),
                    "{{stage}}",
                )
            ],
            unit="s",
        ),
        row("Sink and retries"),
        panel(
            "timeseries",
            "Sink batch rows (mean, p99)",
            [
                (
                    "sum by (table) (rate(backbone_sink_batch_rows_sum[$__rate_interval])) / "
                    "sum by (table) (rate(backbone_sink_batch_rows_count[$__rate_interval]))",
                    "mean {{table}}",
                ),
                (
                    _quantile(0.99, "backbone_sink_batch_rows", "table"),
                    "p99 {{table}}",
                ),
            ],
            width=8,
        ),
        panel(
            "timeseries",
            "Sink insert duration p99",
            [
                (
                    _quantile(0.99, "backbone_sink_insert_seconds", "table"),
                    "{{table}}",
                )
            ],
            unit="s",
            width=8,
        ),
        panel(
            "timeseries",
            "Retries per stage and operation",
            [(_rate("backbone_retries_total", "stage, what", stage), "{{stage}} {{what}}")],
            unit="ops",
            width=8,
        ),
    ]
    variables = [_variable("stage", "Stage", "label_values(backbone_up, stage)")]
    return dashboard(
        "backbone-pipeline",
        "Backbone pipeline",
        "Every stage: liveness, throughput, dead letters, lag, freshness and the sink's batches.",
        panels,
        variables,
    )


def systems() -> dict[str, Any]:
    system = '{system=~"$system"}'
    panels = [
        row("Capture"),
        panel(
            "timeseries",
            "Changes captured per system and entity",
            [(_rate("backbone_adapter_captured_total", "system, entity", system), "{{system}} {{entity}}")],
            unit="ops",
        ),
        panel(
            "timeseries",
            "Source records refused by the adapter",
            [(_rate("backbone_adapter_rejected_total", "system, reason", system), "{{system}} {{reason}}")],
            unit="ops",
        ),
        panel(
            "timeseries",
            "Seconds since the adapter's last checkpoint",
            [("max by (system) (time() - backbone_adapter_checkpoint_timestamp_seconds" + system + ")", "{{system}}")],
            unit="s",
            width=8,
        ),
        panel(
            "timeseries",
            "Oldest change captured, not yet acknowledged",
            [("max by (system) (backbone_adapter_source_lag_seconds" + system + ")", "{{system}}")],
            unit="s",
            width=8,
        ),
        panel(
            "timeseries",
            "Silence: seconds since the last change, against the freshness target",
            [
                (
                    "max by (system) (time() - backbone_source_last_change_timestamp_seconds" + system + ")",
                    "{{system}}",
                ),
                ("max by (system) (backbone_catalog_freshness_slo_seconds" + system + ")", "target {{system}}"),
            ],
            unit="s",
            width=8,
            description="Alerts only inside the system's working hours (catalog `working_hours`).",
        ),
        row("Data quality"),
        panel(
            "stat",
            "Quality score (dq_scorecard)",
            [("max by (system) (backbone_dq_score" + system + ")", "{{system}}")],
            width=8,
        ),
        panel(
            "timeseries",
            "Records per outcome",
            [(_rate("backbone_dq_records_total", "system, outcome", system), "{{system}} {{outcome}}")],
            unit="ops",
            width=8,
        ),
        panel(
            "table",
            "Failing rules (last hour)",
            [
                (
                    "topk(20, sum by (system, entity, rule, severity) "
                    "(increase(backbone_dq_rule_failures_total" + system + "[1h])))",
                    "{{rule}}",
                )
            ],
            width=8,
        ),
        panel(
            "timeseries",
            "Timeliness (share stored within the freshness target)",
            [("min by (system, entity) (backbone_dq_timeliness_ratio" + system + ")", "{{system}} {{entity}}")],
            unit="percentunit",
        ),
        panel(
            "timeseries",
            "Reconciliation: rows differing from the source",
            [
                (
                    "max by (system, entity) (backbone_reconciliation_difference_rows" + system + ")",
                    "{{system}} {{entity}}",
                )
            ],
        ),
    ]
    variables = [_variable("system", "System", "label_values(backbone_catalog_freshness_slo_seconds, system)")]
    return dashboard(
        "backbone-systems",
        "Backbone systems",
        "One departmental system at a time: capture, checkpoints, silence, quality, reconciliation.",
        panels,
        variables,
    )


def _sql(title: str, sql: str, description: str = "", width: int = 12, unit: str = "short") -> dict[str, Any]:
    return panel(
        "table", title, [(sql, "")], unit=unit, description=description, datasource=CLICKHOUSE, width=width, height=9
    )


def data() -> dict[str, Any]:
    panels = [
        row("Services (KPI tables, computed in the stream)"),
        _sql(
            "Open permit applications per kecamatan",
            "SELECT kecamatan_name, sum(count) AS open, sumIf(count, overdue = 'true') AS overdue\n"
            "FROM kpi_licensing_open_permits FINAL\nGROUP BY kecamatan_name ORDER BY open DESC",
        ),
        _sql(
            "Permits decided within their service level, per month",
            "SELECT window_start AS month, permit_type, count AS decided, share\n"
            "FROM kpi_licensing_decided_within_sla FINAL\nWHERE $__timeFilter(window_start)\n"
            "ORDER BY month, permit_type",
        ),
        _sql(
            "Budget realisation per department and month (Rupiah)",
            "SELECT department_code, month, sum(sum) AS realised\nFROM kpi_budget_realisation FINAL\n"
            "GROUP BY department_code, month ORDER BY department_code, month",
        ),
        _sql(
            "Open complaints per department",
            "SELECT department_responsible, sum(count) AS open, sumIf(count, overdue = 'true') AS overdue\n"
            "FROM kpi_participation_open_complaints FINAL\nGROUP BY department_responsible ORDER BY open DESC",
        ),
        row("Data quality"),
        _sql(
            "Quality score per system (dq_scorecard)",
            "SELECT * FROM dq_scorecard ORDER BY score",
            width=24,
            description="One score per system; the formula is in the view's comment and the README.",
        ),
        _sql(
            "Reconciliation with the sources (latest check per entity)",
            "SELECT system, entity, argMax(source_rows, checked_at) AS source_rows,\n"
            "  argMax(store_rows, checked_at) AS store_rows, argMax(missing, checked_at) AS missing,\n"
            "  argMax(extra, checked_at) AS extra, max(checked_at) AS last_checked\n"
            "FROM reconciliation\nGROUP BY system, entity ORDER BY missing + extra DESC",
            width=24,
        ),
    ]
    return dashboard(
        "backbone-data",
        "Backbone data",
        "The figures themselves, read from ClickHouse: KPIs, data quality, reconciliation.",
        panels,
        [],
        refresh="1m",
    )


DASHBOARDS = {"backbone.json": pipeline, "backbone-systems.json": systems, "backbone-data.json": data}


def render(name: str) -> str:
    return json.dumps(DASHBOARDS[name](), indent=2, ensure_ascii=False) + "\n"


def write(folder: Path = DASHBOARD_DIR) -> list[Path]:
    written = []
    for name in DASHBOARDS:
        target = folder / name
        target.write_text(render(name))
        written.append(target)
    return written


if __name__ == "__main__":
    for path in write(Path(sys.argv[1]) if len(sys.argv) > 1 else DASHBOARD_DIR):
        print(path)
