"""`backbone quality`: the data-quality scorecard (sinks/quality_views.py) read through the running
sink's read-only query endpoint, as one table per system with its entities and its worst rules
first, or (--json) the same figures for machines."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from backbone.errors import UserError
from sinks.quality_views import TZ, WINDOW_DAYS

Query = Callable[[str], list[dict[str, Any]]]
WINDOW = f"day > toDate(now(), {TZ}) - {WINDOW_DAYS}"
SCORECARD = (
    "SELECT system, since, received, stored, rejected, flagged, validity, flag_free, timeliness, completeness, score "
    "FROM dq_scorecard ORDER BY isNull(score), score, system"
)
ENTITIES = (
    "SELECT e.system AS system, e.entity AS entity, received, rejected, flagged, timeliness, "
    "c.field AS least_complete_field, c.ratio AS least_complete_ratio "
    "FROM (SELECT system, entity, sum(received) AS received, sum(rejected) AS rejected, sum(flagged) AS flagged, "
    f"if(sum(stored) = 0, NULL, round(sum(timely) / sum(stored), 4)) AS timeliness FROM dq_entity_daily WHERE {WINDOW} "
    "GROUP BY system, entity) AS e "
    "LEFT JOIN (SELECT system, entity, argMin(field, r) AS field, min(r) AS ratio FROM ("
    "SELECT system, entity, field, round(sum(non_null) / sum(records), 4) AS r FROM dq_completeness_daily "
    f"WHERE {WINDOW} AND records > 0 GROUP BY system, entity, field) GROUP BY system, entity) AS c "
    "ON c.system = e.system AND c.entity = e.entity ORDER BY system, entity"
)
RULES = (
    "SELECT system, entity, severity, rule, sum(records) AS records FROM dq_rule_daily "
    f"WHERE {WINDOW} GROUP BY system, entity, severity, rule ORDER BY system, records DESC, severity, rule, entity"
)
# Scans the change logs of the window (see dq_duplicates_daily): the one query that is not over counters.
DUPLICATES = (
    "SELECT system, entity, sum(duplicates_dropped) AS duplicates FROM dq_duplicates_daily "
    f"WHERE {WINDOW} GROUP BY system, entity"
)
_COUNTS = ("received", "stored", "rejected", "flagged", "records", "duplicates")


def endpoint_query(url: str, token: str, timeout: float) -> Query:
    """Rows of a statement run by the query endpoint (`backbone sql`'s way), as dicts."""

    def query(sql: str) -> list[dict[str, Any]]:
        try:
            resp = requests.post(
                url,
                params={"default_format": "JSON"},
                data=sql.encode(),
                headers={"Authorization": f"Bearer {token}"},
                timeout=timeout,
            )
        except requests.ConnectionError:
            raise UserError(
                f"the query endpoint {url} does not answer", hint="is the demo or the sink running?"
            ) from None
        if resp.status_code != 200:
            raise UserError(f"scorecard query failed (HTTP {resp.status_code}): {resp.text.strip()}")
        return resp.json()["data"]

    return query


def _numbers(row: dict[str, Any]) -> dict[str, Any]:
    """64-bit integers come quoted in ClickHouse's JSON: counts back to int."""
    return {k: int(v) if k in _COUNTS and v is not None else v for k, v in row.items()}


def collect(query: Query) -> dict[str, Any]:
    """The scorecard of every system (worst score first), each with its entities and rules (worst first)."""
    systems = [_numbers(r) for r in query(SCORECARD)]
    entities = [_numbers(r) for r in query(ENTITIES)]
    rules = [_numbers(r) for r in query(RULES)]
    duplicates = {(d["system"], d["entity"]): d["duplicates"] for d in map(_numbers, query(DUPLICATES))}
    for e in entities:
        e["duplicates_dropped"] = duplicates.get((e["system"], e["entity"]), 0)
    for system in systems:
        name = system["system"]
        system["entities"] = [{k: v for k, v in e.items() if k != "system"} for e in entities if e["system"] == name]
        system["rules"] = [{k: v for k, v in r.items() if k != "system"} for r in rules if r["system"] == name]
    return {"window_days": WINDOW_DAYS, "since": systems[0]["since"] if systems else None, "systems": systems}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def render(report: dict[str, Any]) -> Group:
    parts: list[Any] = [
        Text(f"Data quality over the last {report['window_days']} days (since {report['since']})", "bold")
    ]
    silent = [s["system"] for s in report["systems"] if s["score"] is None]
    for s in report["systems"]:
        if s["score"] is None:
            continue
        score = f"score {s['score']:.1f}"
        title = (
            f"{s['system']}: {score} · received {s['received']:,}, rejected {s['rejected']:,}, flagged "
            f"{s['flagged']:,} · validity {_pct(s['validity'])}, timeliness {_pct(s['timeliness'])}, "
            f"completeness {_pct(s['completeness'])}"
        )
        parts.append(Text(""))
        parts.append(Text(title, "bold"))
        if s["entities"]:
            table = Table(
                "entity",
                "received",
                "rejected",
                "flagged",
                "duplicates dropped",
                "timeliness",
                "least complete field",
                header_style="bold",
            )
            for e in s["entities"]:
                field = (
                    "-"
                    if e["least_complete_field"] in (None, "")
                    else (f"{e['least_complete_field']} {_pct(e['least_complete_ratio'])}")
                )
                table.add_row(
                    e["entity"] or "(adapter)",
                    f"{e['received']:,}",
                    f"{e['rejected']:,}",
                    f"{e['flagged']:,}",
                    f"{e['duplicates_dropped']:,}",
                    _pct(e["timeliness"]),
                    field,
                )
            parts.append(table)
        if s["rules"]:
            table = Table("rule (worst first)", "severity", "entity", "records", header_style="bold")
            for r in s["rules"]:
                table.add_row(r["rule"], r["severity"], r["entity"] or "(adapter)", f"{r['records']:,}")
            parts.append(table)
    if silent:
        parts += [Text(""), Text(f"no records in the window: {', '.join(silent)}", "bold")]
    return Group(*parts)


def show(query: Query, console: Console, as_json: bool = False) -> dict[str, Any]:
    report = collect(query)
    if as_json:
        import json

        console.file.write(json.dumps(report, indent=2, default=str) + "\n")
    else:
        console.print(render(report))
    return report
