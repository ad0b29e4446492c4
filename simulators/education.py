"""Simulated education office (DISDIK): the school register as kept in Dapodik (a snapshot of a few
hundred schools, then occasional changes of accreditation, headmaster or capacity) and student
enrolments over the school year: new students mostly in July when the school year starts,
transfers around the semester starts, dropouts (more in secondary school) and graduations in June.
All data is synthetic: schools, NPSNs, students, NISNs and names are made up; only the village codes
are real."""

from __future__ import annotations

import random
from collections import deque
from datetime import datetime, timedelta

from producers.emitter import Change
from simulators import people
from simulators.kit import (
    UNKNOWN_VILLAGE,
    Simulator,
    by_kecamatan,
    is_town,
    kecamatan_of,
    local,
    next_in_hourly_process,
    region_names,
    seat_of,
    start_of_day,
    wall_clock,
)

BAD_KINDS = ("unknown_village", "negative_count", "missing_required", "impossible_transition")

# level -> (schools in the register, grades, pupils per study group (rombel), most groups per grade,
# share of state schools). Senior secondary schools are run by the province but listed here too.
LEVELS = {
    "SD": (230, range(1, 7), 28, 4, 0.88),
    "SMP": (72, range(7, 10), 32, 11, 0.55),
    "SMA": (24, range(10, 13), 36, 12, 0.45),
    "SMK": (30, range(10, 13), 36, 18, 0.25),
}
ENTRY_GRADE = {"SD": 1, "SMP": 7, "SMA": 10, "SMK": 10}
NEW_SHARE = {"SD": 52, "SMP": 30, "SMA": 8, "SMK": 10}
DROPOUT_PROPENSITY = {"SD": 0.15, "SMP": 0.5, "SMA": 0.8, "SMK": 1.0}
ACCREDITATION_ORDER = ["UNACCREDITED", "C", "B", "A"]
ACCREDITATION = {
    "NEGERI": {"A": 45, "B": 45, "C": 8, "UNACCREDITED": 2},
    "SWASTA": {"A": 20, "B": 45, "C": 20, "UNACCREDITED": 15},
}
FOUNDATIONS = ["Muhammadiyah", "PGRI", "Islam Terpadu", "Ma'arif NU", "Kristen", "Plus"]
TITLES = [("", ", S.Pd."), ("", ", M.Pd."), ("", ", S.Pd., M.Pd."), ("Drs. ", ""), ("", ", S.Pd.I.")]

# School operators enter changes in working hours; how many per hour depends on the month
# (the school year starts mid-July, graduations are announced in May and June).
BASE_RATE = 2.5
MONTH_INTENSITY = {1: 1.3, 2: 0.8, 3: 0.8, 4: 0.8, 5: 1.1, 6: 2.5, 7: 6.0, 8: 1.8, 9: 0.9, 10: 0.8, 11: 0.8, 12: 0.7}
# What a change is, by month (weights): new admission, transfer in from outside the regency,
# transfer out, dropout, graduation, a change in the school register.
ACTIONS = ("new", "transfer_in", "transfer_out", "dropout", "graduation", "school")
SEASON = {
    1: (5, 6, 12, 4, 0, 3),
    5: (2, 2, 3, 2, 25, 2),
    6: (3, 2, 4, 2, 60, 2),
    7: (80, 4, 6, 2, 0, 3),
    8: (25, 5, 6, 3, 0, 2),
}
USUAL_SEASON = (5, 5, 6, 3, 0, 2)
# Senior secondary results are announced in May, primary and junior secondary ones in June.
GRADUATION_MONTHS = {"SD": (6,), "SMP": (6,), "SMA": (5, 6), "SMK": (5, 6)}
MAX_ACTIVE = 50_000  # beyond this the simulator forgets (never changes again) random active enrolments


def _school_year(at: datetime) -> int:
    wall = local(at)
    return wall.year if wall.month >= 7 else wall.year - 1


def _final_grade(level: str) -> int:
    return LEVELS[level][1][-1]


def _official(rng: random.Random) -> str:
    before, after = rng.choice(TITLES)
    return f"{before}{people.name(rng)}{after}"


