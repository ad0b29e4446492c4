"""Log lines name their stage, system and event: as JSON objects for a shipper, or as text."""

from __future__ import annotations

import json
import logging

import pytest

from backbone.logs import configure


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_stage_system_and_event_id(capsys, restore_logging):
    configure("info", "json", "adapter", "pg-education")
    log = logging.getLogger("producers.adapters.test")
    log.info("stored %d rows", 3)
    log.warning("dead letter: %s", "status: 'X' is no state", extra={"event_id": "e-42"})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("a batch failed")
    log.debug("not shown at info")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["message"] for line in lines] == [
        "stored 3 rows",
        "dead letter: status: 'X' is no state",
        "a batch failed",
    ]
    assert {(line["stage"], line["system"]) for line in lines} == {("adapter", "pg-education")}
    assert [line["event_id"] for line in lines] == ["", "e-42", ""]
    assert [line["level"] for line in lines] == ["info", "warning", "error"]
    assert "ValueError: boom" in lines[2]["error"]
    assert all(line["time"].endswith("+00:00") for line in lines)


def test_text_lines_name_the_stage_and_the_system(capsys, restore_logging):
    configure("warning", "text", "sink")
    logging.getLogger("sinks.x").warning("insert failed")
    logging.getLogger("sinks.x").info("hidden")
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith("WARNING [sink] sinks.x: insert failed")


def test_the_setting_refuses_an_unknown_format():
    from backbone.errors import ConfigError
    from backbone.settings import load_settings

    with pytest.raises(ConfigError, match="BACKBONE_LOG_FORMAT='xml'"):
        load_settings(log_format="xml")
