"""What each page shows, assembled from the datasets (no HTML here: portal/templates renders it).
Every figure carries its provenance: the systems it comes from, their last change and freshness,
and the dataset it is published in."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from portal.datasets import BY_SLUG, SERVICES, Dataset, datasets_of
from portal.store import PublicStore
from portal.suppression import safe_total

MAX_TABLE_ROWS = 60
RUNNING = ("CONTRACTED", "IN_PROGRESS")
BUDGET_LEVELS = ("total", "department", "programme", "activity", "account")
BUDGET_KEYS = ("department_code", "programme_code", "activity_code", "account_code")


class NotFound(LookupError):
    """A page for something that does not exist (an unknown code or value)."""


HEADLINE_DATASETS = (
    "licensing-decided-this-month",
    "budget-absorption",
    "complaints-summary",
    "health-beds",
    "education-enrolment",
    "infrastructure-projects",
    "village-not-reported",
    "village-funds",
)
# Shown on the home page, or whole in a service's over-time table: not again as a table below it.
NOT_TABLED = (
    "complaints-summary",
    "licensing-decided-this-month",
    "complaints-received-monthly",
    "health-visits-monthly",
)
REGION_DATASETS = (
    "licensing-open-permits",
    "infrastructure-by-kecamatan",
    "education-enrolment",
    "health-visits",
    "village-funds",
    "village-not-reported",
    "infrastructure-projects",
    "village-spending-monthly",
)


async def prefetch(store: PublicStore, slugs: tuple[str, ...]) -> None:
    """Ask the store for a page's datasets at once (the query endpoint answers a few in parallel)."""
    await asyncio.gather(store.freshness(), *(store.raw_rows(BY_SLUG[s]) for s in slugs))


async def provenance(store: PublicStore, dataset: Dataset) -> dict[str, Any]:
    fresh = await store.freshness()
    rows = [fresh[t] for t in dataset.sources if t in fresh]
    changes = [r["last_change"] for r in rows if r["last_change"].year > 1970]
    stored = [r["last_stored"] for r in rows if r["last_stored"].year > 1970]
    return {
        "dataset": dataset,
        "systems": sorted({r["system_title"] for r in rows}),
        "last_change": max(changes, default=None),
        "last_stored": max(stored, default=None),
    }


def _latest(rows: list[dict[str, Any]], key: str) -> Any:
    return max((r[key] for r in rows), default=None)


async def headlines(store: PublicStore, min_cell: int) -> list[dict[str, Any]]:
    """One headline figure per service (value, its kind, label key, dataset)."""
    out: list[dict[str, Any]] = []
    await prefetch(store, HEADLINE_DATASETS)

    async def add(service: str, slug: str, value: Any, kind: str, label: str, extra: Any = None) -> None:
        dataset = BY_SLUG[slug]
        out.append(
            {
                "service": service,
                "value": value,
                "kind": kind,
                "label": label,
                "extra": extra,
                "provenance": await provenance(store, dataset),
            }
        )

    # This month's decisions as the stream counts them (KPI licensing.decided_within_sla): all types.
    month = [r for r in await store.rows(BY_SLUG["licensing-decided-this-month"]) if r["permit_type"] == ""]
    decided = month[0]["decided"] if month else 0
    within = month[0]["decided_within_sla"] if month else 0
    share = Decimal(within * 100) / decided if decided else None
    await add("licensing", "licensing-decided-this-month", share, "pct", "h_licensing", {"text": f"{within}/{decided}"})

    budget = await store.rows(BY_SLUG["budget-absorption"], {"level": "total"})
    year = _latest(budget, "fiscal_year")
    now = datetime.now(UTC)
    month = now.month if year == now.year else 12
    total = [r for r in budget if r["fiscal_year"] == year and r["month"] == month]
    await add("budget", "budget-absorption", total[0]["absorption_pct"] if total else None, "pct", "h_budget")

    summary = await store.rows(BY_SLUG["complaints-summary"])
    s = summary[0] if summary else {}
    await add(
        "complaints",
        "complaints-summary",
        s.get("open"),
        "int",
        "h_complaints",
        {"value": s.get("first_response_hours_median"), "label": "h_complaints_median"},
    )

    beds = [r for r in await store.rows(BY_SLUG["health-beds"]) if r["level"] == "hospital"]
    occupied, total_beds = sum(r["beds_occupied"] for r in beds), sum(r["beds_total"] for r in beds)
    await add("health", "health-beds", Decimal(occupied * 100) / total_beds if total_beds else None, "pct", "h_health")

    enrolment = await store.rows(BY_SLUG["education-enrolment"])
    school_year = _latest(enrolment, "school_year")
    enrolled = safe_total([r["enrolled"] for r in enrolment if r["school_year"] == school_year], min_cell)
    label = next((r["year_label"] for r in enrolment if r["school_year"] == school_year), "")
    await add("education", "education-enrolment", enrolled, "int", "h_education", {"text": label})

    projects = [r for r in await store.rows(BY_SLUG["infrastructure-projects"]) if r["status"] in RUNNING]
    on_time = sum(not r["behind_schedule"] for r in projects)
    await add(
        "infrastructure",
        "infrastructure-projects",
        Decimal(on_time * 100) / len(projects) if projects else None,
        "pct",
        "h_infrastructure",
        {"text": f"{on_time}/{len(projects)}"},
    )

    missing = len(await store.rows(BY_SLUG["village-not-reported"]))
    desa = len({r["village_code"] for r in await store.rows(BY_SLUG["village-funds"])}) or 419
    await add("village", "village-not-reported", desa - missing, "int", "h_village", {"text": f"/ {desa}"})
    return out


