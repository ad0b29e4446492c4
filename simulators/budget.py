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

import calendar
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from producers.emitter import Change

LINE = "budget_line"
REALISATION = "realisation"
JAKARTA = timedelta(hours=7)  # Asia/Jakarta, no daylight saving
CENT = Decimal("0.01")
# Fixed-date national holidays (New Year, Labour Day, Pancasila Day, Independence Day, Christmas).
HOLIDAYS = {(1, 1), (5, 1), (6, 1), (8, 17), (12, 25)}
STAGES = ["DRAFT", "ENACTED", "REVISED"]
TRANSITIONS = {"DRAFT": ["ENACTED"], "ENACTED": ["REVISED"], "REVISED": ["REVISED"]}
BAD_KINDS = (
    "negative_allocation",
    "negative_realisation",
    "impossible_transition",
    "missing_activity",
    "missing_document",
)

# Expenditure accounts (Permendagri 90/2019 pattern) by kind of spending.
ACCOUNTS = {
    "PERSONNEL": [
        ("5.1.01.01.01.0001", "Belanja Gaji Pokok PNS"),
        ("5.1.01.01.02.0001", "Belanja Tunjangan Keluarga PNS"),
        ("5.1.01.02.01.0001", "Tambahan Penghasilan berdasarkan Beban Kerja PNS"),
    ],
    "GOODS:office": [
        ("5.1.02.01.01.0024", "Belanja Alat/Bahan untuk Kegiatan Kantor-Alat Tulis Kantor"),
        ("5.1.02.01.01.0026", "Belanja Alat/Bahan untuk Kegiatan Kantor-Bahan Cetak"),
        ("5.1.02.01.01.0052", "Belanja Makanan dan Minuman Rapat"),
    ],
    "GOODS:services": [
        ("5.1.02.02.01.0026", "Belanja Jasa Tenaga Administrasi"),
        ("5.1.02.02.01.0061", "Belanja Tagihan Telepon"),
        ("5.1.02.02.01.0063", "Belanja Tagihan Listrik"),
    ],
    "GOODS:maintenance": [
        ("5.1.02.03.02.0035", "Belanja Pemeliharaan Alat Angkutan-Kendaraan Dinas Bermotor Perorangan"),
        ("5.1.02.03.03.0001", "Belanja Pemeliharaan Bangunan Gedung-Bangunan Gedung Tempat Kerja"),
    ],
    "GOODS": [
        ("5.1.02.01.01.0052", "Belanja Makanan dan Minuman Rapat"),
        ("5.1.02.02.01.0003", "Honorarium Narasumber atau Pembahas, Moderator, Pembawa Acara, dan Panitia"),
        ("5.1.02.02.01.0014", "Belanja Jasa Konsultansi Perencanaan"),
        ("5.1.02.04.01.0001", "Belanja Perjalanan Dinas Biasa"),
        ("5.1.02.01.01.0029", "Belanja Alat/Bahan untuk Kegiatan Kantor-Bahan Komputer"),
    ],
    "GOODS:health": [
        ("5.1.02.01.01.0004", "Belanja Bahan-Bahan Obat-obatan"),
        ("5.1.02.01.01.0010", "Belanja Bahan-Bahan Kimia"),
    ],
    "CAPITAL:office": [
        ("5.2.02.05.01.0005", "Belanja Modal Alat Kantor Lainnya"),
        ("5.2.02.10.01.0002", "Belanja Modal Personal Computer"),
        ("5.2.02.01.01.0004", "Belanja Modal Kendaraan Dinas Bermotor Perorangan"),
    ],
    "CAPITAL:building": [("5.2.03.01.01.0001", "Belanja Modal Bangunan Gedung Kantor")],
    "CAPITAL:school": [("5.2.03.01.01.0016", "Belanja Modal Bangunan Gedung Tempat Pendidikan")],
    "CAPITAL:health": [("5.2.02.07.01.0001", "Belanja Modal Alat Kedokteran Umum")],
    "CAPITAL:roads": [
        ("5.2.04.01.01.0003", "Belanja Modal Jalan Kabupaten/Kota"),
        ("5.2.04.01.02.0003", "Belanja Modal Jembatan pada Jalan Kabupaten/Kota"),
    ],
    "CAPITAL:water": [
        ("5.2.04.02.01.0001", "Belanja Modal Bangunan Air Irigasi"),
        ("5.2.04.03.01.0001", "Belanja Modal Instalasi Air Bersih/Air Baku"),
        ("5.2.04.02.07.0001", "Belanja Modal Bangunan Pembuang"),
    ],
    "CAPITAL:market": [("5.2.03.01.01.0010", "Belanja Modal Bangunan Gedung Pasar")],
    "GRANTS:hibah": [
        ("5.1.05.05.01.0001", "Belanja Hibah kepada Badan, Lembaga, Organisasi Kemasyarakatan yang Berbadan Hukum"),
        ("5.1.05.05.02.0001", "Belanja Hibah kepada Kelompok Masyarakat"),
    ],
    "GRANTS:bansos": [("5.1.06.01.01.0001", "Belanja Bantuan Sosial Uang kepada Individu")],
    "TRANSFER": [
        ("5.4.02.05.01.0001", "Belanja Bantuan Keuangan Umum kepada Pemerintahan Desa"),
        ("5.4.02.05.02.0001", "Belanja Bantuan Keuangan Khusus kepada Pemerintahan Desa"),
    ],
}

