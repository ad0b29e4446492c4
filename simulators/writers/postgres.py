"""Writers that play a departmental system's own database: they apply the domain simulators' changes
(producers.<domain>.<Simulator>.changes()) to a real database, so that the source adapters capture
them the way they would in production. One class per database engine.

PostgresSourceWriter (PostgreSQL, psycopg2):
  - `create_table()` creates the entity's table from its payload schema: one column per field, named as
    the field, primary key = the catalog entity's key; an existing table gets the columns of new
    optional fields. Types: decimal -> numeric(precision, scale)
    (numeric(18,2) for Rupiah), timestamp-millis/-micros -> timestamptz, date -> date, enum/string -> text,
    int -> integer, long -> bigint, boolean -> boolean, float -> real, double -> double precision,
    bytes -> bytea. Nullable (["null", ...]) fields are NULL-able, the others NOT NULL.
  - `apply(change)`: c -> INSERT, u -> UPDATE ... WHERE <key>, d -> DELETE ... WHERE <key>, r (a
    simulator's snapshot row) -> INSERT ... ON CONFLICT (<key>) DO UPDATE. Committed at once.
  - `apply_many(changes, batch=...)` commits every `batch` changes (one transaction each).
Values are the Avro-typed Python values the simulators produce (Decimal, aware datetime, date, ...),
which psycopg2 passes as they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from contract.catalog import Entity
from producers.emitter import Change


def _postgres_type(avro_type: Any) -> tuple[str, bool]:
    """(column type, nullable) for an Avro field type."""
    nullable = False
    if isinstance(avro_type, list):
        rest = [t for t in avro_type if t != "null"]
        nullable = "null" in avro_type
        if len(rest) != 1:
            return "text", nullable
        avro_type = rest[0]
    logical = avro_type.get("logicalType") if isinstance(avro_type, dict) else None
    base = avro_type.get("type") if isinstance(avro_type, dict) else avro_type
    if logical == "decimal":
        return f"numeric({int(avro_type.get('precision', 18))},{int(avro_type.get('scale', 0))})", nullable
    if logical in ("timestamp-millis", "timestamp-micros"):
        return "timestamptz", nullable
    if logical == "date":
        return "date", nullable
    return {
        "string": "text",
        "enum": "text",
        "int": "integer",
        "long": "bigint",
        "boolean": "boolean",
        "float": "real",
        "double": "double precision",
        "bytes": "bytea",
    }.get(base, "text"), nullable


class PostgresSourceWriter:
    """A simulated departmental system's PostgreSQL table for one catalog entity."""

    def __init__(self, dsn: str, entity: Entity, table: str | None = None, schema: str = "public") -> None:
        import psycopg2
        from psycopg2 import sql

        self._sql = sql
        self.entity = entity
        self.payload = entity.payload_schema()
        self.fields = [f["name"] for f in self.payload["fields"]]
        self.key = list(entity.key)
        self.table = table or entity.name
        self.schema = schema
        self.ident = sql.Identifier(schema, self.table)
        self.conn = psycopg2.connect(dsn, application_name=f"source-writer-{entity.system}")
        self.applied = 0

    def create_table(self, replica_identity_full: bool = False) -> None:
        sql = self._sql
        columns, optional = [], []
        for f in self.payload["fields"]:
            kind, nullable = _postgres_type(f["type"])
            column = sql.SQL("{} {}{}").format(
                sql.Identifier(f["name"]), sql.SQL(kind), sql.SQL("" if nullable else " NOT NULL")
            )
            columns.append(column)
            if nullable:
                optional.append(column)
        columns.append(sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, self.key))))
        with self.conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(self.ident, sql.SQL(", ").join(columns)))
            # A table kept from before a schema evolved gets its new optional columns, as the office's
            # application would on upgrade (a compatible evolution only adds optional fields).
            for column in optional:
                cur.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {}").format(self.ident, column))
            if replica_identity_full:
                cur.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(self.ident))
        self.conn.commit()

    def _where(self) -> Any:
        sql = self._sql
        return sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in self.key)

    def _execute(self, change: Change) -> None:
        sql = self._sql
        with self.conn.cursor() as cur:
            if change.op in ("c", "r"):
                record = change.after or {}
                names = [n for n in self.fields if n in record]
                statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                    self.ident,
                    sql.SQL(", ").join(map(sql.Identifier, names)),
                    sql.SQL(", ").join(sql.Placeholder() * len(names)),
                )
                if change.op == "r":
                    updates = [n for n in names if n not in self.key]
                    statement += sql.SQL(" ON CONFLICT ({}) DO UPDATE SET {}").format(
                        sql.SQL(", ").join(map(sql.Identifier, self.key)),
                        sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in updates),
                    )
                cur.execute(statement, [record[n] for n in names])
            elif change.op == "u":
                record = change.after or {}
                old = change.before or record
                names = [n for n in self.fields if n in record]
                cur.execute(
                    sql.SQL("UPDATE {} SET {} WHERE {}").format(
                        self.ident,
                        sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(n)) for n in names),
                        self._where(),
                    ),
                    [record[n] for n in names] + [old[k] for k in self.key],
                )
            elif change.op == "d":
                old = change.before or {}
                cur.execute(
                    sql.SQL("DELETE FROM {} WHERE {}").format(self.ident, self._where()), [old[k] for k in self.key]
                )
            else:
                raise ValueError(f"unknown op {change.op!r}")
        self.applied += 1

    def apply(self, change: Change) -> None:
        """Apply one change in its own transaction."""
        try:
            self._execute(change)
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise

    def apply_many(self, changes: Iterable[Change], batch: int = 1) -> int:
        """Apply changes, committing every `batch` of them; returns how many were applied."""
        done = 0
        try:
            for change in changes:
                self._execute(change)
                done += 1
                if done % batch == 0:
                    self.conn.commit()
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        return done

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> PostgresSourceWriter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