async def table(
    store: PublicStore, dataset: Dataset, filters: dict[str, str] | None = None, where: Any = None
) -> dict[str, Any]:
    rows = await store.rows(dataset, filters)
    if where is not None:
        rows = [r for r in rows if where(r)]
    return {
        "dataset": dataset,
        "rows": rows[:MAX_TABLE_ROWS],
        "more": max(0, len(rows) - MAX_TABLE_ROWS),
        "provenance": await provenance(store, dataset),
    }


async def service(store: PublicStore, name: str) -> list[dict[str, Any]]:
    if name not in SERVICES:
        raise NotFound(name)
    return [await table(store, d) for d in datasets_of(name) if d.slug not in NOT_TABLED]


def _epoch(x: Any) -> int:
    """A chart's x: a month's first day as Unix time (UTC midnight, as the chart labels it), else x."""
    return int(datetime(x.year, x.month, x.day, tzinfo=UTC).timestamp()) if isinstance(x, date) else int(x)


def _series(rows: list[dict[str, Any]], x: str, measures: tuple[str, ...]) -> list[tuple[Any, int, list[Any]]]:
    """Rows summed per value of `x`, in its order: (x, x for the chart, sums)."""
    sums: dict[Any, list[Any]] = {}
    for r in rows:
        acc = sums.setdefault(r[x], [0] * len(measures))
        for i, m in enumerate(measures):
            acc[i] += r[m] or 0
    return [(k, _epoch(k), v) for k, v in sorted(sums.items(), key=lambda kv: kv[0])]


# service -> (dataset, x, measures) of its figures over time; complaints and health: regency-wide person
# counts per month, shown as published (a suppressed month stays hidden, never summed into a figure).
OVER_TIME = {
    "licensing": ("licensing-decided-monthly", "month", ("decided", "decided_within_sla")),
    "budget": ("budget-absorption", "month", ("revised_allocation", "realised_cumulative")),
    "complaints": ("complaints-received-monthly", "month", ("received",)),
    "health": ("health-visits-monthly", "month", ("visits",)),
    "education": ("education-enrolment", "school_year", ("enrolled",)),
    "village": ("village-spending-monthly", "month", ("lines", "spent")),
}


async def over_time(store: PublicStore, name: str) -> dict[str, Any] | None:
    """A service's figures over time, for its chart (the table stays for readers without scripts):
    one row per x (a month's first day, or a school year). None for a service whose public datasets
    have no time (public works)."""
    if name not in OVER_TIME:
        return None
    slug, x, measures = OVER_TIME[name]
    dataset = BY_SLUG[slug]
    if dataset.counts_persons:
        rows = await store.rows(dataset)
        series = [(r[x], _epoch(r[x]), [r[m] for m in measures]) for r in rows]
    else:
        if name == "licensing":
            rows = await store.rows(dataset, {"permit_type": ""})  # all types
        elif name == "budget":
            totals = await store.rows(dataset, {"level": "total"})
            rows = [r for r in totals if r["fiscal_year"] == _latest(totals, "fiscal_year")]
        else:
            rows = await store.rows(dataset)
        series = _series(rows, x, measures)
    return {
        "dataset": dataset,
        "x": dataset.column(x),
        "measures": [dataset.column(m) for m in measures],
        "rows": series,
        "provenance": await provenance(store, dataset),
    }


