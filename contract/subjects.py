"""Schemas in the repo and their subjects in the registry: one value subject per topic."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import avro.schema
from avro.errors import SchemaParseException
from confluent_kafka.schema_registry.error import SchemaRegistryError

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


def _parse(schema: dict[str, Any] | str) -> avro.schema.Schema:
    """The reference implementation's reading of a schema (raises SchemaParseException)."""
    return avro.schema.parse(schema if isinstance(schema, str) else json.dumps(schema))


def _latest(registry: Registry, subject: str) -> tuple[int, str] | None:
    """(version, schema text) registered last under the subject; None for a new subject. Reads past
    the client's cache of latest versions, so a registration earlier in the process is seen."""
    client = registry._client  # noqa: SLF001 - Registry has no public "latest version" call yet
    try:
        latest = registry._call(f"read {subject}", client.get_version, subject, "latest")  # noqa: SLF001
    except SchemaRegistryError as exc:
        if exc.http_status_code == 404:
            return None
        raise
    return latest.version, latest.schema.schema_str


def _check(registry: Registry, subject: str, schema: dict[str, Any]) -> tuple[bool, str]:
    """Whether the schema may be registered under the subject: the same Parsing Canonical Form as
    the latest registered version means it already is; anything else is for the registry to judge."""
    parsed = _parse(schema)
    try:
        latest = _latest(registry, subject)
    except SchemaRegistryError as exc:
        return False, exc.error_message
    if latest is None:
        return True, "new subject"
    version, text = latest
    try:
        registered = _parse(text)
    except SchemaParseException:
        return registry.check(subject, schema)
    if registered.canonical_form != parsed.canonical_form:
        return registry.check(subject, schema)
    if registered.to_json() == parsed.to_json():
        return True, f"registered as version {version}"
    # Same canonical form, but docs, defaults or aliases differ: a new version, judged by the registry.
    ok, message = registry.check(subject, schema)
    return ok, f"{message} (same canonical form as version {version}; docs, defaults or aliases differ)"


def check_catalog(registry: Registry, catalog: Catalog, settings: Settings) -> list[SubjectReport]:
    """One report per cdc subject: a schema the reference parser (avro) refuses is reported with
    its name and file; a valid one is compared with the subject's registered versions."""
    reports = []
    for entity in catalog.entities:
        subject = subject_for(entity.cdc_topic)
        schema = entity_value_schema(entity, settings)
        try:
            ok, message = _check(registry, subject, schema)
        except SchemaParseException as exc:
            ok, message = False, f"schema {schema.get('name')} ({entity.schema_path}) is not valid Avro: {exc}"
        reports.append(SubjectReport(subject, ok, message))
    return reports
