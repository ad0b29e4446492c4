"""Simulated licensing office (DPMPTSP): permit applications moving through submitted, verified,
approved or rejected, with service-level deadlines per permit type and applicants' personal data.
All data is synthetic."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from producers.emitter import Change
from simulators import people

# permit type -> (service level in working days, fee range in Rupiah, investment range in Rupiah)
PERMITS = {
    "NIB": (1, (0, 0), (10_000_000, 500_000_000)),
    "SIUP": (3, (0, 250_000), (50_000_000, 2_000_000_000)),
    "PBG": (28, (1_500_000, 75_000_000), (150_000_000, 25_000_000_000)),
    "SIP_PRAKTIK": (5, (100_000, 500_000), (0, 300_000_000)),
    "TDUP": (7, (250_000, 2_500_000), (50_000_000, 5_000_000_000)),
    "REKLAME": (5, (500_000, 15_000_000), (5_000_000, 200_000_000)),
}
PERMIT_WEIGHTS = {"NIB": 40, "SIUP": 15, "PBG": 12, "SIP_PRAKTIK": 8, "TDUP": 10, "REKLAME": 15}
BUSINESS = ["Toko", "Warung", "CV", "UD", "Bengkel", "Apotek", "Klinik", "Rumah Makan", "Homestay", "Percetakan"]
BAD_KINDS = ("unknown_village", "negative_amount")


def _rupiah(rng: random.Random, low: int, high: int) -> Decimal:
    if high <= 0:
        return Decimal("0.00")
    # Skewed: most applications are small, a few are very large.
    value = low + (high - low) * rng.random() ** 3
    return Decimal(int(value / 1000) * 1000).quantize(Decimal("0.01"))


class LicensingOffice:
    """A deterministic stream of changes (same seed and start, same changes)."""

    def __init__(
        self,
        villages: list[str],
        seed: int = 1,
        start_seq: int = 0,
        bad_ratio: float = 0.0,
        clock_start: datetime | None = None,
    ) -> None:
        self.rng = random.Random(seed * 1_000_003 + start_seq)
        # A separate stream for the timeline, so records do not depend on the time of day we start.
        self.clock_rng = random.Random(seed * 7_919 + start_seq)
        self.villages = villages
        # A few villages (the town, the oil-field districts) see far more applications.
        self.village_weights = [1.0 / (1 + i % 37) for i in range(len(villages))]
        self.seq = start_seq
        self.bad_ratio = bad_ratio
        self.open: dict[str, dict] = {}
        # The office's own timeline (submitted_at, decided_at): starts at 08:00 in Jakarta (01:00 UTC)
        # of a fixed day, so the same seed and start give the same records at any time of day.
        today = datetime.now(UTC).replace(hour=1, minute=0, second=0, microsecond=0)
        self.business_clock = clock_start or today

    def _next_position(self) -> str:
        self.seq += 1
        return f"{self.seq:012d}"

    def _working_time(self) -> datetime:
        """Office hours in Asia/Jakarta (UTC+7): 08:00-16:00 on weekdays, minutes apart."""
        self.business_clock += timedelta(minutes=self.clock_rng.expovariate(1 / 7))
        local = self.business_clock + timedelta(hours=7)
        if local.hour >= 16 or local.weekday() >= 5:
            days = 1 if local.weekday() < 4 or local.weekday() == 6 else 7 - local.weekday()
            local = (local + timedelta(days=days)).replace(hour=8, minute=self.clock_rng.randint(0, 30))
            self.business_clock = local - timedelta(hours=7)
        elif local.hour < 8:
            self.business_clock = local.replace(hour=8) - timedelta(hours=7)
        return self.business_clock

    def _new_application(self, position: str) -> dict:
        rng = self.rng
        permit = rng.choices(list(PERMIT_WEIGHTS), weights=list(PERMIT_WEIGHTS.values()))[0]
        sla, fee_range, investment_range = PERMITS[permit]
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
            "updated_at": submitted,
        }

    def _bad(self, record: dict) -> dict:
        kind = self.rng.choice(BAD_KINDS)
        if kind == "unknown_village":
            record["village_code"] = "35.22.99.9999"
        else:
            record["fee"] = Decimal("-1000.00")
        return record

    def changes(self) -> Iterator[Change]:
        rng = self.rng
        while True:
            position = self._next_position()
            now = datetime.now(UTC)
            if len(self.open) < 20 or rng.random() < 0.4:
                record = self._new_application(position)
                if self.bad_ratio and rng.random() < self.bad_ratio:
                    yield Change("c", record["application_id"], position, now, after=self._bad(record))
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