async def budget(store: PublicStore, year: str | None, month: str | None, path: dict[str, str]) -> dict[str, Any]:
    """The explorer at one node (department > programme > activity): its children in a month, and
    the node's allocation against realisation per month. Codes must exist in that year."""
    dataset = BY_SLUG["budget-absorption"]
    totals = await store.rows(dataset, {"level": "total"})
    years = sorted({r["fiscal_year"] for r in totals})
    if not years:
        return {"years": [], "children": [], "series": [], "path": path, "provenance": await provenance(store, dataset)}
    if year is not None and (not year.isdigit() or int(year) not in years):
        raise NotFound(f"fiscal year {year}")
    chosen = int(year) if year else years[-1]
    now = datetime.now(UTC)
    if month is not None and (not month.isdigit() or not 1 <= int(month) <= 12):
        raise NotFound(f"month {month}")
    chosen_month = int(month) if month else (now.month if chosen == now.year else 12)
    depth = 0
    for key in BUDGET_KEYS[:3]:  # department > programme > activity: the account is a leaf
        if key not in path:
            break
        depth += 1
    path = {k: path[k] for k in BUDGET_KEYS[:depth]}
    level = BUDGET_LEVELS[depth]
    # Filtered by the store's row cache (kept per filter until the next answer): a page does not scan
    # the tens of thousands of rows of a year's budget again.
    year_path = {"fiscal_year": str(chosen), **path}
    node = await store.rows(dataset, {**year_path, "level": level})
    if not node:
        raise NotFound("budget node " + "/".join(path.values()))
    child_level = BUDGET_LEVELS[depth + 1]
    children = await store.rows(dataset, {**year_path, "level": child_level, "month": str(chosen_month)})
    children = sorted(children, key=lambda r: tuple(r[k] for k in BUDGET_KEYS))
    series = sorted(node, key=lambda r: r["month"])
    return {
        "years": years,
        "year": chosen,
        "month": chosen_month,
        "path": path,
        "level": level,
        "child_key": BUDGET_KEYS[depth],
        "child_level": child_level,
        "node": next(r for r in series if r["month"] == chosen_month),
        "children": children,
        "series": series,
        "provenance": await provenance(store, dataset),
    }


async def kecamatan(store: PublicStore, code: str, regions: dict[str, dict[str, str]]) -> dict[str, Any]:
    region = regions.get(code)
    if region is None or region["level"] != "kecamatan":
        raise NotFound(code)
    name = region["name"]
    await prefetch(store, REGION_DATASETS)
    villages = sorted((c, r["name"]) for c, r in regions.items() if r["parent"] == code)
    codes = {c for c, _ in villages}
    return {
        "code": code,
        "name": name,
        "villages": villages,
        "tables": [
            await table(store, BY_SLUG["licensing-open-permits"], {"kecamatan_code": code}, lambda r: r["open"]),
            await table(store, BY_SLUG["infrastructure-by-kecamatan"], {"kecamatan_code": code}),
            await table(store, BY_SLUG["education-enrolment"], {"kecamatan_code": code}, lambda r: r["enrolled"]),
            await table(store, BY_SLUG["health-visits"], {"kecamatan_name": name}),
            await table(store, BY_SLUG["village-funds"], None, lambda r: r["village_code"] in codes),
            await table(store, BY_SLUG["village-not-reported"], {"kecamatan_code": code}),
        ],
    }


async def village(store: PublicStore, code: str, regions: dict[str, dict[str, str]]) -> dict[str, Any]:
    region = regions.get(code)
    if region is None or region["level"] != "village":
        raise NotFound(code)
    kelurahan = code.split(".")[3].startswith("1")
    await prefetch(store, REGION_DATASETS)
    missing = await store.rows(BY_SLUG["village-not-reported"], {"village_code": code})
    return {
        "code": code,
        "name": region["name"],
        "kecamatan_code": region["parent"],
        "kecamatan_name": regions[region["parent"]]["name"],
        "kelurahan": kelurahan,
        "reported": not missing,
        "not_reported": await provenance(store, BY_SLUG["village-not-reported"]),
        "tables": [
            await table(store, BY_SLUG["village-funds"], {"village_code": code}),
            await table(store, BY_SLUG["village-spending-monthly"], {"village_code": code}, lambda r: r["lines"]),
            await table(store, BY_SLUG["infrastructure-projects"], {"village_code": code}),
        ],
    }
