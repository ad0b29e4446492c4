"""Bad settings give one clear line and exit code 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from backbone.errors import ConfigError
from backbone.net import free_port
from devstack.stack import find_java


def run_cli(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BACKBONE_")}
    environment.update({"BACKBONE_RUN_DIR": str(tmp_path), "COLUMNS": "300", **env})
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], capture_output=True, text=True, env=environment, timeout=60
    )


@pytest.mark.slow
@pytest.mark.parametrize("command", [["sink"], ["processor"], ["simulate", "all"], ["init"]])
def test_unreachable_broker_is_one_line(tmp_path, command):
    dead = f"127.0.0.1:{free_port()}"
    result = run_cli(
        tmp_path,
        *command,
        BACKBONE_KAFKA_BOOTSTRAP=dead,
        BACKBONE_REGISTRY_URL=f"http://127.0.0.1:{free_port()}/apis/ccompat/v7",
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"error: Kafka at {dead} is unreachable: connection refused "
        "(check BACKBONE_KAFKA_BOOTSTRAP and that the broker runs)"
    ]
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.slow
def test_wrong_dsn_is_one_line(tmp_path):
    result = run_cli(tmp_path, "sink", BACKBONE_CLICKHOUSE_DSN="mysql://x")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: BACKBONE_CLICKHOUSE_DSN='mysql://x': unsupported scheme 'mysql' (use chdb:///path for the embedded "
        "engine or http://user@host:8123/database for a server)"
    ]


def test_missing_java_names_the_setting(tmp_path):
    with pytest.raises(ConfigError, match="BACKBONE_REGISTRY_JAVA_HOME=.*needs Java 21 or newer, found no java"):
        find_java(21, tmp_path / "no-jdk", "BACKBONE_REGISTRY_JAVA_HOME")
