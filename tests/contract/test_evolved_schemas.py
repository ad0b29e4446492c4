"""The fields the ready views needed (issue 9: the office handling a permit, the budget line funding a
public-works project) are compatible evolutions: the real Apicurio registry takes them as a new
version over the schemas without them, and a record written before them reads null there."""

from __future__ import annotations

import io
import json
import shutil

import fastavro
import pytest

from backbone.settings import PROJECT_ROOT
from contract.bootstrap import bootstrap
from contract.catalog import catalog_for
from contract.codec import Registry, subject_for
from contract.subjects import check_catalog, register_catalog
from tests.fakes import SimulatedSystem

# schema file -> (the new field, the system whose simulator writes it)
EVOLVED = {
    "licensing/permit_application.avsc": ("office_code", "sim-licensing"),
    "infrastructure/project.avsc": ("budget_line_id", "sim-public-works"),
}


def without_new_fields(folder) -> None:  # noqa: ANN001
    for name, (field, _) in EVOLVED.items():
        path = folder / name
        doc = json.loads(path.read_text())
        doc["fields"] = [f for f in doc["fields"] if f["name"] != field]
        path.write_text(json.dumps(doc, indent=2))


def test_the_registry_takes_the_new_fields_as_a_new_version(make_settings, tmp_path):
    old_schemas = tmp_path / "schemas"
    shutil.copytree(PROJECT_ROOT / "schemas", old_schemas)
    without_new_fields(old_schemas)
    before = make_settings(schemas_dir=old_schemas)
    bootstrap(before)  # the subjects as they were
    after = before.model_copy(update={"schemas_dir": PROJECT_ROOT / "schemas"})
    registry, catalog = Registry(after.registry_url), catalog_for(after)
    assert all(r.ok for r in check_catalog(registry, catalog, after))
    register_catalog(registry, catalog, after)
    for _, system in EVOLVED.values():
        (entity,) = catalog.system(system).entities
        for topic in (entity.cdc_topic, entity.clean_topic):
            assert registry._client.get_versions(subject_for(topic)) == [1, 2], topic  # noqa: SLF001


@pytest.mark.parametrize("name", list(EVOLVED))
def test_a_record_written_before_the_field_reads_null_there(name, tmp_path):
    field, system = EVOLVED[name]
    new = json.loads((PROJECT_ROOT / "schemas" / name).read_text())
    old = dict(new, fields=[f for f in new["fields"] if f["name"] != field])
    change = next(c for c in SimulatedSystem(system).take(20) if c.op == "c")
    record = {k: v for k, v in change.after.items() if k != field}
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(old), record)
    written = buffer.getvalue()
    as_old = fastavro.schemaless_reader(io.BytesIO(written), fastavro.parse_schema(old))
    read = fastavro.schemaless_reader(io.BytesIO(written), fastavro.parse_schema(old), fastavro.parse_schema(new))
    key = new["fields"][0]["name"]  # application_id, project_id
    assert read[field] is None and read[key] == change.key and read == {**as_old, field: None}
