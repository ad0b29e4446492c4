"""Ready views per domain over the current-state tables (`<table>_state FINAL`: one row per entity,
deleted ones left out): the answers analysts would otherwise write by hand. Made by the migrations
(sinks/migrations.py) when the catalog has the tables a view reads; a changed view gets a new
revision. SQL SECURITY DEFINER: readers need a grant on the view only (the `public` role has
`ready_*`), never on the tables behind it.

Conventions: days and months are local (Asia/Jakarta); working days are Monday to Friday except the
holidays and joint leave days of ref_holidays (data/holidays_id.csv), counted after the start's date
up to and including the end's, as contract/workdays.py counts them; medians and percentiles
interpolate between the two nearest values (quantileExactInclusive, like numpy's default). Regions
come from the dimension views, so a kecamatan or desa without data is a row of zeros."""

from __future__ import annotations

from dataclasses import dataclass

from sinks.dimensions import DAYS_OFF
from sinks.ready_workdays import TZ, calendar, due_date, working_days


@dataclass(frozen=True)
class ReadyView:
    name: str
    revision: int  # a new revision replaces the view at the next migration
    tables: frozenset[str]  # the catalog tables it reads (skipped when the catalog lacks one)
    body: str
    doc: str

    @property
    def sql(self) -> str:
        comment = self.doc.replace("\\", "\\\\").replace("'", "\\'")
        return f"CREATE OR REPLACE VIEW {self.name} SQL SECURITY DEFINER AS\n{self.body}\nCOMMENT '{comment}'"


TODAY = f"toDate(now(), {TZ})"

OPEN_PERMIT = "status IN ('SUBMITTED', 'VERIFIED')"
OPEN_COMPLAINT = "status IN ('RECEIVED', 'VERIFIED', 'IN_PROGRESS')"
PERMITS = "licensing_permit_application_state"
WORK_CALENDAR = calendar(DAYS_OFF)

LICENSING_LEAD_TIME = f"""
WITH {WORK_CALENDAR}
SELECT permit_type, count() AS decided,
       quantileExactInclusive(0.5)(lead) AS lead_time_working_days_median,
       quantileExactInclusive(0.9)(lead) AS lead_time_working_days_p90,
       countIf(lead <= sla_days) AS decided_within_sla,
       round(decided_within_sla / decided, 4) AS share_within_sla
FROM (
    SELECT permit_type, sla_days, {working_days("submitted_at", "assumeNotNull(decided_at)")} AS lead
    FROM {PERMITS} FINAL
    WHERE status IN ('APPROVED', 'REJECTED') AND decided_at IS NOT NULL
)
GROUP BY GROUPING SETS ((permit_type), ())
"""

# One read of the permits: the types (of any permit) and per type the open and overdue ones per kecamatan.
LICENSING_OPEN = f"""
WITH {WORK_CALENDAR}
SELECT k.kecamatan_code AS kecamatan_code, k.kecamatan_name AS kecamatan_name, t.permit_type AS permit_type,
       t.open_counts[indexOf(t.kecamatans, k.kecamatan_code)] AS open,
       t.overdue_counts[indexOf(t.kecamatans, k.kecamatan_code)] AS overdue
FROM dim_kecamatan AS k
CROSS JOIN (
    SELECT permit_type, groupArray(kecamatan_code) AS kecamatans, groupArray(open_permits) AS open_counts,
           groupArray(overdue_permits) AS overdue_counts
    FROM (
        SELECT permit_type, kecamatan_code, countIf({OPEN_PERMIT} AND application_id != '') AS open_permits,
               countIf({OPEN_PERMIT} AND application_id != '' AND {TODAY} > {due_date("submitted_at", "sla_days")})
                   AS overdue_permits
        FROM {PERMITS} FINAL
        GROUP BY permit_type, kecamatan_code
    )
    GROUP BY permit_type
) AS t
"""

