"""A scripted run for the data-quality scorecard's known-answer tests (tests/sinks/test_quality_views.py,
tests/cli/test_quality.py): change-log rows and dead letters with chosen source and storing times,
flags and empty fields, and the figures they must give, computed by hand in EXPECTED.

The store holds only what the scorecard reads: every catalog change log (as sinks/ddl.py makes it,
with `dq_flags`) and dead_letters (with `rule`), the columns the rules work adds, created here
when the DDL does not have them yet, so the scorecard's SQL is tested either way."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from backbone.settings import PROJECT_ROOT
from contract.catalog import Catalog, load_catalog
from sinks import ddl, migrations, quality_views

WIB = timezone(timedelta(hours=7))
TODAY = datetime.now(UTC).astimezone(WIB).date()
D1, D2, OLD = (TODAY - timedelta(days=n) for n in (1, 2, 30))
PERMITS = "licensing_permit_application"
CDC_PERMITS, CDC_VISITS = "cdc.licensing.permit_application", "cdc.health.visit"
_offsets = itertools.count(1)


def at(day: Any, hour: int, minute: int = 0) -> datetime:
    """A local (WIB) time of `day`, in UTC."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=WIB).astimezone(UTC)


def permit(event: str, source: datetime, stored_after: float, flags: list[str], **fields: Any) -> dict[str, Any]:
    """One change-log row of a permit application; `fields`: the nullable payload fields set."""
    return {
        "event_id": event,
        "op": "d" if fields.get("is_deleted") else "c",
        "entity_key": event.split("-")[0],
        "is_deleted": False,
        "source_system": "sim-licensing",
        "source_entity": "permit_application",
        "application_id": event.split("-")[0],
        "ts_source": source,
        "ts_stored": source + timedelta(seconds=stored_after),
        "dq_flags": flags,
        "office_code": "DPMPTSP",  # set on every row, as the simulated office does
        **fields,
    }


# Licensing's freshness is 60 s. Nullable payload fields: applicant_phone, business_name, decided_at,
# rejection_reason, office_code.
BEFORE_MIGRATION = [permit("C1-1", at(OLD, 9), 1, [], applicant_phone="08", business_name="b")]
FIRST_INSERT = [
    permit("A1-1", at(D1, 10), 10, [], applicant_phone="0812"),
    permit("A2-1", at(D1, 10), 120, ["investment_value:max"], business_name="Toko"),  # stored late
    permit(
        "A3-1",
        at(D1, 11),
        30,
        ["investment_value:max", "decided_at:after"],
        applicant_phone="0813",
        business_name="Warung",
        decided_at=at(D1, 11),
    ),
    # 00:30 in Jakarta on D1 is the day before in UTC: counted on D1. A delete: not in completeness.
    permit("A4-1", at(D1, 0, 30), 5, [], is_deleted=True),
    permit(
        "B1-1", at(D2, 9), 2, [], applicant_phone="1", business_name="2", decided_at=at(D2, 9), rejection_reason="4"
    ),
]
# The sink re-read A3 after a crash, ten minutes later: a duplicate, stored late.
SECOND_INSERT = [dict(FIRST_INSERT[2], ts_stored=FIRST_INSERT[2]["ts_source"] + timedelta(seconds=600))]


def letter(stage: str, topic: str, failed: datetime, rule: str, offset: int | None = None) -> dict[str, Any]:
    offset = next(_offsets) if offset is None else offset
    return {
        "stage": stage,
        "reason": f"{rule or 'undecodable'}: scripted",
        "source_topic": topic,
        "source_partition": 0,
        "source_offset": offset,
        "letter_id": f"{topic}:0:{offset}",
        "ts_failed": failed,
        "_topic": f"dlq.{stage}",
        "ts_stored": failed,
        "rule": rule,
    }


LETTERS = [
    letter("processor", CDC_PERMITS, at(D1, 12), "sla_days:max", offset=500),
    letter("processor", CDC_PERMITS, at(D1, 12), "sla_days:max", offset=500),  # re-read: the same letter
    letter("processor", CDC_PERMITS, at(D1, 13), ""),  # no rule: undecodable
    letter("adapter", "sim-licensing:permits.csv", at(D2, 8), ""),  # an adapter's: no entity
    letter("processor", CDC_VISITS, at(D1, 9), "patient_nik:pattern"),
]

