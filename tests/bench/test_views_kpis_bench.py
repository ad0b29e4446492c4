"""The generator of bench.ready_views (a small history in chDB: shapes, versions, dimensions) and the
quantiles of bench.kpis."""

from __future__ import annotations

from pathlib import Path

import clickhouse_connect
import pytest

from backbone.settings import PROJECT_ROOT
from bench import kpis, ready_views
from contract.catalog import load_catalog
from sinks import migrations


def test_quantiles_nearest_rank() -> None:
    assert kpis.quantiles([]) == {"p50": None, "p99": None}
    assert kpis.quantiles([float(x) for x in range(100, 0, -1)]) == {"p50": 51.0, "p99": 100.0}


def test_literal_escapes_quotes_and_backslashes() -> None:
    assert ready_views.literal("Ngraho's \\ x") == "'Ngraho\\'s \\\\ x'"


@pytest.mark.slow
def test_fill_makes_versions_that_final_collapses(tmp_path: Path) -> None:
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path}/ch")
    catalog = load_catalog(PROJECT_ROOT / "catalog", PROJECT_ROOT / "schemas")
    migrations.migrate(client, catalog)
    client.command("SYSTEM STOP MERGES")  # every version stays, so the counts below are exact
    counts = ready_views.fill(client, catalog, 150_000)
    changes = sum(c["changes"] for c in counts.values())
    assert abs(changes - 150_000) < 1000
    for table, c in counts.items():
        # every change in the change log and in the state table; FINAL leaves one row per entity
        # (less the deleted ones)
        assert client.command(f"SELECT count() FROM `{table}`") == c["changes"]
        assert client.command(f"SELECT count() FROM `{table}_state`") == c["changes"]
        alive = client.command(f"SELECT count() FROM `{table}_state` FINAL")
        assert 0.97 * c["entities"] <= alive <= c["entities"], table
        assert client.command(f"SELECT uniqExact(event_id) FROM `{table}`") == c["changes"]
    # a decided permit has its decision time, an open one has none; villages come from the dimension
    assert (
        client.command(
            "SELECT countIf((status IN ('APPROVED', 'REJECTED')) != (decided_at IS NOT NULL)) "
            "FROM licensing_permit_application_state FINAL"
        )
        == 0
    )
    assert (
        client.command(
            "SELECT count() FROM village_finance_village_spending_state WHERE village_code NOT IN "
            "(SELECT village_code FROM dim_village WHERE village_type = 'desa')"
        )
        == 0
    )
    assert client.command("SELECT count() FROM dim_kecamatan") == 28
