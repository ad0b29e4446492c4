"""Simulated regency budget (APBD) kept by the finance and asset office (BPKAD, Badan Pengelolaan
Keuangan dan Aset Daerah): budget lines of the regency offices, and the disbursement orders (SP2D)
charged to them.

The simulation follows the budget cycle on its own business timeline, month by month: the draft
budget (RAPBD) for the next fiscal year is entered in September-October and amended during the
deliberation in November, the budget regulation (Perda APBD) is entered in early December, the
revised budget (P-APBD) comes in September and shifts (pergeseran) in October-November. Disbursements
follow the typical absorption of an Indonesian regional budget: salaries monthly, goods and services
rising through the year, capital spending back-loaded into the last quarter (tender, terms, final
payments in December), transfers to the villages in three tranches. So the first quarter is low and
December is by far the largest month. Allocations are skewed (many small goods lines, a few very
large lines for salaries, roads and village transfers). All data is synthetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from producers.emitter import Change
from simulators.budget_plan import PAYMENTS_ABSORPTION_REVISION, PROFILES, draft_budget, fiscal_year_of
from simulators.kit import JAKARTA, Simulator, impossible_next, local, thousands, wall_clock, working_days

LINE = "budget_line"
REALISATION = "realisation"
STAGES = ["DRAFT", "ENACTED", "REVISED"]
TRANSITIONS = {"DRAFT": ["ENACTED"], "ENACTED": ["REVISED"], "REVISED": ["REVISED"]}
BAD_KINDS = (
    "negative_allocation",
    "negative_realisation",
    "impossible_transition",
    "missing_activity",
    "missing_document",
)


def _month_of(moment: datetime) -> tuple[int, int]:
    at = local(moment)
    return at.year, at.month


class RegionalBudget(Simulator):
    """Budget lines and disbursements along the budget cycle.

    The business timeline begins with the drafting season (1 September) of the year before the
    fiscal year of `clock_start` (default: the one being planned today, as the public-works office
    counts it, so its packages find their lines), so that fiscal year is drafted, enacted, spent
    and revised, then the next one, and so on."""

    def _start(self, clock_start: datetime | None) -> None:
        # The budget has no village codes; `clock_rng` sets when in the month things happen.
        fiscal_year = clock_start.year if clock_start else fiscal_year_of(wall_clock())
        self.year, self.month = fiscal_year - 1, 9  # the month whose agenda is running
        self.business_clock = datetime(self.year, self.month, 1, 1, tzinfo=UTC)  # 08:00 in Jakarta
        self.lines: dict[str, dict] = {}  # line_id -> its last valid record (two fiscal years at most)
        self.plans: dict[str, dict] = {}  # line_id -> kind, absorption, money due and committed
        self.drafts: list[dict] = []  # the latest draft budget's lines (templates for bad records too)
        self.sp2d_numbers: dict[int, int] = {}  # fiscal year -> last SP2D number
        self.agenda: list[tuple[datetime, int, tuple]] = []
        self._plan_month()

    # -- the monthly agenda -----------------------------------------------------------------------
    def _moment(self, first: int = 1, last: int = 31) -> datetime:
        """A random moment in office hours (08:00-16:00 Jakarta) on a working day of the month."""
        days = working_days(self.year, self.month, first, last) or working_days(self.year, self.month, 1, 31)
        day = self.clock_rng.choice(days)
        minutes = self.clock_rng.randint(0, 8 * 60 - 1)
        wall = datetime(self.year, self.month, day, 8, tzinfo=UTC) + timedelta(minutes=minutes)
        return wall - JAKARTA  # the naive local time, shifted to UTC

    def _plan_month(self) -> None:
        """Fill the agenda with this month's actions, in time order."""
        year, month = self.year, self.month
        actions: list[tuple[datetime, tuple]] = []
        # The fiscal year is closed: its lines change no more.
        for line_id in [k for k, r in self.lines.items() if r["fiscal_year"] < year]:
            del self.lines[line_id], self.plans[line_id]
        current = [k for k, r in self.lines.items() if r["fiscal_year"] == year]
        # Spending of this fiscal year.
        for line_id in current:
            for amount, payment_type, first, last in self._payments(line_id, month):
                actions.append((self._moment(first, last), ("realise", line_id, amount, payment_type)))
        # The revised budget (P-APBD) in September, shifts in October and November.
        if month == 9:
            for line_id in current:
                if self.rng.random() < 0.35:
                    actions.append((self._moment(10, 30), ("revise", line_id, self._revised(line_id))))
        elif month in (10, 11):
            for line_id in current:
                if self.rng.random() < 0.03:
                    actions.append((self._moment(), ("revise", line_id, self._revised(line_id))))
        # Next year's budget: drafted in September-October, amended in November, enacted in December.
        upcoming = [k for k, r in self.lines.items() if r["fiscal_year"] == year + 1]
        if month == 9:
            self.drafts = draft_budget(self.rng, year + 1)
            half = len(self.drafts) // 2
            actions += [(self._moment(), ("create", spec)) for spec in self.drafts[:half]]
        elif month == 10:
            actions += [(self._moment(), ("create", spec)) for spec in self.drafts[len(self.drafts) // 2 :]]
        elif month == 11:
            for line_id in upcoming:
                if self.rng.random() < 0.2:
                    factor = self.rng.uniform(0.85, 1.15)
                    actions.append((self._moment(1, 25), ("amend", line_id, factor)))
        elif month == 12:
            actions += [(self._moment(1, 15), ("enact", line_id)) for line_id in upcoming]
        # Latest first, so pop() takes the earliest; ties keep the planning order.
        ordered = sorted(enumerate(actions), key=lambda item: (item[1][0], item[0]), reverse=True)
        self.agenda = [(moment, i, action) for i, (moment, action) in ordered]

    def _next_month(self) -> None:
        self.year, self.month = (self.year + 1, 1) if self.month == 12 else (self.year, self.month + 1)
        self._plan_month()

    def _payments(self, line_id: str, month: int) -> list[tuple[Decimal, str, int, int]]:
        """This month's disbursements for a line: (amount, payment type, first day, last day)."""
        rng = self.rng
        plan = self.plans[line_id]
        kind = plan["kind"]
        profile = PROFILES[kind]
        ceiling = self._ceiling(self.lines[line_id])
        plan["due"] += ceiling * Decimal(str(plan["absorption"] * profile[month - 1] / sum(profile)))
        payments_per_year = PAYMENTS_ABSORPTION_REVISION[kind][0]
        expected = payments_per_year * profile[month - 1] / sum(profile)
        count = int(expected + rng.random()) if kind != "PERSONNEL" else 1
        if count == 0 and month < 12:
            return []  # paid later, together
        total = min(plan["due"], ceiling - plan["committed"])
        plan["due"] = Decimal(0)
        if total <= 0:
            return []
        count = max(count, 1)
        weights = [rng.random() + 0.2 for _ in range(count)]
        payments = []
        for weight in weights:
            amount = thousands(total * Decimal(str(weight / sum(weights))))
            if amount <= 0:
                continue
            plan["committed"] += amount
            if kind == "GOODS":
                payment_type = "UP" if month == 1 else rng.choices(["GU", "LS", "TU"], weights=[60, 35, 5])[0]
            else:
                payment_type = "LS"
            # Salaries in the first days of the month; the books close before the end of December.
            first, last = (1, 5) if kind == "PERSONNEL" else (1, 27 if month == 12 else 31)
            payments.append((amount, payment_type, first, last))
        return payments

    @staticmethod
    def _ceiling(record: dict) -> Decimal:
        revised = record["revised_allocation"]
        return revised if revised is not None else record["allocation"]

    def _revised(self, line_id: str) -> Decimal:
        plan = self.plans[line_id]
        _, _, (low, high) = PAYMENTS_ABSORPTION_REVISION[plan["kind"]]
        revised = thousands(self._ceiling(self.lines[line_id]) * Decimal(str(self.rng.uniform(low, high))))
        # Never below what is already committed for payment.
        return max(revised, thousands(plan["committed"]) + Decimal(1000))

    # -- changes ----------------------------------------------------------------------------------
    def _apply(self, moment: datetime, action: tuple, position: str, now: datetime) -> Change:
        what = action[0]
        if what == "create":
            spec = dict(action[1])
            kind = spec.pop("_kind")
            line_id = spec.pop("_line_id") or f"BPKAD-{position}"
            record = {"line_id": line_id, **spec, "updated_at": moment}
            self.lines[record["line_id"]] = record
            _, (low, high), _ = PAYMENTS_ABSORPTION_REVISION[kind]
            absorption = self.rng.uniform(low, high)
            if kind == "CAPITAL" and self.rng.random() < 0.08:
                absorption = self.rng.uniform(0.1, 0.5)  # a failed tender or a late contractor
            self.plans[record["line_id"]] = {
                "kind": kind,
                "absorption": absorption,
                "due": Decimal(0),
                "committed": Decimal(0),
            }
            return Change("c", record["line_id"], position, now, after=dict(record), entity=LINE)
        if what == "realise":
            _, line_id, amount, payment_type = action
            line = self.lines[line_id]
            fiscal_year = line["fiscal_year"]
            number = self.sp2d_numbers.get(fiscal_year, 0) + 1
            self.sp2d_numbers[fiscal_year] = number
            record = self._realisation(position, line, amount, payment_type, moment, number)
            return Change("c", record["realisation_id"], position, now, after=record, entity=REALISATION)
        line_id = action[1]
        before = self.lines[line_id]
        after = dict(before)
        after["updated_at"] = moment
        if what == "amend":
            after["allocation"] = thousands(before["allocation"] * Decimal(str(action[2])))
        elif what == "enact":
            after["stage"] = "ENACTED"
        else:  # revise
            after["stage"] = "REVISED"
            after["revised_allocation"] = action[2]
        self.lines[line_id] = after
        return Change("u", line_id, position, now, before=dict(before), after=dict(after), entity=LINE)

    @staticmethod
    def _realisation(
        position: str, line: dict, amount: Decimal, payment_type: str, moment: datetime, number: int
    ) -> dict:
        fiscal_year = line["fiscal_year"]
        unit = f"{line['programme_code'][:4]}.0.00.0.00.01.0000"  # the office's unit code in SIPD
        month = _month_of(moment)[1]
        return {
            "realisation_id": f"SP2D-{position}",
            "line_id": line["line_id"],
            "fiscal_year": fiscal_year,
            "department_code": line["department_code"],
            "month": month,
            "amount": amount,
            "payment_type": payment_type,
            "spent_at": moment,
            "document_number": f"35.22/04.0/{number:06d}/{payment_type}/{unit}/M/{month}/{fiscal_year}",
        }

    def _bad(self) -> Change:
        """A record the processor must dead-letter; it never enters the simulator's state."""
        position, now = self._next_position(), wall_clock()
        rng = self.rng
        kind = rng.choice(BAD_KINDS)
        moment = self.business_clock
        spendable = sorted(k for k, r in self.lines.items() if r["stage"] != "DRAFT")
        if kind in ("negative_realisation", "missing_document") and spendable:
            line = self.lines[rng.choice(spendable)]
            amount = thousands(rng.uniform(1_000_000, 50_000_000))
            record = self._realisation(position, line, amount, "LS", moment, 0)
            if kind == "negative_realisation":
                record["amount"] = -amount
            else:
                record["document_number"] = None
            return Change("c", record["realisation_id"], position, now, after=record, entity=REALISATION)
        if kind == "impossible_transition" and self.lines:
            line_id = rng.choice(sorted(self.lines))
            before = self.lines[line_id]
            after = dict(before)
            after["updated_at"] = moment
            current = before["stage"]
            after["stage"] = impossible_next(rng, STAGES, current, TRANSITIONS[current])
            return Change("u", line_id, position, now, before=dict(before), after=after, entity=LINE)
        spec = dict(rng.choice(self.drafts))
        spec.pop("_kind"), spec.pop("_line_id")
        record = {"line_id": f"BPKAD-{position}", **spec, "updated_at": moment}
        if kind == "missing_activity":
            record["activity_name"] = None
        else:
            record["allocation"] = -record["allocation"] - Decimal("1000.00")
        return Change("c", record["line_id"], position, now, after=record, entity=LINE)

    def _next_change(self) -> Change:
        position, now = self._next_position(), wall_clock()
        while not self.agenda:
            self._next_month()
        moment, _, action = self.agenda.pop()
        self.business_clock = max(self.business_clock, moment)
        return self._apply(moment, action, position, now)