# The hand-computed answers (see the comments above: 60 s freshness, duplicates and deletes).
EXPECTED = {
    # (system, entity, day): received, stored, rejected, flagged, timely
    "entity_daily": {
        ("sim-licensing", "permit_application", D1): (7, 5, 2, 3, 3),  # rows A1 A2 A3 A3' A4; A2 and A3' late
        ("sim-licensing", "permit_application", D2): (1, 1, 0, 0, 1),
        ("sim-licensing", "", D2): (1, 0, 1, 0, 0),
        ("sim-licensing", "permit_application", OLD): (1, 1, 0, 0, 1),
        ("sim-health", "visit", D1): (1, 0, 1, 0, 0),
    },
    # D1 completeness over the 4 rows not deleted (A1 A2 A3 A3'): field -> (non_null, ratio)
    "completeness_d1": {
        "applicant_phone": (3, 0.75),
        "business_name": (3, 0.75),
        "decided_at": (2, 0.5),
        "rejection_reason": (0, 0.0),
        "office_code": (4, 1.0),
    },
    # (severity, rule) -> records in the window, licensing
    "rules": {
        ("flag", "investment_value:max"): 3,
        ("flag", "decided_at:after"): 2,
        ("reject", "sla_days:max"): 1,
        ("reject", "(processor)"): 1,
        ("reject", "(adapter)"): 1,
    },
    "duplicates": {D1: (5, 4, 1), D2: (1, 1, 0), OLD: (1, 1, 0)},  # rows stored, changes, dropped
    # In the window (D1, D2): received 9, stored 6, rejected 3, flagged 3, timely 4; completeness
    # (3+3+2+0+4 + 5) / (4*5 + 1*5) = 0.68.
    # score = 100 * (0.4 * 6/9 + 0.3 * (1 - 3/6) + 0.2 * 4/6 + 0.1 * 0.68) = 61.8
    "scorecard": {
        "sim-licensing": (9, 6, 3, 3, 0.6667, 0.5, 0.6667, 0.68, 61.8),
        "sim-health": (1, 0, 1, 0, 0.0, 0.0, 0.0, 0.0, 0.0),
        "sim-education": (0, 0, 0, 0, None, None, None, None, None),
    },
}


def catalog() -> Catalog:
    return load_catalog(PROJECT_ROOT / "catalog", PROJECT_ROOT / "schemas")


def _insert(client: Any, table: str, rows: list[dict[str, Any]]) -> None:
    names = sorted({n for r in rows for n in r})
    client.insert(table, [[r.get(n) for n in names] for r in rows], column_names=names)


def build(client: Any) -> Catalog:
    """The scorecard's tables, the scripted run stored into them in its order (some rows before the
    quality migration, which counts them once), the migration applied."""
    cat = catalog()
    client.command(ddl.dead_letters_ddl(28))
    client.command(f"ALTER TABLE {ddl.DEAD_LETTERS_TABLE} ADD COLUMN IF NOT EXISTS rule LowCardinality(String)")
    for entity in cat.entities:
        layout = migrations.entity_layout(entity)
        client.command(ddl.create_table_sql(layout))
        client.command(f"ALTER TABLE `{layout.name}` ADD COLUMN IF NOT EXISTS dq_flags Array(LowCardinality(String))")
    _insert(client, PERMITS, BEFORE_MIGRATION)
    migrate(client, cat)
    _insert(client, PERMITS, FIRST_INSERT)
    _insert(client, PERMITS, SECOND_INSERT)
    _insert(client, ddl.DEAD_LETTERS_TABLE, LETTERS)
    return cat


def migrate(client: Any, cat: Catalog) -> list[str]:
    """quality_views.migrate with a step recorder of its own (what migrations.migrate does)."""
    client.command(migrations.MIGRATIONS_DDL)
    done = {(v, n) for v, n in client.query(f"SELECT version, name FROM {migrations.MIGRATIONS_TABLE}").result_rows}
    applied: list[str] = []

    def step(version: int, name: str, apply: Any) -> None:
        if (version, name) not in done:
            apply()
            client.insert(
                migrations.MIGRATIONS_TABLE,
                [[version, name, datetime.now(UTC)]],
                column_names=["version", "name", "applied_at"],
            )
            done.add((version, name))
            applied.append(name)

    quality_views.migrate(client, cat, step)
    return applied
