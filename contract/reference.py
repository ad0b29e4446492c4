"""Reference data: the regency's kecamatan and villages (ODbL, see data/README.md), published to
the compacted topic ref.regions that the processor reads as a table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from backbone import kafka
from backbone.errors import InputError
from backbone.settings import Settings

LEVELS = {"kabupaten", "kecamatan", "desa", "kelurahan"}


def load_regions(path: Path) -> dict[str, dict[str, str]]:
    """code -> {name, level, parent}; villages (desa and kelurahan) get level 'village'."""
    regions: dict[str, dict[str, str]] = {}
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"code", "parent_code", "name", "level"} - set(reader.fieldnames or ())
            if missing:
                raise InputError(f"{path}: missing columns {', '.join(sorted(missing))}")
            for line, row in enumerate(reader, start=2):
                if row["level"] not in LEVELS:
                    raise InputError(f"{path}: line {line}: field 'level' has value {row['level']!r}")
                level = "village" if row["level"] in ("desa", "kelurahan") else row["level"]
                regions[row["code"]] = {"name": row["name"], "level": level, "parent": row["parent_code"]}
    except FileNotFoundError:
        raise InputError(f"reference data {path} not found", hint="set BACKBONE_REGIONS_CSV") from None
    return regions


def villages(regions: dict[str, dict[str, str]]) -> list[str]:
    return sorted(code for code, info in regions.items() if info["level"] == "village")


def publish_regions(settings: Settings, topic: str, regions: dict[str, dict[str, str]]) -> int:
    """Write every region to the compacted topic (JSON key and value, as Faust tables read them)."""
    producer = kafka.make_producer(settings, "reference")
    for code, info in regions.items():
        value, key = json.dumps(info).encode(), json.dumps(code).encode()
        kafka.produce(producer, topic, value=value, key=key, stage="reference")
    remaining = producer.flush(30)
    if remaining:
        raise InputError(f"{remaining} reference records were not acknowledged by Kafka")
    return len(regions)
