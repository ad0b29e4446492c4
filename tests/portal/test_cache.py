"""The portal's dataset cache against the real store: every dataset is fetched before the portal
opens its port (so no first visitor waits for the store), and each is kept fresh in the background
before its lifetime ends, with no request asking: fetched again when public_freshness shows a new
state of its sources (or it reads a KPI table), else revalidated without a query."""

from __future__ import annotations

from datetime import UTC, datetime

import requests

from portal.app import STORE, make_app
from portal.datasets import DATASETS
from tests.helpers import wait_for
from tests.portal.conftest import PortalThread

KEYS = {(d.slug,) for d in DATASETS} | {("freshness",)}


def restore_a_ward(client) -> None:
    """A hospital ward stored again as it is (a new version, the same figures): a new state of the
    bed occupancy system for public_freshness, no figure of another test changed."""
    answer = client.query("SELECT * FROM health_bed_occupancy_state FINAL ORDER BY entity_key LIMIT 1")
    names, row = list(answer.column_names), list(answer.result_rows[0])
    row[names.index("version")] += 1_000_000
    row[names.index("ts_stored")] = datetime.now(UTC)
    client.insert("health_bed_occupancy_state", [row], column_names=names)


def test_every_dataset_is_fetched_before_the_portal_opens_and_kept_fresh_without_requests(published):
    app = make_app(published.settings)
    store = app[STORE]
    portal = PortalThread(published.settings, app)
    url = portal.start()  # returns once the port is open
    try:
        cache = store._cache  # noqa: SLF001 - what the portal holds, read without a request
        first = dict(cache)
        assert set(first) == KEYS and all(n >= 1 for n in store.fetches.values())
        assert set(store.fetches) == {d.slug for d in DATASETS}

        # Lifetime 1 s: every answer is renewed before it ends, by the portal alone; a dataset whose
        # sources did not change is revalidated without a query, one over a KPI table is fetched again.
        wait_for(lambda: all(cache[k][0] > first[k][0] for k in KEYS), 30, "every answer renewed in the background")
        wait_for(lambda: store.fetches["licensing-decided-this-month"] >= 2, 30, "the KPI dataset fetched again")
        assert store.fetches["health-beds"] == 1 and store.fetches["complaints"] == 1

        restore_a_ward(published.client)
        wait_for(lambda: store.fetches["health-beds"] >= 2, 30, "the bed dataset fetched after its source changed")
        assert store.fetches["complaints"] == 1
        assert requests.get(url + "/", timeout=30).status_code == 200
    finally:
        portal.stop()
