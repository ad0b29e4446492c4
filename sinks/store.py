"""The analytical store: ClickHouse through clickhouse-connect, embedded (chdb://) or a server (http://)."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from backbone.errors import ConfigError, ServiceUnavailable
from backbone.settings import Settings


def read_only_settings(settings: Settings) -> dict[str, Any]:
    """Analysts' limits, then readonly=1 last: from there on the engine refuses any SETTINGS or SET
    that would change them, writes, DDL and table functions (readonly=2 would let a query lift them)."""
    return {
        "max_execution_time": settings.query_timeout_seconds,
        "max_result_rows": settings.query_max_rows,
        "result_overflow_mode": "throw",
        "max_memory_usage": settings.query_max_memory_bytes,
        "readonly": 1,
    }


def _chdb_folder(dsn: str) -> Path | None:
    """The folder of a chdb:///abs/path DSN (None for an in-memory or chdb://memory/db one)."""
    parsed = urlparse(dsn)
    location = unquote(parsed.path if not parsed.netloc else "")
    return Path(location) if location and location not in ("memory", ":memory:") else None


def _private_folder(folder: Path | None) -> None:
    """chDB's files (every stored row) readable by this user only: the folder is created 0700, and
    an existing one (made under a looser umask) is tightened to 0700."""
    if folder is None:
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.mkdir(mode=0o700, exist_ok=True)
    if stat.S_IMODE(folder.stat().st_mode) != 0o700:
        folder.chmod(0o700)


def connect(settings: Settings, reader: bool = False, portal: bool = False) -> Client:
    """The sink's client, or (reader) the query endpoint's: on a server, its own analyst user when
    BACKBONE_QUERY_CLICKHOUSE_DSN names one, so analysts' SQL never runs with the writer's grants;
    (portal) the portal's `public` user named by BACKBONE_PORTAL_CLICKHOUSE_DSN."""
    if portal and settings.portal_clickhouse_dsn:
        dsn, secret = settings.portal_clickhouse_dsn, settings.portal_clickhouse_password.get_secret_value()
    else:
        own_reader = reader and bool(settings.query_clickhouse_dsn)
        dsn = settings.query_clickhouse_dsn if own_reader else settings.effective_clickhouse_dsn
        password = settings.query_clickhouse_password if own_reader else settings.clickhouse_password
        secret = password.get_secret_value()
    scheme = urlparse(dsn).scheme
    if scheme == "chdb":
        _private_folder(_chdb_folder(dsn))
        try:
            return clickhouse_connect.get_client(dsn=dsn)
        except Exception as exc:  # chDB raises plain RuntimeErrors
            raise ServiceUnavailable(f"cannot open the embedded ClickHouse store {dsn}: {exc}") from None
    if scheme not in ("http", "https", "clickhouse", "clickhouses"):
        raise ConfigError(
            f"BACKBONE_CLICKHOUSE_DSN={dsn!r}: unsupported scheme {scheme!r}",
            hint="use chdb:///path for the embedded engine or http://user@host:8123/database for a server",
        )
    try:
        kwargs = {"password": secret} if secret else {}
        return clickhouse_connect.get_client(dsn=dsn, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any connect failure is reported the same way
        raise ServiceUnavailable(
            f"ClickHouse at {dsn} is unreachable: {exc.__class__.__name__}: {str(exc).splitlines()[0]}",
            hint="check BACKBONE_CLICKHOUSE_DSN and BACKBONE_CLICKHOUSE_PASSWORD",
        ) from None
