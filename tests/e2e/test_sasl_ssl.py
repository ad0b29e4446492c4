"""The pipeline over SASL_SSL: a Kafka of its own whose clients' listener takes only TLS with
SCRAM-SHA-512, ACLs that let only the adapters' user write cdc.* and only the processor's user read
it, and an Apicurio Registry over HTTPS with basic auth whose kafkasql storage uses the same
listener. Certificates are made here with openssl (a throwaway CA in a temporary folder)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)
from confluent_kafka.schema_registry.error import SchemaRegistryError
from pydantic import SecretStr

from backbone import kafka
from backbone.errors import ServiceUnavailable
from backbone.settings import Settings, load_settings
from contract.acls import grant_stage_acls, stage_acls
from contract.bootstrap import bootstrap
from contract.catalog import catalog_for
from contract.codec import Registry
from contract.topics import check_broker
from devstack.stack import KafkaSecurity, LocalStack, StackAddresses
from simulators.simulate import run_simulator
from tests.helpers import QUERY_TOKEN, count, make_certificates, wait_for

pytestmark = pytest.mark.integration

TABLE = "licensing_permit_application"
PASSWORDS = {"adapter": "adapter-pw-1", "processor": "processor-pw-2", "sink": "sink-pw-3"}
REGISTRY_USER = ("backbone", "registry-pw-4")
PREFIX = "sec."
APP_ID = "sec-processor"
SINK_GROUP = "sec-sink"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_tls(folder: Path) -> KafkaSecurity:
    """A CA, and a certificate for 127.0.0.1 signed by it (PEM, and PKCS#12 for the broker)."""
    make_certificates(folder)
    password = os.urandom(8).hex()
    _openssl("pkcs12", "-export", "-in", "server.pem", "-inkey", "server.key", "-name", "broker",
             "-out", "server.p12", "-passout", f"pass:{password}", cwd=folder)
    return KafkaSecurity(
        ca_file=folder / "ca.pem",
        cert_file=folder / "server.pem",
        key_file=folder / "server.key",
        keystore_file=folder / "server.p12",
        keystore_password=password,
        admin_password=os.urandom(8).hex(),
        users=dict(PASSWORDS),
        acls=True,
        registry_users=dict([REGISTRY_USER]),
    )


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, StackAddresses]]:
    run_dir = tmp_path_factory.mktemp("secured-stack")
    local = LocalStack(load_settings(run_dir=run_dir), run_dir, security=make_tls(run_dir / "tls"))
    addresses = local.start()
    try:
        yield local, addresses
    finally:
        local.stop()


def settings_for(secured: tuple[LocalStack, StackAddresses], run_dir: Path, user: str, password: str) -> Settings:
    local, addresses = secured
    assert local.security is not None
    return load_settings(
        run_dir=run_dir,
        kafka_bootstrap=addresses.kafka_bootstrap,
        registry_url=addresses.registry_url,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username=user,
        kafka_sasl_password=password,
        kafka_ssl_ca_file=local.security.ca_file,
        registry_username=REGISTRY_USER[0],
        registry_password=REGISTRY_USER[1],
        registry_ca_file=local.security.ca_file,
        topic_prefix=PREFIX,
        processor_app_id=APP_ID,
        sink_group_id=SINK_GROUP,
        pii_key="test-key-not-secret",
        query_token=QUERY_TOKEN,
        sink_batch_seconds=0.2,
    )


def grant_probe_groups(admin: AdminClient) -> None:
    """The probes below get a consumer group each, so that a refused read is refused by the topic's ACL."""
    bindings = [
        AclBinding(ResourceType.GROUP, f"{user}-probe", ResourcePatternType.LITERAL, f"User:{user}", "*",
                   AclOperation.READ, AclPermissionType.ALLOW)
        for user in ("adapter", "sink")
    ]
    for future in admin.create_acls(bindings, request_timeout=30).values():
        future.result()


