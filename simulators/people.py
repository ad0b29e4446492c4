"""Synthetic Indonesian personal data for the simulators. Every value is made up."""

from __future__ import annotations

import random

GIVEN = [
    "Agus",
    "Budi",
    "Dewi",
    "Eko",
    "Fitri",
    "Hadi",
    "Indah",
    "Joko",
    "Kartini",
    "Lestari",
    "Muhammad",
    "Nur",
    "Putri",
    "Rahmat",
    "Sari",
    "Siti",
    "Slamet",
    "Sri",
    "Teguh",
    "Wahyu",
    "Yanti",
    "Yusuf",
]
FAMILY = [
    "Wibowo",
    "Santoso",
    "Susanti",
    "Prasetyo",
    "Rahayu",
    "Hidayat",
    "Kurniawan",
    "Setiawan",
    "Wulandari",
    "Saputra",
    "Handayani",
    "Nugroho",
    "Purnomo",
    "Lestari",
    "Utomo",
]
STREETS = [
    "Jl. Veteran",
    "Jl. Panglima Sudirman",
    "Jl. Diponegoro",
    "Jl. Gajah Mada",
    "Jl. Trunojoyo",
    "Jl. Rajekwesi",
    "Jl. Hayam Wuruk",
    "Dusun Krajan",
    "Dusun Wetan",
    "Dusun Kulon",
]


def nik(rng: random.Random, village_code: str) -> str:
    """16 digits: province, regency, district (from the village code), birth date, serial."""
    district = village_code.split(".")[2] if village_code.count(".") >= 2 else "01"
    day = rng.randint(1, 28) + (40 if rng.random() < 0.5 else 0)  # women's day of birth + 40
    return f"3522{district}{day:02d}{rng.randint(1, 12):02d}{rng.randint(60, 99):02d}{rng.randint(1, 9999):04d}"


def name(rng: random.Random) -> str:
    return f"{rng.choice(GIVEN)} {rng.choice(FAMILY)}"


def phone(rng: random.Random) -> str:
    return f"08{rng.choice(['12', '13', '21', '52', '57', '77', '95'])}{rng.randint(10_000_000, 99_999_999)}"


def address(rng: random.Random) -> str:
    return f"{rng.choice(STREETS)} No. {rng.randint(1, 250)}, RT {rng.randint(1, 15):02d}/RW {rng.randint(1, 8):02d}"
