"""Helpers shared by the SQL source adapters (postgres_cdc, query_poll, mariadb_binlog): the settings they
share (SqlOptions, validated by pydantic; a bad value names the catalog file, field and value), database
connections from them (the password from an environment variable), table names, and rows as JSON for
dead letters."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, NonNegativeFloat, PositiveInt, field_validator
from pydantic_core import PydanticCustomError

from backbone.errors import ConfigError
from contract.catalog import Entity
from producers.adapters.options import AdapterOptions

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
DRIVERS = ("postgres", "mariadb", "mysql")


def _plain_name(value: str) -> str:
    if not _IDENT.match(value):
        raise PydanticCustomError("identifier", "use a plain SQL name (letters, digits and '_')")
    return value


Identifier = Annotated[str, AfterValidator(_plain_name)]


class SqlOptions(AdapterOptions):
    """The `adapter:` fields every SQL source adapter shares. Without `dsn_env` (PostgreSQL only),
    database, user and password_env are required (checked by connection_params)."""

    dsn_env: str | None = None
    host: str = "127.0.0.1"
    port: PositiveInt | None = None  # None: the driver's default port
    database: str | None = None
    user: str | None = None
    password_env: str | None = None
    tables: dict[str, str]
    batch_size: PositiveInt = 500
    # Seconds between censuses of the tables for reconciliation (producers/adapters/census.py); 0: none.
    census_seconds: NonNegativeFloat = 300.0

    @field_validator("tables")
    @classmethod
    def _tables_not_empty(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise PydanticCustomError("empty", "map each table to an entity of this system")
        return value


def _where(adapter: Any, name: str) -> str:
    return f"{adapter.system.catalog_file}: field 'adapter.{name}'"


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


def connection_params(adapter: Any, options: SqlOptions, driver: str) -> dict[str, Any]:
    """Connection keywords for the driver from `dsn_env` (PostgreSQL only: a libpq DSN in that
    environment variable, password included) or host/port/database/user + password_env."""
    if options.dsn_env is not None:
        if driver != "postgres":
            raise ConfigError(f"{_where(adapter, 'dsn_env')} is only for PostgreSQL; use host/port/database/user")
        return {"dsn": adapter.env_secret(options.dsn_env, "dsn_env")}
    for name in ("database", "user", "password_env"):
        if getattr(options, name) is None:
            raise ConfigError(f"{_where(adapter, name)} is missing")
    params = {
        "host": options.host,
        "port": options.port or (5432 if driver == "postgres" else 3306),
        "user": options.user,
        "password": adapter.env_secret(options.password_env, "password_env"),
    }
    params["dbname" if driver == "postgres" else "database"] = options.database
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
