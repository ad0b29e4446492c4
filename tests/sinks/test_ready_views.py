"""Ready views, known answers: a fresh chDB store made by the migrations, filled with the hand-made
rows of tests/sinks/ready_store.py, each view's figures computed by hand; every view answers a
read-only analyst session, and so do the README's example questions."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import clickhouse_connect
import pytest

from backbone.settings import PROJECT_ROOT, load_settings
from contract.catalog import load_catalog
from sinks import migrations
from sinks.dimensions import DAYS_OFF
from sinks.ready_views import READY_VIEWS
from sinks.ready_workdays import calendar, due_date, working_days
from sinks.store import read_only_settings
from tests.sinks.ready_store import (
    CALENDAR,
    D1,
    D2,
    D_B,
    DEPARTMENTS,
    KEC_A,
    KEC_B,
    KEC_C,
    KECAMATAN,
    OFFICE_A,
    OFFICE_B,
    REGIONS,
    TODAY,
    fill,
    wib,
    works_budget,
)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    c = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path_factory.mktemp('views')}/ch")
    migrations.migrate(c, load_catalog(PROJECT_ROOT / "catalog", PROJECT_ROOT / "schemas"))
    fill(c)
    works_budget(c)
    yield c
    c.close()


def keyed(client: Any, sql: str) -> dict[Any, tuple]:
    """Rows by their first column."""
    return {r[0]: tuple(r[1:]) for r in rows(client, sql)}


def rows(client: Any, sql: str) -> list[tuple]:
    return client.query(sql).result_rows


def test_licensing_lead_time(client):
    assert (
        CALENDAR.working_days_between(*(int(wib(*d).timestamp() * 1000) for d in ((2025, 3, 27, 9), (2025, 4, 8, 10))))
        == 1
    )
    got = rows(client, "SELECT * FROM ready_licensing_lead_time ORDER BY permit_type")
    assert [tuple(round(v, 4) if isinstance(v, float) else v for v in r) for r in got] == [
        ("", 4, 2.5, 8.2, 3, 0.75),  # [0, 1, 4, 10]
        ("NIB", 2, 0.5, 0.9, 2, 1.0),  # [0, 1]
        ("PBG", 2, 7.0, 9.4, 1, 0.5),  # [4, 10]; 10 > 5 working days
    ]


def test_licensing_open_permits_per_kecamatan_with_zeros(client):
    got = rows(client, "SELECT kecamatan_code, permit_type, open, overdue FROM ready_licensing_open_permits")
    assert len(got) == 28 * 2  # every kecamatan, every type seen
    assert sorted(r for r in got if r[2]) == [(KEC_A, "PBG", 2, 1), (KEC_B, "NIB", 1, 1)]


def test_licensing_permits_per_office_kecamatan_and_type(client):
    got = rows(
        client,
        "SELECT office_code, office_name, kecamatan_code, permit_type, applications, open, overdue "
        "FROM ready_licensing_open_permits_by_office ORDER BY office_code, kecamatan_code, permit_type",
    )
    one_stop = DEPARTMENTS["DPMPTSP"]["name"]
    assert sorted(got) == sorted(
        [
            ("", "", KEC_A, "PBG", 1, 1, 0),  # O2, recorded before office_code: no office
            ("DPMPTSP", one_stop, KEC_A, "NIB", 1, 0, 0),  # L4 decided: a cleared queue shows zeros
            ("DPMPTSP", one_stop, KEC_A, "PBG", 3, 1, 1),  # L1, L2 decided, O1 overdue (L5 deleted)
            (OFFICE_A, DEPARTMENTS[OFFICE_A]["name"], KEC_A, "NIB", 1, 0, 0),  # L3 decided
            (OFFICE_B, DEPARTMENTS[OFFICE_B]["name"], KEC_B, "NIB", 1, 1, 1),  # O3 overdue (O4 deleted)
        ]
    )
    # The same open and overdue permits as the view per kecamatan and type.
    per_kecamatan = rows(
        client, "SELECT sum(open), sum(overdue) FROM ready_licensing_open_permits_by_office GROUP BY ()"
    )
    assert per_kecamatan == rows(client, "SELECT sum(open), sum(overdue) FROM ready_licensing_open_permits") == [(3, 2)]


def test_budget_absorption_per_month_with_rollup(client):
    """Fiscal year 2025 (2026 has only the public-works lines of works_budget)."""
    got = rows(
        client,
        "SELECT level, department_code, activity_code, account_code, allocation, revised_allocation, "
        "realised_cumulative, absorption_pct FROM ready_budget_absorption WHERE fiscal_year = 2025 AND month = 3 "
        "ORDER BY level, department_code, activity_code, account_code",
    )
    assert [(r[0], r[1], r[2], r[3], int(r[4]), int(r[5]), int(r[6]), r[7]) for r in got] == [
        ("account", "DINKES", "1.02.02.2.01", "5.2.02.01", 2000, 2000, 0, 0.0),
        ("account", "DISDIK", "1.01.02.2.01", "5.1.02.01", 1000, 1000, 300, 30.0),
        ("account", "DISDIK", "1.01.02.2.01", "5.1.02.02", 500, 600, 300, 50.0),
        ("activity", "DINKES", "1.02.02.2.01", "", 2000, 2000, 0, 0.0),
        ("activity", "DISDIK", "1.01.02.2.01", "", 1500, 1600, 600, 37.5),
        ("department", "DINKES", "", "", 2000, 2000, 0, 0.0),
        ("department", "DISDIK", "", "", 1500, 1600, 600, 37.5),
        ("programme", "DINKES", "", "", 2000, 2000, 0, 0.0),
        ("programme", "DISDIK", "", "", 1500, 1600, 600, 37.5),
        ("total", "", "", "", 3500, 3600, 600, 16.67),
    ]
    assert rows(client, "SELECT count() FROM ready_budget_absorption WHERE fiscal_year = 2025") == [(12 * 10,)]
    year_end = rows(
        client,
        "SELECT realised_cumulative, absorption_pct FROM ready_budget_absorption "
        "WHERE fiscal_year = 2025 AND month = 12 AND level = 'total'",
    )
    assert year_end == [(Decimal(1600), 44.44)]


def test_village_funds_every_desa_with_zeros(client):
    got = keyed(
        client,
        "SELECT village_code, fiscal_year, allocation, received, spent, balance, "
        "stage_reached FROM ready_village_funds",
    )
    assert len(got) == 419
    assert got[D1] == (2025, 1500, 900, 150, 750, "TAHAP_2")
    assert got[D2] == (2025, 800, 0, 70, -70, "ALLOCATED")
    assert got[D_B] == (2025, 0, 0, 0, 0, "NO_DATA")


def test_village_spending_per_desa_and_month(client):
    months = sorted({date(2025, 5, 1), date(2025, 6, 1), TODAY.replace(day=1)})
    got = rows(
        client,
        "SELECT village_code, month, lines, spent FROM ready_village_spending_monthly WHERE lines > 0 ORDER BY month",
    )
    assert got == [(D1, date(2025, 5, 1), 1, 100), (D2, date(2025, 6, 1), 1, 70), (D1, TODAY.replace(day=1), 1, 50)]
    assert rows(client, "SELECT count() FROM ready_village_spending_monthly") == [(419 * len(months),)]


def test_desa_that_have_not_reported_this_month(client):
    got = {r[0]: r[1] for r in rows(client, "SELECT village_code, last_spent_at FROM ready_village_not_reported")}
    assert len(got) == 418 and D1 not in got
    assert got[D2] == wib(2025, 6, 1, 0, 30).replace(tzinfo=None) and got[D_B] is None


def test_complaints_per_department_and_channel(client):
    got = rows(
        client,
        "SELECT department_code, department_name, channel, complaints, open, overdue, "
        "awaiting_first_response, first_response_hours_median, resolution_days_median "
        "FROM ready_complaints ORDER BY department_code, channel",
    )
    assert [r[:7] for r in got] == [
        ("DINKES", "Dinas Kesehatan", "WHATSAPP", 1, 0, 0, 0),
        ("DPUPR", "Dinas Pekerjaan Umum dan Penataan Ruang", "WEB", 1, 1, 0, 1),
        ("DPUPR", "Dinas Pekerjaan Umum dan Penataan Ruang", "WHATSAPP", 2, 1, 1, 0),
    ]
    assert [r[7:] for r in got] == [(1.0, None), (None, None), (3.0, 3.0)]  # (2 h + 4 h) / 2; 72 h


def test_health_visits_per_facility_and_service(client):
    got = rows(
        client,
        "SELECT facility_code, service, kecamatan_name, visits, in_care, done, referred "
        "FROM ready_health_visits ORDER BY facility_code, service",
    )
    kec = REGIONS[KEC_A]["name"]
    assert got == [
        ("PKM01", "IMMUNISATION", kec, 1, 1, 0, 0),
        ("PKM01", "OUTPATIENT", kec, 2, 0, 1, 1),
        ("RSUD01", "EMERGENCY", kec, 1, 1, 0, 0),
    ]


def test_bed_occupancy_per_hospital_and_class(client):
    got = rows(
        client,
        "SELECT level, ward_class, beds_total, beds_occupied, occupancy_pct "
        "FROM ready_health_bed_occupancy ORDER BY level, ward_class",
    )
    assert got == [("class", "III", 30, 25, 83.33), ("class", "VIP", 4, 1, 25.0), ("hospital", "", 34, 26, 76.47)]


def test_enrolment_per_level_and_kecamatan_against_the_previous_year(client):
    got = rows(
        client,
        "SELECT kecamatan_code, level, school_year, year_label, enrolled, enrolled_previous_year, change, "
        "change_pct FROM ready_education_enrolment WHERE enrolled + enrolled_previous_year > 0 "
        "ORDER BY kecamatan_code, level, school_year",
    )
    assert got == [
        (KEC_A, "SD", 2024, "2024/2025", 1, 0, 1, None),
        (KEC_A, "SD", 2025, "2025/2026", 2, 1, 1, 100.0),
        (KEC_B, "SMP", 2024, "2024/2025", 1, 0, 1, None),
        (KEC_B, "SMP", 2025, "2025/2026", 1, 1, 0, 0.0),
        (KEC_C, "SMA", 2025, "2025/2026", 1, 0, 1, None),
    ]
    assert rows(client, "SELECT count() FROM ready_education_enrolment") == [(28 * 4 * 2,)]


def test_projects_against_their_planned_progress(client):
    got = rows(
        client,
        "SELECT project_id, planned_progress_pct, behind_schedule FROM ready_infrastructure_projects "
        "ORDER BY project_id",
    )
    assert got == [
        ("P1", 50.0, True),
        ("P2", 50.0, False),
        ("P3", 100.0, False),
        ("P4", 100.0, False),
        ("P5", 0.0, False),
        ("P7", 0.0, False),
    ]


def test_projects_per_kecamatan_with_zeros(client):
    got = keyed(
        client,
        "SELECT kecamatan_code, projects, contract_value, physical_progress_pct, "
        "financial_progress_pct, behind_schedule FROM ready_infrastructure_by_kecamatan",
    )
    assert len(got) == 28
    assert got[KEC_A] == (2, 4000, 41.25, 35.0, 1)
    assert got[KEC_B] == (1, 500, 100.0, 95.0, 0)
    assert got[KEC_C] == (2, 300, 0.0, 0.0, 0)  # P5, P7 (P6 deleted)
    assert got[KECAMATAN[3]] == (0, 0, None, None, 0)


def test_each_project_with_its_budget_line_allocation_against_contract_values(client):
    got = rows(
        client,
        "SELECT project_id, budget_line_id, line_known, department_code, department_name, programme_code, "
        "activity_code, line_stage, allocation, contract_value, contract_share_pct, line_projects, "
        "line_contract_value, line_committed_pct FROM ready_infrastructure_budget ORDER BY project_id",
    )
    pu, roads, water = DEPARTMENTS["DPUPR"]["name"], ("1.03.10", "1.03.10.2.01"), ("1.03.02", "1.03.02.2.03")
    assert [(*r[:8], int(r[8]), int(r[9]), *r[10:12], int(r[12]), r[13]) for r in got] == [
        # B5: revised 5000 -> 4000; its live projects P1 + P2 (P4 terminated, P6 deleted).
        ("P1", "B5", True, "DPUPR", pu, *roads, "REVISED", 4000, 1000, 25.0, 2, 4000, 100.0),
        ("P2", "B5", True, "DPUPR", pu, *roads, "REVISED", 4000, 3000, 75.0, 2, 4000, 100.0),
        ("P3", "B6", True, "DPUPR", pu, *water, "DRAFT", 800, 500, 62.5, 1, 500, 62.5),
        ("P4", "B5", True, "DPUPR", pu, *roads, "REVISED", 4000, 700, 17.5, 2, 4000, 100.0),
        ("P5", "B9", False, "", "", "", "", "", 0, 200, None, 1, 200, None),  # no such line
        ("P7", None, False, "", "", "", "", "", 0, 100, None, 0, 0, None),  # no line recorded
    ]


def test_every_ready_view_answers_a_read_only_analyst_session(client, tmp_path):
    settings = read_only_settings(load_settings(run_dir=tmp_path))
    for view in READY_VIEWS:
        assert client.query(f"SELECT count() FROM {view.name}", settings=settings).result_rows[0][0] > 0, view.name
    comments = dict(rows(client, "SELECT name, comment FROM system.tables WHERE name LIKE 'ready_%'"))
    assert set(comments) == {v.name for v in READY_VIEWS} and all(comments.values())


def test_the_readme_questions_answer(client, tmp_path):
    """The README's example questions, as `backbone sql` sends them: read-only, each answers."""
    text = (PROJECT_ROOT / "README.md").read_text()
    block = text.split("<!-- analyst questions:", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    prefix = '.venv/bin/backbone sql "'
    questions = [line[len(prefix) : -1] for line in block.splitlines() if line.startswith(prefix)]
    assert len(questions) == 5
    settings = read_only_settings(load_settings(run_dir=tmp_path))
    answers = [client.query(sql, settings=settings).result_rows for sql in questions]
    assert answers[0][0][0] == "" and answers[4] == [(REGIONS[KEC_A]["name"], "Paket P1", 50.0, 30.0, 20.0)]
    # Spending as of the latest month with disbursements, whatever today's date: one month, every office.
    assert answers[1] and len({(row[0], row[1]) for row in answers[1]}) == 1


def test_working_days_in_sql_are_the_calendars(client):
    """The views' working-day arithmetic (sinks/ready_workdays.py, on ref_holidays) against
    contract/workdays.py: every start day from before the calendar's first holiday to after its last
    (weekends, holidays, joint leave, year ends), at 00:30 and 23:30 local time, ending the day before,
    the same day and up to 40 days later at the other end of the day; deadlines of 0 to 24 working days."""
    first = CALENDAR.first - timedelta(days=12)
    days = (CALENDAR.last - first).days + 12
    sql = f"""WITH {calendar(DAYS_OFF)}
SELECT toUnixTimestamp64Milli(s), toUnixTimestamp64Milli(e), sla, {working_days("s", "e")}, {due_date("s", "sla")}
FROM (
    SELECT toDateTime64('{first} 00:30:00', 3, 'Asia/Jakarta') + toIntervalDay(intDiv(number, 2))
               + toIntervalMinute(number % 2 * 1380) AS s,
           arrayJoin([-1, 0, 1, 2, 3, 4, 5, 7, 9, 13, 40]) AS span,
           s + toIntervalDay(span) + toIntervalMinute(if(number % 2 = 0, 1380, -1380)) AS e,
           toInt32((number + span) % 25) AS sla
    FROM numbers({2 * days})
)"""
    got = rows(client, sql)
    assert len(got) == 2 * days * 11
    wrong = [
        (start, end, sla, lead, due)
        for start, end, sla, lead, due in got
        if (lead, due) != (CALENDAR.working_days_between(start, end), CALENDAR.due_date(start, sla))
    ]
    assert wrong == []
