"""The data-quality scorecard as Prometheus gauges, refreshed by the sink (which owns the store) every
BACKBONE_QUALITY_REFRESH_SECONDS from the dq_* views (sinks/quality_views.py): three small queries
over the daily counters, never per event. Figures are over the scorecard's window (the last
WINDOW_DAYS local days); a series whose system, entity or field is no longer there is removed."""

from __future__ import annotations

import logging
import threading
from typing import Any

from prometheus_client import Gauge

from sinks.quality_views import TZ, WINDOW_DAYS

log = logging.getLogger(__name__)

SCORE = Gauge("backbone_dq_score", "Data-quality score of a system, 0-100 (dq_scorecard)", ["system"])
VALIDITY = Gauge(
    "backbone_dq_validity_ratio", "Share of a system's received records that were stored (not rejected)", ["system"]
)
COMPLETENESS = Gauge(
    "backbone_dq_completeness_ratio",
    "Share of stored records (not deleted) where the nullable field is not NULL",
    ["system", "entity", "field"],
)
TIMELINESS = Gauge(
    "backbone_dq_timeliness_ratio",
    "Share of stored records stored within the catalog's freshness_seconds of their source time",
    ["system", "entity"],
)

WINDOW = f"day > toDate(now(), {TZ}) - {WINDOW_DAYS}"
QUERIES = {
    "score": "SELECT system, score, validity FROM dq_scorecard",
    "completeness": (
        "SELECT system, entity, field, sum(non_null) / sum(records) FROM dq_completeness_daily "
        f"WHERE {WINDOW} GROUP BY system, entity, field HAVING sum(records) > 0"
    ),
    "timeliness": (
        "SELECT system, entity, sum(timely) / sum(stored) FROM dq_entity_daily "
        f"WHERE {WINDOW} GROUP BY system, entity HAVING sum(stored) > 0"
    ),
}


class QualityGauges:
    """Refreshes the gauges from the store in a thread of its own (own client: a clickhouse-connect
    client is not shared between threads)."""

    def __init__(self, client: Any, interval: float) -> None:
        self.client = client
        self.interval = interval
        self.stopping = threading.Event()
        self.refreshed = threading.Event()  # set after each successful refresh (tests wait on it)
        self._thread: threading.Thread | None = None
        self._series: dict[Gauge, set[tuple[str, ...]]] = {
            g: set() for g in (SCORE, VALIDITY, COMPLETENESS, TIMELINESS)
        }

    def refresh(self) -> None:
        score = self.client.query(QUERIES["score"]).result_rows
        self._set(SCORE, [((s,), v) for s, v, _ in score])
        self._set(VALIDITY, [((s,), v) for s, _, v in score])
        self._set(
            COMPLETENESS, [((s, e, f), v) for s, e, f, v in self.client.query(QUERIES["completeness"]).result_rows]
        )
        self._set(TIMELINESS, [((s, e), v) for s, e, v in self.client.query(QUERIES["timeliness"]).result_rows])
        self.refreshed.set()

    def _set(self, gauge: Gauge, values: list[tuple[tuple[str, ...], float | None]]) -> None:
        """The gauge's series are exactly these (a NULL figure, e.g. a silent system's score: no series)."""
        current = {labels: v for labels, v in values if v is not None}
        for labels in self._series[gauge] - current.keys():
            gauge.remove(*labels)
        for labels, value in current.items():
            gauge.labels(*labels).set(float(value))
        self._series[gauge] = set(current)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001 - the gauges are best effort; the sink goes on
                log.warning("data-quality gauges not refreshed: %s", str(exc).splitlines()[0] if str(exc) else exc)
            self.stopping.wait(self.interval)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="dq-gauges", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.client.close()
