"""Schema evolution against the real Apicurio registry (Confluent-compatible API)."""

from __future__ import annotations

import json
import shutil

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from contract.catalog import catalog_for
from contract.codec import Registry, SchemaRejected, subject_for
from contract.subjects import check_catalog, register_catalog
from simulators.simulate import run_simulator

PAYLOAD = "licensing/permit_application.avsc"


@pytest.fixture
def own_schemas(pipeline_settings, tmp_path):
    """A copy of the repo's schemas that a test may change, with the pipeline pointed at it."""
    folder = tmp_path / "schemas"
    shutil.copytree(pipeline_settings.schemas_dir, folder)
    return pipeline_settings.model_copy(update={"schemas_dir": folder}), folder


def _edit(folder, change) -> None:
    path = folder / PAYLOAD
    schema = json.loads(path.read_text())
    change(schema)
    path.write_text(json.dumps(schema, indent=2))


def _messages(settings, topic: str) -> int:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "watermarks"})
    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)
    finally:
        consumer.close()


def test_new_optional_field_is_an_allowed_evolution(own_schemas):
    settings, folder = own_schemas
    _edit(folder, lambda s: s["fields"].append({"name": "queue_number", "type": ["null", "int"], "default": None}))
    registry = Registry(settings.registry_url)
    catalog = catalog_for(settings)
    assert all(r.ok for r in check_catalog(registry, catalog, settings))
    register_catalog(registry, catalog, settings)
    subject = subject_for(catalog.system("sim-licensing").entities[0].cdc_topic)
    assert registry._client.get_versions(subject) == [1, 2]  # noqa: SLF001 - asserting the registry's state
    assert run_simulator(settings, "licensing", rate=0, count=5, serve_metrics=False) == 5


@pytest.mark.parametrize(
    "breaking",
    [
        pytest.param(
            lambda s: next(f for f in s["fields"] if f["name"] == "sla_days").update(type="string"), id="changed-type"
        ),
        pytest.param(lambda s: s["fields"].append({"name": "officer", "type": "string"}), id="new-required-field"),
    ],
)
def test_breaking_change_is_refused_and_nothing_is_produced(own_schemas, breaking):
    settings, folder = own_schemas
    topic = catalog_for(settings).system("sim-licensing").entities[0].cdc_topic
    before = _messages(settings, topic)
    _edit(folder, breaking)
    reports = check_catalog(Registry(settings.registry_url), catalog_for(settings), settings)
    verdicts = {r.subject: r.ok for r in reports}
    assert verdicts.pop(subject_for(topic)) is False
    assert all(verdicts.values())  # the other domains' schemas are untouched
    with pytest.raises(SchemaRejected) as refused:
        run_simulator(settings, "licensing", rate=0, count=5, serve_metrics=False)
    assert subject_for(topic) in str(refused.value) and "refused" in str(refused.value)
    assert _messages(settings, topic) == before
