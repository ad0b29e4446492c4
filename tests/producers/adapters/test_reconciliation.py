"""Reconciliation on real sources: the census of PostgreSQL and MariaDB (SQL in the database, the snapshot
and its position) counts keys exactly as the store's side does (contract.census). Through the whole
pipeline - a clean run reconciles to zero, rows deleted behind the adapter's back are reported exactly,
by key, with the sink's gauge - in test_postgres.py's logical-decoding scenario (one pipeline for both)."""

from __future__ import annotations

from types import SimpleNamespace

import psycopg2
import pymysql

from contract.census import Census, buckets_from_rows, buckets_of
from producers.adapters.census import (
    mariadb_census,
    mariadb_census_sql,
    postgres_census,
    postgres_census_sql,
    query_poll_census,
)
from tests.producers.adapters.test_postgres import new_database

# Keys as the store spells them (fields joined with '|'): text with non-ASCII letters, numbers, composites.
KEYS = [("IZN-001", 1), ("IZN-002", 2), ("Bojonegoro-Ngasem é", 30), ("x|y", -4), ("", 0)]


def store_side(keys: list[tuple[str, int]]) -> dict:
    return buckets_of(f"{a}|{b}" for a, b in keys)


def test_census_sql_counts_keys_as_the_store_does_in_postgres_and_mariadb(postgres, mariadb):
    _database, dsn = new_database(postgres)
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE permits (code text, n integer, updated_at timestamptz DEFAULT now(), "
            "deleted boolean DEFAULT false, PRIMARY KEY (code, n))"
        )
        cur.executemany("INSERT INTO permits (code, n) VALUES (%s, %s)", KEYS)
        # Rows a query-poll adapter never reads (no cursor value) or reads as deleted (soft delete).
        cur.execute("INSERT INTO permits VALUES ('unread', 1, NULL, false), ('gone', 2, now(), true)")
    table = SimpleNamespace(schema="public", name="permits", qualified="public.permits")
    table.entity = SimpleNamespace(name="permit", key=("code", "n"))
    adapter = SimpleNamespace(
        params={"dsn": dsn}, tables={"public.permits": table}, kind="postgres_cdc", system=SimpleNamespace(system="pg")
    )
    lsn, (census,) = postgres_census(adapter)
    assert census.buckets == store_side([*KEYS, ("unread", 1), ("gone", 2)])
    assert census.position == f"{lsn:016X}-0000000000" and census.mode == "position"
    statement = postgres_census_sql("public", "permits", ("code",)).as_string(conn)
    assert '"public"."permits"' in statement and statement.count('"code"::text') == 1 and "WHERE" not in statement
    conn.close()
    polled = SimpleNamespace(
        schema=None, table="permits", name="permits", entity=table.entity, cursor="updated_at", deleted="deleted"
    )
    poll = SimpleNamespace(driver="postgres", params={"dsn": dsn}, kind="query_poll", system=adapter.system)
    poll.tables = [polled]
    mark, (census,) = query_poll_census(poll)
    assert mark is None and census.mode == "current" and census.buckets == store_side(KEYS)

    params = mariadb.params
    writer = pymysql.connect(
        host=params["host"], port=params["port"], user=params["writer_user"], password=params["writer_password"],
        database=params["database"], charset="utf8mb4", autocommit=True,
    )  # fmt: skip
    with writer.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS census_permits")
        cur.execute(
            "CREATE TABLE census_permits (code VARCHAR(40), n INT, updated_at DATETIME DEFAULT NOW(), "
            "deleted_at DATETIME NULL, PRIMARY KEY (code, n)) CHARSET utf8mb4"
        )
        cur.executemany("INSERT INTO census_permits (code, n) VALUES (%s, %s)", KEYS)
        cur.execute("INSERT INTO census_permits VALUES ('gone', 2, NOW(), NOW())")
    writer.close()

    def connect() -> pymysql.connections.Connection:
        return pymysql.connect(
            host=params["host"], port=params["port"], user=params["user"], password=params["password"],
            charset="utf8mb4",
        )  # fmt: skip

    maria = SimpleNamespace(
        _connect=connect,
        database=params["database"],
        tables={"census_permits": SimpleNamespace(name="permit", key=("code", "n"))},
        kind="mariadb_binlog",
        system=SimpleNamespace(system="maria"),
    )
    (index, pos), (census,) = mariadb_census(maria)
    assert census.buckets == store_side([*KEYS, ("gone", 2)])
    assert census.position == f"{index:08d}:{pos:010d}:999999" and index >= 1 and pos > 0
    # As query_poll counts it: without the soft-deleted row.
    with connect() as reader, reader.cursor() as cur:
        cur.execute(mariadb_census_sql(params["database"], "census_permits", ("code", "n"), "updated_at", "deleted_at"))
        assert buckets_from_rows(cur.fetchall()) == store_side(KEYS)
    # What travels on the census topic comes back the same.
    assert Census.from_bytes(census.to_bytes()).buckets == census.buckets
