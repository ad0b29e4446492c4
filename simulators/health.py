"""Simulated health services of the regency: patient visits at the Puskesmas (community health
centres), their Pustu (auxiliary posts) and the regional hospital RSUD Dr. R. Sosodoro
Djatikoesoemo, registered, seen and then done or referred, with busy mornings while the outpatient
clinics are open and emergencies around the clock; and the hospital's bed census per ward every few
changes. All data is synthetic: patients, NIKs, facility codes, tariffs and wards are made up; only
the village codes are real (facility locations are approximate)."""

from __future__ import annotations

import heapq
import math
import random
from datetime import datetime, timedelta
from decimal import Decimal

from producers.emitter import Change
from simulators import people
from simulators.kit import (
    UNKNOWN_VILLAGE,
    Simulator,
    by_kecamatan,
    kecamatan_of,
    local,
    next_in_hourly_process,
    region_names,
    rupiah,
    seat_of,
    start_of_day,
    to_millis,
    wall_clock,
)

BAD_KINDS = ("unknown_village", "negative_amount", "missing_required", "impossible_transition", "negative_count")
HOSPITAL = "RSUD Dr. R. Sosodoro Djatikoesoemo"
HOSPITAL_CODE = "RSUD3522001"
HOSPITAL_KECAMATAN = "35.22.15"  # Kecamatan Bojonegoro, the town
OUTSIDE_REFERRAL = "RSUD Dr. Soetomo Surabaya"

# ward -> (class, beds, usual share of beds occupied, mean length of stay in days)
WARDS = {
    "Paviliun Anggrek": ("VIP", 12, 0.55, 3.0),
    "Ruang Mawar": ("I", 20, 0.65, 3.5),
    "Ruang Melati": ("II", 28, 0.72, 4.0),
    "Ruang Dahlia": ("III", 40, 0.85, 4.5),
    "Ruang Flamboyan": ("III", 36, 0.82, 4.5),
    "Ruang Cempaka (Obstetri)": ("II", 24, 0.70, 3.0),
    "Ruang Teratai (Anak)": ("III", 30, 0.75, 3.5),
    "ICU": ("ICU", 10, 0.80, 5.0),
    "ICCU": ("ICU", 6, 0.75, 4.0),
    "NICU": ("ICU", 8, 0.85, 7.0),
}

# Registrations per hour (Asia/Jakarta) while the outpatient clinics are open, and outside those
# hours (emergencies and deliveries only): mornings are busy.
BASE_RATE = 6.0
OPEN_PROFILE = [0.4, 0.3, 0.3, 0.3, 0.4, 0.6, 2, 8, 12, 11, 8, 6, 4, 3, 1.2, 1, 1, 1, 1, 0.9, 0.8, 0.7, 0.6, 0.5]
CLOSED_PROFILE = [0.15, 0.12, 0.12, 0.12, 0.15, 0.2, 0.3, 0.35] + [0.4] * 8 + [0.45] * 5 + [0.35, 0.3, 0.2]

