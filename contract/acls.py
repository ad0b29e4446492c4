"""Kafka ACLs for each stage's user, when the broker authenticates clients (SASL) and authorises them:
the raw `cdc.*` topics, the only ones with personal data in clear, are written only by the adapters
and read only by the processor. `backbone init --acls` grants them with the admin client."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType, ResourceType

from backbone.settings import Settings
from contract.topics import (
    CENSUS,
    DLQ_ADAPTER,
    DLQ_PROCESSOR,
    DLQ_SINK,
    STATE_LIFECYCLE,
    STATE_REFERENCES,
    admin_client,
    named,
)

TOPIC, GROUP = ResourceType.TOPIC, ResourceType.GROUP
PREFIXED, LITERAL = ResourcePatternType.PREFIXED, ResourcePatternType.LITERAL


@dataclass(frozen=True)
class StageUsers:
    """The SCRAM user names of the three stages (the compose file creates these)."""

    adapter: str = "adapter"
    processor: str = "processor"
    kpi: str = "kpi"
    sink: str = "sink"


def _allow(user: str, resource: ResourceType, name: str, pattern: ResourcePatternType, op: AclOperation) -> AclBinding:
    return AclBinding(resource, name, pattern, f"User:{user}", "*", op, AclPermissionType.ALLOW)


def stage_acls(settings: Settings, users: StageUsers = StageUsers()) -> list[AclBinding]:
    """What each stage may do, and nothing more."""
    prefix, app_id = settings.topic_prefix, settings.processor_app_id
    return [
        # Adapters: write change events (and their dead letters), nothing else.
        _allow(users.adapter, TOPIC, f"{prefix}cdc.", PREFIXED, AclOperation.WRITE),
        _allow(users.adapter, TOPIC, named(settings, DLQ_ADAPTER), LITERAL, AclOperation.WRITE),
        # and the censuses of their sources (row counts and key checksums), for reconciliation.
        _allow(users.adapter, TOPIC, named(settings, CENSUS), LITERAL, AclOperation.WRITE),
        # Processor: read change events and the reference topics, write clean records and its dead
        # letters; its consumer group and Faust's own topics under the app id.
        _allow(users.processor, TOPIC, f"{prefix}cdc.", PREFIXED, AclOperation.READ),
        _allow(users.processor, TOPIC, f"{prefix}ref.", PREFIXED, AclOperation.READ),
        # Faust declares its global table's topic (it exists already: allowed to ask for it).
        _allow(users.processor, TOPIC, f"{prefix}ref.", PREFIXED, AclOperation.CREATE),
        _allow(users.processor, TOPIC, f"{prefix}clean.", PREFIXED, AclOperation.WRITE),
        _allow(users.processor, TOPIC, named(settings, DLQ_PROCESSOR), LITERAL, AclOperation.WRITE),
        _allow(users.processor, TOPIC, app_id, PREFIXED, AclOperation.ALL),
        _allow(users.processor, GROUP, app_id, PREFIXED, AclOperation.READ),
        # Its per-entity lifecycle state (statuses only).
        _allow(users.processor, TOPIC, named(settings, STATE_LIFECYCLE), LITERAL, AclOperation.READ),
        _allow(users.processor, TOPIC, named(settings, STATE_LIFECYCLE), LITERAL, AclOperation.WRITE),
        # Its reference table: which referenced entities exist (keys, never personal data).
        _allow(users.processor, TOPIC, named(settings, STATE_REFERENCES), LITERAL, AclOperation.READ),
        _allow(users.processor, TOPIC, named(settings, STATE_REFERENCES), LITERAL, AclOperation.WRITE),
        # KPI worker: read clean records, write the kpi.* topics; its group and Faust's table topic.
        _allow(users.kpi, TOPIC, f"{prefix}clean.", PREFIXED, AclOperation.READ),
        _allow(users.kpi, TOPIC, f"{prefix}kpi.", PREFIXED, AclOperation.READ),
        _allow(users.kpi, TOPIC, f"{prefix}kpi.", PREFIXED, AclOperation.WRITE),
        _allow(users.kpi, TOPIC, settings.kpi_app_id, PREFIXED, AclOperation.ALL),
        _allow(users.kpi, GROUP, settings.kpi_app_id, PREFIXED, AclOperation.READ),
        # Sink: read clean records, KPIs, dead letters and the reference topics, write its own dead letters.
        _allow(users.sink, TOPIC, f"{prefix}clean.", PREFIXED, AclOperation.READ),
        _allow(users.sink, TOPIC, f"{prefix}kpi.", PREFIXED, AclOperation.READ),
        _allow(users.sink, TOPIC, f"{prefix}dlq.", PREFIXED, AclOperation.READ),
        _allow(users.sink, TOPIC, f"{prefix}ref.", PREFIXED, AclOperation.READ),
        _allow(users.sink, TOPIC, named(settings, CENSUS), LITERAL, AclOperation.READ),
        _allow(users.sink, TOPIC, named(settings, DLQ_SINK), LITERAL, AclOperation.WRITE),
        _allow(users.sink, GROUP, settings.sink_group_id, LITERAL, AclOperation.READ),
    ]


def grant_stage_acls(settings: Settings, users: StageUsers = StageUsers()) -> int:
    """Create the bindings (creating an existing one is a no-op); returns how many were granted."""
    bindings = stage_acls(settings, users)
    admin = admin_client(settings)  # held until the futures resolve: a dropped client cancels them
    for future in admin.create_acls(bindings, request_timeout=30).values():
        future.result()
    return len(bindings)
