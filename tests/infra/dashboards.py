"""The dashboards' PromQL against a real Prometheus scraping running stages: every query is accepted
by Prometheus and every metric it names is one the stages declare on their metrics endpoints (a
labelled metric is declared before its first sample) or one the catalog's recording rules write."""

from __future__ import annotations

import json
import re
from typing import Any

import requests

from devstack import dashboards

_METRIC = re.compile(r"(?<![\w:$])(backbone_[a-z0-9_]+)\b")
_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$stage": ".*", "$system": ".*"}


def promql_queries() -> list[tuple[str, str]]:
    """(where, query) of every Prometheus target and variable of every dashboard, variables filled."""
    found = []
    for name in dashboards.DASHBOARDS:
        board = json.loads(dashboards.render(name))
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                if "expr" in target:
                    found.append((f"{name}: {panel['title']}", target["expr"]))
        for variable in board["templating"]["list"]:
            inner = re.fullmatch(r"label_values\((\w+),\s*\w+\)", variable["query"]["query"])
            assert inner, f"{name}: variable {variable['name']}: only label_values(metric, label) is checked"
            found.append((f"{name}: variable {variable['name']}", inner.group(1)))
    for old, new in _VARIABLES.items():
        found = [(where, query.replace(old, new)) for where, query in found]
    return found


def declared_names(metrics_urls: list[str]) -> set[str]:
    """Sample names of every metric the processes declare (`# TYPE` lines), with a counter's `_total`
    and a histogram's `_bucket`, `_sum` and `_count`."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}
    names: set[str] = set()
    for url in metrics_urls:
        for line in requests.get(url, timeout=10).text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                names.add(name)
                names.update(name + suffix for suffix in suffixes.get(kind, ()))
    return names


def promql_problems(prometheus_url: str, exported: set[str]) -> list[str]:
    """Queries Prometheus refuses, and metric names nothing exports."""
    problems = []
    for where, query in promql_queries():
        answer: Any = requests.get(f"{prometheus_url}/api/v1/query", params={"query": query}, timeout=10).json()
        if answer.get("status") != "success":
            problems.append(f"{where}: Prometheus refuses {query!r}: {answer.get('error')}")
        for metric in _METRIC.findall(query):
            if metric not in exported:
                problems.append(f"{where}: {metric} is not exported")
    return problems
