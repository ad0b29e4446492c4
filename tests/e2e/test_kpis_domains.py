"""Known answers for the education, infrastructure and village finance KPIs (kpis/*.yaml) on the real
stack: per domain a hand-computable script of changes (creations, updates that move entities between
groups, deletes, duplicate and replayed deliveries, late events inside and past the grace period)
produced onto the clean topics, the KPI worker and the sink running as real processes, and every KPI
row asserted to its exact figure. In the village finance script the worker and the sink are killed
with SIGKILL mid-way and restarted, and the figures come out the same.

One pipeline (one sink, one KPI worker) serves the whole file: every domain has its own topics and
tables, so the scripts do not meet. Expected rows are keyed (group values..., window_start); window
starts are the first of a month in WIB, shown in UTC."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
import requests

from backbone.settings import Settings
from contract.bootstrap import bootstrap
from devstack.procs import Child
from devstack.stack import StackAddresses
from tests.helpers import CleanWriter, kpi_figures, kpi_rows, module_settings, query, settle, stage_child

WIB = timezone(timedelta(hours=7))
KAPAS, DANDER, BAURENO = "35.22.14.2011", "35.22.06.2002", "35.22.10.2006"  # a desa in each kecamatan
KECAMATAN = {KAPAS: "Kapas", DANDER: "Dander", BAURENO: "Baureno"}
MAR, APR, MAY = "2026-02-28 17:00:00.000", "2026-03-31 17:00:00.000", "2026-04-30 17:00:00.000"
JUL, AUG, SEP = "2026-06-30 17:00:00.000", "2026-07-31 17:00:00.000", "2026-08-31 17:00:00.000"
HASHED = "h" * 32  # what a personal field looks like on a clean topic
GRADE = {"SD": 1, "SMP": 7, "SMA": 10}  # a first grade of each level


def wib(month: int, day: int, hour: int = 9) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=WIB)


@dataclass
class Pipeline:
    """The sink and the KPI worker of one isolated pipeline on the shared stack."""

    settings: Settings
    children: dict[str, Child] = field(default_factory=dict)
    started: int = 0

    def running(self) -> tuple[Child, ...]:
        """Both processes (as conftest's stage_process starts them), started again where dead."""
        for stage in ("sink", "kpi"):
            if stage not in self.children or not self.children[stage].alive():
                self.started += 1
                self.children[stage] = stage_child(self.settings, stage, f"{stage}-{self.started}").start()
        return tuple(self.children.values())

    @property
    def port(self) -> str:
        return self.children["sink"].env["BACKBONE_QUERY_PORT"]

    def counts(self, groups: dict[str, tuple]) -> dict[str, int | None]:
        """{table: count of the group} for one group of each KPI table (None: no row)."""
        return {table: (kpi_rows(self.port, table) or {}).get(g, {}).get("count") for table, g in groups.items()}


@pytest.fixture(scope="module")
def pipeline(stack: StackAddresses, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    settings = module_settings(stack, tmp_path_factory.mktemp("kpi-domains"), "kd")
    bootstrap(settings)
    found = Pipeline(settings)
    found.running()
    try:
        yield found
    finally:
        for child in reversed(list(found.children.values())):
            child.stop()


# -- education ------------------------------------------------------------------------------------


def enrolment(w: CleanWriter, key: str, op: str, level: str, desa: str, status: str, enrolled: datetime) -> tuple:
    kinds = {"ACTIVE": "NEW", "TRANSFERRED": "TRANSFER", "DROPPED_OUT": "DROPOUT", "GRADUATED": "GRADUATION"}
    return w.send(
        key, op, enrolment_id=key, student_nisn=HASHED, student_name=HASHED, student_village_code=desa,
        student_kecamatan_name=KECAMATAN[desa], school_npsn="20500001", level=level, grade=GRADE[level],
        event_kind=kinds[status], status=status, enrolled_at=enrolled, changed_at=datetime.now(WIB),
    )


def school(w: CleanWriter, key: str, op: str, level: str, ownership: str, desa: str, capacity: int) -> tuple:
    return w.send(
        key, op, npsn=key, name=f"{level} {key}", level=level, ownership=ownership, village_code=desa,
        kecamatan_name=KECAMATAN[desa], student_capacity=capacity, headmaster="Plt. Kepala Sekolah", accreditation="B",
        updated_at=datetime.now(WIB),
    )


EDUCATION = {
    "kpi_education_active_enrolment": ("count",),
    "kpi_education_enrolment_by_status": ("count",),
    "kpi_education_admissions_per_month": ("count",),
    "kpi_education_schools": ("count",),
    "kpi_education_school_capacity": ("count", "sum"),
}


def test_education_kpis_known_answer(pipeline: Pipeline) -> None:
    alive = pipeline.running()
    enrolments, schools = CleanWriter(pipeline.settings, "enrolment"), CleanWriter(pipeline.settings, "school")
    # Creations; E5 (20 Sep) moves the admissions watermark past July's end + 30 days of grace.
    e1_created = enrolment(enrolments, "E1", "c", "SD", KAPAS, "ACTIVE", wib(7, 13))
    enrolment(enrolments, "E2", "c", "SD", KAPAS, "ACTIVE", wib(7, 14))
    enrolment(enrolments, "E3", "c", "SMP", BAURENO, "ACTIVE", wib(7, 15))
    e4_created = enrolment(enrolments, "E4", "c", "SMP", KAPAS, "ACTIVE", wib(8, 3))
    enrolment(enrolments, "E5", "c", "SD", BAURENO, "ACTIVE", wib(9, 20))
    # Moves: E1 drops out, E3 transfers out (July is closed: admissions keep them), E4's family moves
    # to Dander (August is open: E4 leaves (SMP, Kapas) for (SMP, Dander) in every KPI).
    e1_dropped = enrolment(enrolments, "E1", "u", "SD", KAPAS, "DROPPED_OUT", wib(7, 13))
    enrolment(enrolments, "E3", "u", "SMP", BAURENO, "TRANSFERRED", wib(7, 15))
    enrolment(enrolments, "E4", "u", "SMP", DANDER, "ACTIVE", wib(8, 3))
    # Late: E6 (25 Aug) within the grace, E7 (20 Jul) past it: live, but not in July's admissions.
    enrolment(enrolments, "E6", "c", "SMP", KAPAS, "ACTIVE", wib(8, 25))
    enrolment(enrolments, "E7", "c", "SD", KAPAS, "ACTIVE", wib(7, 20))
    # A created-then-deleted enrolment leaves every group; a duplicate and a replayed old change.
    enrolment(enrolments, "E8", "c", "SMA", BAURENO, "ACTIVE", wib(9, 1))
    enrolment(enrolments, "E8", "d", "SMA", BAURENO, "ACTIVE", wib(9, 1))
    enrolments.raw(*e1_dropped)
    enrolments.raw(*e4_created)
    enrolments.raw(*e1_created)
    # Schools: S3 becomes a state school (moves group), S1 grows, S2 is removed from the register.
    s1_created = school(schools, "S1", "c", "SD", "NEGERI", KAPAS, 200)
    school(schools, "S2", "c", "SMP", "NEGERI", KAPAS, 300)
    school(schools, "S3", "c", "SD", "SWASTA", BAURENO, 120)
    school(schools, "S3", "u", "SD", "NEGERI", BAURENO, 150)
    s1_grown = school(schools, "S1", "u", "SD", "NEGERI", KAPAS, 240)
    school(schools, "S2", "d", "SMP", "NEGERI", KAPAS, 300)
    schools.raw(*s1_grown)
    schools.raw(*s1_created)

    expected = {
        # ACTIVE at the end: E2, E7 (SD Kapas); E5 (SD Baureno); E6 (SMP Kapas); E4 (SMP Dander).
        # Emptied: SMP Baureno (E3 transferred), SMA Baureno (E8 deleted).
        "kpi_education_active_enrolment": {
            ("SD", "Kapas", None): (2,),
            ("SD", "Baureno", None): (1,),
            ("SMP", "Kapas", None): (1,),
            ("SMP", "Dander", None): (1,),
            ("SMP", "Baureno", None): (0,),
            ("SMA", "Baureno", None): (0,),
        },
        "kpi_education_enrolment_by_status": {
            ("SD", "ACTIVE", "Kapas", None): (2,),  # E2, E7 (E1 left)
            ("SD", "DROPPED_OUT", "Kapas", None): (1,),  # E1
            ("SD", "ACTIVE", "Baureno", None): (1,),  # E5
            ("SMP", "ACTIVE", "Kapas", None): (1,),  # E6 (E4 left)
            ("SMP", "ACTIVE", "Dander", None): (1,),  # E4
            ("SMP", "ACTIVE", "Baureno", None): (0,),  # E3 left
            ("SMP", "TRANSFERRED", "Baureno", None): (1,),  # E3
            ("SMA", "ACTIVE", "Baureno", None): (0,),  # E8 deleted
        },
        # Month of enrolment: July E1, E2 (SD Kapas; E7 came past the grace), E3 (SMP Baureno);
        # August E4 (moved to Dander), E6 (late within the grace); September E5, E8 deleted.
        "kpi_education_admissions_per_month": {
            ("SD", "Kapas", JUL): (2,),
            ("SMP", "Baureno", JUL): (1,),
            ("SMP", "Kapas", AUG): (1,),
            ("SMP", "Dander", AUG): (1,),
            ("SD", "Baureno", SEP): (1,),
            ("SMA", "Baureno", SEP): (0,),
        },
        "kpi_education_schools": {
            ("SD", "NEGERI", "Kapas", None): (1,),  # S1
            ("SMP", "NEGERI", "Kapas", None): (0,),  # S2 deleted
            ("SD", "SWASTA", "Baureno", None): (0,),  # S3 left
            ("SD", "NEGERI", "Baureno", None): (1,),  # S3
        },
        "kpi_education_school_capacity": {
            ("SD", "Kapas", None): (1, 240),  # S1 grown from 200; its replayed creation changed nothing
            ("SMP", "Kapas", None): (0, 0),
            ("SD", "Baureno", None): (1, 150),  # S3, 120 then 150
        },
    }
    settle(lambda: kpi_figures(pipeline.port, EDUCATION, keep_empty=True), expected, "the education KPIs", alive)


# -- infrastructure -------------------------------------------------------------------------------


def project(
    w: CleanWriter, key: str, op: str, desa: str, status: str, value: int, physical: float, financial: float
) -> tuple:
    return w.send(
        key, op, project_id=key, name=f"Peningkatan Jalan {key}", category="ROAD", village_code=desa,
        kecamatan_name=KECAMATAN[desa], contractor=None if status in ("PLANNED", "TENDER") else "CV Maju Jaya",
        contract_value=Decimal(f"{value}.00"), fiscal_year=2026, physical_progress_pct=physical,
        financial_progress_pct=financial, status=status, updated_at=datetime.now(WIB),
    )


INFRASTRUCTURE = {
    "kpi_infrastructure_projects_by_status": ("count",),
    "kpi_infrastructure_contract_value": ("count", "sum"),
    "kpi_infrastructure_physical_progress": ("count", "sum", "average"),
    "kpi_infrastructure_financial_progress": ("count", "sum", "average"),
}


def test_infrastructure_kpis_known_answer(pipeline: Pipeline) -> None:
    alive = pipeline.running()
    projects = CleanWriter(pipeline.settings, "project")
    k1_planned = project(projects, "K1", "c", KAPAS, "PLANNED", 500_000_000, 0, 0)
    k2_tender = project(projects, "K2", "c", KAPAS, "TENDER", 1_200_000_000, 0, 0)
    project(projects, "K3", "c", BAURENO, "IN_PROGRESS", 800_000_000, 40, 30)
    project(projects, "K4", "c", BAURENO, "IN_PROGRESS", 300_000_000, 60, 50)
    project(projects, "K5", "c", DANDER, "CONTRACTED", 2_000_000_000, 10, 20)
    project(projects, "K6", "c", BAURENO, "IN_PROGRESS", 400_000_000, 20, 10)
    # K2 signed below its ceiling (moves from TENDER to CONTRACTED, joins the progress averages);
    # K3 reports progress; K4 completes (leaves the averages); K1 is cancelled and deleted.
    project(projects, "K2", "u", KAPAS, "CONTRACTED", 1_150_000_000, 0, 0)
    k3_progress = project(projects, "K3", "u", BAURENO, "IN_PROGRESS", 800_000_000, 70, 55)
    project(projects, "K4", "u", BAURENO, "COMPLETED", 300_000_000, 100, 95)
    project(projects, "K1", "d", KAPAS, "PLANNED", 500_000_000, 0, 0)
    projects.raw(*k3_progress)  # duplicate delivery
    projects.raw(*k2_tender)  # old changes delivered again after newer ones
    projects.raw(*k1_planned)

    y, dept = "2026", "DPUPR"  # fiscal year; the department is the source system's (source_department)
    expected = {
        "kpi_infrastructure_projects_by_status": {
            (y, dept, "Kapas", "PLANNED", None): (0,),  # K1 deleted
            (y, dept, "Kapas", "TENDER", None): (0,),  # K2 left
            (y, dept, "Kapas", "CONTRACTED", None): (1,),  # K2
            (y, dept, "Baureno", "IN_PROGRESS", None): (2,),  # K3, K6 (K4 left)
            (y, dept, "Baureno", "COMPLETED", None): (1,),  # K4
            (y, dept, "Dander", "CONTRACTED", None): (1,),  # K5
        },
        "kpi_infrastructure_contract_value": {
            (y, dept, "Kapas", "PLANNED", None): (0, 0),
            (y, dept, "Kapas", "TENDER", None): (0, 0),
            (y, dept, "Kapas", "CONTRACTED", None): (1, 1_150_000_000),
            (y, dept, "Baureno", "IN_PROGRESS", None): (2, 1_200_000_000),  # 800M + 400M
            (y, dept, "Baureno", "COMPLETED", None): (1, 300_000_000),
            (y, dept, "Dander", "CONTRACTED", None): (1, 2_000_000_000),
        },
        # Under way (CONTRACTED, IN_PROGRESS): Kapas K2 0 %; Baureno K3 70 and K6 20 (K4 left at
        # completion): 90 / 2 = 45; Dander K5 10. Financial: 0; 55 + 10 = 65, / 2 = 32.5; 20.
        "kpi_infrastructure_physical_progress": {
            (y, dept, "Kapas", None): (1, 0, 0),
            (y, dept, "Baureno", None): (2, 90, 45),
            (y, dept, "Dander", None): (1, 10, 10),
        },
        "kpi_infrastructure_financial_progress": {
            (y, dept, "Kapas", None): (1, 0, 0),
            (y, dept, "Baureno", None): (2, 65, 32.5),
            (y, dept, "Dander", None): (1, 20, 20),
        },
    }
    settle(
        lambda: kpi_figures(pipeline.port, INFRASTRUCTURE, keep_empty=True), expected, "the infrastructure KPIs", alive
    )


# -- village finance ------------------------------------------------------------------------------


def fund(w: CleanWriter, key: str, op: str, desa: str, source: str, stage: str, allocation: int, disbursed: int):
    return w.send(
        key, op, fund_id=key, village_code=desa, kecamatan_name=KECAMATAN[desa], fiscal_year=2026, source=source,
        allocation=Decimal(f"{allocation}.00"), disbursed=Decimal(f"{disbursed}.00"), stage=stage,
        updated_at=datetime.now(WIB),
    )


def spending(w: CleanWriter, key: str, op: str, desa: str, kind: str, source: str, amount: int, spent: datetime):
    return w.send(
        key, op, spending_id=key, village_code=desa, kecamatan_name=KECAMATAN[desa], fiscal_year=2026, field=kind,
        activity=f"Kegiatan {key}", amount=Decimal(f"{amount}.00"), fund_source=source, spent_at=spent,
        recipient_name=HASHED if kind == "DISASTER_EMERGENCY" else None,  # BLT Dana Desa names a household
    )


VILLAGE_FINANCE = {
    "kpi_village_finance_funds_allocated": ("count", "sum"),
    "kpi_village_finance_funds_received": ("count", "sum"),
    "kpi_village_finance_spent_per_month": ("count", "sum"),
    "kpi_village_finance_spent_by_field": ("count", "sum"),
}
M = 1_000_000
VILLAGE_FINANCE_EXPECTED = {
    "kpi_village_finance_funds_allocated": {
        ("2026", "Kapas", KAPAS, "DD", None): (1, 1000 * M),  # F1
        ("2026", "Kapas", KAPAS, "ADD", None): (1, 650 * M),  # F2, revised from 600M
        ("2026", "Dander", DANDER, "DD", None): (1, 900 * M),  # F3 (F4 deleted)
    },
    # Stage reached: F1 TAHAP_2 with 800M (left ALLOCATED, then TAHAP_1; the replayed TAHAP_1 change
    # moved nothing), F2 still ALLOCATED, F3 TAHAP_1 with 360M (its duplicate counted once).
    "kpi_village_finance_funds_received": {
        ("2026", "Kapas", KAPAS, "DD", "TAHAP_2", None): (1, 800 * M),
        ("2026", "Kapas", KAPAS, "ADD", "ALLOCATED", None): (1, 0),
        ("2026", "Dander", DANDER, "DD", "TAHAP_1", None): (1, 360 * M),
    },
    # Month of spending. March: V1, V2, V3; not V7 (31 March), which came after V4 (15 April) had
    # closed March (1 April + 7 days' grace). April: V4, moved from ADD to DD and raised to 12M, and
    # V6 (28 April, late but within April's grace). May: V5, created and deleted (a count of 0).
    "kpi_village_finance_spent_per_month": {
        ("Kapas", KAPAS, "DD", MAR): (1, 150 * M),  # V1
        ("Kapas", KAPAS, "ADD", MAR): (1, 40 * M),  # V2
        ("Dander", DANDER, "DD", MAR): (1, 27 * M),  # V3
        ("Kapas", KAPAS, "DD", APR): (1, 12 * M),  # V4
        ("Dander", DANDER, "DD", APR): (1, 20 * M),  # V6
    },
    "kpi_village_finance_spent_by_field": {
        ("Kapas", "DEVELOPMENT", MAR): (1, 150 * M),
        ("Kapas", "GOVERNANCE", MAR): (1, 40 * M),  # V2 (not V7)
        ("Dander", "DISASTER_EMERGENCY", MAR): (1, 27 * M),
        ("Kapas", "COMMUNITY", APR): (1, 12 * M),  # V4, 10M then 12M
        ("Dander", "EMPOWERMENT", APR): (1, 20 * M),
    },
}


def funds_recomputed(port: str) -> dict[tuple, tuple]:
    """funds_received computed again from the current-state table the sink keeps."""
    try:
        text = query(
            port,
            "SELECT toString(fiscal_year) AS y, kecamatan_name, village_code, toString(source) AS s, "
            "toString(stage) AS st, toUInt64(count()) AS n, toInt64(sum(disbursed)) AS total "
            "FROM village_finance_village_fund_current GROUP BY ALL FORMAT JSONEachRow",
        )
    except (AssertionError, requests.ConnectionError):
        return {}
    found = {}
    for line in text.splitlines():
        r = json.loads(line)
        found[(r["y"], r["kecamatan_name"], r["village_code"], r["s"], r["st"], None)] = (int(r["n"]), int(r["total"]))
    return found


def test_village_finance_kpis_known_answer_survive_kill_of_worker_and_sink(pipeline: Pipeline) -> None:
    alive = pipeline.running()
    funds = CleanWriter(pipeline.settings, "village_fund")
    spendings = CleanWriter(pipeline.settings, "village_spending")
    # Phase 1: allocations, F1's first stage; spending in March and (V4, 15 April) April, which
    # closes March for good (its end, 1 April, plus 7 days' grace is before 15 April).
    fund(funds, "F1", "c", KAPAS, "DD", "ALLOCATED", 1000 * M, 0)
    fund(funds, "F2", "c", KAPAS, "ADD", "ALLOCATED", 600 * M, 0)
    fund(funds, "F3", "c", DANDER, "DD", "ALLOCATED", 900 * M, 0)
    fund(funds, "F4", "c", DANDER, "PADES", "ALLOCATED", 50 * M, 0)
    f1_tahap1 = fund(funds, "F1", "u", KAPAS, "DD", "TAHAP_1", 1000 * M, 400 * M)
    spending(spendings, "V1", "c", KAPAS, "DEVELOPMENT", "DD", 150 * M, wib(3, 10))
    spending(spendings, "V2", "c", KAPAS, "GOVERNANCE", "ADD", 40 * M, wib(3, 20))
    spending(spendings, "V3", "c", DANDER, "DISASTER_EMERGENCY", "DD", 27 * M, wib(3, 25))
    spending(spendings, "V4", "c", KAPAS, "COMMUNITY", "ADD", 10 * M, wib(4, 15))
    # Groups that are left later: counted before the kill, then emptied after the restart.
    emptied = {
        "kpi_village_finance_funds_allocated": ("2026", "Dander", DANDER, "PADES", None),  # F4 deleted
        "kpi_village_finance_funds_received": ("2026", "Dander", DANDER, "PADES", "ALLOCATED", None),
        "kpi_village_finance_spent_per_month": ("Kapas", KAPAS, "ADD", APR),  # V4 moves to DD
    }
    settle(lambda: pipeline.counts(emptied), dict.fromkeys(emptied, 1), "the first village finance KPI rows", alive)

    # Phase 2: two more stages, then kill -9 of the worker and the sink, wherever they are.
    fund(funds, "F1", "u", KAPAS, "DD", "TAHAP_2", 1000 * M, 800 * M)
    f3_tahap1 = fund(funds, "F3", "u", DANDER, "DD", "TAHAP_1", 900 * M, 360 * M)
    pipeline.children["kpi"].kill()
    pipeline.children["sink"].kill()

    # Phase 3, while both are down: a revision, deletes, late spending, a move, duplicates, a replay.
    fund(funds, "F2", "u", KAPAS, "ADD", "ALLOCATED", 650 * M, 0)
    fund(funds, "F4", "d", DANDER, "PADES", "ALLOCATED", 50 * M, 0)
    spending(spendings, "V5", "c", KAPAS, "DEVELOPMENT", "DD", 60 * M, wib(5, 4))
    spending(spendings, "V6", "c", DANDER, "EMPOWERMENT", "DD", 20 * M, wib(4, 28))  # April still open
    spending(spendings, "V7", "c", KAPAS, "GOVERNANCE", "ADD", 5 * M, wib(3, 31))  # March closed
    v4_moved = spending(spendings, "V4", "u", KAPAS, "COMMUNITY", "DD", 12 * M, wib(4, 15))
    spending(spendings, "V5", "d", KAPAS, "DEVELOPMENT", "DD", 60 * M, wib(5, 4))
    funds.raw(*f3_tahap1)  # duplicate delivery
    funds.raw(*f1_tahap1)  # an old change delivered again after newer ones
    spendings.raw(*v4_moved)

    alive = pipeline.running()
    settle(
        lambda: kpi_figures(pipeline.port, VILLAGE_FINANCE),
        VILLAGE_FINANCE_EXPECTED,
        "the village finance KPIs after kill -9 of the worker and the sink",
        alive,
    )
    # The groups left are rows with a count of 0, not missing rows.
    settle(lambda: pipeline.counts(emptied), dict.fromkeys(emptied, 0), "the emptied groups", alive)
    # The live gauge equals its recomputation from the current-state table: the kills, the
    # duplicate and the replayed old change left no trace.
    settle(
        lambda: funds_recomputed(pipeline.port),
        VILLAGE_FINANCE_EXPECTED["kpi_village_finance_funds_received"],
        "funds_received equal to its recomputation from village_finance_village_fund_current",
        alive,
    )

