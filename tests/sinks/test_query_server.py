"""The analysts' query endpoint against the real ClickHouse engine (chDB) and a real HTTP server on
loopback: every probe that reached files, the network, server paths or lifted limits is refused,
and ordinary queries still answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import pytest
import requests

from backbone.settings import load_settings
from sinks.query_server import QueryServer
from tests.helpers import QUERY_HEADERS, QUERY_TOKEN


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    run_dir = tmp_path_factory.mktemp("query")
    settings = load_settings(run_dir=run_dir, query_timeout_seconds=3, query_max_rows=1000, query_token=QUERY_TOKEN)
    writer = clickhouse_connect.get_client(dsn=settings.effective_clickhouse_dsn)
    writer.command("CREATE TABLE permits (id UInt32, status String) ENGINE = MergeTree ORDER BY id")
    writer.command("INSERT INTO permits VALUES (1, 'submitted'), (2, 'approved')")
    secret = run_dir / "pii.key"
    secret.write_text("the-pseudonymisation-key")
    reader = clickhouse_connect.get_client(dsn=settings.effective_clickhouse_dsn)
    server = QueryServer(reader, settings)
    port = server.start()
    try:
        yield f"http://127.0.0.1:{port}/", run_dir
    finally:
        server.stop()
        # chDB serves one folder per process at a time: the next module's store opens only after this.
        reader.close()
        writer.close()


def ask(url: str, sql: str) -> requests.Response:
    return requests.post(url, data=sql.encode(), headers=QUERY_HEADERS, timeout=30)


def test_a_query_needs_the_token(endpoint):
    url, run_dir = endpoint
    assert requests.post(url, data=b"SELECT 1", timeout=30).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert requests.post(url, data=b"SELECT 1", headers=wrong, timeout=30).status_code == 401
    assert requests.post(url, data=b"SELECT 1", auth=("analyst", QUERY_TOKEN), timeout=30).text == "1\n"
    assert requests.post(url, data=b"SELECT 1", headers={"X-ClickHouse-Key": QUERY_TOKEN}, timeout=30).text == "1\n"
    assert ask(url, "SELECT 1").text == "1\n"
    assert requests.get(url + "ping", timeout=30).status_code == 200


def test_ordinary_queries_answer(endpoint):
    url, _ = endpoint
    assert ask(url, "SELECT status FROM permits ORDER BY id").text == "submitted\napproved\n"
    assert ask(url, "WITH s AS (SELECT count() AS n FROM permits) SELECT n FROM s").text == "2\n"
    assert ask(url, "SELECT 1 AS one FORMAT JSONEachRow").text == '{"one":1}\n'
    assert "permits" in ask(url, "SHOW TABLES").text
    assert ask(url, "DESCRIBE permits").status_code == 200


@pytest.mark.parametrize(
    "probe",
    [
        "SELECT * FROM file('{run_dir}/pii.key', 'LineAsString')",
        "SELECT file('{run_dir}/pii.key')",
        "SELECT FILE('{run_dir}/pii.key')",
        "SELECT * FROM (SELECT file('{run_dir}/pii.key'))",
        "SELECT * FROM url('http://127.0.0.1:9/x', 'LineAsString')",
        "SELECT * FROM mysql('127.0.0.1:9', 'db', 't', 'u', 'p')",
        "SELECT * FROM postgresql('127.0.0.1:9', 'db', 't', 'u', 'p')",
        "SELECT * FROM remote('127.0.0.1:9', system.one)",
        "SELECT * FROM executable('ls', 'TSV', 'x String')",
        "SELECT * FROM merge('system', 'disks')",
        "SELECT getServerSetting('path')",
        "SELECT * FROM system.disks",
        "SELECT * FROM `system`.`tables`",
        "SELECT 'x' INTO OUTFILE '{run_dir}/written.txt'",
        "SELECT 1 SETTINGS max_result_rows = 0",
        "SELECT 1 SETTINGS max_execution_time = 0",
        "SELECT 1 SETTINGS readonly = 0",
        "INSERT INTO permits VALUES (3, 'x')",
        "DROP TABLE permits",
        "SET max_memory_usage = 1000",
    ],
)
def test_probes_are_refused_without_revealing_paths(endpoint, probe):
    url, run_dir = endpoint
    resp = ask(url, probe.format(run_dir=run_dir))
    assert resp.status_code in (400, 403), (probe, resp.status_code, resp.text)
    assert "the-pseudonymisation-key" not in resp.text
    assert str(run_dir) not in resp.text
    assert not (run_dir / "written.txt").exists()


@pytest.mark.parametrize(
    "text",
    [
        "SELECT 1; SET max_memory_usage = 1000; SELECT 1",
        "SELECT 1; SELECT file('{run_dir}/pii.key')",
        "SELECT 1; INSERT INTO permits VALUES (9, 'x'); SELECT 2",
        "SELECT ';'; DROP TABLE permits",
    ],
)
def test_multi_statement_input_runs_nothing_and_does_not_poison_the_session(endpoint, text):
    # chDB would run every statement of such a text; none of them may run.
    url, run_dir = endpoint
    resp = ask(url, text.format(run_dir=run_dir))
    assert resp.status_code == 400, resp.text
    assert "Multi-statements are not allowed" in resp.text
    assert "the-pseudonymisation-key" not in resp.text
    assert ask(url, "SELECT count() FROM permits").text == "2\n"
    assert ask(url, "SELECT getSetting('max_memory_usage') > 1000").text == "1\n"


@pytest.mark.slow
def test_limits_hold_whatever_the_query_says(endpoint):
    url, _ = endpoint
    too_many = ask(url, "SELECT number FROM numbers(5000)")
    assert too_many.status_code == 500 and "Limit for result exceeded" in too_many.text
    slow = ask(url, "SELECT sum(number) FROM numbers(100000000000)")
    assert slow.status_code == 504, slow.text
