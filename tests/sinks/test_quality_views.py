"""The data-quality scorecard, known answers: the scripted run of tests/sinks/quality_store.py in a
fresh chDB store, every figure of the dq_* views equal to the one computed by hand there."""

from __future__ import annotations

import re

import clickhouse_connect
import pytest

from sinks import quality_views
from tests.sinks import quality_store as run
from tests.sinks.quality_store import D1, EXPECTED


@pytest.fixture(scope="module")
def dsn(tmp_path_factory):
    return f"chdb://{tmp_path_factory.mktemp('quality')}/ch"


@pytest.fixture(scope="module")
def client(dsn):
    c = clickhouse_connect.get_client(dsn=dsn)
    run.build(c)
    yield c
    c.close()


def rows(client, sql):
    return client.query(sql).result_rows


def test_received_rejected_flagged_and_timely_per_entity_and_day(client):
    got = {
        (s, e, d): tuple(r)
        for s, e, d, *r in rows(
            client, "SELECT system, entity, day, received, stored, rejected, flagged, timely FROM dq_entity_daily"
        )
    }
    assert got == EXPECTED["entity_daily"]
    ratio = rows(
        client,
        f"SELECT timeliness_ratio FROM dq_entity_daily WHERE entity = 'permit_application' AND day = '{D1}'",
    )
    assert ratio == [(0.6,)]


def test_completeness_of_each_nullable_field(client):
    got = rows(
        client,
        "SELECT field, records, non_null, completeness_ratio FROM dq_completeness_daily "
        f"WHERE system = 'sim-licensing' AND day = '{D1}' ORDER BY field",
    )
    assert {f: (nn, ratio) for f, records, nn, ratio in got} == EXPECTED["completeness_d1"]
    assert {records for _, records, _, _ in got} == {4}


def test_failures_per_rule_worst_first(client):
    got = rows(
        client,
        "SELECT severity, rule, sum(records) AS n FROM dq_rule_daily WHERE system = 'sim-licensing' "
        f"AND day > today() - {quality_views.WINDOW_DAYS} GROUP BY severity, rule ORDER BY n DESC, rule",
    )
    assert {(s, r): n for s, r, n in got} == EXPECTED["rules"]
    assert got[0][:2] == ("flag", "investment_value:max")


def test_duplicates_dropped(client):
    got = rows(
        client,
        "SELECT day, rows_stored, changes, duplicates_dropped FROM dq_duplicates_daily "
        "WHERE entity = 'permit_application'",
    )
    assert {d: tuple(r) for d, *r in got} == EXPECTED["duplicates"]


def test_one_score_per_system(client):
    got = {
        r[0]: tuple(r[1:])
        for r in rows(
            client,
            "SELECT system, received, stored, rejected, flagged, validity, flag_free, timeliness, completeness, "
            "score FROM dq_scorecard",
        )
    }
    assert len(got) == 7  # every catalog system, silent ones too
    for system, expected in EXPECTED["scorecard"].items():
        assert got[system] == expected, system
    comment = rows(client, "SELECT comment FROM system.tables WHERE name = 'dq_scorecard'")[0][0]
    assert "score = 100 * (0.4 * validity + 0.3 * flag_free" in comment


def test_migration_is_idempotent_and_counts_old_rows_once(client):
    assert run.migrate(client, run.catalog()) == []
    before = rows(client, "SELECT sum(n) FROM dq_daily_counts")
    assert run.migrate(client, run.catalog()) == []
    assert rows(client, "SELECT sum(n) FROM dq_daily_counts") == before
    empty = run.catalog()
    empty.systems = []
    assert run.migrate(client, empty) == []  # a catalog without entities: nothing to score, no error


def test_gauges_export_the_scorecard(client, dsn):
    from prometheus_client import REGISTRY

    from sinks.quality_metrics import QualityGauges

    def sample(name, **labels):
        return REGISTRY.get_sample_value(name, labels)

    # The sink's way: a client of its own (a second one on the same folder), refreshed in a thread.
    own = clickhouse_connect.get_client(dsn=dsn)
    gauges = QualityGauges(own, interval=60)
    gauges.start()
    try:
        assert gauges.refreshed.wait(30), "the gauges were not refreshed"
    finally:
        gauges.stop()
    assert sample("backbone_dq_score", system="sim-licensing") == 61.8
    assert sample("backbone_dq_score", system="sim-health") == 0.0
    assert sample("backbone_dq_score", system="sim-education") is None  # nothing received: no score
    assert sample("backbone_dq_validity_ratio", system="sim-licensing") == 0.6667
    # applicant_phone: 3 of 4 on D1, 1 of 1 on D2
    assert (
        sample(
            "backbone_dq_completeness_ratio",
            system="sim-licensing",
            entity="permit_application",
            field="applicant_phone",
        )
        == 0.8
    )
    assert sample("backbone_dq_timeliness_ratio", system="sim-licensing", entity="permit_application") == 4 / 6


def test_the_scorecard_reads_counters_not_change_logs(client):
    """What keeps it fast on millions of rows: every view but dq_duplicates_daily reads the daily
    counters and dead_letters only."""
    from sinks.quality_metrics import QUERIES

    for sql in ["SELECT * FROM dq_rule_daily", *QUERIES.values()]:
        plan = "\n".join(r[0] for r in rows(client, f"EXPLAIN {sql}"))
        read = set(re.findall(r"ReadFromMergeTree \(\w+\.(\w+)\)", plan))
        assert read and read <= {"dq_daily_counts", "dead_letters"}, (sql, read)
