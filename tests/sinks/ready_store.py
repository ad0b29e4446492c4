"""A small, hand-made set of current-state rows per domain for the ready views' known-answer tests
(tests/sinks/test_ready_views.py), with the dimensions as the sink keeps them. Times are given in
Asia/Jakarta (WIB, UTC+7), as the offices live them; "now"-relative rows make open, overdue and
this-month answers exact on any day. Deleted entities are among them: the views must not count them."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from backbone.settings import PROJECT_ROOT
from contract.departments import load_departments
from contract.reference import load_regions
from contract.workdays import load_calendar
from sinks import dimensions

WIB = timezone(timedelta(hours=7))
NOW = datetime.now(UTC)
TODAY = NOW.astimezone(WIB).date()
REGIONS = load_regions(PROJECT_ROOT / "data" / "bojonegoro_regions.csv")
CALENDAR = load_calendar(PROJECT_ROOT / "data" / "holidays_id.csv")
KECAMATAN = sorted(c for c, r in REGIONS.items() if r["level"] == "kecamatan")
KEC_A, KEC_B, KEC_C = KECAMATAN[0], KECAMATAN[1], KECAMATAN[2]


def desa_of(kecamatan: str) -> list[str]:
    return sorted(c for c, r in REGIONS.items() if r["parent"] == kecamatan and c.split(".")[3].startswith("2"))


D1, D2 = desa_of(KEC_A)[:2]
DEPARTMENTS = load_departments()


def office_of(kecamatan: str) -> str:
    """The kecamatan's own office in data/departments.csv."""
    return next(c for c, d in DEPARTMENTS.items() if d["name"] == f"Kecamatan {REGIONS[kecamatan]['name']}")


OFFICE_A, OFFICE_B = office_of(KEC_A), office_of(KEC_B)
ONE_STOP = "DPMPTSP"
D_B, D_C = desa_of(KEC_B)[0], desa_of(KEC_C)[0]
_versions = itertools.count(1)


def wib(*args: int) -> datetime:
    return datetime(*args, tzinfo=WIB).astimezone(UTC)


def region(code: str, prefix: str = "") -> dict[str, Any]:
    """The enrichment the processor adds next to a village code."""
    kec = REGIONS[code]["parent"]
    return {
        f"{prefix}village_code": code,
        f"{prefix}village_name": REGIONS[code]["name"],
        f"{prefix}kecamatan_code": kec,
        f"{prefix}kecamatan_name": REGIONS[kec]["name"],
    }


def put(client: Any, table: str, key: str, rows: list[dict[str, Any]]) -> None:
    """Current-state rows of `table` (the other columns take their defaults)."""
    names = sorted({n for r in rows for n in r} | {"entity_key", "version", "is_deleted"})
    values = [{"is_deleted": False, **r, "entity_key": str(r[key]), "version": next(_versions)} for r in rows]
    client.insert(f"{table}_state", [[v.get(n) for n in names] for v in values], column_names=names)


def permit(
    key: str,
    kind: str,
    status: str,
    submitted: datetime,
    decided: datetime | None,
    sla: int,
    village: str,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "application_id": key,
        "permit_type": kind,
        "status": status,
        "submitted_at": submitted,
        "decided_at": decided,
        "sla_days": sla,
        "office_code": ONE_STOP,
        **region(village),
        **extra,
    }


