"""The local PostgreSQL when its folder is deleted by hand (`make clean-data`) while its data lives
under /tmp (root, private folder): the next start in a folder of the same path starts afresh
instead of refusing the new password."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import psycopg2
import pytest

from devstack.postgres import LocalPostgres

pytestmark = pytest.mark.integration


def _query(dsn: str) -> int:
    with psycopg2.connect(dsn, connect_timeout=10) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        return cur.fetchone()[0]


def test_a_deleted_folder_starts_afresh_though_its_data_lived_elsewhere(tmp_path: Path) -> None:
    folder = tmp_path / "private" / "postgres"
    folder.parent.mkdir()
    folder.parent.chmod(0o700)  # the postgres user cannot reach it: data goes under /tmp when root
    first = LocalPostgres(folder)
    try:
        assert _query(first.start()) == 1
    finally:
        first.stop()
    elsewhere = first.base
    assert (elsewhere != folder) == (os.geteuid() == 0)
    shutil.rmtree(folder)  # the folder only, as `rm -rf var` does
    second = LocalPostgres(folder)
    try:
        assert _query(second.start()) == 1
        assert second.base == elsewhere
    finally:
        second.remove()
    assert not elsewhere.exists()
