"""End to end on the real stack: simulator -> Kafka -> Faust processor -> Kafka -> sink -> chDB."""

from __future__ import annotations

import requests

from backbone.reference import load_regions
from producers.simulate import run_simulator
from tests.conftest import wait_for

TABLE = "licensing_permit_application"


def query(port: str, sql: str) -> str:
    resp = requests.post(f"http://127.0.0.1:{port}/", data=sql, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.text


def test_n_events_become_n_rows_enriched(pipeline_settings, stage_process):
    n = 400
    sent = run_simulator(pipeline_settings, "licensing", rate=0, count=n, serve_metrics=False)
    assert sent == n
    processor = stage_process(pipeline_settings, "processor")
    sink = stage_process(pipeline_settings, "sink")
    port = sink.env["BACKBONE_QUERY_PORT"]

    def stored() -> int:
        try:
            return int(query(port, f"SELECT count() FROM {TABLE} FINAL").strip() or 0)
        except (requests.ConnectionError, AssertionError):
            return 0

    wait_for(lambda: stored() >= n, 120, f"{n} rows in {TABLE}", alive=(processor, sink))
    assert stored() == n
    assert query(port, f"SELECT uniqExact(event_id) FROM {TABLE}").strip() == str(n)

    regions = load_regions(pipeline_settings.regions_csv)
    rows = query(port, f"SELECT village_code, village_name, kecamatan_code, kecamatan_name FROM {TABLE}")
    checked = 0
    for line in rows.strip().splitlines():
        code, village, kec_code, kec_name = line.split("\t")
        assert village == regions[code]["name"]
        assert kec_code == regions[code]["parent"]
        assert kec_name == regions[kec_code]["name"]
        checked += 1
    assert checked == n