# Per handling office too (office_code: the one-stop office or a kecamatan office; empty for records
# from before the field), over the groups with any application, so a cleared queue shows zeros.
LICENSING_OPEN_BY_OFFICE = f"""
WITH {WORK_CALENDAR}
SELECT p.office_code AS office_code, d.department_name AS office_name, p.kecamatan_code AS kecamatan_code,
       p.kecamatan_name AS kecamatan_name, p.permit_type AS permit_type, count() AS applications,
       countIf(p.is_open) AS open, countIf(p.overdue) AS overdue
FROM (
    SELECT coalesce(office_code, '') AS office_code, kecamatan_code, kecamatan_name, permit_type,
           {OPEN_PERMIT} AS is_open, is_open AND {TODAY} > {due_date("submitted_at", "sla_days")} AS overdue
    FROM {PERMITS} FINAL
) AS p
LEFT JOIN dim_department AS d ON d.department_code = p.office_code
GROUP BY office_code, office_name, kecamatan_code, kecamatan_name, permit_type
"""

BUDGET_ABSORPTION = """
SELECT fiscal_year, month, department_code, programme_code, activity_code, account_code,
       multiIf(grouping(account_code) = 0, 'account', grouping(activity_code) = 0, 'activity',
               grouping(programme_code) = 0, 'programme', grouping(department_code) = 0, 'department',
               'total') AS level,
       sum(allocation) AS allocation, sum(allocation_in_force) AS revised_allocation,
       sum(realised) AS realised_cumulative,
       if(revised_allocation = 0, NULL, round(toFloat64(realised_cumulative) / toFloat64(revised_allocation) * 100, 2))
           AS absorption_pct
FROM (
    SELECT l.fiscal_year AS fiscal_year, month, l.department_code AS department_code,
           l.programme_code AS programme_code, l.activity_code AS activity_code, l.account_code AS account_code,
           l.allocation AS allocation, coalesce(l.revised_allocation, l.allocation) AS allocation_in_force,
           arraySum(arrayMap(p -> p.2, arrayFilter(p -> p.1 <= month, r.paid))) AS realised
    FROM (SELECT * FROM budget_budget_line_state FINAL WHERE stage != 'DRAFT') AS l
    LEFT JOIN (
        SELECT line_id, groupArray((month, amount)) AS paid FROM budget_realisation_state FINAL GROUP BY line_id
    ) AS r ON r.line_id = l.line_id
    ARRAY JOIN range(1, 13) AS month
)
GROUP BY GROUPING SETS (
    (fiscal_year, month, department_code, programme_code, activity_code, account_code),
    (fiscal_year, month, department_code, programme_code, activity_code),
    (fiscal_year, month, department_code, programme_code),
    (fiscal_year, month, department_code),
    (fiscal_year, month)
)
"""

DESA = "(SELECT * FROM dim_village WHERE village_type = 'desa')"
VILLAGE_FUNDS = f"""
SELECT v.village_code AS village_code, v.village_name AS village_name, v.kecamatan_name AS kecamatan_name,
       y.fiscal_year AS fiscal_year,
       sum(f.allocation) AS allocation, sum(f.disbursed) AS received,
       any(s.spent) AS spent, received - spent AS balance,
       if(max(f.stage) = '', 'NO_DATA', max(f.stage)) AS stage_reached
FROM {DESA} AS v
CROSS JOIN (SELECT DISTINCT fiscal_year FROM village_finance_village_fund_state FINAL) AS y
LEFT JOIN (SELECT * FROM village_finance_village_fund_state FINAL) AS f
    ON f.village_code = v.village_code AND f.fiscal_year = y.fiscal_year
LEFT JOIN (
    SELECT village_code, fiscal_year, sum(amount) AS spent
    FROM village_finance_village_spending_state FINAL GROUP BY village_code, fiscal_year
) AS s ON s.village_code = v.village_code AND s.fiscal_year = y.fiscal_year
GROUP BY village_code, village_name, kecamatan_name, fiscal_year
"""

VILLAGE_SPENDING_MONTHLY = f"""
SELECT v.village_code AS village_code, v.village_name AS village_name, v.kecamatan_name AS kecamatan_name,
       m.month AS month, countIf(s.spending_id != '') AS lines, sum(s.amount) AS spent
FROM {DESA} AS v
CROSS JOIN (
    SELECT DISTINCT toStartOfMonth(spent_at, {TZ}) AS month FROM village_finance_village_spending_state FINAL
) AS m
LEFT JOIN (
    SELECT village_code, spending_id, amount, toStartOfMonth(spent_at, {TZ}) AS month
    FROM village_finance_village_spending_state FINAL
) AS s ON s.village_code = v.village_code AND s.month = m.month
GROUP BY village_code, village_name, kecamatan_name, month
"""

