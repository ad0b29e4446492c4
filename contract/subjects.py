"""Schemas in the repo and their subjects in the registry: one value subject per topic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backbone.settings import Settings
from contract.catalog import Catalog, Entity
from contract.codec import DEFAULT_COMPATIBILITY, Registry, subject_for
from contract.rules import PayloadRules, compose_envelope, load_envelope_template


def entity_value_schema(entity: Entity, settings: Settings) -> dict[str, Any]:
    """The cdc topic's value schema: the shared envelope around the entity's payload schema."""
    return compose_envelope(load_envelope_template(settings.schemas_dir), entity.payload_schema(), entity.name)


def payload_of(envelope_schema: dict[str, Any]) -> dict[str, Any]:
    """The payload record inside a composed envelope (as read back from the registry)."""
    for f in envelope_schema["fields"]:
        # The record is defined at its first use (before); later uses refer to it by name.
        if f["name"] in ("before", "after") and isinstance(f["type"], list):
            for t in f["type"]:
                if isinstance(t, dict):
                    return t
    raise ValueError(f"schema {envelope_schema.get('name')} is not a change-event envelope (no 'after' field)")


@dataclass
class SubjectReport:
    subject: str
    ok: bool
    message: str


def register_catalog(registry: Registry, catalog: Catalog, settings: Settings) -> list[SubjectReport]:
    """Register every cdc and clean subject; an incompatible change raises SchemaRejected."""
    reports = []
    for entity in catalog.entities:
        value = entity_value_schema(entity, settings)
        schema_id = registry.register(subject_for(entity.cdc_topic), value, DEFAULT_COMPATIBILITY)
        reports.append(SubjectReport(subject_for(entity.cdc_topic), True, f"id {schema_id}"))
        clean = PayloadRules.from_schema(entity.payload_schema()).clean_schema()
        clean_id = registry.register(subject_for(entity.clean_topic), clean, DEFAULT_COMPATIBILITY)
        reports.append(SubjectReport(subject_for(entity.clean_topic), True, f"id {clean_id}"))
    return reports


def check_catalog(registry: Registry, catalog: Catalog, settings: Settings) -> list[SubjectReport]:
    reports = []
    for entity in catalog.entities:
        ok, message = registry.check(subject_for(entity.cdc_topic), entity_value_schema(entity, settings))
        reports.append(SubjectReport(subject_for(entity.cdc_topic), ok, message))
    return reports