def test_pipeline_over_sasl_ssl_with_acls(secured, stage_process, tmp_path):
    run_dir = tmp_path / "run"
    admin_settings = settings_for(secured, run_dir, "admin", secured[0].security.admin_password)
    # Topics, schemas (registry over HTTPS with basic auth) and reference data, as the super user.
    bootstrap(admin_settings)
    assert grant_stage_acls(admin_settings) == len(stage_acls(admin_settings))  # what `backbone init --acls` does
    grant_probe_groups(AdminClient(kafka.client_config(admin_settings)))

    adapter = settings_for(secured, run_dir, "adapter", PASSWORDS["adapter"])
    processor_settings = settings_for(secured, run_dir, "processor", PASSWORDS["processor"])
    sink_settings = settings_for(secured, run_dir, "sink", PASSWORDS["sink"])

    n = 200
    assert run_simulator(adapter, "licensing", rate=0, count=n, serve_metrics=False) == n
    processor = stage_process(processor_settings, "processor")
    sink = stage_process(sink_settings, "sink")
    port = sink.env["BACKBONE_QUERY_PORT"]
    stored = f"SELECT count() FROM {TABLE} FINAL"
    wait_for(lambda: count(port, stored) >= n, 180, f"{n} rows over SASL_SSL", alive=(processor, sink))
    assert count(port, stored) == n

    (entity,) = catalog_for(adapter).system("sim-licensing").entities
    # ACLs: the adapters' user may not read cdc.*, the processor's and the sink's may not write it.
    assert "TOPIC_AUTHORIZATION_FAILED" in _consume_error(adapter, entity.cdc_topic)
    assert "TOPIC_AUTHORIZATION_FAILED" in _produce_error(processor_settings, entity.cdc_topic)
    assert "TOPIC_AUTHORIZATION_FAILED" in _produce_error(sink_settings, entity.cdc_topic)
    # The sink's user may not even see it (no DESCRIBE), so it reads nothing from it.
    assert entity.cdc_topic not in AdminClient(kafka.client_config(sink_settings)).list_topics(timeout=10).topics
    assert entity.clean_topic in AdminClient(kafka.client_config(sink_settings)).list_topics(timeout=10).topics
    assert _consume_error(sink_settings, entity.cdc_topic) != "read a message"


def _consume_error(settings: Settings, topic: str) -> str:
    """The errors a consumer of `settings`' user meets on `topic` (or 'read a message')."""
    consumer = Consumer(kafka.client_config(settings, **{"group.id": f"{settings.kafka_sasl_username}-probe"}))
    seen: list[str] = []
    try:
        # Assigned, not subscribed: no group membership involved.
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        for _ in range(40):
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                return "read a message"
            if msg is not None:
                seen.append(msg.error().name())
                if "TOPIC_AUTHORIZATION_FAILED" in seen:
                    break
        return ",".join(seen) or "no error"
    finally:
        consumer.close()


def _produce_error(settings: Settings, topic: str) -> str:
    errors: list[str] = []
    producer = Producer(kafka.producer_config(settings, "reference", **{"message.timeout.ms": 15000}))
    producer.produce(topic, b"forged", b"k", on_delivery=lambda err, _m: errors.append(err.name() if err else "ok"))
    producer.flush(20)
    return ",".join(errors) or "no report"


def test_wrong_password_and_plain_clients_are_refused(secured, tmp_path):
    good = settings_for(secured, tmp_path, "adapter", PASSWORDS["adapter"])
    check_broker(good)  # the right password gets in

    wrong = good.model_copy(update={"kafka_sasl_password": SecretStr("not-the-password")})
    errors: list[KafkaError] = []
    admin = AdminClient(kafka.client_config(wrong, error_cb=errors.append))
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=8)
    admin.poll(1)  # serves error_cb
    del admin
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors
    with pytest.raises(ServiceUnavailable):
        check_broker(wrong, timeout=5)

    # A PLAINTEXT client gets nothing from the TLS listener.
    plain = good.model_copy(update={"kafka_security_protocol": "PLAINTEXT"})
    with pytest.raises(ServiceUnavailable):
        check_broker(plain, timeout=5)

    # The registry: the right user lists subjects, a wrong password gets 401.
    Registry.for_settings(good).subjects()
    bad_registry = good.model_copy(update={"registry_password": SecretStr("not-the-password")})
    with pytest.raises(SchemaRegistryError) as refused:
        Registry.for_settings(bad_registry).subjects()
    assert refused.value.http_status_code == 401