# facility type (and whether the outpatient clinics are open) -> service weights
SERVICES = {
    ("PUSTU", True): {"OUTPATIENT": 70, "IMMUNISATION": 15, "MATERNAL": 15},
    ("PUSKESMAS", True): {"OUTPATIENT": 62, "IMMUNISATION": 10, "MATERNAL": 12, "EMERGENCY": 8, "INPATIENT": 8},
    ("RSUD", True): {"OUTPATIENT": 70, "EMERGENCY": 12, "INPATIENT": 14, "MATERNAL": 4},
    ("PUSKESMAS", False): {"EMERGENCY": 85, "MATERNAL": 15},
    ("RSUD", False): {"EMERGENCY": 82, "INPATIENT": 12, "MATERNAL": 6},
}
# service -> ICD-10 code -> weight
# fmt: off
DIAGNOSES = {
    "OUTPATIENT": {
        "J06.9": 22, "I10": 14, "E11.9": 7, "K29.7": 8, "M79.1": 7, "A09": 6, "K02.9": 5, "L30.9": 5,
        "R51": 4, "J00": 4, "H10.9": 3, "A01.0": 2, "J45.9": 2, "E78.5": 3, "Z00.0": 4,
    },
    "EMERGENCY": {
        "T14.1": 10, "R10.4": 10, "A09": 10, "R50.9": 10, "S09.9": 8, "A91": 6, "I63.9": 5, "S52.5": 4,
        "J45.9": 4, "I21.9": 3,
    },
    "INPATIENT": {
        "A01.0": 14, "A91": 14, "J18.9": 12, "A09": 10, "I63.9": 8, "E11.9": 6, "N39.0": 6, "K35.8": 5,
        "I50.0": 5, "O82": 4,
    },
    "IMMUNISATION": {"Z23": 40, "Z27.1": 35, "Z24.6": 10, "Z27.8": 15},
    "MATERNAL": {"Z34.9": 55, "Z34.0": 15, "O80": 18, "Z39.2": 12},
}
# fmt: on
DELIVERIES = {"O80", "O82"}
# Tariffs in Rupiah (low, high) under the regency's tariff regulation; the RSUD's are higher.
TARIFFS = {
    ("PRIMARY", "OUTPATIENT"): (10_000, 20_000),
    ("PRIMARY", "EMERGENCY"): (25_000, 150_000),
    ("PRIMARY", "INPATIENT"): (150_000, 1_500_000),
    ("PRIMARY", "MATERNAL"): (10_000, 25_000),
    ("PRIMARY", "DELIVERY"): (700_000, 1_200_000),
    ("RSUD", "OUTPATIENT"): (75_000, 750_000),
    ("RSUD", "EMERGENCY"): (150_000, 2_500_000),
    ("RSUD", "INPATIENT"): (1_500_000, 40_000_000),
    ("RSUD", "MATERNAL"): (75_000, 300_000),
    ("RSUD", "DELIVERY"): (2_500_000, 15_000_000),
}
PAYERS = {"BPJS": 72, "UMUM": 20, "JAMKESDA": 8}
REFERRAL = {"PUSTU": 0.10, "PUSKESMAS": 0.07, "RSUD": 0.02}
# service -> minutes waiting for the consultation, then minutes of care: each a fixed part plus an
# exponential mean
WAITING_AND_CARE = {
    "OUTPATIENT": ((10, 45), (5, 10)),
    "EMERGENCY": ((1, 8), (30, 120)),
    "INPATIENT": ((20, 60), (1440, 4320)),
    "IMMUNISATION": ((5, 25), (3, 5)),
    "MATERNAL": ((10, 30), (10, 15)),
}
FEMALE = ["Dewi", "Fitri", "Indah", "Kartini", "Lestari", "Putri", "Sari", "Siti", "Sri", "Yanti", "Nur"]


def _rupiah(rng: random.Random, low: int, high: int) -> Decimal:
    """Most visits cost little, a few (long stays, surgery) a lot; tariffs in whole 500s."""
    return rupiah(rng, low, high, unit=500)


