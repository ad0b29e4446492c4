"""The public's views (`public_*`): what the open-data portal and the `public` ClickHouse role may read.

Aggregates only, each over a ready view (never a change log, a dead letter or a pseudonym), with the
columns named in the portal's dataset registry (portal/datasets.py), and `public_freshness`: per
catalog table, its departmental system, the time of its last change and when it was last stored
(provenance of every figure). Person counts are published as they are here; the portal suppresses
small cells (with complementary suppression) before anything leaves it. Made by the migrations
(step 7) when the catalog has the tables behind them; a changed view gets a new revision. Views over
the stream's KPI tables (`KPI_PUBLIC_VIEWS`) are made at step 10, after their KPI tables."""

from __future__ import annotations

import hashlib

from contract.catalog import Catalog
from sinks.ready_views import READY_VIEWS, TZ, ReadyView

_TABLES = {v.name: v.tables for v in READY_VIEWS}


def _public(name: str, ready: str, columns: str, doc: str, where: str = "", revision: int = 1) -> ReadyView:
    body = f"SELECT {columns}\nFROM {ready}" + (f"\nWHERE {where}" if where else "")
    return ReadyView(name, revision, _TABLES[ready], body, doc)


PUBLIC_VIEWS: list[ReadyView] = [
    _public(
        "public_licensing_lead_time",
        "ready_licensing_lead_time",
        "permit_type, decided, lead_time_working_days_median, lead_time_working_days_p90, decided_within_sla, "
        "share_within_sla",
        "Decided permits per type (empty type: all types): working days to decision, within the service level.",
    ),
    _public(
        "public_licensing_open_permits",
        "ready_licensing_open_permits",
        "kecamatan_code, kecamatan_name, permit_type, open, overdue",
        "Open permit applications per kecamatan and type, and those past their service level.",
    ),
    _public(
        "public_budget_absorption",
        "ready_budget_absorption",
        "fiscal_year, month, level, department_code, programme_code, activity_code, account_code, allocation, "
        "revised_allocation, realised_cumulative, absorption_pct",
        "APBD allocation and cumulative realisation per month, rolled up account > activity > programme > "
        "department > total.",
    ),
    _public(
        "public_village_funds",
        "ready_village_funds",
        "village_code, village_name, kecamatan_name, fiscal_year, allocation, received, spent, balance, stage_reached",
        "Village funds of each desa per fiscal year: allocated, received, spent, balance, stage reached.",
    ),
    _public(
        "public_village_spending_monthly",
        "ready_village_spending_monthly",
        "village_code, village_name, kecamatan_name, month, lines, spent",
        "Spending of each desa per month.",
    ),
    _public(
        "public_village_not_reported",
        "ready_village_not_reported",
        "village_code, village_name, kecamatan_code, kecamatan_name, last_spent_at",
        "Desa without a spending line this month, with their last one.",
    ),
    _public(
        "public_complaints",
        "ready_complaints",
        "department_code, department_name, channel, complaints, open, overdue, awaiting_first_response, "
        "first_response_hours_median, resolution_days_median",
        "Complaints per responsible office and channel (person counts: the portal suppresses small cells).",
    ),
    _public(
        "public_health_visits",
        "ready_health_visits",
        "facility_code, facility_type, kecamatan_name, service, visits, in_care, done, referred",
        "Visits per facility and service (person counts: the portal suppresses small cells).",
    ),
    _public(
        "public_health_beds",
        "ready_health_bed_occupancy",
        "hospital_name, ward_class, level, beds_total, beds_occupied, occupancy_pct, as_of",
        "Beds per hospital and ward class, and per hospital: occupancy.",
    ),
    _public(
        "public_education_enrolment",
        "ready_education_enrolment",
        "kecamatan_code, kecamatan_name, level, school_year, year_label, enrolled, enrolled_previous_year, change, "
        "change_pct",
        "Enrolments per kecamatan, school level and school year, against the previous year.",
    ),
    _public(
        "public_infrastructure_projects",
        "ready_infrastructure_projects",
        "project_id, name, category, department_code, village_code, village_name, kecamatan_code, kecamatan_name, "
        "status, contract_value, physical_progress_pct, financial_progress_pct, planned_progress_pct, behind_schedule",
        "Public-works projects: progress against plan.",
    ),
    _public(
        "public_infrastructure_by_kecamatan",
        "ready_infrastructure_by_kecamatan",
        "kecamatan_code, kecamatan_name, projects, contract_value, physical_progress_pct, financial_progress_pct, "
        "behind_schedule",
        "Public-works projects per kecamatan.",
    ),
]

# One row for the whole regency: the home page's complaint headline (a median over all complaints
# cannot be made from the per-office medians).
PUBLIC_VIEWS.append(
    ReadyView(
        "public_complaints_summary",
        1,
        frozenset({"participation_complaint"}),
        "SELECT count() AS complaints, countIf(status IN ('RECEIVED', 'VERIFIED', 'IN_PROGRESS')) AS open,\n"
        "       quantileExactInclusive(0.5)(dateDiff('second', received_at, first_response_at) / 3600)\n"
        "           AS first_response_hours_median\n"
        "FROM participation_complaint_state FINAL",
        "All complaints of the regency: how many, how many open, median hours to the first answer.",
    )
)

