"""The settings' error messages, and the CLI's one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from backbone.errors import ConfigError
from backbone.settings import PROJECT_ROOT, load_settings


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("BACKBONE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BACKBONE_CONFIG", str(tmp_path / "absent.toml"))
    return monkeypatch


# -- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("BACKBONE_TOPIC_PARTITIONS", "0"),
        ("BACKBONE_TOPIC_PARTITIONS", "abc"),
        ("BACKBONE_LOG_LEVEL", "loud"),
        ("BACKBONE_TOPIC_PREFIX", "bad prefix!"),
        ("BACKBONE_QUERY_PORT", "70000"),
    ],
)
def test_bad_setting_raises_config_error_naming_the_variable(clean_env, var, value):
    clean_env.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert f"{var}={value!r}" in str(info.value)


def test_defaults_need_no_configuration(clean_env):
    settings = load_settings()
    assert settings.topic_partitions == 4 and settings.catalog_dir == PROJECT_ROOT / "catalog"


def test_toml_config_file_is_read_and_env_wins(clean_env, tmp_path):
    toml = tmp_path / "backbone.toml"
    toml.write_text('topic_partitions = 7\nsink_group_id = "from-toml"\n')
    clean_env.setenv("BACKBONE_CONFIG", str(toml))
    settings = load_settings()
    assert (settings.topic_partitions, settings.sink_group_id) == (7, "from-toml")
    clean_env.setenv("BACKBONE_TOPIC_PARTITIONS", "3")
    assert load_settings().topic_partitions == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("topic_partitions = 0\n", "BACKBONE_TOPIC_PARTITIONS=0"),
        ("topic_partitions = \n", "cannot read settings file"),
        ("no_such_setting = 1\n", "BACKBONE_NO_SUCH_SETTING=1"),
    ],
)
def test_bad_toml_config_raises_config_error(clean_env, tmp_path, text, expected):
    toml = tmp_path / "backbone.toml"
    toml.write_text(text)
    clean_env.setenv("BACKBONE_CONFIG", str(toml))
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert expected in str(info.value)


# -- the CLI -------------------------------------------------------------------------------------


def run_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BACKBONE_") and k not in ("COLUMNS", "LINES")}
    base.update(BACKBONE_RUN_DIR=str(tmp_path / "run"), BACKBONE_CONFIG=str(tmp_path / "absent.toml"), **env)
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env=base,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


CLI_CASES = [
    (("status",), {"BACKBONE_TOPIC_PARTITIONS": "abc"}, "BACKBONE_TOPIC_PARTITIONS='abc'"),
    (("sql", "SELECT 1"), {}, "no running sink"),
]


@pytest.mark.parametrize(("args", "env", "expected"), CLI_CASES, ids=["bad-setting", "no-sink"])
def test_cli_user_error_exits_2_without_traceback(tmp_path, args, env, expected):
    result = run_cli(tmp_path, *args, **env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")
    assert expected in " ".join(result.stderr.split()), result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(("args", "env", "expected"), CLI_CASES, ids=["bad-setting", "no-sink"])
def test_cli_user_error_is_a_single_line(tmp_path, args, env, expected):
    result = run_cli(tmp_path, *args, **env)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
