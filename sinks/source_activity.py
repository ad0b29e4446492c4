"""Silent sources: backbone_source_last_change_timestamp_seconds{system}, when the system's adapter
emitted the newest change the store holds (its `ts_emitted`). The sink sees every system's changes, so it
exports it for all of them: set per stored batch, and at the sink's start from the store, so a system
that was already silent before a restart is still seen as silent. `time()` minus it is the silence the
alert BackboneSourceSilent compares with the catalog's freshness_seconds during the system's working
hours (infra/prometheus/alerts.yml, catalog_rules.yml)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from backbone import metrics
from contract.catalog import Catalog

log = logging.getLogger(__name__)


class SourceActivity:
    def __init__(self, client: Any, catalog: Catalog) -> None:
        self.system_of = {e.table: e.system for e in catalog.entities}
        self.latest: dict[str, float] = {}
        for table, system in self.system_of.items():
            try:
                newest = client.query(f"SELECT max(ts_emitted), count() FROM {table}").result_rows[0]
            except Exception as exc:  # noqa: BLE001 - a table not made yet (no event so far): nothing to say
                log.debug("no last change of %s: %s", table, exc)
                continue
            if newest[1]:
                self._set(system, newest[0])

    def _set(self, system: str, moment: datetime) -> None:
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        value = min(moment.timestamp(), datetime.now(UTC).timestamp())  # a clock ahead is not activity to come
        if value > self.latest.get(system, 0.0):
            self.latest[system] = value
            metrics.SOURCE_LAST_CHANGE.labels(system).set(value)

    def stored(self, table: str, emitted: list[datetime]) -> None:
        """A batch of `table` stored, with its rows' ts_emitted."""
        system = self.system_of.get(table)
        newest = max((t for t in emitted if t is not None), default=None)
        if system is not None and newest is not None:
            self._set(system, newest)
