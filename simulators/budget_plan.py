"""The regency budget's structure for the simulated finance office (BPKAD): expenditure accounts, the
regency offices with their programmes and activities, and how each kind of spending is sized, paid
out over the year and revised. All data is synthetic; codes follow the Permendagri 90/2019 pattern."""

from __future__ import annotations

import random
from datetime import datetime

from simulators.kit import local, skewed, thousands

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
    "CAPITAL:works": (10_000_000_000, 60_000_000_000, 2.0),  # a public-works line funding many packages
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
# By kind: the typical number of disbursements (SP2D) per line and year, the share of the allocation
# actually spent (low, high) and the revision factors of the P-APBD (low, high).
PAYMENTS_ABSORPTION_REVISION = {
    "PERSONNEL": (12, (0.90, 0.99), (0.95, 1.05)),
    "GOODS": (10, (0.75, 0.98), (0.85, 1.20)),
    "CAPITAL": (4, (0.70, 0.98), (0.70, 1.30)),
    "GRANTS": (3, (0.85, 1.00), (0.80, 1.30)),
    "TRANSFER": (3, (0.95, 1.00), (0.95, 1.10)),
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

# Regency offices: code -> (name, field code, allocation scale).
OFFICES = {
    "DISDIK": ("Dinas Pendidikan", "1.01", 4.0),
    "DINKES": ("Dinas Kesehatan", "1.02", 2.0),
    "RSUD": ("RSUD Dr. R. Sosodoro Djatikoesoemo", "1.02", 2.0),
    "DPUPR": ("Dinas Pekerjaan Umum dan Penataan Ruang", "1.03", 3.0),
    "DPRKPP": ("Dinas Perumahan, Kawasan Permukiman dan Pertanahan", "1.04", 1.0),
    "SATPOLPP": ("Satuan Polisi Pamong Praja", "1.05", 0.8),
    "DAMKAR": ("Dinas Pemadam Kebakaran dan Penyelamatan", "1.05", 0.6),
    "BPBD": ("Badan Penanggulangan Bencana Daerah", "1.05", 0.8),
    "DINSOS": ("Dinas Sosial", "1.06", 1.2),
    "DISNAKER": ("Dinas Perindustrian dan Tenaga Kerja", "2.07", 0.7),
    "DP3AKB": ("Dinas Pemberdayaan Perempuan, Perlindungan Anak dan Keluarga Berencana", "2.08", 0.7),
    "DKP": ("Dinas Ketahanan Pangan", "2.09", 0.7),
    "DLH": ("Dinas Lingkungan Hidup", "2.11", 1.0),
    "DISDUKCAPIL": ("Dinas Kependudukan dan Pencatatan Sipil", "2.12", 0.7),
    "DPMD": ("Dinas Pemberdayaan Masyarakat dan Desa", "2.13", 0.8),
    "DISHUB": ("Dinas Perhubungan", "2.15", 0.8),
    "DISKOMINFO": ("Dinas Komunikasi dan Informatika", "2.16", 0.8),
    "DISKOPUM": ("Dinas Koperasi dan Usaha Mikro", "2.17", 0.6),
    "DPMPTSP": ("Dinas Penanaman Modal dan Pelayanan Terpadu Satu Pintu", "2.18", 0.6),
    "DISPORA": ("Dinas Pemuda dan Olahraga", "2.19", 0.7),
    "DISPERPUSIP": ("Dinas Perpustakaan dan Kearsipan", "2.23", 0.5),
    "DISBUDPAR": ("Dinas Kebudayaan dan Pariwisata", "3.26", 0.7),
    "DISPERTA": ("Dinas Pertanian", "3.27", 1.2),
    "DISNAKKAN": ("Dinas Peternakan dan Perikanan", "3.27", 0.7),
    "DISDAG": ("Dinas Perdagangan", "3.30", 0.7),
    "SETDA": ("Sekretariat Daerah", "4.01", 1.5),
    "SETWAN": ("Sekretariat DPRD", "4.02", 1.0),
    "BAPPEDA": ("Badan Perencanaan Pembangunan Daerah", "5.01", 0.8),
    "BPKAD": ("Badan Pengelolaan Keuangan dan Aset Daerah", "5.02", 1.5),
    "BAPENDA": ("Badan Pendapatan Daerah", "5.02", 0.8),
    "BKPSDM": ("Badan Kepegawaian dan Pengembangan Sumber Daya Manusia", "5.03", 0.7),
    "INSPEKTORAT": ("Inspektorat Daerah", "6.01", 0.6),
    "BAKESBANGPOL": ("Badan Kesatuan Bangsa dan Politik", "8.01", 0.6),
    "KEC_BOJONEGORO": ("Kecamatan Bojonegoro", "7.01", 0.3),
    "KEC_KALITIDU": ("Kecamatan Kalitidu", "7.01", 0.2),
    "KEC_DANDER": ("Kecamatan Dander", "7.01", 0.2),
}
PROGRAMMES = {
    "1.01.02": "Program Pengelolaan Pendidikan",
    "1.02.02": "Program Pemenuhan Upaya Kesehatan Perorangan dan Upaya Kesehatan Masyarakat",
    "1.03.10": "Program Penyelenggaraan Jalan",
    "1.03.02": "Program Pengelolaan Sumber Daya Air (SDA)",
    "1.03.03": "Program Pengelolaan dan Pengembangan Sistem Penyediaan Air Minum",
    "1.03.05": "Program Pengelolaan dan Pengembangan Sistem Drainase",
    "1.03.11": "Program Penataan Bangunan Gedung",
    "1.04.02": "Program Pengembangan Perumahan",
    "1.05.02": "Program Peningkatan Ketenteraman dan Ketertiban Umum",
    "1.05.04": "Program Pencegahan, Penanggulangan, Penyelamatan Kebakaran dan Penyelamatan Non Kebakaran",
    "1.05.03": "Program Penanggulangan Bencana",
    "1.06.04": "Program Rehabilitasi Sosial",
    "1.06.05": "Program Perlindungan dan Jaminan Sosial",
    "2.07.03": "Program Pelatihan Kerja dan Produktivitas Tenaga Kerja",
    "2.08.02": "Program Pengarusutamaan Gender dan Pemberdayaan Perempuan",
    "2.09.02": "Program Pengelolaan Sumber Daya Ekonomi untuk Kedaulatan dan Kemandirian Pangan",
    "2.11.09": "Program Pengelolaan Persampahan",
    "2.12.02": "Program Pendaftaran Penduduk",
    "2.13.05": "Program Administrasi Pemerintahan Desa",
    "2.15.02": "Program Penyelenggaraan Lalu Lintas dan Angkutan Jalan (LLAJ)",
    "2.16.02": "Program Informasi dan Komunikasi Publik",
    "2.16.03": "Program Aplikasi Informatika",
    "2.17.07": "Program Pemberdayaan Usaha Menengah, Usaha Kecil, dan Usaha Mikro (UMKM)",
    "2.18.04": "Program Pelayanan Penanaman Modal",
    "2.19.03": "Program Pengembangan Kapasitas Daya Saing Keolahragaan",
    "2.23.02": "Program Pembinaan Perpustakaan",
    "3.26.02": "Program Peningkatan Daya Tarik Destinasi Pariwisata",
    "3.27.03": "Program Penyediaan dan Pengembangan Sarana Pertanian",
    "3.27.06": "Program Pengendalian Kesehatan Hewan dan Kesehatan Masyarakat Veteriner",
    "3.30.03": "Program Peningkatan Sarana Distribusi Perdagangan",
    "4.01.02": "Program Pemerintahan dan Kesejahteraan Rakyat",
    "4.02.02": "Program Dukungan Pelaksanaan Tugas dan Fungsi DPRD",
    "5.01.02": "Program Perencanaan, Pengendalian dan Evaluasi Pembangunan Daerah",
    "5.02.02": "Program Pengelolaan Keuangan Daerah",
    "5.02.03": "Program Pengelolaan Barang Milik Daerah",
    "5.02.04": "Program Pengelolaan Pendapatan Daerah",
    "5.03.02": "Program Kepegawaian Daerah",
    "6.01.02": "Program Penyelenggaraan Pengawasan",
    "8.01.02": "Program Penguatan Ideologi Pancasila dan Karakter Kebangsaan",
    "7.01.02": "Program Penyelenggaraan Pemerintahan dan Pelayanan Publik",
}
ACTIVITIES = {
    "1.01.02.2.01": "Pengelolaan Pendidikan Sekolah Dasar",
    "1.01.02.2.02": "Pengelolaan Pendidikan Sekolah Menengah Pertama",
    "1.01.02.2.04": "Pengelolaan Pendidikan Anak Usia Dini (PAUD)",
    "1.02.02.2.01": "Penyediaan Fasilitas Pelayanan Kesehatan untuk UKM dan UKP Kewenangan Daerah Kabupaten/Kota",
    "1.02.02.2.02": "Penyediaan Layanan Kesehatan untuk UKM dan UKP Rujukan Tingkat Daerah Kabupaten/Kota",
    "1.03.10.2.01": "Penyelenggaraan Jalan Kabupaten/Kota",
    "1.03.02.2.03": "Pengembangan dan Pengelolaan Sistem Irigasi Primer dan Sekunder",
    "1.03.03.2.01": "Pengelolaan dan Pengembangan SPAM di Daerah Kabupaten/Kota",
    "1.03.05.2.01": "Pengelolaan dan Pengembangan Sistem Drainase",
    "1.03.11.2.01": "Penyelenggaraan Bangunan Gedung di Wilayah Daerah Kabupaten/Kota",
    "1.04.02.2.02": "Penyediaan dan Rehabilitasi Rumah Layak Huni",
    "1.05.02.2.01": "Penanganan Gangguan Ketenteraman dan Ketertiban Umum",
    "1.05.04.2.01": "Pencegahan, Pengendalian, Pemadaman, Penyelamatan, dan Penanganan Bahan Berbahaya",
    "1.05.03.2.02": "Pelayanan Pencegahan dan Kesiapsiagaan terhadap Bencana",
    "1.05.03.2.03": "Pelayanan Penyelamatan dan Evakuasi Korban Bencana",
    "1.06.04.2.01": "Rehabilitasi Sosial Dasar Penyandang Disabilitas Terlantar",
    "1.06.05.2.01": "Pemeliharaan Anak-Anak Terlantar",
    "1.06.05.2.02": "Pengelolaan Data Fakir Miskin Cakupan Daerah Kabupaten/Kota",
    "2.07.03.2.01": "Pelaksanaan Pelatihan berdasarkan Unit Kompetensi",
    "2.08.02.2.01": "Pelembagaan Pengarusutamaan Gender (PUG) pada Lembaga Pemerintah Kewenangan Kabupaten/Kota",
    "2.09.02.2.01": "Penyediaan Infrastruktur dan Seluruh Pendukung Kemandirian Pangan",
    "2.11.09.2.01": "Pengelolaan Sampah",
    "2.12.02.2.01": "Pelayanan Pendaftaran Penduduk",
    "2.13.05.2.01": "Pembinaan dan Pengawasan Penyelenggaraan Administrasi Pemerintahan Desa",
    "2.15.02.2.01": "Penetapan Rencana Induk Jaringan LLAJ Kabupaten/Kota",
    "2.16.02.2.01": "Pengelolaan Informasi dan Komunikasi Publik Pemerintah Daerah Kabupaten/Kota",
    "2.16.03.2.01": "Pengelolaan Nama Domain dan Sub Domain",
    "2.17.07.2.01": "Pemberdayaan Usaha Mikro yang Dilakukan melalui Pendataan dan Kemitraan",
    "2.18.04.2.01": "Pelayanan Perizinan dan Nonperizinan secara Terpadu Satu Pintu",
    "2.19.03.2.01": "Pembinaan dan Pengembangan Olahraga Prestasi Tingkat Daerah",
    "2.23.02.2.01": "Pengelolaan Perpustakaan Tingkat Daerah",
    "3.26.02.2.01": "Pengelolaan Daya Tarik Wisata Kabupaten/Kota",
    "3.27.03.2.01": "Pengawasan Penggunaan Sarana Pendukung Pertanian",
    "3.27.06.2.01": "Pengendalian Penyakit Hewan Menular Strategis",
    "3.30.03.2.01": "Pembangunan dan Pengelolaan Sarana Distribusi Perdagangan",
    "4.01.02.2.02": "Pelaksanaan Kesejahteraan Rakyat",
    "4.02.02.2.01": "Pembentukan Peraturan Daerah dan Peraturan DPRD",
    "5.01.02.2.01": "Penyusunan Perencanaan dan Pendanaan",
    "5.02.02.2.01": "Koordinasi dan Penyusunan Rencana Anggaran Daerah",
    "5.02.02.2.03": "Pengelolaan Belanja Transfer kepada Pemerintah Desa",
    "5.02.03.2.01": "Pengelolaan Barang Milik Daerah",
    "5.02.04.2.01": "Perencanaan Pengelolaan Retribusi Daerah",
    "5.02.04.2.02": "Analisa dan Pengembangan Pajak Daerah",
    "5.03.02.2.05": "Pengembangan Kompetensi Aparatur Sipil Negara",
    "6.01.02.2.01": "Penyelenggaraan Pengawasan Internal",
    "8.01.02.2.01": "Pembinaan dan Peningkatan Kapasitas Lembaga Kemasyarakatan",
    "7.01.02.2.01": "Koordinasi Penyelenggaraan Kegiatan Pemerintahan di Tingkat Kecamatan",
}
# What the offices spend on, by activity, in the order of the draft budget (each office also has
# the support programme): (office, activity code, kinds of spending).
SPENDING = [
    ("DISDIK", "1.01.02.2.01", "GOODS CAPITAL:school CAPITAL:school"),
    ("DISDIK", "1.01.02.2.02", "GOODS CAPITAL:school"),
    ("DISDIK", "1.01.02.2.04", "GOODS GRANTS:hibah"),
    ("DINKES", "1.02.02.2.01", "CAPITAL:health CAPITAL:building"),
    ("DINKES", "1.02.02.2.02", "GOODS:health GOODS"),
    ("RSUD", "1.02.02.2.02", "GOODS:health GOODS:health CAPITAL:health"),
    ("DPUPR", "1.03.10.2.01", "WORKS:ROAD WORKS:BRIDGE GOODS"),
    ("DPUPR", "1.03.02.2.03", "WORKS:IRRIGATION"),
    ("DPUPR", "1.03.03.2.01", "WORKS:WATER_SUPPLY"),
    ("DPUPR", "1.03.05.2.01", "WORKS:DRAINAGE GOODS"),
    ("DPUPR", "1.03.11.2.01", "WORKS:BUILDING"),
    ("DPRKPP", "1.04.02.2.02", "GRANTS:bansos GOODS"),
    ("SATPOLPP", "1.05.02.2.01", "GOODS"),
    ("DAMKAR", "1.05.04.2.01", "GOODS CAPITAL:office"),
    ("BPBD", "1.05.03.2.02", "GOODS"),
    ("BPBD", "1.05.03.2.03", "GOODS"),
    ("DINSOS", "1.06.04.2.01", "GOODS"),
    ("DINSOS", "1.06.05.2.01", "GRANTS:bansos"),
    ("DINSOS", "1.06.05.2.02", "GOODS GRANTS:bansos"),
    ("DISNAKER", "2.07.03.2.01", "GOODS"),
    ("DP3AKB", "2.08.02.2.01", "GOODS"),
    ("DKP", "2.09.02.2.01", "GOODS GRANTS:hibah"),
    ("DLH", "2.11.09.2.01", "GOODS CAPITAL:office"),
    ("DISDUKCAPIL", "2.12.02.2.01", "GOODS"),
    ("DPMD", "2.13.05.2.01", "GOODS"),
    ("DISHUB", "2.15.02.2.01", "GOODS CAPITAL:office"),
    ("DISKOMINFO", "2.16.02.2.01", "GOODS"),
    ("DISKOMINFO", "2.16.03.2.01", "GOODS CAPITAL:office"),
    ("DISKOPUM", "2.17.07.2.01", "GOODS"),
    ("DPMPTSP", "2.18.04.2.01", "GOODS"),
    ("DISPORA", "2.19.03.2.01", "GOODS GRANTS:hibah"),
    ("DISPERPUSIP", "2.23.02.2.01", "GOODS"),
    ("DISBUDPAR", "3.26.02.2.01", "GOODS CAPITAL:building"),
    ("DISPERTA", "3.27.03.2.01", "GOODS GRANTS:hibah"),
    ("DISNAKKAN", "3.27.06.2.01", "GOODS"),
    ("DISDAG", "3.30.03.2.01", "CAPITAL:market GOODS"),
    ("SETDA", "4.01.02.2.02", "GOODS GRANTS:hibah GRANTS:hibah"),
    ("SETWAN", "4.02.02.2.01", "GOODS GOODS"),
    ("BAPPEDA", "5.01.02.2.01", "GOODS GOODS"),
    ("BPKAD", "5.02.02.2.01", "GOODS"),
    ("BPKAD", "5.02.02.2.03", "TRANSFER TRANSFER"),
    ("BPKAD", "5.02.03.2.01", "GOODS"),
    ("BAPENDA", "5.02.04.2.01", "GOODS"),
    ("BAPENDA", "5.02.04.2.02", "GOODS"),
    ("BKPSDM", "5.03.02.2.05", "GOODS GOODS"),
    ("INSPEKTORAT", "6.01.02.2.01", "GOODS"),
    ("BAKESBANGPOL", "8.01.02.2.01", "GOODS GRANTS:hibah"),
    ("KEC_BOJONEGORO", "7.01.02.2.01", "GOODS"),
    ("KEC_KALITIDU", "7.01.02.2.01", "GOODS"),
    ("KEC_DANDER", "7.01.02.2.01", "GOODS"),
]

# The DPUPR capital lines that fund the public-works packages (simulators/infrastructure.py): one per
# project category and fiscal year, keyed so that both simulators name the same line without sharing
# state. Category -> (activity, account, sizes as in ALLOCATIONS).
WORKS = {
    "ROAD": ("1.03.10.2.01", "5.2.04.01.01.0003", "CAPITAL:roads"),
    "BRIDGE": ("1.03.10.2.01", "5.2.04.01.02.0003", "CAPITAL:roads"),
    "IRRIGATION": ("1.03.02.2.03", "5.2.04.02.01.0001", "CAPITAL:works"),
    "WATER_SUPPLY": ("1.03.03.2.01", "5.2.04.03.01.0001", "CAPITAL:works"),
    "DRAINAGE": ("1.03.05.2.01", "5.2.04.02.07.0001", "CAPITAL:works"),
    "BUILDING": ("1.03.11.2.01", "5.2.03.01.01.0001", "CAPITAL:works"),
}
ACCOUNT_NAMES = {code: name for accounts in ACCOUNTS.values() for code, name in accounts}


def works_line_id(fiscal_year: int, category: str) -> str:
    """The key of the budget line that funds a public-works package of this category and year."""
    activity, account, _ = WORKS[category]
    return f"BPKAD-{fiscal_year}-{activity}-{account}"


def fiscal_year_of(moment: datetime) -> int:
    """The fiscal year being planned at `moment`: from October (the draft budget is in), the next."""
    wall = local(moment)
    return wall.year + (1 if wall.month >= 10 else 0)


def _departments() -> dict[str, tuple[str, str, float, list]]:
    """code -> (name, field code, scale, [(programme, name, [(activity, name, [kinds of spending])])])"""
    departments: dict[str, tuple[str, str, float, list]] = {
        code: (name, field, scale, []) for code, (name, field, scale) in OFFICES.items()
    }
    for office, code, kinds in SPENDING:
        programmes = departments[office][3]
        programme, activity = code[:7], code[8:]
        if not programmes or programmes[-1][0] != programme:
            programmes.append((programme, PROGRAMMES[programme], []))
        programmes[-1][2].append((activity, ACTIVITIES[code], kinds.split()))
    return departments


DEPARTMENTS = _departments()


def kind_of(spending: str) -> str:
    """GOODS:office -> GOODS: the kind that sets sizes, timing and revisions."""
    return spending.split(":")[0]


def draft_budget(rng: random.Random, fiscal_year: int) -> list[dict]:
    """The lines of a fiscal year's draft budget (keys from positions, but for the works lines)."""
    specs = []
    for code, (name, field, scale, programmes) in DEPARTMENTS.items():
        support = [(f"{field}.01", SUPPORT, SUPPORT_ACTIVITIES)]
        for programme, programme_name, activities in support + programmes:
            for activity, activity_name, spendings in activities:
                # Larger offices have more lines per activity (one works line per category).
                extra = spendings[:1] if rng.random() < min(scale / 4, 0.8) else []
                for spending in spendings + [s for s in extra if not s.startswith("WORKS:")]:
                    if spending == "CAPITAL:office" and rng.random() < 0.3:
                        continue  # not every office buys equipment every year
                    line_id = None
                    if spending.startswith("WORKS:"):
                        category = spending.split(":")[1]
                        _, account_code, spending = WORKS[category]
                        account_name, line_id = ACCOUNT_NAMES[account_code], works_line_id(fiscal_year, category)
                    else:
                        account_code, account_name = rng.choice(ACCOUNTS[spending])
                    kind = kind_of(spending)
                    low, high, skew = ALLOCATIONS.get(spending) or ALLOCATIONS[kind]
                    size = scale if kind != "TRANSFER" else 1.0
                    allocation = thousands(skewed(rng, low, high, skew) * size)
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
                            "_line_id": line_id,  # None: the line's key comes from its position
                        }
                    )
    rng.shuffle(specs)
    return specs
