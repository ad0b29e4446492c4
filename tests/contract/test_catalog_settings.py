"""The catalog loader's and the settings' error messages, and the CLI's one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from backbone.errors import ConfigError, InputError
from backbone.settings import PROJECT_ROOT, load_settings
from contract.catalog import load_catalog

SCHEMAS = PROJECT_ROOT / "schemas"
GOOD = """\
system: sim-licensing
department: DPMPTSP
domain: licensing
entities:
  - name: permit_application
    schema: licensing/permit_application.avsc
    key: [application_id]
"""


def write(folder: Path, text: str, name: str = "office.yaml") -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("BACKBONE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BACKBONE_CONFIG", str(tmp_path / "absent.toml"))
    return monkeypatch


# -- catalog -------------------------------------------------------------------------------------


def test_repo_catalog_loads():
    catalog = load_catalog(PROJECT_ROOT / "catalog", SCHEMAS, topic_prefix="t1.")
    system = catalog.system("sim-licensing")
    (entity,) = system.entities
    assert (system.system, system.department, system.domain) == ("sim-licensing", "DPMPTSP", "licensing")
    assert system.freshness_seconds == 60 and system.adapter == {
        "kind": "simulator",
        "simulator": "simulators.licensing:LicensingOffice",
    }
    assert entity.key == ("application_id",)
    assert (entity.cdc_topic, entity.clean_topic) == (
        "t1.cdc.licensing.permit_application",
        "t1.clean.licensing.permit_application",
    )
    assert entity.table == "licensing_permit_application"
    assert catalog.entity_for_topic(entity.clean_topic) is entity
    assert entity.payload_schema()["name"] == "PermitApplication"
    with pytest.raises(KeyError):
        catalog.entity_for_topic("cdc.licensing.nothing")
    with pytest.raises(InputError, match="no system named 'nope'.*known: .*sim-licensing"):
        catalog.system("nope")


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("system: sim-licensing\n", "", ["field 'system' is missing"]),
        ("system: sim-licensing", "system: Sim Licensing", ["field 'system'", "'Sim Licensing'"]),
        ("system: sim-licensing", "system: 42", ["field 'system'", "42", "expected a str"]),
        ("domain: licensing", "domain: Licensing-Office", ["field 'domain'", "'Licensing-Office'"]),
        ("department: DPMPTSP\n", "", ["field 'department' is missing"]),
        ("permit_application", "Permit-App", ["field 'entities[0].name'", "'Permit-App'"]),
        (
            "licensing/permit_application.avsc",
            "licensing/nope.avsc",
            ["field 'entities[0].schema'", "'licensing/nope.avsc'", "no such file"],
        ),
        ("key: [application_id]", "key: application_id", ["field 'entities[0].key'", "'application_id'", "list"]),
        ("key: [application_id]", "key: []", ["field 'entities[0].key'", "[]"]),
        ("key: [application_id]", "key: [1, 2]", ["field 'entities[0].key'", "[1, 2]"]),
        (
            "entities:\n  - name",
            "entities:\n  - 7\n  - name",
            ["office.yaml:5: field 'entities[0]' has value 7, expected a mapping"],
        ),
        ("domain: licensing", "domain: licensing: x", ["office.yaml:3: invalid YAML", "mapping values"]),
    ],
)
def test_catalog_mistakes_name_file_field_and_value(tmp_path, old, new, expected):
    assert old in GOOD
    path = write(tmp_path / "catalog", GOOD.replace(old, new, 1))
    with pytest.raises(InputError) as info:
        load_catalog(path.parent, SCHEMAS)
    message = str(info.value)
    assert message.startswith(str(path))
    for part in expected:
        assert part in message, message


def test_catalog_top_level_must_be_a_mapping(tmp_path):
    path = write(tmp_path / "catalog", "- a\n- b\n")
    with pytest.raises(InputError, match="expected a mapping at the top level, found list"):
        load_catalog(path.parent, SCHEMAS)


def test_catalog_bad_freshness_is_an_input_error(tmp_path):
    path = write(tmp_path / "catalog", GOOD + "freshness_seconds: soon\n")
    with pytest.raises(InputError, match="freshness_seconds"):
        load_catalog(path.parent, SCHEMAS)


def test_duplicate_entity_across_two_files_is_rejected(tmp_path):
    first = write(tmp_path / "catalog", GOOD, "a.yaml")
    second = write(tmp_path / "catalog", GOOD.replace("sim-licensing", "other-office"), "b.yaml")
    with pytest.raises(InputError) as info:
        load_catalog(first.parent, SCHEMAS)
    message = str(info.value)
    assert message.startswith(str(second)) and str(first) in message
    assert "'permit_application'" in message and "'licensing'" in message


def test_missing_catalog_folder(tmp_path):
    with pytest.raises(InputError, match="catalog folder .*nowhere does not exist"):
        load_catalog(tmp_path / "nowhere", SCHEMAS)


def test_payload_schema_with_invalid_json_names_the_schema_file(tmp_path):
    schemas = tmp_path / "schemas"
    (schemas / "licensing").mkdir(parents=True)
    bad = schemas / "licensing" / "permit_application.avsc"
    bad.write_text('{"type": "record",\n "name": }')
    with pytest.raises(InputError, match=f"{bad}: line 2: invalid JSON"):
        load_catalog(write(tmp_path / "catalog", GOOD).parent, schemas)


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


def test_mistakes_name_the_line_of_the_field(tmp_path):
    text = GOOD.replace("key: [application_id]", "key: [no_such_field]")
    path = write(tmp_path / "catalog", text)
    line = next(i for i, row in enumerate(text.splitlines(), start=1) if "no_such_field" in row)
    with pytest.raises(InputError) as caught:
        load_catalog(path.parent, SCHEMAS)
    assert str(caught.value).startswith(f"{path}:{line}: field 'entities[0].key'")
    assert "no_such_field not a field of permit_application.avsc" in str(caught.value)


def test_validate_reports_every_file(tmp_path):
    from contract.catalog import validate_catalog

    folder = tmp_path / "catalog"
    write(folder, GOOD)
    (folder / "broken.yaml").write_text(GOOD.replace("domain: licensing", "domain: Bad-Domain"))
    results = dict(validate_catalog(folder, SCHEMAS))
    assert results[folder / "office.yaml"] is None
    assert "field 'domain' has value 'Bad-Domain'" in results[folder / "broken.yaml"]