# Allocation per line in Rupiah before the office's scale: (low, high, skew exponent), by kind of
# spending or, failing that, by kind.
ALLOCATIONS = {
    "PERSONNEL": (1_000_000_000, 60_000_000_000, 2.0),
    "GOODS": (25_000_000, 20_000_000_000, 4.0),
    "CAPITAL": (500_000_000, 60_000_000_000, 3.0),
    "CAPITAL:office": (50_000_000, 3_000_000_000, 3.0),
    "CAPITAL:roads": (5_000_000_000, 150_000_000_000, 2.0),
    "GRANTS": (500_000_000, 40_000_000_000, 2.0),
    "TRANSFER": (200_000_000_000, 700_000_000_000, 1.5),
}
# Monthly share of a line's yearly spending, by kind (January .. December).
PROFILES = {
    # Salaries every month, the holiday allowance (THR) in April and the 13th salary in June.
    "PERSONNEL": [1, 1, 1, 2, 1, 2, 1, 1, 1, 1, 1, 1],
    "GOODS": [2, 4, 6, 7, 8, 8, 8, 9, 9, 10, 12, 17],
    # Tenders in the first half, terms in the second, most paid at hand-over in November-December.
    "CAPITAL": [0, 0, 1, 2, 3, 5, 6, 7, 9, 12, 18, 37],
    "GRANTS": [0, 1, 3, 6, 8, 9, 10, 12, 12, 12, 12, 15],
    # Transfers to the villages in three tranches.
    "TRANSFER": [0, 0, 0, 40, 0, 0, 0, 40, 0, 0, 20, 0],
}
# Typical number of disbursements (SP2D) per line and year.
PAYMENTS_PER_YEAR = {"PERSONNEL": 12, "GOODS": 10, "CAPITAL": 4, "GRANTS": 3, "TRANSFER": 3}
# Share of the allocation actually spent: (low, high).
ABSORPTION = {
    "PERSONNEL": (0.90, 0.99),
    "GOODS": (0.75, 0.98),
    "CAPITAL": (0.70, 0.98),
    "GRANTS": (0.85, 1.00),
    "TRANSFER": (0.95, 1.00),
}
# Revision factors (P-APBD) by kind: (low, high).
REVISION = {
    "PERSONNEL": (0.95, 1.05),
    "GOODS": (0.85, 1.20),
    "CAPITAL": (0.70, 1.30),
    "GRANTS": (0.80, 1.30),
    "TRANSFER": (0.95, 1.10),
}

