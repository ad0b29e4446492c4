"""Known answers for the budget and health KPIs (kpis/budget.yaml, kpis/health.yaml) on the real
stack: per domain a hand-computable script of changes (creations, updates that move entities between
groups, deletes, a duplicate delivery, a replayed older change and, for the windowed visits, late
events inside and past the grace period) produced onto the clean topics, the KPI worker and the sink
running as real processes, and every KPI row asserted to its exact figure. Neither domain declares
a deadline.

One pipeline (one sink, one KPI worker) serves the whole file: each domain has its own topics and
tables. Expected rows are keyed (group values..., window_start); window starts are WIB midnights,
shown in UTC; live gauges have None."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from backbone.settings import Settings
from contract.bootstrap import bootstrap
from devstack.procs import Child
from devstack.stack import StackAddresses
from tests.helpers import CleanWriter, kpi_figures, module_settings, settle, stage_child

WIB = timezone(timedelta(hours=7))
HASHED = "h" * 32  # what a personal field looks like on a clean topic
M = 1_000_000


def wib(month: int, day: int, hour: int = 9) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=WIB)


def rupiah(amount: int | str) -> Decimal:
    return Decimal(amount).quantize(Decimal("0.01"))


@dataclass
class Pipeline:
    settings: Settings
    sink: Child
    worker: Child

    @property
    def port(self) -> str:
        return self.sink.env["BACKBONE_QUERY_PORT"]

    @property
    def alive(self) -> tuple[Child, ...]:
        return self.sink, self.worker


@pytest.fixture(scope="module")
def pipeline(stack: StackAddresses, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    settings = module_settings(stack, tmp_path_factory.mktemp("kpi-budget-health"), "kbh")
    bootstrap(settings)
    children = [stage_child(settings, stage).start() for stage in ("sink", "kpi")]
    try:
        yield Pipeline(settings, *children)
    finally:
        for child in reversed(children):
            child.stop()


# -- budget ---------------------------------------------------------------------------------------

DEPARTMENTS = {
    "DISDIK": "Dinas Pendidikan",
    "DINKES": "Dinas Kesehatan",
    "DPUPR": "Dinas Pekerjaan Umum dan Penataan Ruang",
}
# programme -> (name, its activity, an expenditure account of that activity)
PROGRAMMES = {
    "1.01.02": ("Program Pengelolaan Pendidikan", "1.01.02.2.01", "5.2.03.01.01.0016"),
    "1.02.02": ("Program Pemenuhan Upaya Kesehatan Perorangan", "1.02.02.2.01", "5.2.02.07.01.0001"),
    "1.03.10": ("Program Penyelenggaraan Jalan", "1.03.10.2.01", "5.2.04.01.01.0003"),
    "1.03.05": ("Program Pengelolaan dan Pengembangan Sistem Drainase", "1.03.05.2.01", "5.2.04.02.07.0001"),
}


def line(
    w: CleanWriter, key: str, op: str, year: int, dept: str, programme: str, stage: str, allocation: int,
    revised: int | None = None,
) -> tuple:
    name, activity, account = PROGRAMMES[programme]
    return w.send(
        key, op, line_id=key, fiscal_year=year, department_code=dept, department_name=DEPARTMENTS[dept],
        programme_code=programme, programme_name=name, activity_code=activity, activity_name=f"Kegiatan {activity}",
        account_code=account, account_name=f"Belanja Modal {account}", allocation=rupiah(allocation),
        revised_allocation=None if revised is None else rupiah(revised), stage=stage, updated_at=datetime.now(WIB),
    )


def realisation(w: CleanWriter, key: str, op: str, line_id: str, dept: str, month: int, amount: int | str) -> tuple:
    return w.send(
        key, op, realisation_id=key, line_id=line_id, fiscal_year=2026, department_code=dept, month=month,
        amount=rupiah(amount), payment_type="LS", spent_at=wib(month, 10), document_number=f"SP2D/{key}/2026",
    )


BUDGET = {
    "kpi_budget_allocation": ("count", "sum"),
    "kpi_budget_revised_allocation": ("count", "sum"),
    "kpi_budget_realisation": ("count", "sum"),
}


def test_budget_kpis_known_answer(pipeline: Pipeline) -> None:
    lines = CleanWriter(pipeline.settings, "budget_line")
    spent = CleanWriter(pipeline.settings, "realisation")
    # Draft budget 2026 (and one 2027 line), then enacted: L1 cut from 5,000M to 4,800M.
    l1_draft = line(lines, "L1", "c", 2026, "DISDIK", "1.01.02", "DRAFT", 5000 * M)
    line(lines, "L2", "c", 2026, "DPUPR", "1.03.10", "DRAFT", 2000 * M)
    line(lines, "L3", "c", 2026, "DPUPR", "1.03.10", "DRAFT", 8000 * M)
    line(lines, "L4", "c", 2026, "DINKES", "1.02.02", "DRAFT", 1500 * M)
    line(lines, "L5", "c", 2027, "DPUPR", "1.03.10", "DRAFT", 1000 * M)
    line(lines, "L1", "u", 2026, "DISDIK", "1.01.02", "ENACTED", 4800 * M)
    line(lines, "L2", "u", 2026, "DPUPR", "1.03.10", "ENACTED", 2000 * M)
    line(lines, "L3", "u", 2026, "DPUPR", "1.03.10", "ENACTED", 8000 * M)
    line(lines, "L4", "d", 2026, "DINKES", "1.02.02", "DRAFT", 1500 * M)  # dropped in deliberation
    # Revision: L2 and L3 enter revised_allocation; a later shift moves L2 from roads (1.03.10)
    # to drainage (1.03.05) with 2,300M, in both KPIs.
    l2_revised = line(lines, "L2", "u", 2026, "DPUPR", "1.03.10", "REVISED", 2000 * M, 2500 * M)
    l3_revised = line(lines, "L3", "u", 2026, "DPUPR", "1.03.10", "REVISED", 8000 * M, 9000 * M)
    line(lines, "L2", "u", 2026, "DPUPR", "1.03.05", "REVISED", 2000 * M, 2300 * M)
    lines.raw(*l3_revised)  # duplicate delivery
    lines.raw(*l2_revised)  # older changes delivered again: would move L2 back, and restore 5,000M
    lines.raw(*l1_draft)

    # Disbursements: R2 corrected from March to April (and 200M to 250M), R5 cancelled; R3 and R6
    # carry cents, summed as decimals: 600,000,000.10 + 400,000,000.20 = 1,000,000,000.30.
    r2_march = realisation(spent, "R2", "c", "L1", "DISDIK", 3, 200 * M)
    realisation(spent, "R1", "c", "L1", "DISDIK", 3, 300 * M)
    realisation(spent, "R3", "c", "L3", "DPUPR", 3, "600000000.10")
    r4 = realisation(spent, "R4", "c", "L3", "DPUPR", 4, 500 * M)
    realisation(spent, "R5", "c", "L1", "DISDIK", 5, 100 * M)
    realisation(spent, "R6", "c", "L2", "DPUPR", 3, "400000000.20")
    realisation(spent, "R2", "u", "L1", "DISDIK", 4, 250 * M)
    realisation(spent, "R5", "d", "L1", "DISDIK", 5, 100 * M)
    spent.raw(*r4)  # duplicate delivery
    spent.raw(*r2_march)  # an older change again: would move R2 back to March

    expected = {
        "kpi_budget_allocation": {
            ("2026", "DISDIK", "1.01.02", None): (1, 4800 * M),  # L1, 5,000M then 4,800M
            ("2026", "DPUPR", "1.03.10", None): (1, 8000 * M),  # L3 (L2 left: 10,000M - 2,000M)
            ("2026", "DPUPR", "1.03.05", None): (1, 2000 * M),  # L2: its allocation moved with it
            ("2026", "DINKES", "1.02.02", None): (0, 0),  # L4 deleted
            ("2027", "DPUPR", "1.03.10", None): (1, 1000 * M),  # L5, another fiscal year
        },
        # REVISED lines only; L1 (ENACTED) is not in it.
        "kpi_budget_revised_allocation": {
            ("2026", "DPUPR", "1.03.10", None): (1, 9000 * M),  # L3 (L2's 2,500M left)
            ("2026", "DPUPR", "1.03.05", None): (1, 2300 * M),  # L2 after the shift
        },
        "kpi_budget_realisation": {
            ("2026", "DISDIK", "3", None): (1, 300 * M),  # R1 (R2 left)
            ("2026", "DISDIK", "4", None): (1, 250 * M),  # R2
            ("2026", "DISDIK", "5", None): (0, 0),  # R5 cancelled
            ("2026", "DPUPR", "3", None): (2, 1_000_000_000.30),  # R3 + R6
            ("2026", "DPUPR", "4", None): (1, 500 * M),  # R4, counted once
        },
    }
    read = lambda: kpi_figures(pipeline.port, BUDGET, keep_empty=True)  # noqa: E731
    settle(read, expected, "the budget KPIs", pipeline.alive)


# -- health ---------------------------------------------------------------------------------------

KAPAS, DANDER, KEPATIHAN = "35.22.14.2011", "35.22.06.2002", "35.22.15.1005"
# facility code -> (type, village code, village name, kecamatan name), as the simulator names them
FACILITIES = {
    "P35221401": ("PUSKESMAS", KAPAS, "Kapas", "Kapas"),
    "P35220601": ("PUSKESMAS", DANDER, "Dander", "Dander"),
    "RSUD3522001": ("RSUD", KEPATIHAN, "Kepatihan", "Bojonegoro"),
}
PKM_KAPAS, PKM_DANDER, RSUD = FACILITIES
JUN1, JUN2, JUN3 = "2026-05-31 17:00:00.000", "2026-06-01 17:00:00.000", "2026-06-02 17:00:00.000"


def visit(
    w: CleanWriter, key: str, op: str, facility: str, service: str, payer: str, visited: datetime,
    status: str = "REGISTERED",
) -> tuple:
    kind, village, village_name, kecamatan = FACILITIES[facility]
    return w.send(
        key, op, visit_id=key, facility_code=facility, facility_type=kind, facility_village_code=village,
        facility_village_name=village_name, facility_kecamatan_code=village.rsplit(".", 1)[0],
        facility_kecamatan_name=kecamatan, patient_nik=HASHED, patient_name=HASHED, patient_phone=None,
        service=service, diagnosis_icd10="J06.9" if status == "DONE" else None, payer=payer,
        fee=rupiah(0 if payer == "BPJS" and kind != "RSUD" else 150_000), status=status, visited_at=visited,
        updated_at=max(visited, datetime.now(WIB)),
    )


SOSODORO, PADANGAN = "RSUD Dr. R. Sosodoro Djatikoesoemo", "RSUD Padangan"


def ward(w: CleanWriter, key: str, op: str, hospital: str, name: str, ward_class: str, total: int, occupied: int):
    return w.send(
        key, op, ward_id=key, hospital_name=hospital, ward_name=name, ward_class=ward_class, beds_total=total,
        beds_occupied=occupied, as_of=datetime.now(WIB),
    )


HEALTH = {
    "kpi_health_visits_per_day": ("count",),
    "kpi_health_beds_occupied": ("count", "sum"),
    "kpi_health_beds_total": ("count", "sum"),
}


def test_health_kpis_known_answer(pipeline: Pipeline) -> None:
    visits = CleanWriter(pipeline.settings, "visit")
    wards = CleanWriter(pipeline.settings, "bed_occupancy")
    # 1 June: V1's payer turns out to be UMUM (its BPJS card inactive), V3 was registered as
    # immunisation but is antenatal care (MATERNAL): both move while 1 June is open.
    v1_bpjs = visit(visits, "V1", "c", PKM_KAPAS, "OUTPATIENT", "BPJS", wib(6, 1, 8))
    visit(visits, "V2", "c", PKM_KAPAS, "OUTPATIENT", "BPJS", wib(6, 1, 9))
    visit(visits, "V3", "c", PKM_KAPAS, "IMMUNISATION", "BPJS", wib(6, 1, 10))
    visit(visits, "V4", "c", RSUD, "EMERGENCY", "UMUM", wib(6, 1, 22))
    visit(visits, "V1", "u", PKM_KAPAS, "OUTPATIENT", "UMUM", wib(6, 1, 8), "IN_CONSULTATION")
    visit(visits, "V3", "u", PKM_KAPAS, "MATERNAL", "BPJS", wib(6, 1, 10), "IN_CONSULTATION")
    # V5 (3 June, 09:00) moves the event time past 1 June's end (2 June 00:00) plus one day of grace:
    # 1 June is closed, 2 June still open.
    visit(visits, "V5", "c", PKM_DANDER, "OUTPATIENT", "JAMKESDA", wib(6, 3, 9))
    v6_created = visit(visits, "V6", "c", PKM_KAPAS, "OUTPATIENT", "BPJS", wib(6, 2, 15))  # late, within
    visit(visits, "V7", "c", PKM_KAPAS, "OUTPATIENT", "BPJS", wib(6, 1, 11))  # late, past the grace
    visit(visits, "V4", "u", RSUD, "INPATIENT", "UMUM", wib(6, 1, 22), "IN_CONSULTATION")  # closed day: kept
    # 3 June: V8 entered under the wrong Puskesmas and corrected; V9 registered twice, one removed.
    v8_dander = visit(visits, "V8", "c", PKM_DANDER, "OUTPATIENT", "BPJS", wib(6, 3, 10))
    visit(visits, "V8", "u", PKM_KAPAS, "OUTPATIENT", "BPJS", wib(6, 3, 10))
    visit(visits, "V9", "c", RSUD, "OUTPATIENT", "BPJS", wib(6, 3, 11))
    visit(visits, "V9", "d", RSUD, "OUTPATIENT", "BPJS", wib(6, 3, 11))
    visits.raw(*v6_created)  # duplicate delivery
    visits.raw(*v8_dander)  # older changes again: would move V8 back to Dander
    visits.raw(*v1_bpjs)  # (and V1 back to BPJS, were 1 June still open)

    # Bed census: Mawar fills up; Melati is upgraded from class III to II (fewer, larger rooms);
    # Padangan's Dahlia ward closes for renovation.
    ward(wards, "W1", "c", SOSODORO, "Mawar", "III", 30, 20)
    w2_class3 = ward(wards, "W2", "c", SOSODORO, "Melati", "III", 24, 18)
    ward(wards, "W3", "c", SOSODORO, "ICU", "ICU", 10, 7)
    ward(wards, "W4", "c", PADANGAN, "Anggrek", "II", 20, 12)
    ward(wards, "W5", "c", PADANGAN, "Dahlia", "III", 16, 9)
    ward(wards, "W6", "c", SOSODORO, "Kenanga", "III", 28, 26)
    w1_census = ward(wards, "W1", "u", SOSODORO, "Mawar", "III", 30, 25)
    ward(wards, "W2", "u", SOSODORO, "Melati", "II", 20, 11)
    ward(wards, "W5", "d", PADANGAN, "Dahlia", "III", 16, 9)
    wards.raw(*w1_census)  # duplicate delivery
    wards.raw(*w2_class3)  # an older change again: would move Melati back to class III

    expected = {
        "kpi_health_visits_per_day": {
            (PKM_KAPAS, "OUTPATIENT", "BPJS", JUN1): (1,),  # V2 (V1 left; V7 came past the grace)
            (PKM_KAPAS, "OUTPATIENT", "UMUM", JUN1): (1,),  # V1
            (PKM_KAPAS, "IMMUNISATION", "BPJS", JUN1): (0,),  # V3 left
            (PKM_KAPAS, "MATERNAL", "BPJS", JUN1): (1,),  # V3
            (RSUD, "EMERGENCY", "UMUM", JUN1): (1,),  # V4: its change after 1 June closed is ignored
            (PKM_KAPAS, "OUTPATIENT", "BPJS", JUN2): (1,),  # V6, late within the grace, counted once
            (PKM_DANDER, "OUTPATIENT", "JAMKESDA", JUN3): (1,),  # V5
            (PKM_DANDER, "OUTPATIENT", "BPJS", JUN3): (0,),  # V8 left
            (PKM_KAPAS, "OUTPATIENT", "BPJS", JUN3): (1,),  # V8
            (RSUD, "OUTPATIENT", "BPJS", JUN3): (0,),  # V9 deleted
        },
        "kpi_health_beds_occupied": {
            (SOSODORO, "III", None): (2, 51),  # Mawar 25 (was 20) + Kenanga 26; Melati's 18 left
            (SOSODORO, "II", None): (1, 11),  # Melati
            (SOSODORO, "ICU", None): (1, 7),
            (PADANGAN, "II", None): (1, 12),
            (PADANGAN, "III", None): (0, 0),  # Dahlia deleted
        },
        "kpi_health_beds_total": {
            (SOSODORO, "III", None): (2, 58),  # 30 + 28
            (SOSODORO, "II", None): (1, 20),  # Melati, 24 beds before the upgrade
            (SOSODORO, "ICU", None): (1, 10),
            (PADANGAN, "II", None): (1, 20),
            (PADANGAN, "III", None): (0, 0),
        },
    }
    read = lambda: kpi_figures(pipeline.port, HEALTH, keep_empty=True)  # noqa: E731
    settle(read, expected, "the health KPIs", pipeline.alive)