def _poisson(rng: random.Random, mean: float) -> int:
    if mean > 30:
        return max(0, round(rng.normalvariate(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _outpatient_open(local: datetime) -> bool:
    """Outpatient clinics: 07:00-14:00 Monday to Thursday, to 11:00 on Friday, to 12:00 on Saturday."""
    day, hour = local.weekday(), local.hour
    closing = 14 if day < 4 else 11 if day == 4 else 12 if day == 5 else 0
    return 7 <= hour < closing


class HealthServices(Simulator):
    """Visits and the bed census on the health services' timeline. Facilities and wards depend on the
    village list only; the wards are snapshotted (op 'r') when the stream starts from position 0."""

    def _start(self, clock_start: datetime | None) -> None:
        self.village_weights = [1.0 / (1 + i % 29) for i in range(len(self.villages))]
        # The timeline starts at 07:00 in Jakarta (00:00 UTC) of the day.
        self.clock = clock_start or start_of_day(0)
        self.names = region_names()
        self.by_kecamatan = by_kecamatan(self.villages)
        self.facilities = self._facilities()
        self.facility_codes = list(self.facilities)
        self.wards = {
            f"RSSD-W{i:02d}": {
                "ward_id": f"RSSD-W{i:02d}",
                "hospital_name": HOSPITAL,
                "ward_name": name,
                "ward_class": ward_class,
                "beds_total": beds,
                "beds_occupied": round(beds * usual),
                "as_of": self.clock,
            }
            for i, (name, (ward_class, beds, usual, _)) in enumerate(WARDS.items(), start=1)
        }
        self.ward_ids = list(self.wards)
        self.census_in = 3
        self.open: dict[str, dict] = {}
        self.diagnosis: dict[str, str] = {}  # what the doctor will find, decided at registration
        self.due: list[tuple[datetime, int, str]] = []  # (time of the next status change, tie-break, visit)
        self.next_arrival = self._advance(self.clock)

    # -- reference data ------------------------------------------------------------------------

    def _seat(self, kecamatan: str) -> str:
        return seat_of(self.by_kecamatan[kecamatan], self.names.get(kecamatan), self.names)

    def _facilities(self) -> dict[str, dict]:
        """One Puskesmas per kecamatan (two in the largest), each with two Pustu, and the RSUD in town."""
        facilities: dict[str, dict] = {}
        town = HOSPITAL_KECAMATAN if HOSPITAL_KECAMATAN in self.by_kecamatan else min(self.by_kecamatan)
        facilities[HOSPITAL_CODE] = {
            "code": HOSPITAL_CODE,
            "type": "RSUD",
            "village": self._seat(town),
            "parent": None,
            "inpatient": True,
            "weight": 22.0,
        }
        centres = []
        for kecamatan, villages in sorted(self.by_kecamatan.items()):
            seats = [self._seat(kecamatan)] + ([villages[len(villages) // 2]] if len(villages) >= 23 else [])
            for n, village in enumerate(dict.fromkeys(seats), start=1):
                code = f"P{kecamatan.replace('.', '')}{n:02d}"
                number = int(kecamatan.rsplit(".", 1)[1]) if kecamatan.rsplit(".", 1)[1].isdigit() else 0
                # Bigger kecamatan, more patients.
                centres.append((code, village, len(villages) / len(seats), n == 1 and number % 2 == 1))
                for m, post in enumerate(dict.fromkeys(villages[len(villages) * k // 3] for k in (1, 2)), start=1):
                    if post not in seats:
                        facilities[f"{code}{m:02d}"] = {
                            "code": f"{code}{m:02d}",
                            "type": "PUSTU",
                            "village": post,
                            "parent": code,
                            "inpatient": False,
                            "weight": 0.0,
                        }
        total = sum(size for _, _, size, _ in centres)
        for code, village, size, inpatient in centres:
            facilities[code] = {
                "code": code,
                "type": "PUSKESMAS",
                "village": village,
                "parent": HOSPITAL_CODE,
                "inpatient": inpatient,  # a Puskesmas with beds (rawat inap), open around the clock
                "weight": 66.0 * size / total,
            }
        posts = [f for f in facilities.values() if f["type"] == "PUSTU"]
        for post in posts:
            post["weight"] = 12.0 / len(posts)
        return dict(sorted(facilities.items()))

    # -- timeline ------------------------------------------------------------------------------

    @staticmethod
    def _rate(local: datetime) -> float:
        profile = OPEN_PROFILE if _outpatient_open(local) else CLOSED_PROFILE
        return BASE_RATE * profile[local.hour]

    def _advance(self, t: datetime) -> datetime:
        """The next registration after t (the rate never drops to 0: emergencies come at any hour)."""
        return next_in_hourly_process(t, self._rate, self.clock_rng)

    def _later(self, t: datetime, fixed_minutes: float, mean_minutes: float) -> datetime:
        return to_millis(t + timedelta(minutes=fixed_minutes + self.clock_rng.expovariate(1 / mean_minutes)))

    # -- visits --------------------------------------------------------------------------------

    def _patient(self, village: str, service: str) -> dict:
        rng = self.rng
        nik = people.nik(rng, village)
        if service == "MATERNAL":  # a woman: day of birth + 40
            day = int(nik[6:8])
            nik = f"{nik[:6]}{day if day > 40 else day + 40:02d}{nik[8:]}"
            name = f"{rng.choice(FEMALE)} {rng.choice(people.FAMILY)}"
        else:
            name = people.name(rng)
        if service == "IMMUNISATION":  # an infant or a schoolchild
            nik = f"{nik[:10]}{rng.randint(15, 25):02d}{nik[12:]}"
        return {
            "patient_nik": nik,
            "patient_name": name,
            "patient_phone": people.phone(rng) if rng.random() < 0.75 else None,
        }

    def _fee(self, facility: dict, service: str, diagnosis: str, payer: str) -> Decimal:
        if service == "IMMUNISATION":
            return Decimal("0.00")  # free national programme
        kind = "DELIVERY" if diagnosis in DELIVERIES else service
        if facility["type"] != "RSUD":
            if payer == "BPJS" and kind in ("OUTPATIENT", "EMERGENCY", "MATERNAL"):
                return Decimal("0.00")  # paid by BPJS capitation
            return _rupiah(self.rng, *TARIFFS[("PRIMARY", kind)])
        return _rupiah(self.rng, *TARIFFS[("RSUD", kind)])

    def _new_visit(self, position: str, at: datetime) -> dict:
        rng = self.rng
        open_ = _outpatient_open(local(at))
        candidates = [f for f in self.facilities.values() if open_ or f["inpatient"]]
        weights = [f["weight"] if open_ else 55.0 if f["type"] == "RSUD" else 45.0 for f in candidates]
        facility = rng.choices(candidates, weights=weights)[0]
        services = dict(SERVICES[(facility["type"], open_)])
        if not facility["inpatient"]:
            services.pop("INPATIENT", None)
        service = rng.choices(list(services), weights=list(services.values()))[0]
        diagnoses = DIAGNOSES[service]
        diagnosis = rng.choices(list(diagnoses), weights=list(diagnoses.values()))[0]
        if service == "MATERNAL" and not open_:
            diagnosis = "O80" if facility["type"] != "RSUD" or rng.random() < 0.6 else "O82"  # night: births
        elif service == "MATERNAL" and facility["type"] == "RSUD" and diagnosis == "O80" and rng.random() < 0.4:
            diagnosis = "O82"  # caesarean sections at the hospital
        village = facility["village"]
        # Patients come from around the facility; the hospital draws from the whole regency.
        if rng.random() < (0.5 if facility["type"] == "RSUD" else 0.85):
            home = rng.choice(self.by_kecamatan[kecamatan_of(village)])
        else:
            home = rng.choices(self.villages, weights=self.village_weights)[0]
        payer = rng.choices(list(PAYERS), weights=list(PAYERS.values()))[0]
        self.diagnosis[f"DINKES-{position}"] = diagnosis
        return {
            "visit_id": f"DINKES-{position}",
            "facility_code": facility["code"],
            "facility_type": facility["type"],
            "facility_village_code": village,
            **self._patient(home, service),
            "service": service,
            "diagnosis_icd10": None,
            "payer": payer,
            "fee": self._fee(facility, service, diagnosis, payer),
            "status": "REGISTERED",
            "referred_to": None,
            "visited_at": at,
            "updated_at": at,
        }

    def _progress(self, key: str, at: datetime) -> dict:
        """The visit's next status at `at`; schedules the one after."""
        rng = self.rng
        before = self.open[key]
        after = dict(before, updated_at=at)
        service = before["service"]
        if before["status"] == "REGISTERED":
            after["status"] = "IN_CONSULTATION"
            _, care = WAITING_AND_CARE[service]
            if self.diagnosis[key] in DELIVERIES:
                care = (240, 480)
            self.open[key] = after
            heapq.heappush(self.due, (self._later(at, *care), self.seq, key))
            return after
        after["diagnosis_icd10"] = self.diagnosis.pop(key)
        facility = self.facilities[before["facility_code"]]
        share = REFERRAL[facility["type"]] * (3 if service == "EMERGENCY" else 0 if service == "IMMUNISATION" else 1)
        if rng.random() < share:
            after["status"] = "REFERRED"
            after["referred_to"] = facility["parent"] or OUTSIDE_REFERRAL
        else:
            after["status"] = "DONE"
        del self.open[key]
        return after

    # -- bed census ----------------------------------------------------------------------------

    def _census(self, position: str, now: datetime) -> Change:
        rng = self.rng
        ward_id = rng.choice(self.ward_ids)
        before = self.wards[ward_id]
        _, beds, usual, stay_days = WARDS[before["ward_name"]]
        hours = max(0.0, (self.clock - before["as_of"]).total_seconds() / 3600)
        stay = stay_days * 24
        discharged = sum(rng.random() < 1 - math.exp(-hours / stay) for _ in range(before["beds_occupied"]))
        admitted = _poisson(rng, usual * beds / stay * hours)
        occupied = min(beds, max(0, before["beds_occupied"] - discharged + admitted))
        after = dict(before, beds_occupied=occupied, as_of=self.clock)
        self.wards[ward_id] = after
        return Change("u", ward_id, position, now, before=dict(before), after=dict(after), entity="bed_occupancy")

    # -- bad records ---------------------------------------------------------------------------

    def _bad(self) -> Change:
        """A change the processor must dead-letter; it never enters the simulator's state."""
        position, now = self._next_position(), wall_clock()
        rng = self.rng
        kind = rng.choice(BAD_KINDS)
        if kind == "impossible_transition" and not self.open:
            kind = "unknown_village"
        if kind == "impossible_transition":
            # Done without a consultation, or back from the consultation to the queue.
            key = rng.choice(list(self.open))
            before = self.open[key]
            status = "DONE" if before["status"] == "REGISTERED" else "REGISTERED"
            after = dict(before, status=status, updated_at=self.clock)
            return Change("u", key, position, now, before=dict(before), after=after, entity="visit")
        if kind == "negative_count":
            ward_id = rng.choice(self.ward_ids)
            before = self.wards[ward_id]
            after = dict(before, beds_occupied=-1 - before["beds_occupied"], as_of=self.clock)
            return Change("u", ward_id, position, now, before=dict(before), after=after, entity="bed_occupancy")
        record = self._new_visit(position, self.clock)
        del self.diagnosis[record["visit_id"]]
        if kind == "unknown_village":
            record["facility_village_code"] = UNKNOWN_VILLAGE
        elif kind == "negative_amount":
            record["fee"] = -_rupiah(rng, 10_000, 500_000) - Decimal("500.00")
        else:
            record["patient_nik"] = None
        return Change("c", record["visit_id"], position, now, after=record, entity="visit")

    snapshot_entity = "bed_occupancy"

    def _reference_records(self) -> dict[str, dict]:
        return self.wards

    def _next_change(self) -> Change:
        position, now = self._next_position(), wall_clock()
        self.census_in -= 1
        if self.census_in <= 0:  # the wards report their beds every few changes
            self.census_in = self.rng.randint(3, 8)
            return self._census(position, now)
        if self.due and self.due[0][0] <= self.next_arrival:
            at, _, key = heapq.heappop(self.due)
            self.clock = max(self.clock, at)
            before = dict(self.open[key])
            return Change("u", key, position, now, before=before, after=dict(self._progress(key, at)), entity="visit")
        at = self.next_arrival
        self.clock = max(self.clock, at)
        self.next_arrival = self._advance(at)
        record = self._new_visit(position, at)
        self.open[record["visit_id"]] = record
        waiting, _ = WAITING_AND_CARE[record["service"]]
        heapq.heappush(self.due, (self._later(at, *waiting), self.seq, record["visit_id"]))
        return Change("c", record["visit_id"], position, now, after=dict(record), entity="visit")
