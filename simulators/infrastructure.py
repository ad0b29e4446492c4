"""Simulated public works office (DPUPR, Dinas Pekerjaan Umum dan Penataan Ruang): packages of roads,
bridges, irrigation, drainage, public buildings and water supply moving from planning through the
tender and the contract to weekly progress reports and completion (or termination).

A discrete-event simulation on the office's own business timeline: each package schedules its next
step (tender weeks after planning, works starting at the contract's start date, a supervisor's report
every week), new packages arrive mostly early in the fiscal year, and the stream yields the steps in
time order, within office hours in Asia/Jakarta. Values are skewed (many small village roads, a few
bridges worth billions of Rupiah), physical progress follows an S-curve (some packages slip and a few
are terminated), and the financial progress trails it (payment by term, 5 % retention). Each package
names the DPUPR budget line that funds it, the one of its category and fiscal year that the simulated
budget drafts (simulators/budget_plan.py: WORKS). All data is synthetic."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from producers.emitter import Change
from simulators.budget_plan import fiscal_year_of, works_line_id
from simulators.kit import (
    UNKNOWN_VILLAGE,
    Agenda,
    Simulator,
    impossible_next,
    into_office_hours,
    local,
    rupiah,
    start_of_day,
    thousands,
    wall_clock,
)

ENTITY = "project"

# category -> (share of packages, estimated value range in Rupiah, skew exponent, works duration in days)
CATEGORIES = {
    "ROAD": (45, (75_000_000, 8_000_000_000), 6.0, (45, 150)),
    "BRIDGE": (7, (500_000_000, 30_000_000_000), 2.0, (120, 240)),
    "IRRIGATION": (14, (100_000_000, 4_000_000_000), 3.0, (60, 150)),
    "DRAINAGE": (15, (75_000_000, 2_500_000_000), 3.0, (45, 120)),
    "BUILDING": (11, (200_000_000, 15_000_000_000), 3.0, (90, 210)),
    "WATER_SUPPLY": (8, (150_000_000, 5_000_000_000), 3.0, (60, 150)),
}
NAMES = {
    "ROAD": [
        "Peningkatan Jalan Poros Desa Ruas {a} - {b}",
        "Pembangunan Jalan Rabat Beton Dusun {a}",
        "Pemeliharaan Berkala Jalan Ruas {a} - {b}",
        "Rekonstruksi Jalan Kabupaten Ruas {a} - {b}",
    ],
    "BRIDGE": [
        "Pembangunan Jembatan {river}",
        "Rehabilitasi Jembatan {river} Dusun {a}",
        "Penggantian Jembatan Dusun {a}",
    ],
    "IRRIGATION": [
        "Rehabilitasi Jaringan Irigasi DI {a}",
        "Pembangunan Saluran Irigasi Tersier Dusun {a}",
        "Normalisasi Embung Dusun {a}",
    ],
    "DRAINAGE": [
        "Pembangunan Saluran Drainase Dusun {a}",
        "Normalisasi Saluran Drainase Ruas {a} - {b}",
        "Pembangunan Gorong-gorong Dusun {a}",
    ],
    "BUILDING": [
        "Pembangunan Balai Pertemuan Dusun {a}",
        "Rehabilitasi Gedung Kantor Kecamatan",
        "Pembangunan Pasar Desa {a}",
        "Rehabilitasi Gedung SD Negeri {n}",
        "Pembangunan Gedung Puskesmas Pembantu {a}",
    ],
    "WATER_SUPPLY": [
        "Pembangunan SPAM Perdesaan Dusun {a}",
        "Perluasan Jaringan Perpipaan Air Bersih Dusun {a}",
        "Pembangunan Sumur Bor Dusun {a}",
    ],
}
DUSUN = [
    "Krajan", "Wetan", "Kulon", "Lor", "Kidul", "Tengah", "Ngasem", "Sumberejo", "Karangrejo",
    "Sidomulyo", "Mulyorejo", "Jatirejo", "Banjarsari", "Tegalrejo", "Sukorejo", "Kedungrejo",
]  # fmt: skip
RIVERS = ["Kali Pacal", "Kali Gandong", "Kali Kening", "Kali Tidu", "Kali Ingas", "Kali Kedungjati", "Kali Klampok"]
FIRM_WORDS = (
    ["Karya", "Bangun", "Cipta", "Mitra", "Sinar", "Putra", "Bumi", "Tirta", "Jaya", "Rekayasa"],
    ["Mandiri", "Abadi", "Rajekwesi", "Perkasa", "Sejahtera", "Utama", "Sentosa", "Makmur", "Bengawan", "Konstruksi"],
)
# New packages per working day, by month: most are planned early in the fiscal year, a second wave
# comes with the budget revision (P-APBD) in August-September.
ARRIVALS_PER_DAY = [4.0, 3.0, 2.5, 1.5, 1.0, 1.0, 1.0, 1.5, 1.5, 0.6, 0.5, 0.3]
STATUSES = ["PLANNED", "TENDER", "CONTRACTED", "IN_PROGRESS", "COMPLETED", "TERMINATED"]
TRANSITIONS = {
    "PLANNED": ["TENDER"],
    "TENDER": ["CONTRACTED", "TERMINATED"],
    "CONTRACTED": ["IN_PROGRESS", "TERMINATED"],
    "IN_PROGRESS": ["COMPLETED", "TERMINATED"],
    "COMPLETED": [],
    "TERMINATED": [],
}
BAD_KINDS = ("unknown_village", "negative_amount", "impossible_transition", "missing_required")
GRACE_DAYS = 50  # a late contractor gets 50 days (with penalties) before the contract is terminated
RETENTION = 0.95  # 5 % of each term is retained until the maintenance period ends


def _s_curve(x: float) -> float:
    """Planned cumulative progress share at a fraction x of the works duration."""
    x = min(max(x, 0.0), 1.0)
    return x * x * (3 - 2 * x)


class PublicWorks(Simulator):
    """Public works packages from planning to completion, on the office's timeline."""

    def _start(self, clock_start: datetime | None) -> None:
        # Fixed weights (not seeded by the run): a few villages get many packages, most get a few.
        weights_rng = random.Random(3522)
        self.village_weights = [weights_rng.paretovariate(1.3) for _ in self.villages]
        firms_rng = random.Random(3523)
        firms = set()
        for _ in range(60):
            firms.add(f"{firms_rng.choice(['CV', 'CV', 'PT'])} {firms_rng.choice(FIRM_WORDS[0])} "
                      f"{firms_rng.choice(FIRM_WORDS[1])}")  # fmt: skip
        self.firms = sorted(firms)
        # Some contractors win far more packages than others.
        self.firm_weights = [1.0 / (1 + i % 11) for i in range(len(self.firms))]
        self.projects: dict[str, dict] = {}  # open packages: their last valid record
        self.plans: dict[str, dict] = {}  # per open package: duration, slip, works start
        # The office's timeline starts at 08:00 in Jakarta (01:00 UTC) of a fixed day, so the same seed
        # and start give the same records at any time of day.
        self.business_clock = into_office_hours(clock_start or start_of_day(1), self.clock_rng)
        self.agenda = Agenda()  # (arrival, "") and (step, project id) events
        self.agenda.add(self.business_clock, "arrival", "")

    # -- timeline ---------------------------------------------------------------------------------
    def _after_days(self, moment: datetime, days: float) -> datetime:
        return into_office_hours(moment + timedelta(days=days), self.clock_rng)

    def _next_arrival(self, moment: datetime) -> datetime:
        rate = ARRIVALS_PER_DAY[local(moment).month - 1]
        working_days = self.clock_rng.expovariate(rate)
        return self._after_days(moment, working_days * 7 / 5)  # five working days a week

    # -- records ----------------------------------------------------------------------------------
    def _new_project(self, position: str, at: datetime) -> tuple[dict, dict]:
        rng = self.rng
        category = rng.choices(list(CATEGORIES), weights=[c[0] for c in CATEGORIES.values()])[0]
        _, (low, high), skew, (short, long) = CATEGORIES[category]
        village = rng.choices(self.villages, weights=self.village_weights)[0]
        a, b = rng.sample(DUSUN, 2)
        name = rng.choice(NAMES[category]).format(a=a, b=b, river=rng.choice(RIVERS), n=rng.randint(1, 6))
        estimate = rupiah(rng, low, high, skew)
        # Bigger packages take longer.
        share = float((estimate - low) / (high - low)) if high > low else 0.0
        duration = int(short + (long - short) * (0.4 * rng.random() + 0.6 * share))
        wall = local(at)
        fiscal_year = fiscal_year_of(at)  # late in the year: next year's budget
        start = max(wall.date() + timedelta(days=rng.randint(40, 80)), date(fiscal_year, 1, 15))
        plan = {
            "duration": duration,
            "estimate": estimate,
            "slip": 1.0 if rng.random() < 0.85 else rng.uniform(0.6, 0.9),
            "works_start": None,
        }
        record = {
            "project_id": f"DPUPR-{position}",
            "name": name,
            "category": category,
            "village_code": village,
            "contractor": None,
            "contract_value": estimate,
            "fiscal_year": fiscal_year,
            "physical_progress_pct": 0.0,
            "financial_progress_pct": 0.0,
            "status": "PLANNED",
            "planned_start": start,
            "planned_end": self._end_of_works(start, duration, fiscal_year),
            "budget_line_id": works_line_id(fiscal_year, category),  # the DPUPR line of its category
            "updated_at": at,
        }
        return record, plan

    @staticmethod
    def _end_of_works(start: date, duration: int, fiscal_year: int) -> date:
        """Single-year contracts end by 20 December; a late start still gets at least 30 days."""
        end = start + timedelta(days=duration)
        year_end = date(fiscal_year, 12, 20)
        return end if end <= year_end else max(year_end, start + timedelta(days=30))

    def _advance(self, key: str, at: datetime) -> tuple[dict, dict]:
        """The package's next step at `at`: (before, after); schedules the step after it."""
        rng = self.rng
        before = self.projects[key]
        plan = self.plans[key]
        after = dict(before)
        after["updated_at"] = at
        status = before["status"]
        if status == "PLANNED":
            after["status"] = "TENDER"
            self.agenda.add(self._after_days(at, self.clock_rng.uniform(21, 45)), "step", key)
        elif status == "TENDER":
            if rng.random() < 0.06:  # failed tender (no qualified bidder)
                after["status"] = "TERMINATED"
            else:
                after["status"] = "CONTRACTED"
                after["contractor"] = rng.choices(self.firms, weights=self.firm_weights)[0]
                # The winning bid: usually 80-97 % of the estimate.
                bid = plan["estimate"] * Decimal(str(round(rng.uniform(0.80, 0.97), 4)))
                after["contract_value"] = thousands(bid)
                start = local(at).date() + timedelta(days=rng.randint(3, 10))  # order to start works (SPMK)
                after["planned_start"] = start
                after["planned_end"] = self._end_of_works(start, plan["duration"], before["fiscal_year"])
                works = datetime(start.year, start.month, start.day, 1, tzinfo=UTC)  # 08:00 in Jakarta
                self.agenda.add(into_office_hours(works, self.clock_rng), "step", key)
        elif status == "CONTRACTED":
            if rng.random() < 0.01:
                after["status"] = "TERMINATED"
            else:
                after["status"] = "IN_PROGRESS"
                plan["works_start"] = at
                plan["planned_days"] = max((before["planned_end"] - before["planned_start"]).days, 1)
                self.agenda.add(self._after_days(at, self.clock_rng.uniform(6, 8)), "step", key)
        else:  # IN_PROGRESS: the supervisor's weekly report
            self._report(before, after, plan, at)
            if after["status"] == "IN_PROGRESS":
                self.agenda.add(self._after_days(at, self.clock_rng.uniform(6, 8)), "step", key)
        return before, after

    def _report(self, before: dict, after: dict, plan: dict, at: datetime) -> None:
        rng = self.rng
        days = (at - plan["works_start"]).total_seconds() / 86400
        x = days / plan["planned_days"]
        old = before["physical_progress_pct"]
        if x < 1:
            new = max(old + rng.uniform(0.2, 1.0), 100 * _s_curve(x) * plan["slip"])
        elif plan["slip"] >= 1:
            new = 100.0  # on time: finished at the planned end
        else:  # a late contractor catching up in the grace period
            new = old + rng.uniform(2, 6)
        new = round(min(new, 100.0), 2)
        after["physical_progress_pct"] = new
        # Terms are paid at 25/50/75 % of physical progress, a report late, less the retention.
        paid_terms = int(old // 25)
        after["financial_progress_pct"] = round(max(before["financial_progress_pct"], paid_terms * 25 * RETENTION), 2)
        if new >= 100:
            after["status"] = "COMPLETED"  # handed over (PHO); the retention is paid after maintenance
            after["financial_progress_pct"] = 100 * RETENTION
        elif days > plan["planned_days"] + GRACE_DAYS or rng.random() < 0.002:
            after["status"] = "TERMINATED"  # contract terminated (putus kontrak)

    def _bad(self) -> Change:
        position, now = self._next_position(), wall_clock()
        rng = self.rng
        kind = rng.choice(BAD_KINDS)
        if kind == "impossible_transition" and self.projects:
            key = rng.choice(sorted(self.projects))
            before = self.projects[key]
            after = dict(before)
            after["updated_at"] = self.business_clock
            current = before["status"]
            after["status"] = impossible_next(rng, STATUSES, current, TRANSITIONS[current])
            return Change("u", key, position, now, before=dict(before), after=after, entity=ENTITY)
        record, _ = self._new_project(position, self.business_clock)
        if kind == "negative_amount":
            record["contract_value"] = -record["contract_value"] - Decimal("1000.00")
        elif kind == "missing_required":
            record[rng.choice(["planned_start", "planned_end"])] = None
        else:
            record["village_code"] = UNKNOWN_VILLAGE
        return Change("c", record["project_id"], position, now, after=record, entity=ENTITY)

    def _next_change(self) -> Change:
        position, now = self._next_position(), wall_clock()
        at, kind, key = self.agenda.pop()
        self.business_clock = max(self.business_clock, at)
        if kind == "arrival":
            self.agenda.add(self._next_arrival(at), "arrival", "")
            record, plan = self._new_project(position, at)
            key = record["project_id"]
            self.projects[key], self.plans[key] = record, plan
            # The tender is announced weeks after the package enters the procurement plan.
            self.agenda.add(self._after_days(at, self.clock_rng.uniform(7, 40)), "step", key)
            return Change("c", key, position, now, after=dict(record), entity=ENTITY)
        before, after = self._advance(key, at)
        if TRANSITIONS[after["status"]]:
            self.projects[key] = after
        else:
            del self.projects[key], self.plans[key]
        return Change("u", key, position, now, before=dict(before), after=dict(after), entity=ENTITY)
