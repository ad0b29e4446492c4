"""The datasets the portal publishes, declared: one entry per `public_*` view, with its dimensions
(the only columns a request may filter on), measures, column dictionary, licence, the source tables
its figures come from (provenance), and whether it counts persons (then small cells are suppressed,
see portal/suppression.py). Pages, downloads, the DCAT catalogue and the CKAN API all read this."""

from __future__ import annotations

from portal.dataset_model import CC_BY, LICENCES, ODBL, Column, Dataset
from portal.dataset_model import col as _c
from portal.kpi_datasets import KPI_DATASETS

__all__ = ["LICENCES", "Column", "Dataset", "BY_SLUG", "DATASETS", "SERVICES", "datasets_of"]

KEC = (
    _c("kecamatan_code", "code", "Kemendagri code of the kecamatan", "Kode Kemendagri kecamatan"),
    _c("kecamatan_name", "text", "Kecamatan", "Kecamatan"),
)
VILLAGE = (
    _c("village_code", "code", "Kemendagri code of the village", "Kode Kemendagri desa/kelurahan"),
    _c("village_name", "text", "Village", "Desa/kelurahan"),
)
DEPT = _c("department_code", "code", "Regency office (OPD)", "Perangkat daerah (OPD)")

DATASETS: tuple[Dataset, ...] = (
    Dataset(
        "licensing-lead-time",
        "public_licensing_lead_time",
        "licensing",
        {"en": "Permit decisions and service level", "id": "Keputusan izin dan standar pelayanan"},
        {
            "en": "Decided permits per type (empty type: all types): working days from submission to decision, "
            "median and 90th percentile, and decisions within the service level.",
            "id": "Izin yang telah diputuskan per jenis (jenis kosong: semua jenis): hari kerja dari pengajuan "
            "sampai keputusan, median dan persentil ke-90, serta keputusan dalam standar pelayanan.",
        },
        CC_BY,
        ("licensing_permit_application",),
        ("permit_type",),
        (
            _c("permit_type", "code", "Permit type (empty: all types)", "Jenis izin (kosong: semua jenis)"),
            _c("decided", "int", "Permits decided", "Izin diputuskan"),
            _c("lead_time_working_days_median", "number", "Median working days", "Median hari kerja"),
            _c("lead_time_working_days_p90", "number", "90th percentile, working days", "Persentil 90, hari kerja"),
            _c("decided_within_sla", "int", "Decided within service level", "Diputuskan dalam standar"),
            _c("share_within_sla", "number", "Share within service level", "Porsi dalam standar"),
        ),
        order_by=("permit_type",),
    ),
    Dataset(
        "licensing-open-permits",
        "public_licensing_open_permits",
        "licensing",
        {"en": "Open permit applications per kecamatan", "id": "Permohonan izin terbuka per kecamatan"},
        {
            "en": "Open permit applications (submitted or verified) per kecamatan and type; overdue ones are "
            "past their service level.",
            "id": "Permohonan izin yang masih terbuka per kecamatan dan jenis; yang terlambat melewati standar.",
        },
        ODBL,
        ("licensing_permit_application",),
        ("kecamatan_code", "permit_type"),
        (
            *KEC,
            _c("permit_type", "code", "Permit type", "Jenis izin"),
            _c("open", "int", "Open", "Terbuka"),
            _c("overdue", "int", "Overdue", "Terlambat"),
        ),
        order_by=("kecamatan_name", "permit_type"),
    ),
    Dataset(
        "budget-absorption",
        "public_budget_absorption",
        "budget",
        {"en": "Regional budget: allocation and realisation", "id": "APBD: pagu dan realisasi"},
        {
            "en": "Regional budget (APBD) per fiscal year and month: allocation, allocation in force after "
            "revisions and cumulative realisation, rolled up account > activity > programme > department > total.",
            "id": "APBD per tahun anggaran dan bulan: pagu, pagu setelah perubahan dan realisasi kumulatif, "
            "dirinci rekening > kegiatan > program > perangkat daerah > total.",
        },
        CC_BY,
        ("budget_budget_line", "budget_realisation"),
        ("fiscal_year", "month", "level", "department_code", "programme_code", "activity_code", "account_code"),
        (
            _c("fiscal_year", "int", "Fiscal year", "Tahun anggaran"),
            _c("month", "int", "Month (1-12)", "Bulan (1-12)"),
            _c("level", "code", "Roll-up level", "Tingkat rincian"),
            DEPT,
            _c("programme_code", "code", "Programme", "Program"),
            _c("activity_code", "code", "Activity", "Kegiatan"),
            _c("account_code", "code", "Account", "Rekening"),
            _c("allocation", "money", "Allocation (Rp)", "Pagu (Rp)"),
            _c("revised_allocation", "money", "Allocation in force (Rp)", "Pagu berlaku (Rp)"),
            _c("realised_cumulative", "money", "Realised to date (Rp)", "Realisasi kumulatif (Rp)"),
            _c("absorption_pct", "pct", "Absorption %", "Serapan %"),
        ),
        order_by=("fiscal_year", "month", "department_code", "programme_code", "activity_code", "account_code"),
    ),
    Dataset(
        "village-funds",
        "public_village_funds",
        "village",
        {"en": "Village funds per desa", "id": "Dana desa per desa"},
        {
            "en": "Village funds of each of the 419 desa per fiscal year: allocated, received, spent, balance "
            "and the disbursement stage reached.",
            "id": "Dana desa setiap desa (419) per tahun anggaran: pagu, diterima, dibelanjakan, saldo dan "
            "tahap penyaluran.",
        },
        ODBL,
        ("village_finance_village_fund", "village_finance_village_spending"),
        ("village_code", "fiscal_year"),
        (
            *VILLAGE,
            _c("kecamatan_name", "text", "Kecamatan", "Kecamatan"),
            _c("fiscal_year", "int", "Fiscal year", "Tahun anggaran"),
            _c("allocation", "money", "Allocation (Rp)", "Pagu (Rp)"),
            _c("received", "money", "Received (Rp)", "Diterima (Rp)"),
            _c("spent", "money", "Spent (Rp)", "Dibelanjakan (Rp)"),
            _c("balance", "money", "Balance (Rp)", "Saldo (Rp)"),
            _c("stage_reached", "code", "Disbursement stage", "Tahap penyaluran"),
        ),
        order_by=("kecamatan_name", "village_name", "fiscal_year"),
    ),
    Dataset(
        "village-spending-monthly",
        "public_village_spending_monthly",
        "village",
        {"en": "Village spending per month", "id": "Belanja desa per bulan"},
        {
            "en": "Spending reported by each desa per month (months with any spending in the regency): lines and "
            "Rupiah.",
            "id": "Belanja yang dilaporkan setiap desa per bulan (bulan dengan belanja di kabupaten): jumlah baris "
            "dan Rupiah.",
        },
        ODBL,
        ("village_finance_village_spending",),
        ("village_code", "month"),
        (
            *VILLAGE,
            _c("kecamatan_name", "text", "Kecamatan", "Kecamatan"),
            _c("month", "date", "Month (first day)", "Bulan (hari pertama)"),
            _c("lines", "int", "Spending lines", "Baris belanja"),
            _c("spent", "money", "Spent (Rp)", "Dibelanjakan (Rp)"),
        ),
        order_by=("kecamatan_name", "village_name", "month"),
    ),
    Dataset(
        "village-not-reported",
        "public_village_not_reported",
        "village",
        {"en": "Desa that have not reported this month", "id": "Desa yang belum melapor bulan ini"},
        {
            "en": "Desa without a spending line this month, with the date of their last one (empty: never).",
            "id": "Desa tanpa laporan belanja bulan ini, dengan tanggal laporan terakhir (kosong: belum pernah).",
        },
        ODBL,
        ("village_finance_village_spending",),
        ("village_code", "kecamatan_code"),
        (*VILLAGE, *KEC, _c("last_spent_at", "time", "Last spending reported", "Belanja terakhir dilaporkan")),
        order_by=("kecamatan_name", "village_name"),
    ),
    Dataset(
        "complaints",
        "public_complaints",
        "complaints",
        {"en": "Citizens' complaints per office and channel", "id": "Pengaduan warga per perangkat daerah"},
        {
            "en": "Complaints per responsible office and channel: open, overdue, awaiting a first answer, median "
            "hours to the first answer and days to resolution. Counts below the threshold are suppressed.",
            "id": "Pengaduan per perangkat daerah dan kanal: terbuka, terlambat, menunggu tanggapan pertama, "
            "median jam sampai tanggapan dan hari sampai selesai. Jumlah di bawah ambang disembunyikan.",
        },
        CC_BY,
        ("participation_complaint",),
        ("department_code", "channel"),
        (
            DEPT,
            _c("department_name", "text", "Office", "Perangkat daerah"),
            _c("channel", "code", "Channel", "Kanal"),
            _c("complaints", "int", "Complaints", "Pengaduan"),
            _c("open", "int", "Open", "Terbuka"),
            _c("overdue", "int", "Overdue", "Terlambat"),
            _c("awaiting_first_response", "int", "Awaiting first answer", "Menunggu tanggapan"),
            _c("first_response_hours_median", "number", "Median hours to first answer", "Median jam tanggapan"),
            _c("resolution_days_median", "number", "Median days to resolution", "Median hari penyelesaian"),
        ),
        person_measures=("complaints", "open", "overdue", "awaiting_first_response"),
        dependents={"first_response_hours_median": "complaints", "resolution_days_median": "complaints"},
        order_by=("department_code", "channel"),
    ),
    Dataset(
        "health-visits",
        "public_health_visits",
        "health",
        {"en": "Health facility visits", "id": "Kunjungan fasilitas kesehatan"},
        {
            "en": "Visits per facility and service: in care, done, referred. Counts below the threshold are "
            "suppressed.",
            "id": "Kunjungan per fasilitas dan layanan: dalam perawatan, selesai, dirujuk. Jumlah di bawah ambang "
            "disembunyikan.",
        },
        ODBL,
        ("health_visit",),
        ("facility_code", "kecamatan_name", "service"),
        (
            _c("facility_code", "code", "Facility", "Fasilitas"),
            _c("facility_type", "code", "Facility type", "Jenis fasilitas"),
            _c("kecamatan_name", "text", "Kecamatan", "Kecamatan"),
            _c("service", "code", "Service", "Layanan"),
            _c("visits", "int", "Visits", "Kunjungan"),
            _c("in_care", "int", "In care", "Dalam perawatan"),
            _c("done", "int", "Done", "Selesai"),
            _c("referred", "int", "Referred", "Dirujuk"),
        ),
        person_measures=("visits", "in_care", "done", "referred"),
        order_by=("kecamatan_name", "facility_code", "service"),
    ),
    Dataset(
        "health-beds",
        "public_health_beds",
        "health",
        {"en": "Hospital beds and occupancy", "id": "Tempat tidur dan keterisian rumah sakit"},
        {
            "en": "Beds per hospital and ward class (level class) and per hospital (level hospital): occupancy.",
            "id": "Tempat tidur per rumah sakit dan kelas (level class) dan per rumah sakit: keterisian.",
        },
        CC_BY,
        ("health_bed_occupancy",),
        ("hospital_name", "ward_class", "level"),
        (
            _c("hospital_name", "text", "Hospital", "Rumah sakit"),
            _c("ward_class", "code", "Ward class", "Kelas"),
            _c("level", "code", "Level", "Tingkat"),
            _c("beds_total", "int", "Beds", "Tempat tidur"),
            _c("beds_occupied", "int", "Occupied", "Terisi"),
            _c("occupancy_pct", "pct", "Occupancy %", "Keterisian %"),
            _c("as_of", "time", "As of", "Per"),
        ),
        order_by=("hospital_name", "level", "ward_class"),
    ),
    Dataset(
        "education-enrolment",
        "public_education_enrolment",
        "education",
        {"en": "School enrolment per kecamatan", "id": "Penerimaan siswa per kecamatan"},
        {
            "en": "Enrolments admitted per kecamatan, school level and school year (from July), against the "
            "previous year.",
            "id": "Siswa diterima per kecamatan, jenjang dan tahun ajaran (mulai Juli), dibanding tahun sebelumnya.",
        },
        ODBL,
        ("education_enrolment", "education_school"),
        ("kecamatan_code", "level", "school_year"),
        (
            *KEC,
            _c("level", "code", "School level", "Jenjang"),
            _c("school_year", "int", "School year (start)", "Tahun ajaran (awal)"),
            _c("year_label", "text", "School year", "Tahun ajaran"),
            _c("enrolled", "int", "Enrolled", "Diterima"),
            _c("enrolled_previous_year", "int", "Previous year", "Tahun sebelumnya"),
            _c("change", "int", "Change", "Perubahan"),
            _c("change_pct", "pct", "Change %", "Perubahan %"),
        ),
        order_by=("kecamatan_name", "level", "school_year"),
    ),
    Dataset(
        "infrastructure-projects",
        "public_infrastructure_projects",
        "infrastructure",
        {"en": "Public works projects", "id": "Paket pekerjaan umum"},
        {
            "en": "Public works projects: physical and financial progress against the planned progress; behind "
            "schedule when physical progress trails by more than 10 points.",
            "id": "Paket pekerjaan umum: progres fisik dan keuangan dibanding rencana; terlambat bila progres "
            "fisik tertinggal lebih dari 10 poin.",
        },
        ODBL,
        ("infrastructure_project",),
        ("kecamatan_code", "village_code", "status", "category"),
        (
            _c("project_id", "code", "Project", "Paket"),
            _c("name", "text", "Name", "Nama"),
            _c("category", "code", "Category", "Kategori"),
            DEPT,
            *VILLAGE,
            *KEC,
            _c("status", "code", "Status", "Status"),
            _c("contract_value", "money", "Contract value (Rp)", "Nilai kontrak (Rp)"),
            _c("physical_progress_pct", "pct", "Physical progress %", "Progres fisik %"),
            _c("financial_progress_pct", "pct", "Financial progress %", "Progres keuangan %"),
            _c("planned_progress_pct", "pct", "Planned progress %", "Rencana progres %"),
            _c("behind_schedule", "bool", "Behind schedule", "Terlambat"),
        ),
        order_by=("kecamatan_name", "project_id"),
    ),
    Dataset(
        "infrastructure-by-kecamatan",
        "public_infrastructure_by_kecamatan",
        "infrastructure",
        {"en": "Public works per kecamatan", "id": "Pekerjaan umum per kecamatan"},
        {
            "en": "Projects per kecamatan (terminated ones left out): contract value, value-weighted progress, "
            "projects behind schedule.",
            "id": "Paket per kecamatan (yang diputus tidak dihitung): nilai kontrak, progres tertimbang nilai, "
            "paket terlambat.",
        },
        ODBL,
        ("infrastructure_project",),
        ("kecamatan_code",),
        (
            *KEC,
            _c("projects", "int", "Projects", "Paket"),
            _c("contract_value", "money", "Contract value (Rp)", "Nilai kontrak (Rp)"),
            _c("physical_progress_pct", "pct", "Physical progress %", "Progres fisik %"),
            _c("financial_progress_pct", "pct", "Financial progress %", "Progres keuangan %"),
            _c("behind_schedule", "int", "Behind schedule", "Terlambat"),
        ),
        order_by=("kecamatan_name",),
    ),
)

SERVICES = ("licensing", "budget", "complaints", "health", "education", "infrastructure", "village")


def datasets_of(service: str) -> list[Dataset]:
    return [d for d in DATASETS if d.service == service]


COMPLAINTS_SUMMARY = Dataset(
    "complaints-summary",
    "public_complaints_summary",
    "complaints",
    {"en": "Citizens' complaints, whole regency", "id": "Pengaduan warga, seluruh kabupaten"},
    {
        "en": "All complaints of the regency: how many, how many are open, median hours to the first answer.",
        "id": "Seluruh pengaduan kabupaten: jumlah, yang masih terbuka, median jam sampai tanggapan pertama.",
    },
    CC_BY,
    ("participation_complaint",),
    (),
    (
        _c("complaints", "int", "Complaints", "Pengaduan"),
        _c("open", "int", "Open", "Terbuka"),
        _c("first_response_hours_median", "number", "Median hours to first answer", "Median jam tanggapan"),
    ),
    person_measures=("complaints", "open"),
    dependents={"first_response_hours_median": "complaints"},
)
DATASETS = (*DATASETS, COMPLAINTS_SUMMARY, *KPI_DATASETS)
BY_SLUG = {d.slug: d for d in DATASETS}