VILLAGE_NOT_REPORTED = f"""
SELECT v.village_code AS village_code, v.village_name AS village_name, v.kecamatan_code AS kecamatan_code,
       v.kecamatan_name AS kecamatan_name, if(s.village_code = '', NULL, s.last_spent_at) AS last_spent_at
FROM {DESA} AS v
LEFT JOIN (
    SELECT village_code, max(spent_at) AS last_spent_at FROM village_finance_village_spending_state FINAL
    GROUP BY village_code
) AS s ON s.village_code = v.village_code
WHERE s.village_code = '' OR toStartOfMonth(s.last_spent_at, {TZ}) < toStartOfMonth({TODAY})
"""

COMPLAINTS = f"""
SELECT c.department_responsible AS department_code, any(d.department_name) AS department_name,
       c.channel AS channel, count() AS complaints,
       countIf({OPEN_COMPLAINT}) AS open,
       countIf({OPEN_COMPLAINT} AND resolution_due_at < now()) AS overdue,
       countIf(first_response_at IS NULL AND status = 'RECEIVED') AS awaiting_first_response,
       quantileExactInclusive(0.5)(dateDiff('second', received_at, first_response_at) / 3600)
           AS first_response_hours_median,
       quantileExactInclusive(0.5)(dateDiff('second', received_at, resolved_at) / 86400) AS resolution_days_median
FROM (SELECT * FROM participation_complaint_state FINAL) AS c
LEFT JOIN dim_department AS d ON d.department_code = c.department_responsible
GROUP BY department_code, channel
"""

HEALTH_VISITS = """
SELECT facility_code, facility_type, facility_kecamatan_name AS kecamatan_name, service, count() AS visits,
       countIf(status IN ('REGISTERED', 'IN_CONSULTATION')) AS in_care,
       countIf(status = 'DONE') AS done, countIf(status = 'REFERRED') AS referred
FROM health_visit_state FINAL
GROUP BY facility_code, facility_type, kecamatan_name, service
"""

HEALTH_BEDS = """
SELECT hospital_name, ward_class, if(grouping(ward_class) = 1, 'hospital', 'class') AS level,
       sum(beds_total) AS beds_total, sum(beds_occupied) AS beds_occupied,
       round(beds_occupied / beds_total * 100, 2) AS occupancy_pct, max(as_of) AS as_of
FROM health_bed_occupancy_state FINAL
GROUP BY GROUPING SETS ((hospital_name, ward_class), (hospital_name))
"""

# A school year starts in July; an enrolment counts in the year it was admitted (new or transfer in),
# in the kecamatan of its school (of the student's village when the school is not in the register).
EDUCATION_ENROLMENT = f"""
SELECT k.kecamatan_code AS kecamatan_code, k.kecamatan_name AS kecamatan_name, l.level AS level,
       y.school_year AS school_year, concat(toString(y.school_year), '/', toString(y.school_year + 1)) AS year_label,
       y.enrolled[indexOf(y.keys, (k.kecamatan_code, l.level))] AS enrolled,
       y.previous[indexOf(y.keys, (k.kecamatan_code, l.level))] AS enrolled_previous_year,
       toInt64(enrolled) - toInt64(enrolled_previous_year) AS change,
       if(enrolled_previous_year = 0, NULL, round((enrolled / enrolled_previous_year - 1) * 100, 2)) AS change_pct
FROM dim_kecamatan AS k
CROSS JOIN (SELECT arrayJoin(['SD', 'SMP', 'SMA', 'SMK']) AS level) AS l
CROSS JOIN (
    -- one read: admissions count for their year (shift 0) and as the next one's previous (shift 1)
    SELECT school_year, groupArray((kecamatan_code, level)) AS keys,
           groupArray(current) AS enrolled, groupArray(before) AS previous
    FROM (
        SELECT kecamatan_code, level, CAST(admitted_year + shift, toTypeName(admitted_year)) AS school_year,
               sumIf(admitted, shift = 0) AS current, sumIf(admitted, shift = 1) AS before
        FROM (
            SELECT coalesce(nullIf(s.kecamatan_code, ''), e.student_kecamatan_code) AS kecamatan_code,
                   e.level AS level, count() AS admitted,
                   toYear(toTimeZone(e.enrolled_at, {TZ})) - (toMonth(toTimeZone(e.enrolled_at, {TZ})) < 7)
                       AS admitted_year
            FROM (SELECT * FROM education_enrolment_state FINAL) AS e
            LEFT JOIN (SELECT npsn, kecamatan_code FROM education_school_state FINAL) AS s ON s.npsn = e.school_npsn
            GROUP BY kecamatan_code, level, admitted_year
        )
        ARRAY JOIN [0, 1] AS shift
        GROUP BY kecamatan_code, level, school_year
    )
    GROUP BY school_year
    HAVING sum(current) > 0
) AS y
"""

