"""Writes simulated changes into a real MariaDB table, the way a departmental application would: the
demo's simulated systems change rows here and the binlog adapter captures them.

    writer = MariaDbSourceWriter(params, entity)   # params as LocalMariaDB.start() returns them
    writer.create_table()
    for change in LicensingOffice(villages).changes():
        writer.apply(change)                         # c: INSERT, u: UPDATE by key, d: DELETE

The table is derived from the entity's payload schema, one column per field:
decimal -> DECIMAL(p,s) (DECIMAL(18,2) when the schema gives none), timestamp-millis -> DATETIME(3)
holding UTC, timestamp-micros -> DATETIME(6), date -> DATE, enum and key strings -> VARCHAR(255),
other strings -> TEXT, int -> INT, long -> BIGINT, boolean -> BOOLEAN, float/double -> FLOAT/DOUBLE;
nullable fields are NULL, the others NOT NULL; the entity key is the primary key. A table kept from
before the schema evolved gets the columns of its new optional fields."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pymysql

from backbone.errors import ConfigError
from contract.catalog import Entity
from producers.emitter import Change


def _column_type(avro_type: Any, is_key: bool) -> tuple[str, bool]:
    """(MariaDB type, nullable) of one payload field."""
    nullable = isinstance(avro_type, list) and "null" in avro_type
    if isinstance(avro_type, list):
        rest = [t for t in avro_type if t != "null"]
        if len(rest) != 1:
            raise ConfigError(f"union type {avro_type!r} has no MariaDB column type")
        avro_type = rest[0]
    base = avro_type.get("type") if isinstance(avro_type, dict) else avro_type
    logical = avro_type.get("logicalType") if isinstance(avro_type, dict) else None
    if logical == "decimal":
        return f"DECIMAL({int(avro_type.get('precision', 18))},{int(avro_type.get('scale', 2))})", nullable
    if logical == "timestamp-millis":
        return "DATETIME(3)", nullable
    if logical == "timestamp-micros":
        return "DATETIME(6)", nullable
    if logical == "date":
        return "DATE", nullable
    simple = {"int": "INT", "long": "BIGINT", "boolean": "BOOLEAN", "float": "FLOAT", "double": "DOUBLE"}
    if base in simple:
        return simple[base], nullable
    if base == "enum":
        return "VARCHAR(255)", nullable
    if base == "string":
        return ("VARCHAR(255)" if is_key else "TEXT"), nullable
    raise ConfigError(f"Avro type {avro_type!r} has no MariaDB column type")


def _columns(entity: Entity) -> list[tuple[str, bool]]:
    """(column definition, nullable) per payload field."""
    columns = []
    for f in entity.payload_schema()["fields"]:
        sql_type, nullable = _column_type(f["type"], f["name"] in entity.key)
        columns.append((f"`{f['name']}` {sql_type} {'NULL' if nullable else 'NOT NULL'}", nullable))
    return columns


def create_table_sql(entity: Entity, table: str | None = None) -> str:
    columns = [column for column, _ in _columns(entity)]
    key = ", ".join(f"`{k}`" for k in entity.key)
    body = ",\n  ".join([*columns, f"PRIMARY KEY ({key})"])
    return f"CREATE TABLE IF NOT EXISTS `{table or entity.name}` (\n  {body}\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"


def add_columns_sql(entity: Entity, table: str | None = None) -> list[str]:
    """For a table kept from before the schema evolved: the columns of its optional fields, where missing
    (a compatible evolution only adds optional fields)."""
    return [
        f"ALTER TABLE `{table or entity.name}` ADD COLUMN IF NOT EXISTS {column}"
        for column, nullable in _columns(entity)
        if nullable
    ]


def _sql_value(value: Any) -> Any:
    if isinstance(value, datetime):
        # DATETIME holds UTC wall-clock time.
        return (value.astimezone(UTC) if value.tzinfo else value).replace(tzinfo=None)
    return value


class MariaDbSourceWriter:
    """Applies Change objects of one entity to its table; commits each change or each batch."""

    def __init__(self, params: dict[str, Any], entity: Entity, table: str | None = None) -> None:
        self.entity = entity
        self.table = table or entity.name
        self.fields = [f["name"] for f in entity.payload_schema()["fields"]]
        self.key = list(entity.key)
        self.connection = pymysql.connect(
            host=params.get("host", "127.0.0.1"),
            port=int(params["port"]),
            user=params.get("writer_user") or params["user"],
            password=params.get("writer_password") or params["password"],
            database=params["database"],
            charset="utf8mb4",
            autocommit=False,
            connect_timeout=10,
        )
        with self.connection.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
        cols = ", ".join(f"`{n}`" for n in self.fields)
        marks = ", ".join(["%s"] * len(self.fields))
        where = " AND ".join(f"`{k}` = %s" for k in self.key)
        self.non_key = [n for n in self.fields if n not in self.key]
        sets = ", ".join(f"`{n}` = %s" for n in self.non_key)
        self._insert = f"INSERT INTO `{self.table}` ({cols}) VALUES ({marks})"
        self._upsert = (
            self._insert + " ON DUPLICATE KEY UPDATE " + ", ".join(f"`{n}` = VALUES(`{n}`)" for n in self.non_key)
        )
        self._update = f"UPDATE `{self.table}` SET {sets} WHERE {where}"
        self._delete = f"DELETE FROM `{self.table}` WHERE {where}"
        self.applied = 0

    def create_table(self) -> None:
        with self.connection.cursor() as cur:
            cur.execute(create_table_sql(self.entity, self.table))
            for statement in add_columns_sql(self.entity, self.table):
                cur.execute(statement)
        self.connection.commit()

    def _key_values(self, row: dict[str, Any]) -> list[Any]:
        return [_sql_value(row[k]) for k in self.key]

    def _execute(self, cur: Any, change: Change) -> None:
        if change.op == "c":
            cur.execute(self._insert, [_sql_value(change.after.get(n)) for n in self.fields])
        elif change.op == "r":
            cur.execute(self._upsert, [_sql_value(change.after.get(n)) for n in self.fields])
        elif change.op == "u":
            values = [_sql_value(change.after.get(n)) for n in self.non_key]
            cur.execute(self._update, values + self._key_values(change.after))
        elif change.op == "d":
            cur.execute(self._delete, self._key_values(change.before or change.after))
        else:
            raise ValueError(f"change op {change.op!r} is not one of c, u, d, r")

    def apply(self, change: Change) -> None:
        """One change in its own transaction."""
        self.apply_many([change])

    def apply_many(self, changes: Iterable[Change], batch: int = 1) -> int:
        """Changes in order, committing every `batch` changes (and at the end); returns how many."""
        done = pending = 0
        try:
            with self.connection.cursor() as cur:
                for change in changes:
                    self._execute(cur, change)
                    done += 1
                    pending += 1
                    if pending >= batch:
                        self.connection.commit()
                        pending = 0
            if pending:
                self.connection.commit()
        except BaseException:
            self.connection.rollback()
            raise
        self.applied += done
        return done

    def close(self) -> None:
        try:
            self.connection.close()
        except pymysql.MySQLError:
            pass
