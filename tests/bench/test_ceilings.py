"""The bench's ratio lines: each stage against the ceiling measured in the same run, and N processor
workers against one."""

from __future__ import annotations

from bench.ceilings import ratios

CEILINGS = {
    "producer_performance": {"records_per_s": 80_000.0},
    "consumer_performance": {"fetch_messages_per_s": 140_000.0},
    "chdb": {"clickhouse_connect": {"rows_per_s": 60_000.0}, "avro_confluent": {"rows_per_s": 120_000.0}},
}


def stages(workers_rate: float | None) -> dict:
    out = {
        "producer": {"events_per_s": 20_000.0},
        "processor": {"events_per_s": 3_000.0, "steady_events_per_s": 4_000.0},
        "sink": {"events_per_s": 50_000.0, "steady_events_per_s": 60_000.0},
    }
    if workers_rate is not None:
        out["processor_workers"] = {"events_per_s": workers_rate, "steady_events_per_s": workers_rate, "workers": 2}
    return out


def test_each_stage_is_held_against_its_ceiling_with_the_issues_targets():
    lines = {r["line"]: r for r in ratios(stages(None), CEILINGS)}
    assert set(lines) == {"producer", "processor", "sink_clickhouse_connect", "sink_avro"}
    assert lines["producer"]["ratio"] == 0.25 and lines["producer"]["verdict"] == "pass"
    assert lines["processor"]["rate"] == 4_000.0 and lines["processor"]["verdict"] == "short"  # 8,000/s wanted
    assert lines["sink_avro"]["ratio"] == 0.5 and lines["sink_avro"]["verdict"] == "pass"


def test_workers_are_held_against_one_worker_of_the_same_run():
    (short,) = [r for r in ratios(stages(6_000.0), CEILINGS) if r["line"] == "processor_workers"]
    assert short["ceiling_rate"] == 4_000.0 and short["ratio"] == 1.5 and short["verdict"] == "short"
    (met,) = [r for r in ratios(stages(6_800.0), CEILINGS) if r["line"] == "processor_workers"]
    assert met["stage"] == "processor, 2 workers" and met["verdict"] == "pass"


def test_the_processor_is_set_against_the_quix_streams_peer_of_the_same_run():
    with_peer = {**stages(None), "quix_peer": {"events_per_s": 3_000.0, "steady_events_per_s": 2_000.0}}
    (line,) = [r for r in ratios(with_peer, CEILINGS) if r["line"] == "processor_vs_quix"]
    assert line["rate"] == 4_000.0 and line["ceiling_rate"] == 2_000.0 and line["ratio"] == 2.0
    assert line["ceiling"] == "Quix Streams app, same job" and line["verdict"] is None