# Planned progress: linear from the planned start to the planned end. Behind schedule: physical
# progress more than 10 points below it while works run (the deviation beyond which public-works
# contracts are treated as critical in the 0-70 % phase).
PROJECT_ROWS = f"""
SELECT project_id, name, category, source_department AS department_code, village_code, village_name,
       kecamatan_code, kecamatan_name, status, contract_value, physical_progress_pct, financial_progress_pct,
       multiIf(planned_start IS NULL OR planned_end IS NULL, NULL,
               {TODAY} <= planned_start, 0.,
               {TODAY} >= planned_end, 100.,
               round(dateDiff('day', assumeNotNull(planned_start), {TODAY})
                     / greatest(1, dateDiff('day', assumeNotNull(planned_start), assumeNotNull(planned_end))) * 100, 2))
           AS planned_progress_pct,
       status IN ('CONTRACTED', 'IN_PROGRESS') AND physical_progress_pct < planned_progress_pct - 10 AS behind_schedule,
       budget_line_id
FROM infrastructure_project_state FINAL
"""

INFRASTRUCTURE_BY_KECAMATAN = """
SELECT k.kecamatan_code AS kecamatan_code, k.kecamatan_name AS kecamatan_name,
       countIf(p.project_id != '') AS projects, sum(p.contract_value) AS contract_value,
       if(contract_value = 0, NULL, round(sum(toFloat64(p.contract_value) * p.physical_progress_pct)
                                          / toFloat64(contract_value), 2)) AS physical_progress_pct,
       if(contract_value = 0, NULL, round(sum(toFloat64(p.contract_value) * p.financial_progress_pct)
                                          / toFloat64(contract_value), 2)) AS financial_progress_pct,
       countIf(p.behind_schedule) AS behind_schedule
FROM dim_kecamatan AS k
LEFT JOIN (SELECT * FROM ready_infrastructure_projects WHERE status != 'TERMINATED') AS p
    ON p.kecamatan_code = k.kecamatan_code
GROUP BY kecamatan_code, kecamatan_name
"""


# Each project with the APBD line that funds it: the line's allocation in force (the revised one once
# revised) against the project's contract value and against all its live projects' (terminated ones
# left out: their money goes back to the line). A line not known (yet) leaves the line columns empty.
INFRASTRUCTURE_BUDGET = """
SELECT p.project_id AS project_id, p.name AS name, p.category AS category, p.fiscal_year AS fiscal_year,
       p.status AS status, p.kecamatan_code AS kecamatan_code, p.kecamatan_name AS kecamatan_name,
       p.contract_value AS contract_value, p.budget_line_id AS budget_line_id, l.line_id != '' AS line_known,
       l.department_code AS department_code, l.department_name AS department_name,
       l.programme_code AS programme_code, l.programme_name AS programme_name,
       l.activity_code AS activity_code, l.activity_name AS activity_name,
       l.account_code AS account_code, l.account_name AS account_name, l.stage AS line_stage,
       l.allocation_in_force AS allocation, c.projects AS line_projects, c.contract_value AS line_contract_value,
       if(allocation = 0, NULL, round(toFloat64(p.contract_value) / toFloat64(allocation) * 100, 2))
           AS contract_share_pct,
       if(allocation = 0, NULL, round(toFloat64(line_contract_value) / toFloat64(allocation) * 100, 2))
           AS line_committed_pct
FROM (SELECT * FROM infrastructure_project_state FINAL) AS p
LEFT JOIN (
    SELECT line_id, department_code, department_name, programme_code, programme_name, activity_code, activity_name,
           account_code, account_name, stage, coalesce(revised_allocation, allocation) AS allocation_in_force
    FROM budget_budget_line_state FINAL
) AS l ON l.line_id = p.budget_line_id
LEFT JOIN (
    SELECT budget_line_id, count() AS projects, sum(contract_value) AS contract_value
    FROM infrastructure_project_state FINAL WHERE status != 'TERMINATED' GROUP BY budget_line_id
) AS c ON c.budget_line_id = p.budget_line_id
"""