def permits(client: Any) -> None:
    long_ago = NOW - timedelta(days=60)
    put(
        client,
        "licensing_permit_application",
        "application_id",
        [
            permit("L1", "PBG", "APPROVED", wib(2025, 3, 3, 9), wib(2025, 3, 7, 10), 5, D1),  # 4 working days
            permit("L2", "PBG", "REJECTED", wib(2025, 3, 3, 9), wib(2025, 3, 17, 10), 5, D1),  # 10
            # Nyepi, Idulfitri and their joint leave days in between: 1 working day (8 April). Filed at
            # the kecamatan office.
            permit("L3", "NIB", "APPROVED", wib(2025, 3, 27, 9), wib(2025, 4, 8, 10), 3, D1, office_code=OFFICE_A),
            # Submitted and decided on 4 March in Jakarta (3 March in UTC): 0 working days.
            permit("L4", "NIB", "APPROVED", wib(2025, 3, 4, 0, 30), wib(2025, 3, 4, 15), 1, D1),
            permit("L5", "PBG", "APPROVED", wib(2025, 3, 3, 9), wib(2025, 3, 4, 9), 5, D1, is_deleted=True),
            permit("O1", "PBG", "SUBMITTED", long_ago, None, 5, D1),  # overdue
            permit("O2", "PBG", "VERIFIED", NOW, None, 10, D2, office_code=None),  # from before office_code
            permit("O3", "NIB", "SUBMITTED", long_ago, None, 3, D_B, office_code=OFFICE_B),  # overdue
            permit("O4", "NIB", "SUBMITTED", long_ago, None, 3, D_B, is_deleted=True, office_code=OFFICE_B),
        ],
    )


def line(
    key: str,
    dept: str,
    programme: str,
    activity: str,
    account: str,
    allocation: int,
    revised: int | None,
    stage: str,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "line_id": key,
        "fiscal_year": 2025,
        "department_code": dept,
        "programme_code": programme,
        "activity_code": activity,
        "account_code": account,
        "allocation": Decimal(allocation),
        "revised_allocation": None if revised is None else Decimal(revised),
        "stage": stage,
        "department_name": "",
        "programme_name": "",
        **extra,
    }


def paid(key: str, line_id: str, month: int, amount: int, **extra: Any) -> dict[str, Any]:
    return {
        "realisation_id": key,
        "line_id": line_id,
        "fiscal_year": 2025,
        "month": month,
        "amount": Decimal(amount),
        **extra,
    }


PU = {"department_name": "Dinas Pekerjaan Umum dan Penataan Ruang"}
PU_ROADS = {**PU, "programme_name": "Program Penyelenggaraan Jalan", "activity_name": "Penyelenggaraan Jalan"}
FY = {"fiscal_year": 2026}
PU_WATER = {**PU, "programme_name": "Program Pengelolaan Sumber Daya Air", "activity_name": "Sistem Irigasi"}


def budget(client: Any) -> None:
    put(
        client,
        "budget_budget_line",
        "line_id",
        [
            line("B1", "DISDIK", "1.01.02", "1.01.02.2.01", "5.1.02.01", 1000, None, "ENACTED"),
            line("B2", "DISDIK", "1.01.02", "1.01.02.2.01", "5.1.02.02", 500, 600, "REVISED"),
            line("B3", "DINKES", "1.02.02", "1.02.02.2.01", "5.2.02.01", 2000, None, "ENACTED"),
            line("B4", "DINKES", "1.02.02", "1.02.02.2.01", "5.2.02.02", 999, None, "DRAFT"),
        ],
    )
    put(
        client,
        "budget_realisation",
        "realisation_id",
        [
            paid("R1", "B1", 1, 100),
            paid("R2", "B1", 3, 200),
            paid("R3", "B2", 2, 300),
            paid("R4", "B3", 12, 1000),
            paid("R5", "B1", 2, 50, is_deleted=True),
        ],
    )


def works_budget(client: Any) -> None:
    """The public-works lines of fiscal year 2026 the projects refer to (roads revised down, irrigation
    still a draft): not part of `fill`, whose budget totals the portal's tests know."""
    put(
        client,
        "budget_budget_line",
        "line_id",
        [
            line("B5", "DPUPR", "1.03.10", "1.03.10.2.01", "5.2.04.01.01", 5000, 4000, "REVISED", **PU_ROADS, **FY),
            line("B6", "DPUPR", "1.03.02", "1.03.02.2.03", "5.2.04.02.01", 800, None, "DRAFT", **PU_WATER, **FY),
        ],
    )


