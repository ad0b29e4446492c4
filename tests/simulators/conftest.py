"""Fixtures of the simulator tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest


@pytest.fixture
def chdb(tmp_path: Path) -> Iterator[Any]:
    """A ClickHouse client on an embedded chDB store of its own."""
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path}/ch")
    try:
        yield client
    finally:
        client.close()
