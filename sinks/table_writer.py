"""The tables of the entities: made and evolved through the migrations' functions, rows inserted as
columns into the change log and, with their versions, into the state table."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from backbone import metrics
from sinks import ddl, migrations

# A batch of history (a backfill of 20 years) spans up to one partition per month. ClickHouse's
# guard (default 100 partitions per INSERT block) is lifted for the sink's own inserts rather than
# splitting each insert by month: either way the insert makes one part per month it touches, so
# splitting would only add round trips and cut one batch into several inserts. The guard is there
# to catch a too fine PARTITION BY key; ours is monthly, and an insert holds at most
# sink_batch_size rows, so at most that many parts.
INSERT_SETTINGS = {"max_partitions_per_insert_block": 0}


class TableWriter:
    """Creates and evolves the tables, and turns decoded records into columns."""

    def __init__(self, client: Any, dead_letter_retention_days: int = 28) -> None:
        self.client = client
        self.layouts: dict[tuple[str, int], ddl.TableLayout] = {}
        migrations.ensure_dead_letters(client, dead_letter_retention_days)

    def layout(self, table: str, schema_id: int, clean_schema: dict[str, Any], doc: str = "") -> ddl.TableLayout:
        layout = self.layouts.get((table, schema_id))
        if layout is not None:
            return layout
        layout = ddl.layout_for(table, clean_schema, doc)
        existing = migrations.ensure_entity_tables(self.client, layout)
        layout = dataclasses.replace(layout, stored={**dict(layout.columns), **existing})
        self.layouts[(table, schema_id)] = layout
        return layout

    def insert(self, table: str, names: list[str], columns: list[list[Any]]) -> None:
        started = time.perf_counter()
        self.client.insert(table, columns, column_names=names, column_oriented=True, settings=INSERT_SETTINGS)
        metrics.SINK_INSERT_SECONDS.labels(table).observe(time.perf_counter() - started)
        metrics.SINK_BATCH_SIZE.labels(table).observe(len(columns[0]) if columns else 0)

    def insert_state(self, table: str, names: list[str], columns: list[list[Any]], kind: str) -> None:
        """The same rows into the entity's state table, each with its version: one columnar insert."""
        versions = ddl.version_column(kind, names, columns)
        state = table + ddl.STATE_SUFFIX
        self.client.insert(state, [*columns, versions], column_names=[*names, "version"], column_oriented=True)
