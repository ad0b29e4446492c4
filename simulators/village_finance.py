"""Simulated village finances (DPMD, from the Siskeudes village finance system): every desa's funds per
fiscal year (Dana Desa, Alokasi Dana Desa, tax revenue share, provincial aid, own revenue) disbursed in
stages, and the village's spending by budget field, including BLT Dana Desa cash transfers to households.
Only desa: kelurahan are part of the regency's administration and receive no village funds.
All data is synthetic.

The business timeline is event-driven: a village enters its budget (APBDes) early in the year, which
creates its funds; each fund is disbursed in stages (tahap) from the dates the rules open them; spending
follows the money, in office hours in Asia/Jakarta, picking up over the year with the usual end-of-year
rush; BLT is paid to a fixed list of households a few days after each Dana Desa stage."""

from __future__ import annotations

import csv
import random
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from backbone.settings import load_settings
from producers.emitter import Change
from simulators import people
from simulators.kit import (
    CENT,
    UNKNOWN_VILLAGE,
    Agenda,
    Simulator,
    impossible_next,
    local,
    skewed,
    start_of_day,
    thousands,
    utc,
    wall_clock,
)
from simulators.kit import after_working as after_working_hours

FUND = "village_fund"
SPENDING = "village_spending"
BAD_KINDS = ("unknown_village", "negative_amount", "bad_transition", "missing_required")
STAGES = ("ALLOCATED", "TAHAP_1", "TAHAP_2", "TAHAP_3")

# source -> (share of desa receiving it in a year, allocation range in Rupiah, cumulative share disbursed
# after each stage). Dana Desa is paid 40/40/20; BHPRD and provincial aid in two halves.
FUNDS: dict[str, tuple[float, tuple[int, int], tuple[Decimal, ...]]] = {
    "DD": (1.0, (800_000_000, 1_500_000_000), (Decimal("0.4"), Decimal("0.8"), Decimal("1"))),
    "ADD": (1.0, (450_000_000, 1_100_000_000), (Decimal("0.3"), Decimal("0.65"), Decimal("1"))),
    "BHPRD": (1.0, (40_000_000, 160_000_000), (Decimal("0.5"), Decimal("1"))),
    "BANKEU": (0.3, (100_000_000, 1_000_000_000), (Decimal("0.5"), Decimal("1"))),
    "PADES": (0.85, (10_000_000, 350_000_000), (Decimal("0.3"), Decimal("0.6"), Decimal("1"))),
}
# Earliest local date (month, day) each stage can be disbursed, and the mean delay after it in working days.
STAGE_OPENS = (((1, 20), 18.0), ((4, 15), 21.0), ((7, 15), 28.0))
# Share of funds whose next stage is withheld (late reports, sanctions): they stay at their stage.
WITHHELD = 0.03

BLT_MONTHLY = 300_000  # BLT Dana Desa per household per month
BLT_MONTHS_PER_BATCH = 4  # one payout after each Dana Desa stage
BLT_ACTIVITY = "BLT Dana Desa"