SUPPORT = "PROGRAM PENUNJANG URUSAN PEMERINTAHAN DAERAH KABUPATEN/KOTA"
# The support programme (.01) every office has: (activity, name, kinds of spending).
SUPPORT_ACTIVITIES = [
    ("2.02", "Administrasi Keuangan Perangkat Daerah", ["PERSONNEL", "PERSONNEL"]),
    ("2.06", "Administrasi Umum Perangkat Daerah", ["GOODS:office", "GOODS:office"]),
    ("2.07", "Pengadaan Barang Milik Daerah Penunjang Urusan Pemerintah Daerah", ["CAPITAL:office"]),
    ("2.08", "Penyediaan Jasa Penunjang Urusan Pemerintahan Daerah", ["GOODS:services"]),
    ("2.09", "Pemeliharaan Barang Milik Daerah Penunjang Urusan Pemerintahan Daerah", ["GOODS:maintenance"]),
]

# Regency offices: code -> (name, field code, allocation scale,
#   [(programme, programme name, [(activity, activity name, [kinds of spending])])])
DEPARTMENTS: dict[str, tuple[str, str, float, list]] = {
    "DISDIK": ("Dinas Pendidikan", "1.01", 4.0, [
        ("1.01.02", "Program Pengelolaan Pendidikan", [
            ("2.01", "Pengelolaan Pendidikan Sekolah Dasar", ["GOODS", "CAPITAL:school", "CAPITAL:school"]),
            ("2.02", "Pengelolaan Pendidikan Sekolah Menengah Pertama", ["GOODS", "CAPITAL:school"]),
            ("2.04", "Pengelolaan Pendidikan Anak Usia Dini (PAUD)", ["GOODS", "GRANTS:hibah"]),
        ]),
    ]),
    "DINKES": ("Dinas Kesehatan", "1.02", 2.0, [
        ("1.02.02", "Program Pemenuhan Upaya Kesehatan Perorangan dan Upaya Kesehatan Masyarakat", [
            ("2.01", "Penyediaan Fasilitas Pelayanan Kesehatan untuk UKM dan UKP Kewenangan Daerah Kabupaten/Kota",
             ["CAPITAL:health", "CAPITAL:building"]),
            ("2.02", "Penyediaan Layanan Kesehatan untuk UKM dan UKP Rujukan Tingkat Daerah Kabupaten/Kota",
             ["GOODS:health", "GOODS"]),
        ]),
    ]),
    "RSUD": ("RSUD Dr. R. Sosodoro Djatikoesoemo", "1.02", 2.0, [
        ("1.02.02", "Program Pemenuhan Upaya Kesehatan Perorangan dan Upaya Kesehatan Masyarakat", [
            ("2.02", "Penyediaan Layanan Kesehatan untuk UKM dan UKP Rujukan Tingkat Daerah Kabupaten/Kota",
             ["GOODS:health", "GOODS:health", "CAPITAL:health"]),
        ]),
    ]),
    "DPUPR": ("Dinas Pekerjaan Umum dan Penataan Ruang", "1.03", 3.0, [
        ("1.03.10", "Program Penyelenggaraan Jalan", [
            ("2.01", "Penyelenggaraan Jalan Kabupaten/Kota", ["CAPITAL:roads", "CAPITAL:roads", "CAPITAL:roads"]),
        ]),
        ("1.03.02", "Program Pengelolaan Sumber Daya Air (SDA)", [
            ("2.03", "Pengembangan dan Pengelolaan Sistem Irigasi Primer dan Sekunder", ["CAPITAL:water"]),
        ]),
        ("1.03.03", "Program Pengelolaan dan Pengembangan Sistem Penyediaan Air Minum", [
            ("2.01", "Pengelolaan dan Pengembangan SPAM di Daerah Kabupaten/Kota", ["CAPITAL:water"]),
        ]),
        ("1.03.05", "Program Pengelolaan dan Pengembangan Sistem Drainase", [
            ("2.01", "Pengelolaan dan Pengembangan Sistem Drainase", ["CAPITAL:water", "GOODS"]),
        ]),
    ]),
    "DPRKPP": ("Dinas Perumahan, Kawasan Permukiman dan Pertanahan", "1.04", 1.0, [
        ("1.04.02", "Program Pengembangan Perumahan", [
            ("2.02", "Penyediaan dan Rehabilitasi Rumah Layak Huni", ["GRANTS:bansos", "GOODS"]),
        ]),
    ]),
    "SATPOLPP": ("Satuan Polisi Pamong Praja", "1.05", 0.8, [
        ("1.05.02", "Program Peningkatan Ketenteraman dan Ketertiban Umum", [
            ("2.01", "Penanganan Gangguan Ketenteraman dan Ketertiban Umum", ["GOODS"]),
        ]),
    ]),
    "DAMKAR": ("Dinas Pemadam Kebakaran dan Penyelamatan", "1.05", 0.6, [
        ("1.05.04", "Program Pencegahan, Penanggulangan, Penyelamatan Kebakaran dan Penyelamatan Non Kebakaran", [
            ("2.01", "Pencegahan, Pengendalian, Pemadaman, Penyelamatan, dan Penanganan Bahan Berbahaya",
             ["GOODS", "CAPITAL:office"]),
        ]),
    ]),
    "BPBD": ("Badan Penanggulangan Bencana Daerah", "1.05", 0.8, [
        ("1.05.03", "Program Penanggulangan Bencana", [
            ("2.02", "Pelayanan Pencegahan dan Kesiapsiagaan terhadap Bencana", ["GOODS"]),
            ("2.03", "Pelayanan Penyelamatan dan Evakuasi Korban Bencana", ["GOODS"]),
        ]),
    ]),
    "DINSOS": ("Dinas Sosial", "1.06", 1.2, [
        ("1.06.04", "Program Rehabilitasi Sosial", [
            ("2.01", "Rehabilitasi Sosial Dasar Penyandang Disabilitas Terlantar", ["GOODS"]),
        ]),
        ("1.06.05", "Program Perlindungan dan Jaminan Sosial", [
            ("2.01", "Pemeliharaan Anak-Anak Terlantar", ["GRANTS:bansos"]),
            ("2.02", "Pengelolaan Data Fakir Miskin Cakupan Daerah Kabupaten/Kota", ["GOODS", "GRANTS:bansos"]),
        ]),
    ]),
    "DISNAKER": ("Dinas Perindustrian dan Tenaga Kerja", "2.07", 0.7, [
        ("2.07.03", "Program Pelatihan Kerja dan Produktivitas Tenaga Kerja", [
            ("2.01", "Pelaksanaan Pelatihan berdasarkan Unit Kompetensi", ["GOODS"]),
        ]),
    ]),
    "DP3AKB": ("Dinas Pemberdayaan Perempuan, Perlindungan Anak dan Keluarga Berencana", "2.08", 0.7, [
        ("2.08.02", "Program Pengarusutamaan Gender dan Pemberdayaan Perempuan", [
            ("2.01", "Pelembagaan Pengarusutamaan Gender (PUG) pada Lembaga Pemerintah Kewenangan Kabupaten/Kota",
             ["GOODS"]),
        ]),
    ]),
    "DKP": ("Dinas Ketahanan Pangan", "2.09", 0.7, [
        ("2.09.02", "Program Pengelolaan Sumber Daya Ekonomi untuk Kedaulatan dan Kemandirian Pangan", [
            ("2.01", "Penyediaan Infrastruktur dan Seluruh Pendukung Kemandirian Pangan", ["GOODS", "GRANTS:hibah"]),
        ]),
    ]),
    "DLH": ("Dinas Lingkungan Hidup", "2.11", 1.0, [
        ("2.11.09", "Program Pengelolaan Persampahan", [
            ("2.01", "Pengelolaan Sampah", ["GOODS", "CAPITAL:office"]),
        ]),
    ]),
    "DISDUKCAPIL": ("Dinas Kependudukan dan Pencatatan Sipil", "2.12", 0.7, [
        ("2.12.02", "Program Pendaftaran Penduduk", [("2.01", "Pelayanan Pendaftaran Penduduk", ["GOODS"])]),
    ]),
    "DPMD": ("Dinas Pemberdayaan Masyarakat dan Desa", "2.13", 0.8, [
        ("2.13.05", "Program Administrasi Pemerintahan Desa", [
            ("2.01", "Pembinaan dan Pengawasan Penyelenggaraan Administrasi Pemerintahan Desa", ["GOODS"]),
        ]),
    ]),
    "DISHUB": ("Dinas Perhubungan", "2.15", 0.8, [
        ("2.15.02", "Program Penyelenggaraan Lalu Lintas dan Angkutan Jalan (LLAJ)", [
            ("2.01", "Penetapan Rencana Induk Jaringan LLAJ Kabupaten/Kota", ["GOODS", "CAPITAL:office"]),
        ]),
    ]),
    "DISKOMINFO": ("Dinas Komunikasi dan Informatika", "2.16", 0.8, [
        ("2.16.02", "Program Informasi dan Komunikasi Publik", [
            ("2.01", "Pengelolaan Informasi dan Komunikasi Publik Pemerintah Daerah Kabupaten/Kota", ["GOODS"]),
        ]),
        ("2.16.03", "Program Aplikasi Informatika", [
            ("2.01", "Pengelolaan Nama Domain dan Sub Domain", ["GOODS", "CAPITAL:office"]),
        ]),
    ]),
    "DISKOPUM": ("Dinas Koperasi dan Usaha Mikro", "2.17", 0.6, [
        ("2.17.07", "Program Pemberdayaan Usaha Menengah, Usaha Kecil, dan Usaha Mikro (UMKM)", [
            ("2.01", "Pemberdayaan Usaha Mikro yang Dilakukan melalui Pendataan dan Kemitraan", ["GOODS"]),
        ]),
    ]),
    "DPMPTSP": ("Dinas Penanaman Modal dan Pelayanan Terpadu Satu Pintu", "2.18", 0.6, [
        ("2.18.04", "Program Pelayanan Penanaman Modal", [
            ("2.01", "Pelayanan Perizinan dan Nonperizinan secara Terpadu Satu Pintu", ["GOODS"]),
        ]),
    ]),
    "DISPORA": ("Dinas Pemuda dan Olahraga", "2.19", 0.7, [
        ("2.19.03", "Program Pengembangan Kapasitas Daya Saing Keolahragaan", [
            ("2.01", "Pembinaan dan Pengembangan Olahraga Prestasi Tingkat Daerah", ["GOODS", "GRANTS:hibah"]),
        ]),
    ]),
    "DISPERPUSIP": ("Dinas Perpustakaan dan Kearsipan", "2.23", 0.5, [
        ("2.23.02", "Program Pembinaan Perpustakaan", [("2.01", "Pengelolaan Perpustakaan Tingkat Daerah", ["GOODS"])]),
    ]),
    "DISBUDPAR": ("Dinas Kebudayaan dan Pariwisata", "3.26", 0.7, [
        ("3.26.02", "Program Peningkatan Daya Tarik Destinasi Pariwisata", [
            ("2.01", "Pengelolaan Daya Tarik Wisata Kabupaten/Kota", ["GOODS", "CAPITAL:building"]),
        ]),
    ]),
    "DISPERTA": ("Dinas Pertanian", "3.27", 1.2, [
        ("3.27.03", "Program Penyediaan dan Pengembangan Sarana Pertanian", [
            ("2.01", "Pengawasan Penggunaan Sarana Pendukung Pertanian", ["GOODS", "GRANTS:hibah"]),
        ]),
    ]),
    "DISNAKKAN": ("Dinas Peternakan dan Perikanan", "3.27", 0.7, [
        ("3.27.06", "Program Pengendalian Kesehatan Hewan dan Kesehatan Masyarakat Veteriner", [
            ("2.01", "Pengendalian Penyakit Hewan Menular Strategis", ["GOODS"]),
        ]),
    ]),
    "DISDAG": ("Dinas Perdagangan", "3.30", 0.7, [
        ("3.30.03", "Program Peningkatan Sarana Distribusi Perdagangan", [
            ("2.01", "Pembangunan dan Pengelolaan Sarana Distribusi Perdagangan", ["CAPITAL:market", "GOODS"]),
        ]),
    ]),
    "SETDA": ("Sekretariat Daerah", "4.01", 1.5, [
        ("4.01.02", "Program Pemerintahan dan Kesejahteraan Rakyat", [
            ("2.02", "Pelaksanaan Kesejahteraan Rakyat", ["GOODS", "GRANTS:hibah", "GRANTS:hibah"]),
        ]),
    ]),
    "SETWAN": ("Sekretariat DPRD", "4.02", 1.0, [
        ("4.02.02", "Program Dukungan Pelaksanaan Tugas dan Fungsi DPRD", [
            ("2.01", "Pembentukan Peraturan Daerah dan Peraturan DPRD", ["GOODS", "GOODS"]),
        ]),
    ]),
    "BAPPEDA": ("Badan Perencanaan Pembangunan Daerah", "5.01", 0.8, [
        ("5.01.02", "Program Perencanaan, Pengendalian dan Evaluasi Pembangunan Daerah", [
            ("2.01", "Penyusunan Perencanaan dan Pendanaan", ["GOODS", "GOODS"]),
        ]),
    ]),
    "BPKAD": ("Badan Pengelolaan Keuangan dan Aset Daerah", "5.02", 1.5, [
        ("5.02.02", "Program Pengelolaan Keuangan Daerah", [
            ("2.01", "Koordinasi dan Penyusunan Rencana Anggaran Daerah", ["GOODS"]),
            ("2.03", "Pengelolaan Belanja Transfer kepada Pemerintah Desa", ["TRANSFER", "TRANSFER"]),
        ]),
        ("5.02.03", "Program Pengelolaan Barang Milik Daerah", [
            ("2.01", "Pengelolaan Barang Milik Daerah", ["GOODS"]),
        ]),
    ]),
    "BAPENDA": ("Badan Pendapatan Daerah", "5.02", 0.8, [
        ("5.02.04", "Program Pengelolaan Pendapatan Daerah", [
            ("2.01", "Perencanaan Pengelolaan Retribusi Daerah", ["GOODS"]),
            ("2.02", "Analisa dan Pengembangan Pajak Daerah", ["GOODS"]),
        ]),
    ]),
    "BKPSDM": ("Badan Kepegawaian dan Pengembangan Sumber Daya Manusia", "5.03", 0.7, [
        ("5.03.02", "Program Kepegawaian Daerah", [
            ("2.05", "Pengembangan Kompetensi Aparatur Sipil Negara", ["GOODS", "GOODS"]),
        ]),
    ]),
    "INSPEKTORAT": ("Inspektorat Daerah", "6.01", 0.6, [
        ("6.01.02", "Program Penyelenggaraan Pengawasan", [("2.01", "Penyelenggaraan Pengawasan Internal", ["GOODS"])]),
    ]),
    "BAKESBANGPOL": ("Badan Kesatuan Bangsa dan Politik", "8.01", 0.6, [
        ("8.01.02", "Program Penguatan Ideologi Pancasila dan Karakter Kebangsaan", [
            ("2.01", "Pembinaan dan Peningkatan Kapasitas Lembaga Kemasyarakatan", ["GOODS", "GRANTS:hibah"]),
        ]),
    ]),
    "KEC_BOJONEGORO": ("Kecamatan Bojonegoro", "7.01", 0.3, [
        ("7.01.02", "Program Penyelenggaraan Pemerintahan dan Pelayanan Publik", [
            ("2.01", "Koordinasi Penyelenggaraan Kegiatan Pemerintahan di Tingkat Kecamatan", ["GOODS"]),
        ]),
    ]),
    "KEC_KALITIDU": ("Kecamatan Kalitidu", "7.01", 0.2, [
        ("7.01.02", "Program Penyelenggaraan Pemerintahan dan Pelayanan Publik", [
            ("2.01", "Koordinasi Penyelenggaraan Kegiatan Pemerintahan di Tingkat Kecamatan", ["GOODS"]),
        ]),
    ]),
    "KEC_DANDER": ("Kecamatan Dander", "7.01", 0.2, [
        ("7.01.02", "Program Penyelenggaraan Pemerintahan dan Pelayanan Publik", [
            ("2.01", "Koordinasi Penyelenggaraan Kegiatan Pemerintahan di Tingkat Kecamatan", ["GOODS"]),
        ]),
    ]),
}  # fmt: skip


