"""The catalog's facts as Prometheus series, for the alert rules of infra/prometheus/alerts.yml.

Each departmental system promises a freshness (`freshness_seconds` in its catalog file) and owns
tables and topics. The rules join the stages' metrics with these series, so one rule covers every
system with its own threshold and labels (system, domain) for routing:

    backbone_catalog_system_info{system, domain, department}      1
    backbone_catalog_table_info{system, domain, table}             1
    backbone_catalog_freshness_slo_seconds{system, domain, table}  the system's freshness_seconds
    backbone_catalog_working_hours{system, domain}                 1 inside the system's working hours
                                                                   (catalog working_hours), from
                                                                   freshness_seconds after opening; absent
                                                                   outside them

The working-hours series is computed by Prometheus from its clock with PromQL's time functions on the
zone's fixed UTC offset: day_of_week() and hour() * 60 + minute() of vector(time() + offset). The
window opens freshness_seconds after opening time (rounded up to a minute): the first change of the
day has that long to arrive, so a system silent since the evening before alerts then, not at opening.

Regenerate after changing the catalog (a test compares the committed file with this output):

    .venv/bin/python -m devstack.alert_rules            # writes infra/prometheus/catalog_rules.yml
    .venv/bin/python -m devstack.alert_rules --check    # exit 1 when the committed file is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from backbone.settings import PROJECT_ROOT
from contract.catalog import Catalog, SourceSystem, load_catalog

RULES_FILE = PROJECT_ROOT / "infra" / "prometheus" / "catalog_rules.yml"
HEADER = (
    "# Generated from catalog/*.yaml by `python -m devstack.alert_rules`: do not edit by hand.\n"
    "# The catalog's facts as series (one per system and table), joined by the rules of alerts.yml.\n"
)


def _fact(name: str, value: int, labels: dict[str, str]) -> dict:
    return {"record": name, "expr": f"vector({value})", "labels": dict(labels)}  # a copy: no YAML anchors


def _ranges(values: list[int]) -> list[tuple[int, int]]:
    """Sorted numbers as runs: [1, 2, 3, 5] -> [(1, 3), (5, 5)]."""
    runs: list[tuple[int, int]] = []
    for value in values:
        if runs and runs[-1][1] == value - 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    return runs


def working_hours_expr(system: SourceSystem) -> str:
    """PromQL: 1 while `system` is inside its working hours (from freshness_seconds after opening,
    unless it works round the clock)."""
    hours = system.working_hours
    local = f"vector(time() + {hours.utc_offset_seconds})"
    conditions = []
    days = sorted((d + 1) % 7 for d in hours.days)  # Python: 0 = Monday; PromQL: 0 = Sunday
    if len(days) < 7:
        runs = [
            f"day_of_week({local}) == {a}" if a == b else f"day_of_week({local}) >= {a} <= {b}"
            for a, b in _ranges(days)
        ]
        conditions.append(" or ".join(runs))
    if hours.start_minute > 0 or hours.end_minute < 1440:  # not round the clock
        start = min(hours.start_minute + -(-system.freshness_seconds // 60), hours.end_minute)
        conditions.append(f"hour({local}) * 60 + minute({local}) >= {start} < {hours.end_minute}")
    return " and on () ".join(["vector(1)", *(f"({c})" for c in conditions)])


def rules_for(catalog: Catalog) -> dict:
    rules = []
    for system in sorted(catalog.systems, key=lambda s: s.system):
        owner = {"system": system.system, "domain": system.domain}
        rules.append(_fact("backbone_catalog_system_info", 1, {**owner, "department": system.department}))
        rules.append(
            {"record": "backbone_catalog_working_hours", "expr": working_hours_expr(system), "labels": dict(owner)}
        )
        for entity in system.entities:
            table = {**owner, "table": entity.table}
            rules.append(_fact("backbone_catalog_table_info", 1, table))
            rules.append(_fact("backbone_catalog_freshness_slo_seconds", system.freshness_seconds, table))
    return {"groups": [{"name": "backbone-catalog", "rules": rules}]}


def render(catalog: Catalog) -> str:
    return HEADER + yaml.safe_dump(rules_for(catalog), sort_keys=False, width=120)


def render_dir(catalog_dir: Path, schemas_dir: Path = PROJECT_ROOT / "schemas") -> str:
    return render(load_catalog(catalog_dir, schemas_dir))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.alert_rules", description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, default=PROJECT_ROOT / "catalog", help="catalog folder")
    parser.add_argument("--schemas", type=Path, default=PROJECT_ROOT / "schemas", help="schemas folder")
    parser.add_argument("--output", type=Path, default=RULES_FILE, help="rules file to write")
    parser.add_argument("--check", action="store_true", help="only compare: exit 1 when the file differs")
    args = parser.parse_args(argv)
    text = render_dir(args.catalog, args.schemas)
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run python -m devstack.alert_rules", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
