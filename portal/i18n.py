"""Indonesian (default) and English: the language of a request, the portal's texts, and number and
date formats per language through babel (`1.234.567,89` and `30 Nov 2026` in Indonesian)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.numbers import NumberPattern, parse_pattern

LANGUAGES = ("id", "en")
DEFAULT = "id"
TZ = "Asia/Jakarta"
EPOCH_YEAR = 1971  # a max() over no rows is the epoch: no data yet

MESSAGES: dict[str, tuple[str, str]] = {  # key: (Indonesian, English)
    "site": ("Data Terbuka Bojonegoro", "Bojonegoro Open Data"),
    "tagline": (
        "Angka layanan publik dan anggaran Kabupaten Bojonegoro, diperbarui terus-menerus dari sistem perangkat "
        "daerah. Hanya agregat; jumlah orang yang kecil disembunyikan.",
        "Figures of Bojonegoro Regency's public services and budget, updated continuously from the offices' "
        "systems. Aggregates only; small counts of persons are suppressed.",
    ),
    "home": ("Beranda", "Home"),
    "budget_explorer": ("Penjelajah APBD", "Budget explorer"),
    "datasets": ("Dataset", "Datasets"),
    "regions": ("Wilayah", "Regions"),
    "switch": ("English", "Bahasa Indonesia"),
    "skip": ("Langsung ke isi", "Skip to content"),
    "licensing": ("Perizinan", "Licensing"),
    "budget": ("Anggaran", "Budget"),
    "complaints": ("Pengaduan", "Complaints"),
    "health": ("Kesehatan", "Health"),
    "education": ("Pendidikan", "Education"),
    "infrastructure": ("Pekerjaan umum", "Public works"),
    "village": ("Keuangan desa", "Village finance"),
    "h_licensing": (
        "izin diputuskan dalam standar pelayanan bulan ini",
        "permits decided within service level this month",
    ),
    "over_time": ("Dari waktu ke waktu", "Over time"),
    "h_budget": ("serapan APBD sampai bulan ini", "budget absorbed to date"),
    "h_complaints": ("pengaduan terbuka", "open complaints"),
    "h_complaints_median": ("median jam sampai tanggapan pertama", "median hours to first answer"),
    "h_health": ("keterisian tempat tidur rumah sakit", "hospital bed occupancy"),
    "h_education": ("siswa diterima tahun ajaran", "pupils enrolled in school year"),
    "h_infrastructure": ("paket berjalan sesuai jadwal", "running projects on schedule"),
    "h_village": ("desa sudah melapor belanja bulan ini", "desa reported spending this month"),
    "source": ("Sumber", "Source"),
    "last_change": ("perubahan terakhir", "last change"),
    "freshness": ("kesegaran", "freshness"),
    "no_data": ("belum ada data", "no data yet"),
    "suppressed": ("disembunyikan (jumlah kecil)", "suppressed (small count)"),
    "download": ("Unduh", "Download"),
    "licence": ("Lisensi", "Licence"),
    "columns": ("Kamus kolom", "Column dictionary"),
    "column": ("Kolom", "Column"),
    "meaning": ("Arti", "Meaning"),
    "type": ("Tipe", "Type"),
    "kecamatan": ("Kecamatan", "Kecamatan"),
    "villages": ("Desa dan kelurahan", "Villages"),
    "not_reported": ("Desa yang belum melapor belanja bulan ini", "Desa that have not reported spending this month"),
    "reported": ("Sudah melapor belanja bulan ini", "Reported spending this month"),
    "not_reported_one": ("Belum melapor belanja bulan ini", "Has not reported spending this month"),
    "fund": ("Dana desa", "Village fund"),
    "received": ("diterima", "received"),
    "spent": ("dibelanjakan", "spent"),
    "level": ("Tingkat", "Level"),
    "month": ("Bulan", "Month"),
    "year": ("Tahun", "Year"),
    "allocation": ("Pagu berlaku", "Allocation in force"),
    "realised": ("Realisasi kumulatif", "Realised to date"),
    "absorption": ("Serapan", "Absorption"),
    "total": ("Total", "Total"),
    "per_month": ("Per bulan", "Per month"),
    "show": ("Tampilkan", "Show"),
    "more_rows": ("baris lagi: unduh dataset lengkap", "more rows: download the full dataset"),
    "seconds_ago": ("detik lalu", "seconds ago"),
    "minutes_ago": ("menit lalu", "minutes ago"),
    "hours_ago": ("jam lalu", "hours ago"),
    "kelurahan_note": ("Kelurahan tidak menerima dana desa.", "Kelurahan receive no village funds."),
    "synthetic": (
        "Data departemen bersifat sintetis (simulasi) pada lingkungan demo. Wilayah: idn-area-data 4.0.1 (ODbL).",
        "Departmental data is synthetic (simulated) in the demo. Regions: idn-area-data 4.0.1 (ODbL).",
    ),
    "api": ("API data terbuka", "Open data API"),
    "updated": ("Diperbarui", "Updated"),
}


def pick_language(query_lang: str | None, cookie_lang: str | None, accept: str) -> str:
    """?lang= first, then the switch's cookie, then the browser's Accept-Language, then Indonesian."""
    for chosen in (query_lang, cookie_lang):
        if chosen in LANGUAGES:
            return chosen
    ranked = []
    for i, part in enumerate(accept.split(",")[:20]):
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            weight = 0.0
        ranked.append((-weight, i, tag.split("-")[0].strip().lower()))
    for _, _, tag in sorted(ranked):
        if tag in LANGUAGES:
            return tag
    return DEFAULT


@lru_cache(maxsize=16)
def _pattern(decimals: int) -> NumberPattern:
    return parse_pattern("#,##0" + ("." + "#" * decimals if decimals else ""))


@lru_cache(maxsize=4)
def _locale(name: str) -> Locale:
    return Locale.parse(name)


class Formatter:
    """Texts and formats of one language (jinja2 globals of a page)."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self.locale = "id_ID" if lang == "id" else "en_GB"

    def t(self, key: str) -> str:
        idn, en = MESSAGES[key]
        return idn if self.lang == "id" else en

    def number(self, value: Any, decimals: int = 2) -> str:
        if value is None:
            return "–"
        number = value if isinstance(value, Decimal | int) else Decimal(str(value))
        return _pattern(decimals).apply(number, _locale(self.locale))  # babel's format_decimal, pattern parsed once

    def money(self, value: Any) -> str:
        return "–" if value is None else "Rp " + self.number(value, 2)

    def pct(self, value: Any) -> str:
        return "–" if value is None else self.number(value, 1) + " %"

    def date(self, value: date | datetime | None) -> str:
        if value is None or value.year < EPOCH_YEAR:
            return self.t("no_data")
        if isinstance(value, datetime):
            return format_datetime(value, "d MMM y HH.mm", tzinfo=TZ, locale=self.locale)
        return format_date(value, "d MMM y", locale=self.locale)

    def month(self, value: date) -> str:
        return format_date(value, "MMM y", locale=self.locale)

    def age(self, value: datetime | None, now: datetime | None = None) -> str:
        """How long ago (freshness), e.g. `12 detik lalu`."""
        if value is None or value.year < EPOCH_YEAR:
            return self.t("no_data")
        seconds = max(0, int(((now or datetime.now(UTC)) - value).total_seconds()))
        if seconds < 120:
            return f"{seconds} {self.t('seconds_ago')}"
        if seconds < 7200:
            return f"{seconds // 60} {self.t('minutes_ago')}"
        return f"{self.number(seconds // 3600, 0)} {self.t('hours_ago')}"

    def text(self, pair: dict[str, str]) -> str:
        return pair[self.lang]

    def value(self, kind: str, value: Any) -> str:
        """A cell of a dataset table by its column kind."""
        if value is None:
            return "–"
        if kind == "money":
            return self.number(value, 2)
        if kind in ("int",):
            return self.number(value, 0)
        if kind in ("number", "pct"):
            return self.number(value, 2)
        if kind in ("date", "time"):
            return self.date(value)
        if kind == "bool":
            return ("ya" if value else "tidak") if self.lang == "id" else ("yes" if value else "no")
        return str(value)