def village_finance(client: Any) -> None:
    fund = [
        ("F1", D1, "DD", 1000, 400, "TAHAP_1"),
        ("F2", D1, "ADD", 500, 500, "TAHAP_2"),
        ("F3", D2, "DD", 800, 0, "ALLOCATED"),
    ]
    put(
        client,
        "village_finance_village_fund",
        "fund_id",
        [
            {
                "fund_id": k,
                **region(v),
                "fiscal_year": 2025,
                "source": s,
                "allocation": Decimal(a),
                "disbursed": Decimal(d),
                "stage": st,
            }
            for k, v, s, a, d, st in fund
        ],
    )
    spending = [
        ("S1", D1, 100, wib(2025, 5, 10, 9), False),
        ("S2", D1, 50, NOW, False),
        ("S3", D2, 70, wib(2025, 6, 1, 0, 30), False),  # June in Jakarta, 31 May in UTC
        ("S4", D_B, 999, NOW, True),  # deleted: D_B has not reported
    ]
    put(
        client,
        "village_finance_village_spending",
        "spending_id",
        [
            {
                "spending_id": k,
                **region(v),
                "fiscal_year": 2025,
                "amount": Decimal(a),
                "spent_at": t,
                "is_deleted": deleted,
            }
            for k, v, a, t, deleted in spending
        ],
    )


def complaint(
    key: str,
    dept: str,
    channel: str,
    status: str,
    received: datetime,
    first: float | None,
    resolved: float | None,
    due: float,
) -> dict[str, Any]:
    """first, resolved: hours after receipt; due: days after receipt."""
    return {
        "ticket_id": key,
        "department_responsible": dept,
        "channel": channel,
        "status": status,
        "received_at": received,
        "first_response_at": None if first is None else received + timedelta(hours=first),
        "resolved_at": None if resolved is None else received + timedelta(hours=resolved),
        "resolution_due_at": received + timedelta(days=due),
        **region(D1),
    }


def complaints(client: Any) -> None:
    put(
        client,
        "participation_complaint",
        "ticket_id",
        [
            complaint("C1", "DPUPR", "WHATSAPP", "RESOLVED", wib(2025, 5, 5, 9), 2, 72, 14),
            complaint("C2", "DPUPR", "WHATSAPP", "IN_PROGRESS", NOW - timedelta(days=20), 4, None, 14),  # overdue
            complaint("C3", "DPUPR", "WEB", "RECEIVED", NOW - timedelta(hours=1), None, None, 14),
            complaint("C4", "DINKES", "WHATSAPP", "REJECTED", wib(2025, 5, 5, 9), 1, None, 14),
        ],
    )


def health(client: Any) -> None:
    visits = [
        ("V1", "PKM01", "PUSKESMAS", "OUTPATIENT", "DONE", False),
        ("V2", "PKM01", "PUSKESMAS", "OUTPATIENT", "REFERRED", False),
        ("V3", "PKM01", "PUSKESMAS", "IMMUNISATION", "REGISTERED", False),
        ("V4", "RSUD01", "RSUD", "EMERGENCY", "IN_CONSULTATION", False),
        ("V5", "PKM01", "PUSKESMAS", "OUTPATIENT", "DONE", True),
    ]
    put(
        client,
        "health_visit",
        "visit_id",
        [
            {
                "visit_id": k,
                "facility_code": f,
                "facility_type": t,
                "service": s,
                "status": st,
                "is_deleted": d,
                **region(D1, "facility_"),
            }
            for k, f, t, s, st, d in visits
        ],
    )
    wards = [("W1", "III", 20, 15), ("W2", "III", 10, 10), ("W3", "VIP", 4, 1)]
    put(
        client,
        "health_bed_occupancy",
        "ward_id",
        [
            {
                "ward_id": k,
                "hospital_name": "RSUD Sosodoro",
                "ward_class": c,
                "beds_total": t,
                "beds_occupied": o,
                "as_of": wib(2025, 5, 5, 6),
            }
            for k, c, t, o in wards
        ],
    )


