"""Simulated licensing office (DPMPTSP): permit applications moving through submitted, verified,
approved or rejected, with service-level deadlines per permit type and applicants' personal data.
Each application is handled by the one-stop office or, for the permits delegated to the camat, often
by the applicant's kecamatan office (office_code). All data is synthetic."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal

from contract.departments import load_departments
from producers.emitter import Change
from simulators import people
from simulators.kit import (
    JAKARTA,
    UNKNOWN_VILLAGE,
    Simulator,
    kecamatan_of,
    region_names,
    rupiah,
    start_of_day,
    wall_clock,
)

# permit type -> (share of applications, service level in working days, fee range in Rupiah,
# investment range in Rupiah)
PERMITS = {
    "NIB": (40, 1, (0, 0), (10_000_000, 500_000_000)),
    "SIUP": (15, 3, (0, 250_000), (50_000_000, 2_000_000_000)),
    "PBG": (12, 28, (1_500_000, 75_000_000), (150_000_000, 25_000_000_000)),
    "SIP_PRAKTIK": (8, 5, (100_000, 500_000), (0, 300_000_000)),
    "TDUP": (10, 7, (250_000, 2_500_000), (50_000_000, 5_000_000_000)),
    "REKLAME": (15, 5, (500_000, 15_000_000), (5_000_000, 200_000_000)),
}
BUSINESS = ["Toko", "Warung", "CV", "UD", "Bengkel", "Apotek", "Klinik", "Rumah Makan", "Homestay", "Percetakan"]
BAD_KINDS = ("unknown_village", "negative_amount")
ONE_STOP = "DPMPTSP"
# Permits the regent delegates to the camat (PATEN, kecamatan integrated administrative service) for
# small businesses and billboards, and the share of them filed at the kecamatan office.
DELEGATED = {"NIB", "SIUP", "REKLAME"}
AT_KECAMATAN = 0.35


def kecamatan_offices() -> dict[str, str]:
    """Kecamatan code -> its office's code in data/departments.csv (matched by name: "Kecamatan X")."""
    offices = load_departments().items()
    by_name = {d["name"].removeprefix("Kecamatan "): code for code, d in offices if d["kind"] == "kecamatan"}
    return {code: by_name[name] for code, name in region_names().items() if name in by_name and code.count(".") == 2}


def _rupiah(rng: random.Random, low: int, high: int) -> Decimal:
    """Most applications are small, a few very large; no draw for a free permit."""
    return rupiah(rng, low, high) if high > 0 else Decimal("0.00")


class LicensingOffice(Simulator):
    """Permit applications from submission to decision, in office hours."""

    def _start(self, clock_start: datetime | None) -> None:
        # A few villages (the town, the oil-field districts) see far more applications.
        self.village_weights = [1.0 / (1 + i % 37) for i in range(len(self.villages))]
        self.offices = kecamatan_offices()
        self.open: dict[str, dict] = {}
        # The office's own timeline (submitted_at, decided_at): starts at 08:00 in Jakarta (01:00 UTC)
        # of a fixed day, so the same seed and start give the same records at any time of day.
        self.business_clock = clock_start or start_of_day(1)

    def _working_time(self) -> datetime:
        """Office hours in Asia/Jakarta (UTC+7): 08:00-16:00 on weekdays, minutes apart."""
        self.business_clock += timedelta(minutes=self.clock_rng.expovariate(1 / 7))
        local = self.business_clock + JAKARTA
        if local.hour >= 16 or local.weekday() >= 5:
            days = 1 if local.weekday() < 4 or local.weekday() == 6 else 7 - local.weekday()
            local = (local + timedelta(days=days)).replace(hour=8, minute=self.clock_rng.randint(0, 30))
            self.business_clock = local - JAKARTA
        elif local.hour < 8:
            self.business_clock = local.replace(hour=8) - JAKARTA
        return self.business_clock

    def _new_application(self, position: str) -> dict:
        rng = self.rng
        permit = rng.choices(list(PERMITS), weights=[p[0] for p in PERMITS.values()])[0]
        _, sla, fee_range, investment_range = PERMITS[permit]
        village = rng.choices(self.villages, weights=self.village_weights)[0]
        submitted = self._working_time()
        return {
            "application_id": f"DPMPTSP-{position}",
            "permit_type": permit,
            "status": "SUBMITTED",
            "applicant_nik": people.nik(rng, village),
            "applicant_name": people.name(rng),
            "applicant_phone": people.phone(rng) if rng.random() < 0.9 else None,
            "applicant_address": people.address(rng),
            "village_code": village,
            "business_name": f"{rng.choice(BUSINESS)} {people.name(rng).split()[1]}"
            if permit != "SIP_PRAKTIK"
            else None,
            "investment_value": _rupiah(rng, *investment_range),
            "fee": _rupiah(rng, *fee_range),
            "sla_days": sla,
            "submitted_at": submitted,
            "decided_at": None,
            "rejection_reason": None,
            "office_code": self._office(permit, village),
            "updated_at": submitted,
        }

    def _office(self, permit: str, village: str) -> str:
        """Where the application is handled: a delegated permit is often filed at the applicant's
        kecamatan office, the others always at the one-stop office."""
        if permit in DELEGATED and self.rng.random() < AT_KECAMATAN:
            return self.offices.get(kecamatan_of(village), ONE_STOP)
        return ONE_STOP

    def _spoiled(self, record: dict) -> dict:
        """The record made bad, for the processor to dead-letter."""
        kind = self.rng.choice(BAD_KINDS)
        if kind == "unknown_village":
            record["village_code"] = UNKNOWN_VILLAGE
        else:
            record["fee"] = Decimal("-1000.00")
        return record

    def changes(self) -> Iterator[Change]:
        rng = self.rng
        while True:
            position = self._next_position()
            now = wall_clock()
            if len(self.open) < 20 or rng.random() < 0.4:
                record = self._new_application(position)
                if self._bad_turn():
                    yield Change("c", record["application_id"], position, now, after=self._spoiled(record))
                    continue
                self.open[record["application_id"]] = record
                yield Change("c", record["application_id"], position, now, after=dict(record))
                continue
            key = rng.choice(list(self.open))
            before = self.open[key]
            after = dict(before)
            after["updated_at"] = self._working_time()
            if before["status"] == "SUBMITTED":
                after["status"] = "VERIFIED" if rng.random() < 0.9 else "REJECTED"
            else:
                after["status"] = "APPROVED" if rng.random() < 0.85 else "REJECTED"
            if after["status"] in ("APPROVED", "REJECTED"):
                after["decided_at"] = after["updated_at"]
                if after["status"] == "REJECTED":
                    after["rejection_reason"] = rng.choice(
                        ["incomplete documents", "zoning mismatch", "unpaid retribution", "duplicate application"]
                    )
                del self.open[key]
            else:
                self.open[key] = after
            yield Change("u", key, position, now, before=dict(before), after=after)
