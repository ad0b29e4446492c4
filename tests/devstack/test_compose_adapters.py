"""One compose service per catalog system with a real source, from the compose file's `x-adapter`
template: its command, the secrets its catalog file names, a state volume, the catalog mounted from
the host, the work-loop health check, limits; and a Prometheus target with system and domain labels.
The committed files are the ones the repo's catalog gives (simulators only: no adapter service)."""

from __future__ import annotations

import json

import yaml

from backbone.settings import PROJECT_ROOT
from contract.catalog import load_catalog
from devstack import compose_adapters

SCHEMAS = PROJECT_ROOT / "schemas"


def catalog_with_adapters(folder):
    """Three of the repo's domains behind real sources, a fourth still simulated."""
    adapters = {
        "licensing": ("pg-licensing", {"kind": "postgres_cdc", "dsn_env": "PG_LICENSING_DSN", "tables": {}}),
        "participation": ("push-participation", {"kind": "http_push", "token_env": "PUSH_TOKEN", "port": 8443}),
        "budget": ("drop-budget", {"kind": "file_drop", "folder": "/srv/drop/budget"}),
        "health": ("sim-health", None),
    }
    folder.mkdir()
    for domain, (name, adapter) in adapters.items():
        doc = yaml.safe_load((PROJECT_ROOT / "catalog" / f"{domain}.yaml").read_text())
        doc["system"] = name
        doc["adapter"] = adapter or doc["adapter"]
        (folder / f"{domain}.yaml").write_text(yaml.safe_dump(doc))
    return load_catalog(folder, SCHEMAS)


def test_every_system_with_a_real_source_gets_its_service_and_target(tmp_path):
    compose, targets = compose_adapters.render(catalog_with_adapters(tmp_path / "catalog"))
    services = yaml.safe_load(compose)["services"]
    assert set(services) == {"adapter-pg-licensing", "adapter-push-participation", "adapter-drop-budget"}
    pg, push, drop = (services[f"adapter-{n}"] for n in ("pg-licensing", "push-participation", "drop-budget"))
    assert pg["command"] == ["adapters", "run", "pg-licensing"]
    assert pg["environment"]["PG_LICENSING_DSN"] == "${PG_LICENSING_DSN:?set PG_LICENSING_DSN}"
    assert pg["environment"]["BACKBONE_KAFKA_SASL_USERNAME"] == "adapter"
    assert push["environment"]["PUSH_TOKEN"] == "${PUSH_TOKEN:?set PUSH_TOKEN}"
    assert "PG_LICENSING_DSN" not in push["environment"]  # each gets only its own secrets
    assert push["ports"] == ["127.0.0.1:8443:8443"]
    assert "/srv/drop/budget:/srv/drop/budget" in drop["volumes"]
    for name, service in services.items():
        assert "./catalog:/app/catalog:ro" in service["volumes"]
        assert f"{name}-state:/var/lib/backbone" in service["volumes"]
        assert service["healthcheck"]["test"] == ["CMD", "backbone", "health", "--port", "9100"]
        assert service["restart"] == "unless-stopped" and service["mem_limit"] and service["cpus"]
        assert service["depends_on"] == {"init": {"condition": "service_completed_successfully"}}
    assert set(yaml.safe_load(compose)["volumes"]) == {f"{n}-state" for n in services}
    assert {t["labels"]["system"]: (t["targets"], t["labels"]["domain"]) for t in json.loads(targets)} == {
        "pg-licensing": (["adapter-pg-licensing:9100"], "licensing"),
        "push-participation": (["adapter-push-participation:9100"], "participation"),
        "drop-budget": (["adapter-drop-budget:9100"], "budget"),
    }
    assert all(t["labels"]["stage"] == "adapter" for t in json.loads(targets))


def test_the_committed_files_are_those_of_the_repo_catalog():
    compose, targets = compose_adapters.render(load_catalog(PROJECT_ROOT / "catalog", SCHEMAS))
    assert compose_adapters.OUTPUT.read_text() == compose, "run `python -m devstack.compose_adapters`"
    assert compose_adapters.TARGETS.read_text() == targets
    assert json.loads(targets) == []  # the repo's catalog holds simulators only


def test_prometheus_reads_the_targets_file_as_the_adapter_job():
    config = yaml.safe_load((PROJECT_ROOT / "infra" / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "adapter")
    assert job["file_sd_configs"] == [{"files": ["/etc/prometheus/adapter_targets.json"]}]
