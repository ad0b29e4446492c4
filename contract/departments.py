"""Reference data: the regency's offices (OPD) with their codes (data/departments.csv, see its header),
published to the compacted topic ref.departments, which the sink keeps as a dimension table."""

from __future__ import annotations

import csv
from pathlib import Path

from backbone.errors import InputError
from backbone.settings import PROJECT_ROOT

DEPARTMENTS_CSV = PROJECT_ROOT / "data" / "departments.csv"
_COLUMNS = {"code", "name", "field_code", "kind"}


def load_departments(path: Path = DEPARTMENTS_CSV) -> dict[str, dict[str, str]]:
    """code -> {name, field_code, kind}; lines starting with '#' are comments."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(line for line in fh if not line.startswith("#"))
            missing = _COLUMNS - set(reader.fieldnames or ())
            if missing:
                raise InputError(f"{path}: missing columns {', '.join(sorted(missing))}")
            departments: dict[str, dict[str, str]] = {}
            for row in reader:
                if not row["code"] or row["code"] in departments:
                    raise InputError(f"{path}: code {row['code']!r} is empty or repeated")
                departments[row["code"]] = {"name": row["name"], "field_code": row["field_code"], "kind": row["kind"]}
    except FileNotFoundError:
        raise InputError(f"reference data {path} not found") from None
    return departments