def education(client: Any) -> None:
    put(
        client,
        "education_school",
        "npsn",
        [
            {"npsn": "1001", "level": "SD", **region(D1)},
            {"npsn": "2001", "level": "SMP", **region(D_B)},
        ],
    )
    enrolments = [
        ("E1", "1001", "SD", wib(2024, 7, 15, 8), D1, False),
        ("E2", "1001", "SD", wib(2025, 7, 14, 8), D1, False),
        ("E3", "1001", "SD", wib(2025, 8, 1, 8), D1, False),
        ("E4", "2001", "SMP", wib(2025, 6, 30, 8), D_B, False),  # still 2024/2025
        ("E5", "9999", "SMA", wib(2025, 7, 20, 8), D_C, False),  # school not in the register: student's kecamatan
        ("E6", "2001", "SMP", wib(2025, 7, 1, 1), D1, False),  # 1 July in Jakarta (30 June in UTC): 2025/2026
        ("E7", "1001", "SD", wib(2025, 7, 20, 8), D1, True),
    ]
    put(
        client,
        "education_enrolment",
        "enrolment_id",
        [
            {
                "enrolment_id": k,
                "school_npsn": s,
                "level": lv,
                "enrolled_at": t,
                "status": "ACTIVE",
                "is_deleted": d,
                **region(v, "student_"),
            }
            for k, s, lv, t, v, d in enrolments
        ],
    )


def infrastructure(client: Any) -> None:
    def project(key, village, status, start, end, physical, financial, value, line, **extra):
        return {
            "project_id": key,
            "name": f"Paket {key}",
            "category": "ROAD",
            "source_department": "DPUPR",
            **region(village),
            "status": status,
            "planned_start": TODAY + timedelta(days=start),
            "planned_end": TODAY + timedelta(days=end),
            "physical_progress_pct": float(physical),
            "financial_progress_pct": float(financial),
            "contract_value": Decimal(value),
            "fiscal_year": 2026,
            "budget_line_id": line,
            **extra,
        }

    put(
        client,
        "infrastructure_project",
        "project_id",
        [
            project("P1", D1, "IN_PROGRESS", -50, 50, 30, 20, 1000, "B5"),  # planned 50 %: 20 points behind
            project("P2", D2, "IN_PROGRESS", -50, 50, 45, 40, 3000, "B5"),  # 5 points behind: within the tolerance
            project("P3", D_B, "COMPLETED", -200, -100, 100, 95, 500, "B6"),
            project("P4", D_B, "TERMINATED", -200, -100, 10, 5, 700, "B5"),
            project("P5", D_C, "PLANNED", 10, 100, 0, 0, 200, "B9"),  # a line not known (yet)
            project("P6", D_C, "PLANNED", 10, 100, 0, 0, 9000, "B5", is_deleted=True),
            project("P7", D_C, "PLANNED", 10, 100, 0, 0, 100, None),  # from before budget_line_id
        ],
    )


def fill(client: Any) -> None:
    """The dimensions and every domain's rows into a migrated store."""
    now = datetime.now(UTC)
    regions = [
        [code, r["name"], r["level"], r["parent"], False, "ref.regions", 0, i, now]
        for i, (code, r) in enumerate(REGIONS.items())
    ]
    client.insert(dimensions.REGIONS_TABLE, regions, column_names=dimensions.COLUMNS[dimensions.REGIONS_TABLE])
    departments = [
        [code, d["name"], d["field_code"], d["kind"], False, "ref.departments", 0, i, now]
        for i, (code, d) in enumerate(load_departments().items())
    ]
    client.insert(
        dimensions.DEPARTMENTS_TABLE, departments, column_names=dimensions.COLUMNS[dimensions.DEPARTMENTS_TABLE]
    )
    for domain in (permits, budget, village_finance, complaints, health, education, infrastructure):
        domain(client)
