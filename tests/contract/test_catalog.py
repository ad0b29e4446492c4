"""The catalog loader's error messages: each names the file, line, field and value."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from backbone.errors import InputError
from backbone.settings import PROJECT_ROOT
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


def test_adapter_lines_name_each_adapter_setting(tmp_path):
    text = GOOD.replace("entities:", "adapter:\n  kind: file_drop\n  tables:\n    apps: permit_application\nentities:")
    system = load_catalog(write(tmp_path / "catalog", text).parent, SCHEMAS).system("sim-licensing")
    assert system.adapter == {"kind": "file_drop", "tables": {"apps": "permit_application"}}
    assert system.adapter_lines == {"kind": 5, "tables": 6, "tables.apps": 7}
    assert system == dataclasses.replace(system, adapter_lines={})  # lines are not part of equality


def test_entity_without_key_is_named_missing(tmp_path):
    path = write(tmp_path / "catalog", GOOD.replace("    key: [application_id]\n", ""))
    with pytest.raises(InputError) as caught:
        load_catalog(path.parent, SCHEMAS)
    assert str(caught.value) == f"{path}:5: field 'entities[0].key' is missing"


def test_pseudonym_scope_is_the_domain_unless_the_catalog_names_one(tmp_path):
    (entity,) = load_catalog(PROJECT_ROOT / "catalog", SCHEMAS).system("sim-licensing").entities
    assert entity.scope == "licensing"
    write(tmp_path, GOOD + "pseudonym_scope: population\n")
    system = load_catalog(tmp_path, SCHEMAS).system("sim-licensing")
    assert system.scope == "population" and system.entities[0].scope == "population"
    write(tmp_path, GOOD + "pseudonym_scope: Not A Name\n")
    with pytest.raises(InputError, match=r"office.yaml:8: field 'pseudonym_scope' has value 'Not A Name'"):
        load_catalog(tmp_path, SCHEMAS)
