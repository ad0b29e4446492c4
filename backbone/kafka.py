"""The one place that configures Kafka clients: security (SASL/SCRAM, TLS) for every client, the
producer profiles, and the wait on a full local queue.

`client_config(settings)` is what every librdkafka client (producer, consumer, admin) is built
from: the bootstrap servers plus `security_config(settings)`. Faust (aiokafka) gets the same
settings as `faust_credentials(settings)`.

Profiles name what a producer is for; each stage asks for one instead of repeating settings:
- `capture`: adapters' and simulators' change events: never time a message out (it waits in the
  bounded queue while Kafka is down) and block when the queue is full (backpressure);
- `dead_letters`: the same guarantee for dead letters;
- `processor`: clean records, a larger queue and a short linger for throughput;
- `reference`: reference data published at start.
Every profile is idempotent with acks=all, so a retried send never duplicates or reorders.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from confluent_kafka import Producer

from backbone import metrics
from backbone.errors import ConfigError, ServiceUnavailable
from backbone.settings import Settings

_LIBRDKAFKA_LOG = logging.getLogger("librdkafka")

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

_COMMON = {"enable.idempotence": True, "acks": "all"}

PROFILES: dict[str, dict[str, Any]] = {
    "capture": {
        "linger.ms": 10,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 200_000,
        "message.timeout.ms": 0,
    },
    "dead_letters": {"message.timeout.ms": 0},
    # Delivery callbacks for failures only: success is a flush that leaves nothing queued, so a batch
    # costs no Python call per message acknowledged.
    "processor": {
        "linger.ms": 5,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 500_000,
        "delivery.report.only.error": True,
    },
    "reference": {"linger.ms": 20},
}


def _uses_sasl(settings: Settings) -> bool:
    return settings.kafka_security_protocol.startswith("SASL_")


def _uses_tls(settings: Settings) -> bool:
    return settings.kafka_security_protocol.endswith("SSL")


def security_config(settings: Settings) -> dict[str, Any]:
    """librdkafka's security properties from the settings; every client config goes through here."""
    conf: dict[str, Any] = {"security.protocol": settings.kafka_security_protocol}
    if _uses_sasl(settings):
        if not settings.kafka_sasl_username or not settings.kafka_sasl_password.get_secret_value():
            raise ConfigError(
                f"BACKBONE_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol} needs a SASL user",
                hint="set BACKBONE_KAFKA_SASL_USERNAME and BACKBONE_KAFKA_SASL_PASSWORD",
            )
        conf["sasl.mechanism"] = settings.kafka_sasl_mechanism
        conf["sasl.username"] = settings.kafka_sasl_username
        conf["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    if _uses_tls(settings) and settings.kafka_ssl_ca_file is not None:
        if not settings.kafka_ssl_ca_file.is_file():
            raise ConfigError(f"BACKBONE_KAFKA_SSL_CA_FILE={settings.kafka_ssl_ca_file}: no such file")
        conf["ssl.ca.location"] = str(settings.kafka_ssl_ca_file)
    return conf


def client_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """Bootstrap servers and security for any librdkafka client (Producer, Consumer, AdminClient)."""
    if not settings.kafka_bootstrap:
        raise ServiceUnavailable("no Kafka address", hint="set BACKBONE_KAFKA_BOOTSTRAP or run `backbone demo`")
    # librdkafka's own log lines go through Python logging, so they carry the stage and the log format.
    base = {"bootstrap.servers": settings.kafka_bootstrap, "logger": _LIBRDKAFKA_LOG}
    return {**base, **security_config(settings), **extra}


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A verifying TLS context trusting BACKBONE_KAFKA_SSL_CA_FILE (or the system CAs)."""
    cafile = str(settings.kafka_ssl_ca_file) if settings.kafka_ssl_ca_file is not None else None
    return ssl.create_default_context(cafile=cafile)


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """The same security for Faust's aiokafka clients: App(broker_credentials=...)."""
    import faust

    security_config(settings)  # the same checks, the same one-line errors
    context = ssl_context(settings) if _uses_tls(settings) else None
    if _uses_sasl(settings):
        credentials = faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
        return credentials
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def producer_config(settings: Settings, profile: str, **overrides: Any) -> dict[str, Any]:
    return client_config(settings, **_COMMON, **PROFILES[profile], **overrides)


def make_producer(settings: Settings, profile: str, **overrides: Any) -> Producer:
    return Producer(producer_config(settings, profile, **overrides))


def produce(
    producer: Producer,
    topic: str,
    value: bytes | None,
    key: bytes | None = None,
    headers: list[tuple[str, bytes]] | None = None,
    on_delivery: Callable[..., None] | None = None,
    stage: str = "producer",
    partition: int | None = None,
) -> None:
    """Produce, waiting (never dropping) while librdkafka's local queue is full."""
    where = {} if partition is None else {"partition": partition}
    while True:
        try:
            producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery, **where)
            return
        except BufferError:
            metrics.RETRIES.labels(stage, "queue_full").inc()
            producer.poll(0.05)