# Over KPI tables (kpi_<domain>_<name>, one row per group and window, the highest `version` current:
# FINAL). Day and month windows start at local midnight (WIB), as the KPI engine cuts them. Permit
# counts are not counts of persons: published as they are; complaints and visits are (the portal
# suppresses small months). (KPI table, view) pairs: the view is made once the migrations made its
# table.
DECIDED_WITHIN_SLA = "kpi_licensing_decided_within_sla"
_DECIDED_PER_MONTH = f"""
SELECT toStartOfMonth(assumeNotNull(window_start), {TZ}) AS month, ifNull(permit_type, '') AS permit_type,
       `count`, within, updated_at
FROM {DECIDED_WITHIN_SLA} FINAL
WHERE window_start IS NOT NULL AND `count` > 0"""
_DECIDED_COLUMNS = """sum(`count`) AS decided, sum(within) AS decided_within_sla,
       if(decided = 0, NULL, round(decided_within_sla / decided, 4)) AS share_within_sla,
       max(updated_at) AS updated_at"""


def _per_month(name: str, kpi_table: str, entity: str, measure: str, doc: str) -> tuple[str, ReadyView]:
    """A day-windowed count KPI summed per local month for the whole regency."""
    body = (
        f"SELECT toStartOfMonth(assumeNotNull(window_start), {TZ}) AS month, sum(`count`) AS {measure},\n"
        f"       max(updated_at) AS updated_at\nFROM {kpi_table} FINAL\n"
        "WHERE window_start IS NOT NULL AND `count` > 0\nGROUP BY month"
    )
    return kpi_table, ReadyView(name, 1, frozenset({entity}), body, doc)


KPI_PUBLIC_VIEWS: list[tuple[str, ReadyView]] = [
    (
        DECIDED_WITHIN_SLA,
        ReadyView(
            "public_licensing_decided_this_month",
            1,
            frozenset({"licensing_permit_application"}),
            f"SELECT month, permit_type, {_DECIDED_COLUMNS}\nFROM ({_DECIDED_PER_MONTH}\n)\n"
            f"WHERE month = toStartOfMonth(now(), {TZ})\nGROUP BY GROUPING SETS ((month, permit_type), (month))",
            "Permits decided this month (local calendar) per type (empty type: all types), and those decided "
            "within their service level (the stream's KPI licensing.decided_within_sla).",
        ),
    ),
    (
        DECIDED_WITHIN_SLA,
        ReadyView(
            "public_licensing_decided_monthly",
            1,
            frozenset({"licensing_permit_application"}),
            f"SELECT month, permit_type, {_DECIDED_COLUMNS}\nFROM ({_DECIDED_PER_MONTH}\n)\n"
            "GROUP BY GROUPING SETS ((month, permit_type), (month))",
            "Permits decided per month of decision and type (empty type: all types), and those decided within "
            "their service level (the stream's KPI licensing.decided_within_sla).",
        ),
    ),
    _per_month(
        "public_complaints_received_monthly",
        "kpi_participation_received_per_day",
        "participation_complaint",
        "received",
        "Complaints received per local month, whole regency (KPI participation.received_per_day; person "
        "counts: the portal suppresses small cells).",
    ),
    _per_month(
        "public_health_visits_monthly",
        "kpi_health_visits_per_day",
        "health_visit",
        "visits",
        "Health facility visits per local month, whole regency (KPI health.visits_per_day; person counts: the "
        "portal suppresses small cells).",
    ),
]

FRESHNESS_VIEW = "public_freshness"


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def freshness_view(catalog: Catalog) -> ReadyView:
    """Per catalog table: its system, the latest source change and the latest store time of its current
    state (aggregates of the state table, no row of it)."""
    parts = [
        f"SELECT '{e.table}' AS source_table, {_quote(s.system)} AS system, {_quote(s.title)} AS system_title, "
        f"{_quote(s.department)} AS department_code, "
        f"toUInt32({int(s.freshness_seconds)}) AS freshness_promise_seconds, "
        f"max(ts_source) AS last_change, max(ts_stored) AS last_stored FROM {e.table}_state"
        for s in catalog.systems
        for e in s.entities
    ]
    body = "\nUNION ALL\n".join(parts)
    digest = int(hashlib.sha256(body.encode()).hexdigest()[:6], 16)  # a new catalog: a new revision
    doc = "Per source table: its departmental system, latest change and latest store time (provenance)."
    return ReadyView(FRESHNESS_VIEW, digest, frozenset(e.table for e in catalog.entities), body, doc)


def public_views(catalog: Catalog) -> list[ReadyView]:
    # A catalog without entities has no provenance to publish (and a view needs a SELECT).
    return [*PUBLIC_VIEWS, *([freshness_view(catalog)] if catalog.entities else [])]
