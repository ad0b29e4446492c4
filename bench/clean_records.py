"""Clean records as the processor writes them, made directly: for the KPI bench and the KPI tests,
which feed the KPI worker and the sink without running the processor."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import fastavro

from backbone.settings import Settings
from contract.catalog import Entity
from contract.codec import Registry, encode, subject_for
from contract.rules import PayloadRules

VILLAGE = "35.22.01.2001"  # a desa of the reference data, unless the payload names another


class CleanEncoder:
    """One entity's clean records, encoded with its clean schema (registered on creation)."""

    def __init__(self, settings: Settings, entity: Entity) -> None:
        schema = PayloadRules.from_schema(entity.payload_schema()).clean_schema()
        self.entity = entity
        self.topic = entity.clean_topic
        self.fields = [f["name"] for f in schema["fields"]]
        self.schema_id = Registry.for_settings(settings).register(subject_for(entity.clean_topic), schema)
        self.parsed = fastavro.parse_schema(schema)

    def encode(self, key: str, op: str, position: int, now: datetime, **payload: Any) -> bytes:
        """The change of `key` at source `position`, stamped `now`; `payload` holds the entity's
        fields (every other field is null, no rule flagged it)."""
        record: dict[str, Any] = dict.fromkeys(self.fields)
        record.update(
            dq_flags=[],
            event_id=f"{key}-{position}",
            op=op,
            entity_key=key,
            is_deleted=op == "d",
            source_system=self.entity.system,
            source_department=self.entity.department,
            source_entity=self.entity.name,
            source_position=f"{position:012d}",
            ts_source=now,
            ts_emitted=now,
            ts_processed=now,
            payload_version=1,
            village_code=VILLAGE,
        )
        record.update(payload)
        return encode(self.schema_id, self.parsed, record)