def _kind(spending: str) -> str:
    """GOODS:office -> GOODS: the kind that sets sizes, timing and revisions."""
    return spending.split(":")[0]


def _thousands(value: Decimal | float) -> Decimal:
    return Decimal(int(Decimal(str(value)) / 1000) * 1000).quantize(CENT)


def _working_days(year: int, month: int, first: int, last: int) -> list[int]:
    last = min(last, calendar.monthrange(year, month)[1])
    return [d for d in range(first, last + 1) if calendar.weekday(year, month, d) < 5 and (month, d) not in HOLIDAYS]


def _month_of(moment: datetime) -> tuple[int, int]:
    local = moment + JAKARTA
    return local.year, local.month


class RegionalBudget:
    """A deterministic stream of changes (same seed, start and clock start, same changes).

    The business timeline begins with the drafting season (1 September) of the year before the
    fiscal year of `clock_start` (default: today), so that fiscal year is drafted, enacted, spent
    and revised, then the next one, and so on."""

    def __init__(
        self,
        villages: list[str],
        seed: int = 1,
        start_seq: int = 0,
        bad_ratio: float = 0.0,
        clock_start: datetime | None = None,
    ) -> None:
        self.rng = random.Random(seed * 1_000_003 + start_seq)
        # A separate stream for the timeline (when in the month things happen).
        self.clock_rng = random.Random(seed * 7_919 + start_seq)
        self.villages = villages  # the budget has no village codes; kept for the simulator interface
        self.seq = start_seq
        self.bad_ratio = bad_ratio
        fiscal_year = (clock_start or datetime.now(UTC)).year
        self.year, self.month = fiscal_year - 1, 9  # the month whose agenda is running
        self.business_clock = datetime(self.year, self.month, 1, 1, tzinfo=UTC)  # 08:00 in Jakarta
        self.lines: dict[str, dict] = {}  # line_id -> its last valid record (two fiscal years at most)
        self.plans: dict[str, dict] = {}  # line_id -> kind, absorption, money due and committed
        self.drafts: list[dict] = []  # the latest draft budget's lines (templates for bad records too)
        self.sp2d_numbers: dict[int, int] = {}  # fiscal year -> last SP2D number
        self.agenda: list[tuple[datetime, int, tuple]] = []
        self._plan_month()

    def _next_position(self) -> str:
        self.seq += 1
        return f"{self.seq:012d}"

    # -- the monthly agenda -----------------------------------------------------------------------
    def _moment(self, first: int = 1, last: int = 31) -> datetime:
        """A random moment in office hours (08:00-16:00 Jakarta) on a working day of the month."""
        days = _working_days(self.year, self.month, first, last) or _working_days(self.year, self.month, 1, 31)
        day = self.clock_rng.choice(days)
        minutes = self.clock_rng.randint(0, 8 * 60 - 1)
        local = datetime(self.year, self.month, day, 8, tzinfo=UTC) + timedelta(minutes=minutes)
        return local - JAKARTA  # the naive local time, shifted to UTC

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
            self.drafts = self._draft_budget(year + 1)
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
        expected = PAYMENTS_PER_YEAR[kind] * profile[month - 1] / sum(profile)
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
            amount = _thousands(total * Decimal(str(weight / sum(weights))))
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
        low, high = REVISION[plan["kind"]]
        revised = _thousands(self._ceiling(self.lines[line_id]) * Decimal(str(self.rng.uniform(low, high))))
        # Never below what is already committed for payment.
        return max(revised, _thousands(plan["committed"]) + Decimal(1000))

    def _draft_budget(self, fiscal_year: int) -> list[dict]:
        """The lines of a fiscal year's draft budget (without keys: those come from positions)."""
        rng = self.rng
        specs = []
        for code, (name, field, scale, programmes) in DEPARTMENTS.items():
            support = [(f"{field}.01", SUPPORT, SUPPORT_ACTIVITIES)]
            for programme, programme_name, activities in support + programmes:
                for activity, activity_name, spendings in activities:
                    # Larger offices have more lines per activity.
                    for spending in spendings + (spendings[:1] if rng.random() < min(scale / 4, 0.8) else []):
                        if spending == "CAPITAL:office" and rng.random() < 0.3:
                            continue  # not every office buys equipment every year
                        account_code, account_name = rng.choice(ACCOUNTS[spending])
                        kind = _kind(spending)
                        low, high, skew = ALLOCATIONS.get(spending) or ALLOCATIONS[kind]
                        size = scale if kind != "TRANSFER" else 1.0
                        allocation = _thousands((low + (high - low) * rng.random() ** skew) * size)
                        specs.append(
                            {
                                "fiscal_year": fiscal_year,
                                "department_code": code,
                                "department_name": name,
                                "programme_code": programme,
                                "programme_name": programme_name,
                                "activity_code": f"{programme}.{activity}",
                                "activity_name": activity_name,
                                "account_code": account_code,
                                "account_name": account_name,
                                "allocation": allocation,
                                "revised_allocation": None,
                                "stage": "DRAFT",
                                "_kind": kind,
                            }
                        )
        rng.shuffle(specs)
        return specs

    # -- changes ----------------------------------------------------------------------------------
    def _apply(self, moment: datetime, action: tuple, position: str, now: datetime) -> Change:
        what = action[0]
        if what == "create":
            spec = dict(action[1])
            kind = spec.pop("_kind")
            record = {"line_id": f"BPKAD-{position}", **spec, "updated_at": moment}
            self.lines[record["line_id"]] = record
            low, high = ABSORPTION[kind]
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
            after["allocation"] = _thousands(before["allocation"] * Decimal(str(action[2])))
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

    def _bad(self, position: str, now: datetime) -> Change:
        """A record the processor must dead-letter; it never enters the simulator's state."""
        rng = self.rng
        kind = rng.choice(BAD_KINDS)
        moment = self.business_clock
        spendable = sorted(k for k, r in self.lines.items() if r["stage"] != "DRAFT")
        if kind in ("negative_realisation", "missing_document") and spendable:
            line = self.lines[rng.choice(spendable)]
            amount = _thousands(rng.uniform(1_000_000, 50_000_000))
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
            after["stage"] = rng.choice([s for s in STAGES if s != current and s not in TRANSITIONS[current]])
            return Change("u", line_id, position, now, before=dict(before), after=after, entity=LINE)
        spec = dict(rng.choice(self.drafts))
        spec.pop("_kind")
        record = {"line_id": f"BPKAD-{position}", **spec, "updated_at": moment}
        if kind == "missing_activity":
            record["activity_name"] = None
        else:
            record["allocation"] = -record["allocation"] - Decimal("1000.00")
        return Change("c", record["line_id"], position, now, after=record, entity=LINE)

    def changes(self) -> Iterator[Change]:
        while True:
            position = self._next_position()
            now = datetime.now(UTC)
            if self.bad_ratio and self.rng.random() < self.bad_ratio:
                yield self._bad(position, now)
                continue
            while not self.agenda:
                self._next_month()
            moment, _, action = self.agenda.pop()
            self.business_clock = max(self.business_clock, moment)
            yield self._apply(moment, action, position, now)
