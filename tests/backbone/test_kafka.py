"""Every Kafka client config comes from the settings through backbone.kafka (no broker needed)."""

from __future__ import annotations

import ssl

import faust
import pytest

from backbone import kafka
from backbone.errors import ConfigError
from backbone.settings import load_settings


def sasl_ssl(tmp_path, **extra):
    return load_settings(
        run_dir=tmp_path,
        kafka_bootstrap="kafka:9092",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="processor",
        kafka_sasl_password="s3cret",
        **extra,
    )


def test_plaintext_by_default(tmp_path):
    settings = load_settings(run_dir=tmp_path, kafka_bootstrap="127.0.0.1:9092")
    conf = kafka.producer_config(settings, "capture")
    assert conf["bootstrap.servers"] == "127.0.0.1:9092"
    assert conf["security.protocol"] == "PLAINTEXT"
    assert "sasl.username" not in conf
    assert kafka.faust_credentials(settings) is None


def test_sasl_ssl_reaches_every_client_config(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not used by these checks\n")
    settings = sasl_ssl(tmp_path, kafka_ssl_ca_file=ca)
    expected = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "processor",
        "sasl.password": "s3cret",
        "ssl.ca.location": str(ca),
    }
    for conf in (
        kafka.producer_config(settings, "processor"),
        kafka.client_config(settings, **{"group.id": "g"}),
    ):
        assert expected.items() <= conf.items()
    # The password is never printed with the settings.
    assert "s3cret" not in repr(settings)


def test_faust_gets_scram_over_tls(tmp_path, monkeypatch):
    monkeypatch.setattr(kafka, "ssl_context", lambda settings: ssl.create_default_context())
    settings = sasl_ssl(tmp_path)
    creds = kafka.faust_credentials(settings)
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.protocol.value == "SASL_SSL" and creds.mechanism.value == "SCRAM-SHA-512"
    assert (creds.username, creds.password) == ("processor", "s3cret")


def test_sasl_without_user_is_a_config_error(tmp_path):
    settings = load_settings(run_dir=tmp_path, kafka_bootstrap="k:9092", kafka_security_protocol="SASL_SSL")
    with pytest.raises(ConfigError, match="BACKBONE_KAFKA_SASL_USERNAME"):
        kafka.client_config(settings)


def test_missing_ca_file_is_a_config_error(tmp_path):
    settings = load_settings(
        run_dir=tmp_path, kafka_bootstrap="k:9092", kafka_security_protocol="SSL", kafka_ssl_ca_file=tmp_path / "no.pem"
    )
    with pytest.raises(ConfigError, match="BACKBONE_KAFKA_SSL_CA_FILE"):
        kafka.client_config(settings)


def test_unknown_protocol_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="BACKBONE_KAFKA_SECURITY_PROTOCOL"):
        load_settings(run_dir=tmp_path, kafka_security_protocol="SASL")