DUSUN = ["Krajan", "Wetan", "Kulon", "Lor", "Kidul", "Tengah", "Sumber", "Ngasem", "Jati", "Randu"]
# field -> list of (activity template, amount range in Rupiah, sources it is charged to)
ACTIVITIES: dict[str, list[tuple[str, tuple[int, int], tuple[str, ...]]]] = {
    "GOVERNANCE": [
        ("Penghasilan Tetap Kepala Desa dan Perangkat Desa", (15_000_000, 45_000_000), ("ADD",)),
        ("Tunjangan dan Operasional BPD", (3_000_000, 10_000_000), ("ADD", "BHPRD")),
        ("Operasional Perkantoran Pemerintah Desa", (1_000_000, 15_000_000), ("ADD", "BHPRD", "PADES")),
        ("Insentif Ketua RT/RW", (3_000_000, 12_000_000), ("ADD", "PADES")),
        ("Penyusunan Dokumen Perencanaan Desa (RKPDes/APBDes)", (2_000_000, 10_000_000), ("ADD", "BHPRD")),
        ("Pengadaan Sarana Prasarana Kantor Desa", (5_000_000, 60_000_000), ("ADD", "PADES")),
    ],
    "DEVELOPMENT": [
        ("Pembangunan Jalan Rabat Beton Dusun {dusun}", (40_000_000, 350_000_000), ("DD", "BANKEU", "ADD")),
        ("Pavingisasi Jalan Lingkungan RT {rt}", (20_000_000, 150_000_000), ("DD", "ADD", "PADES")),
        ("Pembangunan Saluran Drainase Dusun {dusun}", (15_000_000, 200_000_000), ("DD", "BANKEU")),
        ("Pembangunan Tembok Penahan Tanah Dusun {dusun}", (20_000_000, 180_000_000), ("DD", "BANKEU")),
        ("Rehabilitasi Polindes/Poskesdes", (15_000_000, 120_000_000), ("DD",)),
        ("Pembangunan Sumur Bor dan Jaringan Air Bersih", (25_000_000, 200_000_000), ("DD", "BANKEU")),
        ("Penerangan Jalan Umum Tenaga Surya", (10_000_000, 90_000_000), ("DD", "ADD")),
        ("Rehabilitasi Gedung PAUD Desa", (15_000_000, 100_000_000), ("DD", "ADD")),
        ("Pembangunan Embung Desa", (50_000_000, 400_000_000), ("DD", "BANKEU")),
    ],
    "COMMUNITY": [
        ("Pembinaan Karang Taruna", (1_000_000, 15_000_000), ("ADD", "PADES")),
        ("Kegiatan Tim Penggerak PKK", (2_000_000, 20_000_000), ("ADD", "PADES")),
        ("Pemberian Makanan Tambahan Posyandu (Pencegahan Stunting)", (3_000_000, 30_000_000), ("DD",)),
        ("Pembinaan Satuan Perlindungan Masyarakat (Linmas)", (2_000_000, 12_000_000), ("ADD",)),
        ("Pembinaan Kegiatan Keagamaan", (1_000_000, 15_000_000), ("ADD", "PADES")),
        ("Peringatan Hari Besar Nasional", (2_000_000, 25_000_000), ("ADD", "PADES")),
    ],
    "EMPOWERMENT": [
        ("Penyertaan Modal BUMDes", (25_000_000, 250_000_000), ("DD",)),
        ("Ketahanan Pangan: Bantuan Bibit dan Pupuk", (20_000_000, 200_000_000), ("DD",)),
        ("Pelatihan Kader Posyandu dan Kader Pembangunan", (3_000_000, 25_000_000), ("DD", "ADD")),
        ("Pelatihan Usaha Mikro Warga", (5_000_000, 40_000_000), ("DD", "ADD")),
        ("Peningkatan Kapasitas Perangkat Desa", (5_000_000, 40_000_000), ("ADD",)),
    ],
}
# Emergencies by season: floods of the Bengawan Solo in the rainy season, drought in the dry season.
EMERGENCIES: list[tuple[str, tuple[int, int], frozenset[int]]] = [
    ("Penanganan Bencana Banjir", (5_000_000, 80_000_000), frozenset({12, 1, 2, 3})),
    ("Penanganan Kekeringan: Distribusi Air Bersih", (3_000_000, 40_000_000), frozenset({8, 9, 10})),
    ("Keadaan Mendesak: Bantuan Korban Kebakaran", (2_000_000, 20_000_000), frozenset(range(1, 13))),
]
FIELD_WEIGHTS = {"GOVERNANCE": 32, "DEVELOPMENT": 28, "COMMUNITY": 20, "EMPOWERMENT": 14, "DISASTER_EMERGENCY": 2}
# Spending picks up over the year (budget approval, then construction in the dry season, then the
# end-of-year rush before the books close); construction pauses in the rainy months.
SPEND_RATE = {1: 0.3, 2: 0.6, 3: 0.85, 4: 1.0, 5: 1.1, 6: 1.1, 7: 1.1, 8: 1.2, 9: 1.3, 10: 1.3, 11: 1.5, 12: 1.8}
DEVELOPMENT_SEASON = {1: 0.4, 2: 0.5, 3: 0.7, 11: 0.9, 12: 0.8}
MEAN_WORKING_DAYS_BETWEEN_SPENDING = 3.5  # per average desa: about 70 spending lines a year besides BLT
WORKING_DAY = 8  # office hours, 08:00-16:00 Monday to Friday


@lru_cache(maxsize=4)
def desa_codes(regions_csv: Path | None = None) -> frozenset[str]:
    """Codes whose level in the regions CSV is 'desa' (the reference loader calls desa and kelurahan
    both 'village')."""
    path = regions_csv or load_settings().regions_csv
    with path.open(newline="", encoding="utf-8") as fh:
        return frozenset(row["code"] for row in csv.DictReader(fh) if row["level"] == "desa")


