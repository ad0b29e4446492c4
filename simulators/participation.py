"""Simulated citizens' complaint channels (run by DISKOMINFO): complaints arriving by SP4N-LAPOR, the
WhatsApp hotline, the web form, service desks and social media, routed to the responsible regency
office and followed from receipt to closing. All data is synthetic.

Complaints arrive at any hour, most in the working day with a second peak in the evening; evenings
and weekends bring more WhatsApp and social-media messages and no walk-ins. Staff answer in office
hours: a first response within hours, a resolution within days, both depending on the category.
Categories follow the seasons: roads in the rainy season, school admission in June and July, floods
and drought."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta

from producers.emitter import Change
from simulators import people
from simulators.kit import (
    UNKNOWN_VILLAGE,
    Agenda,
    Simulator,
    after_working,
    impossible_next,
    in_office_hours,
    local,
    start_of_day,
    wall_clock,
)

ENTITY = "complaint"
BAD_KINDS = ("unknown_village", "bad_transition", "missing_required")
STATUSES = ("RECEIVED", "VERIFIED", "IN_PROGRESS", "RESOLVED", "CLOSED", "REJECTED")
TRANSITIONS = {
    "RECEIVED": ("VERIFIED", "REJECTED"),
    "VERIFIED": ("IN_PROGRESS", "REJECTED"),
    "IN_PROGRESS": ("RESOLVED",),
    "RESOLVED": ("CLOSED",),
    "CLOSED": (),
    "REJECTED": (),
}

# category -> (weight, responsible offices with weights, median first response in office hours,
# median resolution in working days, deadline for resolution in calendar days)
CATEGORIES: dict[str, tuple[float, dict[str, int], float, float, int]] = {
    "ROADS": (22, {"DPUPR": 85, "DPMD": 15}, 6.0, 10.0, 30),
    "HEALTH": (10, {"DINKES": 100}, 2.0, 2.0, 7),
    "EDUCATION": (9, {"DISDIK": 100}, 4.0, 4.0, 14),
    "LICENSING": (7, {"DPMPTSP": 100}, 3.0, 3.0, 10),
    "SOCIAL_AID": (16, {"DINSOS": 85, "DPMD": 15}, 5.0, 6.0, 21),
    "ADMINISTRATION": (18, {"DISDUKCAPIL": 80, "DPMD": 20}, 2.0, 1.5, 7),
    "ENVIRONMENT": (8, {"DLH": 75, "BPBD": 25}, 8.0, 8.0, 30),
    "OTHER": (10, {"SATPOLPP": 35, "DISHUB": 35, "DISKOMINFO": 30}, 6.0, 5.0, 14),
}
# Seasons: potholes and blocked drains in the rainy season (November to March), school admission
# (PPDB) in June and July, floods of the Bengawan Solo and the dry-season drought, aid rounds early in the year.
SEASON: dict[str, dict[int, float]] = {
    "ROADS": {11: 1.5, 12: 1.7, 1: 1.8, 2: 1.7, 3: 1.4, 6: 0.8, 7: 0.7, 8: 0.7, 9: 0.8},
    "EDUCATION": {6: 2.5, 7: 2.8, 8: 1.3},
    "ENVIRONMENT": {12: 1.5, 1: 1.8, 2: 1.6, 8: 1.4, 9: 1.7, 10: 1.5},
    "SOCIAL_AID": {1: 1.3, 2: 1.3, 3: 1.2},
}
# Complaints per hour of the day in Jakarta, relative: the working day, and again after the evening meal.
HOURLY = [0.1, 0.05, 0.05, 0.05, 0.15, 0.3, 0.5, 0.9, 1.6, 1.8, 1.7, 1.5, 1.1, 1.4, 1.4, 1.2,
          1.0, 0.8, 0.9, 1.3, 1.4, 1.2, 0.7, 0.3]  # fmt: skip
WEEKEND = 0.55
PER_WEEKDAY = 40.0  # complaints on an ordinary weekday, all channels

# Channel mix in office hours and outside them (evenings, nights, weekends: no service desk).
CHANNELS_OFFICE = {"SP4N_LAPOR": 25, "WHATSAPP": 30, "WEB": 15, "WALK_IN": 20, "SOCIAL_MEDIA": 10}
CHANNELS_OFF = {"SP4N_LAPOR": 18, "WHATSAPP": 47, "WEB": 10, "WALK_IN": 0, "SOCIAL_MEDIA": 25}
# What people bring to the desk and what they post publicly.
CHANNEL_CATEGORY = {
    "WALK_IN": {"ADMINISTRATION": 2.0, "SOCIAL_AID": 1.8, "ROADS": 0.5},
    "SOCIAL_MEDIA": {"ROADS": 1.8, "ENVIRONMENT": 1.6, "ADMINISTRATION": 0.5, "SOCIAL_AID": 0.6},
}
# Share of complaints giving a phone number and an NIK, per channel.
PHONE = {"SP4N_LAPOR": 0.85, "WHATSAPP": 1.0, "WEB": 0.8, "WALK_IN": 0.7, "SOCIAL_MEDIA": 0.1}
NIK = {"SP4N_LAPOR": 0.5, "WHATSAPP": 0.2, "WEB": 0.4, "WALK_IN": 0.8, "SOCIAL_MEDIA": 0.02}
# How fast the first response comes, relative: the hotline and social accounts are watched live.
RESPONSE_SPEED = {"SP4N_LAPOR": 1.5, "WHATSAPP": 0.6, "WEB": 1.2, "WALK_IN": 0.3, "SOCIAL_MEDIA": 0.7}
REJECTED_ON_RECEIPT = 0.07  # spam, duplicates, not the regency's business
REJECTED_ON_REVIEW = 0.03  # the office finds it outside its remit
CONFIRMED_BY_COMPLAINANT = 0.6  # the rest are closed by the system after 10 days without an answer

DUSUN = ["Krajan", "Wetan", "Kulon", "Lor", "Kidul", "Tengah", "Sumber", "Ngasem", "Jati", "Randu"]
SUMMARIES: dict[str, list[str]] = {
    "ROADS": [
        "Jalan poros desa di Dusun {dusun} rusak berlubang sepanjang kurang lebih {n}0 meter, membahayakan pengendara",
        "Jembatan penghubung antardusun di Dusun {dusun} retak dan mulai miring",
        "Lampu penerangan jalan umum di Dusun {dusun} mati sejak {n} hari",
        "Saluran di tepi jalan Dusun {dusun} tersumbat, jalan tergenang setiap hujan",
        "Perbaikan jalan kabupaten ditinggalkan setengah jadi tanpa rambu peringatan",
    ],
    "HEALTH": [
        "Antrean pelayanan di puskesmas sangat lama, pasien menunggu lebih dari {n} jam",
        "Obat yang diresepkan tidak tersedia di apotek puskesmas",
        "Ambulans desa sulit dihubungi pada malam hari",
        "Pendaftaran peserta BPJS Kesehatan PBI belum diproses",
        "Posyandu di Dusun {dusun} tidak buka sesuai jadwal",
    ],
    "EDUCATION": [
        "Situs pendaftaran PPDB tidak bisa diakses menjelang batas waktu",
        "Ada pungutan biaya seragam dan buku di sekolah negeri",
        "Atap ruang kelas SD di Dusun {dusun} bocor saat hujan",
        "Pencairan Program Indonesia Pintar terlambat",
        "Zonasi PPDB dinilai tidak sesuai jarak rumah ke sekolah",
    ],
    "LICENSING": [
        "Pengajuan PBG belum ada kejelasan setelah melewati batas waktu layanan",
        "Kesulitan mengakses OSS untuk penerbitan NIB",
        "Reklame yang izinnya sudah habis masih terpasang",
        "Persyaratan izin usaha mikro dinilai terlalu banyak",
    ],
    "SOCIAL_AID": [
        "Keluarga kurang mampu di Dusun {dusun} belum terdaftar di DTKS",
        "Bantuan sembako BPNT bulan ini belum diterima",
        "Penyaluran BLT Dana Desa dinilai tidak tepat sasaran",
        "Pembaruan data penerima PKH belum diproses",
        "Bantuan rumah tidak layak huni belum ada kelanjutan",
    ],
    "ADMINISTRATION": [
        "Pencetakan KTP elektronik tertunda, blangko disebut habis",
        "Kantor desa tutup pada jam kerja",
        "Perubahan data Kartu Keluarga belum selesai setelah {n} minggu",
        "Akta kelahiran belum terbit setelah {n} minggu",
        "Antrean layanan kependudukan di kecamatan terlalu panjang",
    ],
    "ENVIRONMENT": [
        "Sampah menumpuk di tepi jalan Dusun {dusun} dan tidak diangkut",
        "Luapan Bengawan Solo merendam permukiman di Dusun {dusun}",
        "Sumur warga kering, kesulitan air bersih sejak {n} minggu",
        "Bau limbah dari usaha pengolahan di sekitar permukiman",
        "Pembakaran sampah terbuka mengganggu warga",
    ],
    "OTHER": [
        "Parkir liar di sekitar alun-alun mengganggu lalu lintas",
        "Pedagang kaki lima menutup trotoar",
        "Jadwal angkutan pedesaan tidak menentu",
        "Sinyal internet di balai desa Dusun {dusun} lemah",
        "Lampu lalu lintas di perempatan mati",
    ],
}


class ComplaintChannel(Simulator):
    """Complaints from arrival to closing, on the channels' timeline."""

    def _start(self, clock_start: datetime | None) -> None:
        if not self.villages:
            raise ValueError("the complaint channels need village codes")
        # Where complaints come from is stable for a seed: the town (kecamatan Bojonegoro, 35.22.15)
        # and a few large villages complain far more, online.
        structure = random.Random(f"participation:{self.seed}")
        self.village_weights = [
            structure.lognormvariate(0, 0.6) * (4.0 if v.startswith("35.22.15.") else 1.0) for v in self.villages
        ]
        self.open: dict[str, dict] = {}  # ticket_id -> current record, until closed or rejected
        self.agenda = Agenda()  # (arrival, None) and (move, (ticket_id, status)) events
        # The business clock starts at 08:00 in Jakarta (01:00 UTC) of a fixed day, so the same seed and
        # start give the same records at any time of day.
        self.now = clock_start or start_of_day(1)
        self.peak_per_hour = PER_WEEKDAY / sum(HOURLY) * max(HOURLY)
        self.agenda.add(self._next_arrival(self.now), "arrival", None)

    # -- timeline -----------------------------------------------------------------------------------

    def _intensity(self, at: datetime) -> float:
        """Relative arrival rate at this moment, 0 to 1."""
        wall = local(at)
        weekend = WEEKEND if wall.weekday() >= 5 else 1.0
        return HOURLY[wall.hour] * weekend / max(HOURLY)

    def _next_arrival(self, after: datetime) -> datetime:
        """A Poisson process whose rate follows the hour of day and the weekday (by thinning)."""
        at = after
        while True:
            at += timedelta(hours=self.clock_rng.expovariate(self.peak_per_hour))
            if self.clock_rng.random() < self._intensity(at):
                return at

    def _lognormal(self, median: float, sigma: float = 0.8) -> float:
        return median * math.exp(self.clock_rng.gauss(0, sigma))

    # -- records ------------------------------------------------------------------------------------

    def _new_complaint(self, position: str) -> dict:
        rng = self.rng
        received = self.now
        month = local(received).month
        channels = CHANNELS_OFFICE if in_office_hours(received) else CHANNELS_OFF
        channel = rng.choices(list(channels), weights=list(channels.values()))[0]
        boost = CHANNEL_CATEGORY.get(channel, {})
        weights = [CATEGORIES[c][0] * SEASON.get(c, {}).get(month, 1.0) * boost.get(c, 1.0) for c in CATEGORIES]
        category = rng.choices(list(CATEGORIES), weights=weights)[0]
        _, offices, _, _, due_days = CATEGORIES[category]
        village = rng.choices(self.villages, weights=self.village_weights)[0]
        nik_share = min(0.95, NIK[channel] + (0.3 if category in ("ADMINISTRATION", "SOCIAL_AID") else 0.0))
        summary = rng.choice(SUMMARIES[category]).format(dusun=rng.choice(DUSUN), n=rng.randint(2, 9))
        return {
            "ticket_id": f"ADUAN-{position}",
            "channel": channel,
            "category": category,
            "department_responsible": rng.choices(list(offices), weights=list(offices.values()))[0],
            "complainant_name": people.name(rng),
            "complainant_phone": people.phone(rng) if rng.random() < PHONE[channel] else None,
            "complainant_nik": people.nik(rng, village) if rng.random() < nik_share else None,
            "village_code": village,
            "summary": summary,
            "status": "RECEIVED",
            "received_at": received,
            "resolution_due_at": received + timedelta(days=due_days),
            "first_response_at": None,
            "resolved_at": None,
            "updated_at": received,
        }

    def _plan_next(self, record: dict) -> None:
        """Schedule the ticket's next move, from its current status."""
        status, category = record["status"], record["category"]
        _, _, response_hours, resolution_days, _ = CATEGORIES[category]
        rng = self.rng
        if status == "RECEIVED":
            hours = self._lognormal(response_hours * RESPONSE_SPEED[record["channel"]])
            target = "REJECTED" if rng.random() < REJECTED_ON_RECEIPT else "VERIFIED"
            at = after_working(self.now, hours)
        elif status == "VERIFIED":
            target = "REJECTED" if rng.random() < REJECTED_ON_REVIEW else "IN_PROGRESS"
            at = after_working(self.now, self._lognormal(4.0, 0.9))  # the office picks it up
        elif status == "IN_PROGRESS":
            target = "RESOLVED"
            at = after_working(self.now, self._lognormal(resolution_days, 0.75) * 8)
        elif status == "RESOLVED":
            target = "CLOSED"
            if rng.random() < CONFIRMED_BY_COMPLAINANT:  # the complainant confirms, at any hour
                at = self.now + timedelta(hours=self.clock_rng.uniform(0.5, 120))
            else:
                at = self.now + timedelta(days=10)
        else:
            return
        self.agenda.add(at, "move", (record["ticket_id"], target))

    def _on_arrival(self) -> Change:
        self.agenda.add(self._next_arrival(self.now), "arrival", None)
        position = self._next_position()
        record = self._new_complaint(position)
        self.open[record["ticket_id"]] = record
        self._plan_next(record)
        return Change("c", record["ticket_id"], position, wall_clock(), after=dict(record), entity=ENTITY)

    def _on_move(self, ticket_id: str, target: str) -> Change:
        before = self.open[ticket_id]
        after = dict(before)
        after["status"] = target
        after["updated_at"] = self.now
        if before["status"] == "RECEIVED":
            after["first_response_at"] = self.now
        if target == "RESOLVED":
            after["resolved_at"] = self.now
        if TRANSITIONS[target]:
            self.open[ticket_id] = after
            self._plan_next(after)
        else:
            del self.open[ticket_id]
        position = self._next_position()
        return Change("u", ticket_id, position, wall_clock(), before=dict(before), after=dict(after), entity=ENTITY)

    # -- bad records --------------------------------------------------------------------------------

    def _bad(self) -> Change:
        """A change the processor must dead-letter; it never enters the simulator's state."""
        rng = self.rng
        kind = rng.choice(BAD_KINDS)
        if kind == "bad_transition" and not self.open:
            kind = "unknown_village"
        position = self._next_position()
        now = wall_clock()
        if kind == "bad_transition":
            before = self.open[rng.choice(list(self.open))]
            after = dict(before)
            after["status"] = impossible_next(rng, STATUSES, before["status"], TRANSITIONS[before["status"]])
            after["updated_at"] = self.now
            return Change("u", before["ticket_id"], position, now, before=dict(before), after=after, entity=ENTITY)
        record = self._new_complaint(position)
        if kind == "unknown_village":
            record["village_code"] = UNKNOWN_VILLAGE
        else:
            record["resolution_due_at"] = None
        return Change("c", record["ticket_id"], position, now, after=record, entity=ENTITY)

    def _next_change(self) -> Change:
        at, kind, data = self.agenda.pop()
        self.now = at
        return self._on_arrival() if kind == "arrival" else self._on_move(*data)