class EducationOffice(Simulator):
    """School register and enrolment changes on the school year's timeline. The register depends on
    the seed only, so NPSNs are stable keys across runs; it is snapshotted (op 'r') when the stream
    starts from position 0."""

    def _start(self, clock_start: datetime | None) -> None:
        # The office's timeline starts at 07:00 in Jakarta (00:00 UTC) of the day.
        self.business_clock = clock_start or start_of_day(0)
        self.names = region_names()
        self.by_kecamatan = by_kecamatan(self.villages)
        self.village_weights = [1.0 / (1 + i % 23) for i in range(len(self.villages))]
        self.schools = self._register(random.Random(self.seed * 104_729 + 17))
        self.school_ids = sorted(self.schools)
        self.by_level: dict[str, list[str]] = {level: [] for level in LEVELS}
        for npsn in self.school_ids:
            self.by_level[self.schools[npsn]["level"]].append(npsn)
        # Bigger schools take more students.
        self.level_weights = {
            level: [self.schools[n]["student_capacity"] for n in ids] for level, ids in self.by_level.items()
        }
        self.active: dict[str, dict] = {}
        self.active_keys: list[str] = []
        self.active_index: dict[str, int] = {}
        self.finished: deque[dict] = deque(maxlen=500)
        self.pending: list[dict] = []  # the admission half of a transfer within the regency

    # -- reference data ------------------------------------------------------------------------

    def _register(self, rng: random.Random) -> dict[str, dict]:
        seats = {seat_of(villages, self.names.get(k), self.names) for k, villages in self.by_kecamatan.items()}
        weights = {}
        for level in LEVELS:
            if level == "SD":  # a primary school in nearly every village, more in towns
                weights[level] = [2.0 if is_town(v) else 1.0 for v in self.villages]
            else:  # secondary schools cluster in the kecamatan centres and the town
                weights[level] = [10.0 if v in seats else 4.0 if is_town(v) else 0.4 for v in self.villages]
        schools: dict[str, dict] = {}
        numbering: dict[str, int] = {}
        index = 0
        for level, (count, grades, size, most_groups, state_share) in LEVELS.items():
            for _ in range(count):
                index += 1
                village = rng.choices(self.villages, weights=weights[level])[0]
                kecamatan = self.names.get(kecamatan_of(village), kecamatan_of(village))
                ownership = "NEGERI" if rng.random() < state_share else "SWASTA"
                if ownership == "NEGERI" and level == "SD":
                    base = f"SD Negeri {self.names.get(village, village)}"
                elif ownership == "NEGERI":
                    base = f"{level} Negeri {{n}} {kecamatan}"
                else:
                    base = f"{level} {rng.choice(FOUNDATIONS)} {{n}} {kecamatan}"
                numbering[base] = numbering.get(base, 0) + 1
                name = base.format(n=numbering[base]) if "{n}" in base else f"{base} {numbering[base]}"
                groups = 1 + int((most_groups - 1) * rng.random() ** 2.5)  # many small schools, a few big
                accreditation = ACCREDITATION[ownership]
                updated = self.business_clock - timedelta(days=rng.randint(1, 900))
                updated = updated.replace(hour=rng.randint(1, 7), minute=rng.randint(0, 59))
                npsn = f"2050{index:04d}"
                schools[npsn] = {
                    "npsn": npsn,
                    "name": name,
                    "level": level,
                    "ownership": ownership,
                    "village_code": village,
                    "student_capacity": len(grades) * groups * size,
                    "headmaster": _official(rng),
                    "accreditation": rng.choices(list(accreditation), weights=list(accreditation.values()))[0],
                    "updated_at": updated,
                }
        return schools

    # -- timeline ------------------------------------------------------------------------------

    @staticmethod
    def _rate(local: datetime) -> float:
        """Changes per hour: operators work 07:00-15:00 on weekdays and 07:00-12:00 on Saturdays."""
        day, hour = local.weekday(), local.hour
        working = (day < 5 and 7 <= hour < 15) or (day == 5 and 7 <= hour < 12)
        return BASE_RATE * MONTH_INTENSITY[local.month] if working else 0.0

    def _advance(self) -> datetime:
        """The next change's time: a Poisson process whose rate is constant within each hour."""
        self.business_clock = next_in_hourly_process(self.business_clock, self._rate, self.clock_rng)
        return self.business_clock

    # -- enrolments ----------------------------------------------------------------------------

    def _grade_now(self, record: dict, at: datetime) -> int:
        """Students move up a grade each school year (capped at the level's last grade)."""
        moved = _school_year(at) - _school_year(record["changed_at"])
        return min(_final_grade(record["level"]), record["grade"] + moved)

    def _graduates(self, record: dict, at: datetime) -> bool:
        level = record["level"]
        return local(at).month in GRADUATION_MONTHS[level] and self._grade_now(record, at) == _final_grade(level)

    def _near(self, village: str) -> str:
        """Where a student lives: mostly the school's kecamatan (admission zoning), sometimes anywhere."""
        if self.rng.random() < 0.85:
            return self.rng.choice(self.by_kecamatan[kecamatan_of(village)])
        return self.rng.choices(self.villages, weights=self.village_weights)[0]

    def _enrolment(
        self,
        position: str,
        at: datetime,
        level: str,
        grade: int,
        kind: str,
        npsn: str | None = None,
        student: dict | None = None,
        from_npsn: str | None = None,
    ) -> dict:
        rng = self.rng
        npsn = npsn or rng.choices(self.by_level[level], weights=self.level_weights[level])[0]
        if student is None:
            born = _school_year(at) - (grade + 5) - (1 if rng.random() < 0.3 else 0)
            student = {
                "student_nisn": f"{born % 1000:03d}{rng.randint(0, 9_999_999):07d}",
                "student_name": people.name(rng),
                "student_village_code": self._near(self.schools[npsn]["village_code"]),
            }
        return {
            "enrolment_id": f"DISDIK-{position}",
            **student,
            "school_npsn": npsn,
            "from_school_npsn": from_npsn,
            "level": level,
            "grade": grade,
            "event_kind": kind,
            "status": "ACTIVE",
            "enrolled_at": at,
            "changed_at": at,
        }

    def _activate(self, record: dict) -> None:
        if len(self.active_keys) >= MAX_ACTIVE:
            self._deactivate(self.rng.choice(self.active_keys))
        key = record["enrolment_id"]
        self.active[key] = record
        self.active_index[key] = len(self.active_keys)
        self.active_keys.append(key)

    def _deactivate(self, key: str) -> None:
        """O(1) removal: the last key takes the removed key's place."""
        index = self.active_index.pop(key)
        last = self.active_keys.pop()
        if last != key:
            self.active_keys[index] = last
            self.active_index[last] = index
        del self.active[key]

    def _pick(self, accept) -> str | None:
        for _ in range(60):
            key = self.rng.choice(self.active_keys)
            if accept(self.active[key]):
                return key
        return None

    def _finish(self, position: str, now: datetime, key: str, at: datetime, status: str, kind: str) -> Change:
        before = self.active[key]
        after = dict(before, status=status, event_kind=kind, grade=self._grade_now(before, at), changed_at=at)
        self._deactivate(key)
        self.finished.append(after)
        return Change("u", key, position, now, before=dict(before), after=dict(after), entity="enrolment")

    def _school_change(self, position: str, now: datetime, at: datetime) -> Change:
        rng = self.rng
        npsn = rng.choice(self.school_ids)
        before = self.schools[npsn]
        after = dict(before, updated_at=at)
        what = rng.choices(["accreditation", "headmaster", "capacity"], weights=[3, 3, 4])[0]
        if what == "accreditation":  # re-accreditation by BAN-S/M: mostly up a grade
            rank = ACCREDITATION_ORDER.index(before["accreditation"])
            up = rank < 3 and (rank == 0 or rng.random() < 0.75)
            after["accreditation"] = ACCREDITATION_ORDER[rank + 1 if up else rank - 1]
        elif what == "headmaster":  # rotation of headmasters
            after["headmaster"] = _official(rng)
        else:  # a study group per grade opened or closed
            _, grades, size, _, _ = LEVELS[before["level"]]
            step = len(grades) * size
            grow = before["student_capacity"] <= step or rng.random() < 0.6
            after["student_capacity"] = before["student_capacity"] + (step if grow else -step)
        self.schools[npsn] = after
        return Change("u", npsn, position, now, before=dict(before), after=dict(after), entity="school")

    def _action(self, at: datetime, impossible: set[str]) -> str:
        weights = list(SEASON.get(local(at).month, USUAL_SEASON))
        if not self.active_keys:
            impossible |= {"transfer_out", "dropout", "graduation"}
        for action in impossible:
            weights[ACTIONS.index(action)] = 0
        return self.rng.choices(ACTIONS, weights=weights)[0]

    def _bad(self) -> Change:
        """A change the processor must dead-letter; it never enters the simulator's state."""
        rng = self.rng
        position, now = self._next_position(), wall_clock()
        at = self.business_clock
        kind = rng.choice(BAD_KINDS)
        if kind == "impossible_transition" and not self.finished:
            kind = "unknown_village"  # nothing has finished yet
        if kind == "impossible_transition":
            # A finished enrolment made active again.
            before = rng.choice(self.finished)
            after = dict(before, status="ACTIVE", event_kind="NEW", changed_at=at)
            return Change(
                "u", before["enrolment_id"], position, now, before=dict(before), after=after, entity="enrolment"
            )
        if kind == "negative_count" or rng.random() < 0.5:
            npsn = rng.choice(self.school_ids)
            before = self.schools[npsn]
            after = dict(before, updated_at=at)
            if kind == "negative_count":
                after["student_capacity"] = -before["student_capacity"]
            elif kind == "missing_required":
                after["headmaster"] = None
            else:
                after["village_code"] = UNKNOWN_VILLAGE
            return Change("u", npsn, position, now, before=dict(before), after=after, entity="school")
        level = rng.choices(list(NEW_SHARE), weights=list(NEW_SHARE.values()))[0]
        record = self._enrolment(position, at, level, ENTRY_GRADE[level], "NEW")
        if kind == "missing_required":
            record["student_nisn"] = None
        else:
            record["student_village_code"] = UNKNOWN_VILLAGE
        return Change("c", record["enrolment_id"], position, now, after=record, entity="enrolment")

    snapshot_entity = "school"

    def _reference_records(self) -> dict[str, dict]:
        return {npsn: self.schools[npsn] for npsn in self.school_ids}

    def _bad_turn(self) -> bool:
        # The admission half of a transfer comes next, whatever the bad ratio.
        return not self.pending and super()._bad_turn()

    def _next_change(self) -> Change:
        rng = self.rng
        position, now = self._next_position(), wall_clock()
        if self.pending:
            record = self.pending.pop(0)
            record["enrolment_id"] = f"DISDIK-{position}"
            self._activate(record)
            return Change("c", record["enrolment_id"], position, now, after=dict(record), entity="enrolment")
        at = self._advance()
        change = None
        impossible: set[str] = set()  # actions without a candidate now
        while change is None:
            action = self._action(at, impossible)
            impossible.add(action)
            if action == "school":
                change = self._school_change(position, now, at)
            elif action in ("new", "transfer_in"):
                level = rng.choices(list(NEW_SHARE), weights=list(NEW_SHARE.values()))[0]
                if action == "new":
                    record = self._enrolment(position, at, level, ENTRY_GRADE[level], "NEW")
                else:
                    record = self._enrolment(position, at, level, rng.choice(LEVELS[level][1]), "TRANSFER")
                self._activate(record)
                change = Change("c", record["enrolment_id"], position, now, after=dict(record), entity="enrolment")
            elif action == "graduation":
                key = self._pick(lambda r, at=at: self._graduates(r, at))
                if key is not None:
                    change = self._finish(position, now, key, at, "GRADUATED", "GRADUATION")
            elif action == "dropout":
                key = self._pick(lambda r: rng.random() < DROPOUT_PROPENSITY[r["level"]])
                if key is not None:
                    change = self._finish(position, now, key, at, "DROPPED_OUT", "DROPOUT")
            else:
                key = rng.choice(self.active_keys)
                change = self._finish(position, now, key, at, "TRANSFERRED", "TRANSFER")
                left = change.after
                others = [n for n in self.by_level[left["level"]] if n != left["school_npsn"]]
                if others and rng.random() < 0.6:  # to another school of the regency: admitted there next
                    student = {k: left[k] for k in ("student_nisn", "student_name", "student_village_code")}
                    self.pending.append(
                        self._enrolment(
                            position,
                            at,
                            left["level"],
                            left["grade"],
                            "TRANSFER",
                            npsn=rng.choice(others),
                            student=student,
                            from_npsn=left["school_npsn"],
                        )
                    )
        return change