def _rupiah(rng: random.Random, low: int, high: int, skew: float = 2.0) -> Decimal:
    """Skewed: most amounts near the low end, a few large; whole thousands."""
    return Decimal(int(skewed(rng, low, high, skew) // 1000) * 1000).quantize(CENT)


def after_working(at: datetime, working_days: float) -> datetime:
    """`at` moved on by this much office time in working days of 8 office hours."""
    return after_working_hours(at, working_days * WORKING_DAY)


class VillageFinance(Simulator):
    """Every desa's funds and spending, on the villages' fiscal timeline."""

    def _start(self, clock_start: datetime | None) -> None:
        desa = desa_codes()
        self.villages = [v for v in self.villages if v in desa]
        if not self.villages:
            raise ValueError("village finance needs desa codes; none of the given village codes is a desa")
        # Each desa's size is stable for a seed (not per run): it drives allocations and spending.
        structure = random.Random(f"village-finance:{self.seed}")
        self.size = {v: structure.lognormvariate(0, 0.35) for v in self.villages}
        # The business clock starts at 08:00 in Jakarta (01:00 UTC) of a fixed day, so the same seed and
        # start give the same records at any time of day.
        self.now = clock_start or start_of_day(1)
        self.agenda = Agenda()  # budget, create, stage, spend, BLT and new-year events
        # State of the current fiscal year.
        self.year = local(self.now).year
        self.funds: dict[str, dict] = {}  # fund_id -> current record (all of this year's funds)
        self.available: dict[tuple[str, str], Decimal] = {}  # (village, source) -> disbursed - spent
        self.blt_recipients: dict[str, list[str]] = {}
        self.blt_due: dict[str, Decimal] = {}  # BLT still to be paid this year, reserved out of Dana Desa
        self._open_year(self.year, self.now)
        for village in self.villages:
            self.agenda.add(self._spend_time(self.now, village), "spend", village)

    # -- timeline -----------------------------------------------------------------------------------

    def _working(self, at: datetime, first_hour: int = 8, last_hour: int = 16) -> datetime:
        """`at` if it falls in office hours (weekdays in Jakarta), else a random time in the next
        working day's hours between first_hour and last_hour."""
        wall = local(at)
        if wall.weekday() < 5 and first_hour <= wall.hour < last_hour:
            return at
        day = wall.date()
        if wall.weekday() >= 5 or wall.hour >= last_hour:
            day += timedelta(days=1)
        while day.weekday() >= 5:
            day += timedelta(days=1)
        minute = self.clock_rng.uniform(0, (last_hour - first_hour) * 60)
        return utc(day.year, day.month, day.day, first_hour, minute)

    def _spend_time(self, after: datetime, village: str) -> datetime:
        rate = self.size[village] * SPEND_RATE[local(after).month] / MEAN_WORKING_DAYS_BETWEEN_SPENDING
        return after_working(after, self.clock_rng.expovariate(rate))

    def _stage_time(self, year: int, stage: int, after: datetime) -> datetime | None:
        """When the stage (0-based) of a fund created or last disbursed at `after` is disbursed;
        None when that would fall after the books close at the end of December."""
        (month, day), mean_delay = STAGE_OPENS[stage]
        # Paperwork between stages: the realisation report of the previous stage must be in.
        gap = self.clock_rng.uniform(2, 7) if stage == 0 else self.clock_rng.uniform(14, 28)
        base = max(utc(year, month, day, 8), after_working(after, gap))
        at = after_working(base, self.clock_rng.expovariate(1 / mean_delay))
        return at if at < utc(year, 12, 28, 16) else None

    def _open_year(self, year: int, start: datetime) -> None:
        """Each desa enters its budget (APBDes) in the first weeks of the year (or of the run)."""
        self.funds = {}
        self.available = {}
        self.blt_recipients = {}
        self.blt_due = {}
        opens = max(start, utc(year, 1, 2, 8))
        for village in self.villages:
            at = after_working(opens, self.clock_rng.expovariate(1 / 8))
            if at < utc(year, 12, 20):  # a budget entered this late waits for next year's
                self.agenda.add(at, "budget", village)
        self.agenda.add(utc(year + 1, 1, 1), "new_year", year + 1)

    # -- records ------------------------------------------------------------------------------------

    def _budget(self, village: str, year: int) -> list[tuple[str, Decimal]]:
        """The desa's funds for a year and its BLT households: stable for (seed, year, desa), so a
        rerun allocates the same amounts to the same households."""
        rng = random.Random(f"village-finance:{self.seed}:{year}:{village}")
        size = self.size[village]
        funds = []
        for source, (share, (low, high), _) in FUNDS.items():
            if rng.random() >= share:
                continue
            amount = _rupiah(rng, low, high, skew=1.5 if source in ("DD", "ADD") else 2.5)
            if source == "PADES":  # own revenue (village land leases, BUMDes) grows with the village
                amount = min(Decimal(high), thousands(amount * Decimal(str(round(size, 2)))))
            funds.append((source, amount.quantize(CENT)))
        households = max(5, min(80, int(rng.lognormvariate(2.8, 0.45))))
        names: list[str] = []
        while len(names) < households:
            name = people.name(rng)
            if name not in names or len(names) > 300:
                names.append(name)
        self.blt_recipients[village] = names
        self.blt_due[village] = Decimal(BLT_MONTHLY * 12 * households).quantize(CENT)
        return funds

    def _fund_record(self, position: str, village: str, source: str, allocation: Decimal) -> dict:
        return {
            "fund_id": f"DPMD-FUND-{position}",
            "village_code": village,
            "fiscal_year": self.year,
            "source": source,
            "allocation": allocation,
            "disbursed": Decimal("0.00"),
            "stage": "ALLOCATED",
            "updated_at": self.now,
        }

    def _spending_record(
        self, position: str, village: str, field: str, activity: str, amount: Decimal, source: str | None, recipient
    ) -> dict:
        return {
            "spending_id": f"DPMD-SPD-{position}",
            "village_code": village,
            "fiscal_year": self.year,
            "field": field,
            "activity": activity,
            "amount": amount,
            "fund_source": source,
            "recipient_name": recipient,
            "spent_at": self.now,
        }

    def _spendable(self, village: str, source: str) -> Decimal:
        money = self.available.get((village, source), Decimal(0))
        if source == "DD":  # BLT for the rest of the year comes first
            money -= self.blt_due.get(village, Decimal(0))
        return money

    def _pick_activity(self, month: int) -> tuple[str, str, tuple[int, int], tuple[str, ...]]:
        rng = self.rng
        weights = dict(FIELD_WEIGHTS)
        weights["DEVELOPMENT"] *= DEVELOPMENT_SEASON.get(month, 1.0)
        field = rng.choices(list(weights), weights=list(weights.values()))[0]
        if field == "DISASTER_EMERGENCY":
            name, amounts, _ = rng.choice([e for e in EMERGENCIES if month in e[2]])
            return field, name, amounts, ("DD",)
        template, amounts, sources = rng.choice(ACTIVITIES[field])
        name = template.format(dusun=rng.choice(DUSUN), rt=f"{rng.randint(1, 15):02d}")
        return field, name, amounts, sources

    # -- events -------------------------------------------------------------------------------------

    def _on_spend(self, village: str) -> Change | None:
        self.agenda.add(self._spend_time(self.now, village), "spend", village)
        rng = self.rng
        field, activity, (low, high), sources = self._pick_activity(local(self.now).month)
        amount = _rupiah(rng, low, high)
        funded = [s for s in sources if self._spendable(village, s) >= low]
        if not funded:
            return None  # no money yet for this: the village waits for the next disbursement
        source = rng.choice(funded)
        amount = min(amount, thousands(self._spendable(village, source))).quantize(CENT)
        self.available[(village, source)] -= amount
        position = self._next_position()
        record = self._spending_record(position, village, field, activity, amount, source, None)
        return Change("c", record["spending_id"], position, wall_clock(), after=record, entity=SPENDING)

    def _on_blt_batch(self, village: str) -> None:
        """Payout day at the village hall: one spending line per household, a few minutes apart."""
        at = self.now
        for name in self.blt_recipients.get(village, []):
            at += timedelta(minutes=self.clock_rng.uniform(0.5, 4))
            self.agenda.add(at, "blt", (village, name))

    def _on_blt(self, village: str, name: str) -> Change | None:
        amount = Decimal(BLT_MONTHLY * BLT_MONTHS_PER_BATCH).quantize(CENT)
        amount = min(amount, self.blt_due.get(village, Decimal(0)))
        if amount <= 0 or self.available.get((village, "DD"), Decimal(0)) < amount:
            return None
        self.available[(village, "DD")] -= amount
        self.blt_due[village] -= amount
        position = self._next_position()
        record = self._spending_record(position, village, "DISASTER_EMERGENCY", BLT_ACTIVITY, amount, "DD", name)
        return Change("c", record["spending_id"], position, wall_clock(), after=record, entity=SPENDING)

    def _on_create(self, village: str, source: str, allocation: Decimal) -> Change:
        position = self._next_position()
        record = self._fund_record(position, village, source, allocation)
        self.funds[record["fund_id"]] = record
        at = self._stage_time(self.year, 0, self.now)
        if at is not None:
            self.agenda.add(at, "stage", record["fund_id"])
        return Change("c", record["fund_id"], position, wall_clock(), after=dict(record), entity=FUND)

    def _on_stage(self, fund_id: str) -> Change:
        before = self.funds[fund_id]
        index = STAGES.index(before["stage"])  # 0 = ALLOCATED, so stage `index` is next
        shares = FUNDS[before["source"]][2]
        after = dict(before)
        after["stage"] = STAGES[index + 1]
        after["disbursed"] = (before["allocation"] * shares[index]).quantize(CENT)
        after["updated_at"] = self.now
        self.funds[fund_id] = after
        village, source = before["village_code"], before["source"]
        key = (village, source)
        self.available[key] = self.available.get(key, Decimal(0)) + after["disbursed"] - before["disbursed"]
        if index + 1 < len(shares) and self.rng.random() >= WITHHELD:
            at = self._stage_time(self.year, index + 1, self.now)
            if at is not None:
                self.agenda.add(at, "stage", fund_id)
        if source == "DD":
            payout = self._working(after_working(self.now, self.clock_rng.uniform(2, 10)), 8, 11)
            if payout < utc(self.year, 12, 31, 12):
                self.agenda.add(payout, "blt_batch", village)
        position = self._next_position()
        return Change("u", fund_id, position, wall_clock(), before=dict(before), after=dict(after), entity=FUND)

    def _step(self) -> Change | None:
        """Handle the next event of the timeline; returns its change, if it makes one."""
        at, kind, data = self.agenda.pop()
        self.now = at
        if kind == "spend":
            return self._on_spend(data)
        if kind == "stage":
            return self._on_stage(data)
        if kind == "create":
            return self._on_create(*data)
        if kind == "blt":
            return self._on_blt(*data)
        if kind == "blt_batch":
            self._on_blt_batch(data)
        elif kind == "budget":
            at = self.now
            for source, allocation in self._budget(data, self.year):
                at += timedelta(minutes=self.clock_rng.uniform(1, 6))
                self.agenda.add(at, "create", (data, source, allocation))
        elif kind == "new_year":
            self.year = data
            self._open_year(data, self.now)
        return None

    # -- bad records --------------------------------------------------------------------------------

    def _bad(self) -> Change:
        """A change the processor must dead-letter; it never enters the simulator's state."""
        rng = self.rng
        kind = rng.choice(BAD_KINDS)
        funds = list(self.funds.values())
        if kind == "bad_transition" and not funds:
            kind = "unknown_village"
        position = self._next_position()
        now = wall_clock()
        village = rng.choice(self.villages)
        if kind == "bad_transition":
            before = rng.choice(funds)
            allowed = STAGES[STAGES.index(before["stage"]) + 1 : STAGES.index(before["stage"]) + 2]
            after = dict(before)
            after["stage"] = impossible_next(rng, STAGES, before["stage"], allowed)
            after["updated_at"] = self.now
            return Change("u", before["fund_id"], position, now, before=dict(before), after=after, entity=FUND)
        if rng.random() < 0.5 and kind != "missing_required":
            record = self._fund_record(position, village, "DD", _rupiah(rng, *FUNDS["DD"][1]))
            if kind == "unknown_village":
                record["village_code"] = UNKNOWN_VILLAGE
            else:
                record["allocation"] = -record["allocation"]
            return Change("c", record["fund_id"], position, now, after=record, entity=FUND)
        field, activity, amounts, sources = self._pick_activity(local(self.now).month)
        record = self._spending_record(
            position, village, field, activity, _rupiah(rng, *amounts), rng.choice(sources), None
        )
        if kind == "unknown_village":
            record["village_code"] = UNKNOWN_VILLAGE
        elif kind == "negative_amount":
            record["amount"] = -record["amount"]  # a correction keyed in as a negative line
        else:
            record["fund_source"] = None
        return Change("c", record["spending_id"], position, now, after=record, entity=SPENDING)

    def _next_change(self) -> Change:
        """The next event of the timeline that makes a change."""
        while True:
            change = self._step()
            if change is not None:
                return change
