"""The datasets over the stream's KPI tables (their `public_*` views: sinks/public_views.py
KPI_PUBLIC_VIEWS): figures per month of decision, receipt or visit, as the KPI worker counts them.
They read a KPI table besides their sources' state, so the portal refetches them every lifetime
rather than when public_freshness shows a new state (follows_sources=False)."""

from __future__ import annotations

from portal.dataset_model import CC_BY, Dataset
from portal.dataset_model import col as _c


def _decided(slug: str, view: str, title: dict[str, str], span: dict[str, str]) -> Dataset:
    return Dataset(
        slug,
        f"public_licensing_{view}",
        "licensing",
        title,
        {
            "en": f"Permits decided {span['en']} per type (empty type: all types), and those decided within "
            "their service level, as the stream counts them (KPI licensing.decided_within_sla).",
            "id": f"Izin yang diputuskan {span['id']} per jenis (jenis kosong: semua jenis), dan yang diputuskan "
            "dalam standar pelayanan, dihitung oleh stream (KPI licensing.decided_within_sla).",
        },
        CC_BY,
        ("licensing_permit_application",),
        ("month", "permit_type"),
        (
            _c("month", "date", "Month of decision (first day)", "Bulan keputusan (hari pertama)"),
            _c("permit_type", "code", "Permit type (empty: all types)", "Jenis izin (kosong: semua jenis)"),
            _c("decided", "int", "Permits decided", "Izin diputuskan"),
            _c("decided_within_sla", "int", "Decided within service level", "Diputuskan dalam standar"),
            _c("share_within_sla", "number", "Share within service level", "Porsi dalam standar"),
            _c("updated_at", "time", "Last updated", "Terakhir diperbarui"),
        ),
        order_by=("month", "permit_type"),
        follows_sources=False,
    )


def _monthly_persons(
    slug: str, view: str, service: str, source: str, measure: tuple[str, str, str], text: dict[str, dict[str, str]]
) -> Dataset:
    """A regency-wide count of persons per month (suppressed below the threshold, with a second
    month hidden so that no hidden month follows from a total)."""
    name, en, id_ = measure
    return Dataset(
        slug,
        view,
        service,
        text["title"],
        text["description"],
        CC_BY,
        (source,),
        ("month",),
        (
            _c("month", "date", "Month (first day)", "Bulan (hari pertama)"),
            _c(name, "int", en, id_),
            _c("updated_at", "time", "Last updated", "Terakhir diperbarui"),
        ),
        person_measures=(name,),
        order_by=("month",),
        follows_sources=False,
    )


KPI_DATASETS: tuple[Dataset, ...] = (
    _decided(
        "licensing-decided-this-month",
        "decided_this_month",
        {"en": "Permits decided this month", "id": "Izin diputuskan bulan ini"},
        {"en": "this month", "id": "bulan ini"},
    ),
    _decided(
        "licensing-decided-monthly",
        "decided_monthly",
        {"en": "Permits decided per month", "id": "Izin diputuskan per bulan"},
        {"en": "per month of decision", "id": "per bulan keputusan"},
    ),
    _monthly_persons(
        "complaints-received-monthly",
        "public_complaints_received_monthly",
        "complaints",
        "participation_complaint",
        ("received", "Complaints received", "Pengaduan diterima"),
        {
            "title": {"en": "Complaints received per month", "id": "Pengaduan diterima per bulan"},
            "description": {
                "en": "Citizens' complaints received per month in the whole regency, as the stream counts them "
                "(KPI participation.received_per_day). Counts below the threshold are suppressed.",
                "id": "Pengaduan warga yang diterima per bulan di seluruh kabupaten, dihitung oleh stream (KPI "
                "participation.received_per_day). Jumlah di bawah ambang disembunyikan.",
            },
        },
    ),
    _monthly_persons(
        "health-visits-monthly",
        "public_health_visits_monthly",
        "health",
        "health_visit",
        ("visits", "Visits", "Kunjungan"),
        {
            "title": {"en": "Health facility visits per month", "id": "Kunjungan fasilitas kesehatan per bulan"},
            "description": {
                "en": "Visits to the regency's health facilities per month, as the stream counts them (KPI "
                "health.visits_per_day). Counts below the threshold are suppressed.",
                "id": "Kunjungan ke fasilitas kesehatan kabupaten per bulan, dihitung oleh stream (KPI "
                "health.visits_per_day). Jumlah di bawah ambang disembunyikan.",
            },
        },
    ),
)
