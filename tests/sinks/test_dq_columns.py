"""Migration 8 on an embedded store: dq_flags (Array(LowCardinality(String))) in every change log and
state table, and `rule` in dead_letters, added to a store made before them; the sink stores both."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import clickhouse_connect

from backbone.settings import PROJECT_ROOT
from contract.catalog import load_catalog
from sinks import ddl, migrations

CATALOG = load_catalog(PROJECT_ROOT / "catalog", PROJECT_ROOT / "schemas")


def column_types(client, table: str) -> dict[str, str]:  # noqa: ANN001
    return {name: type_ for name, (type_, _) in migrations._columns(client, table).items()}  # noqa: SLF001


def test_a_store_from_before_the_flags_gains_them_and_dead_letters_their_rule(tmp_path: Path):
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path}/ch")
    try:
        # The store as it was: a change log and state table without dq_flags, dead letters without rule.
        entity = CATALOG.entity_for_topic("cdc.licensing.permit_application")
        layout = migrations.entity_layout(entity)
        old = replace(layout, columns=[c for c in layout.columns if c[0] != "dq_flags"])
        client.command(ddl.create_table_sql(old))
        client.command(ddl.create_state_table_sql(old))
        old_letters = "\n".join(line for line in ddl.dead_letters_ddl(28).splitlines() if "rule Low" not in line)
        client.command(old_letters)
        tables = [entity.table]
        assert "dq_flags" not in column_types(client, entity.table)
        assert "rule" not in column_types(client, ddl.DEAD_LETTERS_TABLE)

        applied = migrations.migrate(client, CATALOG)
        assert "dead letter rule" in applied and f"dq flags {tables[0]}" in applied
        for table in tables:
            for name in (table, table + ddl.STATE_SUFFIX):
                assert column_types(client, name)["dq_flags"] == "Array(LowCardinality(String))", name
        assert column_types(client, ddl.DEAD_LETTERS_TABLE)["rule"] == "LowCardinality(String)"
        assert "rule" in column_types(client, ddl.DEAD_LETTERS_MASKED_VIEW)
        assert not [a for a in migrations.migrate(client, CATALOG) if "dq flags" in a or "rule" in a]
    finally:
        client.close()
