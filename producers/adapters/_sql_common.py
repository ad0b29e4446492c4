"""Helpers shared by the SQL source adapters (postgres_cdc, query_poll): typed `adapter:` settings that
name the catalog file and field when wrong, database connections from catalog settings (the password
from an environment variable), table names, and rows as JSON for dead letters."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from backbone.errors import ConfigError
from contract.catalog import Entity

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
DRIVERS = ("postgres", "mariadb", "mysql")


def _where(adapter: Any, name: str) -> str:
    return f"{adapter.system.catalog_file}: field 'adapter.{name}'"


def int_setting(adapter: Any, name: str, default: int, minimum: int = 0) -> int:
    value = adapter.setting(name, default, int)
    if isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{_where(adapter, name)} has value {value!r}, expected a whole number >= {minimum}")
    return value


def number_setting(adapter: Any, name: str, default: float, minimum: float = 0.0, allow_zero: bool = False) -> float:
    value = adapter.setting(name, default, (int, float))
    if isinstance(value, bool) or value < minimum or (value == 0 and not allow_zero):
        expected = f">= {minimum}" if allow_zero else "a positive number"
        raise ConfigError(f"{_where(adapter, name)} has value {value!r}, expected {expected}")
    return float(value)


def bool_setting(adapter: Any, name: str, default: bool) -> bool:
    value = adapter.setting(name, default, bool)
    return bool(value)


def identifier(adapter: Any, field: str, value: Any) -> str:
    """A plain SQL identifier (letters, digits, '_'); anything else is refused rather than quoted."""
    if not isinstance(value, str) or not _IDENT.match(value):
        raise ConfigError(
            f"{_where(adapter, field)} has value {value!r}: use a plain SQL name (letters, digits and '_')"
        )
    return value


def split_table(adapter: Any, name: Any, default_schema: str | None) -> tuple[str | None, str]:
    """'schema.table' or 'table' -> (schema or the default, table)."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{_where(adapter, 'tables')} has a table name {name!r}, expected text")
    schema, _, table = name.rpartition(".")
    if schema:
        identifier(adapter, "tables", schema)
    identifier(adapter, "tables", table)
    return (schema or default_schema), table


def entity_for(adapter: Any, table: str, value: Any) -> Entity:
    if not isinstance(value, str) or value not in adapter.entities:
        known = ", ".join(sorted(adapter.entities))
        raise ConfigError(
            f"{_where(adapter, 'tables.' + table)} has value {value!r}: not an entity of system "
            f"{adapter.system.system} (known: {known})"
        )
    return adapter.entities[value]


def connection_params(adapter: Any, driver: str) -> dict[str, Any]:
    """Connection keywords for the driver from `dsn_env` (PostgreSQL only: a libpq DSN in that
    environment variable, password included) or host/port/database/user + password_env."""
    if adapter.config.get("dsn_env") is not None:
        if driver != "postgres":
            raise ConfigError(f"{_where(adapter, 'dsn_env')} is only for PostgreSQL; use host/port/database/user")
        variable = adapter.setting("dsn_env", kind=str)
        dsn = os.environ.get(variable)
        if not dsn:
            raise ConfigError(
                f"environment variable {variable} is not set (adapter.dsn_env of {adapter.system.system})"
            )
        return {"dsn": dsn}
    default_port = 5432 if driver == "postgres" else 3306
    params = {
        "host": adapter.setting("host", "127.0.0.1", str),
        "port": int_setting(adapter, "port", default_port, minimum=1),
        "user": adapter.setting("user", kind=str),
        "password": adapter.secret("password"),
    }
    database = adapter.setting("database", kind=str)
    params["dbname" if driver == "postgres" else "database"] = database
    return params


def connect(driver: str, params: dict[str, Any], **extra: Any) -> Any:
    """A DB-API connection (psycopg2 for postgres, PyMySQL for mariadb/mysql)."""
    if driver == "postgres":
        import psycopg2

        params = dict(params)
        dsn = params.pop("dsn", None)
        return (
            psycopg2.connect(dsn, connect_timeout=10, **params, **extra)
            if dsn
            else psycopg2.connect(connect_timeout=10, **params, **extra)
        )
    import pymysql

    return pymysql.connect(connect_timeout=10, autocommit=False, charset="utf8mb4", **params, **extra)


def plain(value: Any) -> Any:
    """JSON form of a database or Avro-typed value."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, default=plain, ensure_ascii=False, sort_keys=True).encode()


def key_of(entity: Entity, record: dict[str, Any]) -> str:
    """The entity key as the processor spells it: key fields joined with '|'."""
    return "|".join(str(record[k]) for k in entity.key)


def utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
