"""A departmental system's table kept from before a schema evolved (the demo keeps var/sources/ between
runs) gets the columns of the new optional fields when the simulated office opens it again: the rows
written before read null there, the new ones carry the value. On the real PostgreSQL and MariaDB."""

from __future__ import annotations

import itertools
import json
import shutil
import uuid
from pathlib import Path

import pymysql
import pytest

from backbone.settings import PROJECT_ROOT
from contract.catalog import Entity, load_catalog
from contract.reference import load_regions, villages
from producers.emitter import Change
from simulators.licensing import LicensingOffice
from simulators.writers.mariadb import MariaDbSourceWriter
from simulators.writers.postgres import PostgresSourceWriter

NEW_FIELD = "office_code"


@pytest.fixture
def entities(tmp_path: Path) -> tuple[Entity, Entity]:
    """The permit application as it was before office_code, and as it is."""
    schemas = tmp_path / "schemas"
    shutil.copytree(PROJECT_ROOT / "schemas", schemas)
    path = schemas / "licensing" / "permit_application.avsc"
    doc = json.loads(path.read_text())
    doc["fields"] = [f for f in doc["fields"] if f["name"] != NEW_FIELD]
    path.write_text(json.dumps(doc))
    return tuple(
        load_catalog(PROJECT_ROOT / "catalog", folder).system("sim-licensing").entities[0]
        for folder in (schemas, PROJECT_ROOT / "schemas")
    )


def applications(n: int) -> list[Change]:
    office = LicensingOffice(villages(load_regions(PROJECT_ROOT / "data" / "bojonegoro_regions.csv")), seed=4)
    return list(itertools.islice((c for c in office.changes() if c.op == "c"), n))


def expected(before: list[Change], after: list[Change]) -> list[tuple]:
    return sorted([(c.key, None) for c in before] + [(c.key, c.after[NEW_FIELD]) for c in after])


def test_postgres_table_gets_the_new_optional_column(postgres, entities):
    old, new = entities
    dsn = postgres.create_database(f"evo_{uuid.uuid4().hex[:8]}")
    changes = applications(4)
    first = PostgresSourceWriter(dsn, old)
    first.create_table()
    for change in changes[:2]:
        first.apply(change)  # the old table has no office_code: the writer leaves it out
    second = PostgresSourceWriter(dsn, new)
    second.create_table()
    second.create_table()  # idempotent
    for change in changes[2:]:
        second.apply(change)
    with second.conn.cursor() as cur:
        cur.execute(f"SELECT application_id, {NEW_FIELD} FROM permit_application")
        assert sorted(cur.fetchall()) == expected(changes[:2], changes[2:])
    for writer in (first, second):
        writer.conn.close()


def test_mariadb_table_gets_the_new_optional_column(mariadb, entities):
    old, new = entities
    params, table = mariadb.start(), f"evo_{uuid.uuid4().hex[:8]}"
    changes = applications(4)
    first = MariaDbSourceWriter(params, old, table=table)
    first.create_table()
    first.apply_many(changes[:2])
    second = MariaDbSourceWriter(params, new, table=table)
    second.create_table()
    second.create_table()  # idempotent
    second.apply_many(changes[2:])
    with pymysql.connect(
        host="127.0.0.1", port=int(params["port"]), user=params["user"], password=params["password"],
        database=params["database"],
    ) as conn, conn.cursor() as cur:  # fmt: skip
        cur.execute(f"SELECT application_id, {NEW_FIELD} FROM `{table}`")
        assert sorted(cur.fetchall()) == expected(changes[:2], changes[2:])
    for writer in (first, second):
        writer.connection.close()