def _view(name: str, tables: set[str], body: str, doc: str, revision: int = 1) -> ReadyView:
    return ReadyView(name, revision, frozenset(tables), body.strip(), doc)


PERMIT_TABLES = {"licensing_permit_application"}
READY_VIEWS: list[ReadyView] = [
    _view(
        "ready_licensing_lead_time",
        PERMIT_TABLES,
        LICENSING_LEAD_TIME,
        "Decided permits per type (and all types, permit_type empty): lead time from submission to decision "
        "in working days, median and p90; decided within the service level (sla_days working days).",
        revision=2,
    ),
    _view(
        "ready_licensing_open_permits",
        PERMIT_TABLES,
        LICENSING_OPEN,
        "Open permits (submitted or verified) per kecamatan and type, and those past their service level.",
        revision=2,
    ),
    _view(
        "ready_licensing_open_permits_by_office",
        PERMIT_TABLES,
        LICENSING_OPEN_BY_OFFICE,
        "Permits per handling office (the one-stop office DPMPTSP or a kecamatan office; empty: not recorded), "
        "kecamatan and type, where there is any application: applications, open (submitted or verified) and "
        "overdue (open past the service level).",
        revision=2,
    ),
    _view(
        "ready_budget_absorption",
        {"budget_budget_line", "budget_realisation"},
        BUDGET_ABSORPTION,
        "APBD per fiscal year and month (1-12), rolled up account > activity > programme > department > total "
        "(level): allocation, allocation in force after revisions, cumulative realisation, absorption %. "
        "Draft lines left out.",
    ),
    _view(
        "ready_village_funds",
        {"village_finance_village_fund", "village_finance_village_spending"},
        VILLAGE_FUNDS,
        "Each of the 419 desa per fiscal year: funds allocated, received (disbursed), spent, balance and the "
        "disbursement stage reached (NO_DATA: nothing reported).",
    ),
    _view(
        "ready_village_spending_monthly",
        {"village_finance_village_spending"},
        VILLAGE_SPENDING_MONTHLY,
        "Spending of each of the 419 desa per month (months with any spending): lines and Rupiah.",
    ),
    _view(
        "ready_village_not_reported",
        {"village_finance_village_spending"},
        VILLAGE_NOT_REPORTED,
        "Desa without a spending line this month (Asia/Jakarta), with their last one (null: never).",
    ),
    _view(
        "ready_complaints",
        {"participation_complaint"},
        COMPLAINTS,
        "Complaints per responsible office and channel: open, overdue (past the resolution due time), awaiting "
        "a first response, median hours to first response, median days to resolution.",
    ),
    _view(
        "ready_health_visits",
        {"health_visit"},
        HEALTH_VISITS,
        "Visits per facility and service: in care, done, referred.",
    ),
    _view(
        "ready_health_bed_occupancy",
        {"health_bed_occupancy"},
        HEALTH_BEDS,
        "Beds per hospital and ward class (level class) and per hospital (level hospital): occupancy rate, %.",
    ),
    _view(
        "ready_education_enrolment",
        {"education_enrolment", "education_school"},
        EDUCATION_ENROLMENT,
        "Enrolments admitted per kecamatan, school level and school year (from July), against the previous year.",
        revision=2,
    ),
    _view(
        "ready_infrastructure_projects",
        {"infrastructure_project"},
        PROJECT_ROWS,
        "Public-works projects: physical and financial progress against the linear planned progress; behind "
        "schedule when physical progress trails it by more than 10 points while works run; the budget line "
        "that funds each.",
        revision=2,
    ),
    _view(
        "ready_infrastructure_by_kecamatan",
        {"infrastructure_project"},
        INFRASTRUCTURE_BY_KECAMATAN,
        "Projects per kecamatan (terminated ones left out): contract value, value-weighted physical and "
        "financial progress, projects behind schedule.",
    ),
    _view(
        "ready_infrastructure_budget",
        {"infrastructure_project", "budget_budget_line"},
        INFRASTRUCTURE_BUDGET,
        "Each public-works project with the APBD line that funds it: department, programme, activity, account "
        "and stage of the line, its allocation in force (revised if revised) against the project's contract "
        "value and against the contract value of all the line's projects (terminated ones left out); "
        "line_known false: no such line (yet).",
    ),
]
