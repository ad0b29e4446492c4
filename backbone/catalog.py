"""The source catalog: one YAML file per departmental system, naming its entities and schemas.

Everything downstream (topics, processor routing, sink tables) is derived from here, so a new
system is a catalog file plus a schema, with no new code."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from backbone.errors import InputError
from backbone.settings import Settings

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_SYSTEM = re.compile(r"^[a-z][a-z0-9-]*$")


@dataclass(frozen=True)
class Entity:
    system: str
    department: str
    domain: str
    name: str
    schema_path: Path
    key: tuple[str, ...]
    catalog_file: Path
    topic_prefix: str = ""

    @property
    def cdc_topic(self) -> str:
        return f"{self.topic_prefix}cdc.{self.domain}.{self.name}"

    @property
    def clean_topic(self) -> str:
        return f"{self.topic_prefix}clean.{self.domain}.{self.name}"

    @property
    def table(self) -> str:
        return f"{self.domain}_{self.name}"

    def payload_schema(self) -> dict[str, Any]:
        try:
            return json.loads(self.schema_path.read_text())
        except FileNotFoundError:
            raise InputError(
                f"{self.catalog_file}: entities.{self.name}.schema: file {self.schema_path} not found"
            ) from None
        except json.JSONDecodeError as exc:
            raise InputError(f"{self.schema_path}: line {exc.lineno}: invalid JSON: {exc.msg}") from None


@dataclass(frozen=True)
class SourceSystem:
    system: str
    title: str
    department: str
    domain: str
    adapter: dict[str, Any]
    freshness_seconds: int
    entities: tuple[Entity, ...]
    catalog_file: Path


@dataclass
class Catalog:
    systems: list[SourceSystem] = field(default_factory=list)

    @property
    def entities(self) -> list[Entity]:
        return [e for s in self.systems for e in s.entities]

    def entity_for_topic(self, topic: str) -> Entity:
        for entity in self.entities:
            if topic in (entity.cdc_topic, entity.clean_topic):
                return entity
        raise KeyError(topic)

    def system(self, name: str) -> SourceSystem:
        for system in self.systems:
            if system.system == name:
                return system
        known = ", ".join(s.system for s in self.systems) or "none"
        raise InputError(f"no system named {name!r} in the catalog (known: {known})")


def _require(doc: dict[str, Any], key: str, path: Path, kind: type, where: str = "") -> Any:
    value = doc.get(key)
    label = f"{where}{key}"
    if value is None:
        raise InputError(f"{path}: field {label!r} is missing")
    if not isinstance(value, kind):
        raise InputError(f"{path}: field {label!r} has value {value!r}, expected a {kind.__name__}")
    return value


def load_system(path: Path, schemas_dir: Path, topic_prefix: str = "") -> SourceSystem:
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise InputError(f"{path}:{line} invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a mapping at the top level, found {type(doc).__name__}")
    system = _require(doc, "system", path, str)
    if not _SYSTEM.match(system):
        raise InputError(f"{path}: field 'system' has value {system!r}: use lowercase letters, digits and '-'")
    domain = _require(doc, "domain", path, str)
    if not _NAME.match(domain):
        raise InputError(f"{path}: field 'domain' has value {domain!r}: use lowercase letters, digits and '_'")
    department = _require(doc, "department", path, str)
    adapter = doc.get("adapter") or {"kind": "simulator"}
    raw_entities = _require(doc, "entities", path, list)
    entities = []
    for i, raw in enumerate(raw_entities):
        where = f"entities[{i}]."
        if not isinstance(raw, dict):
            raise InputError(f"{path}: field 'entities[{i}]' must be a mapping")
        name = _require(raw, "name", path, str, where)
        if not _NAME.match(name):
            raise InputError(f"{path}: field '{where}name' has value {name!r}: use lowercase letters, digits and '_'")
        schema = schemas_dir / _require(raw, "schema", path, str, where)
        if not schema.is_file():
            raise InputError(
                f"{path}: field '{where}schema' has value {raw['schema']!r}: no such file under {schemas_dir}"
            )
        key = raw.get("key")
        if not (isinstance(key, list) and key and all(isinstance(k, str) for k in key)):
            raise InputError(f"{path}: field '{where}key' has value {key!r}, expected a list of field names")
        entities.append(Entity(system, department, domain, name, schema, tuple(key), path, topic_prefix))
    freshness = doc.get("freshness_seconds", 60)
    if not isinstance(freshness, int) or isinstance(freshness, bool) or freshness <= 0:
        raise InputError(f"{path}: field 'freshness_seconds' has value {freshness!r}, expected a positive whole number")
    return SourceSystem(
        system=system,
        title=str(doc.get("title", system)),
        department=department,
        domain=domain,
        adapter=adapter,
        freshness_seconds=freshness,
        entities=tuple(entities),
        catalog_file=path,
    )


def load_catalog(catalog_dir: Path, schemas_dir: Path, topic_prefix: str = "") -> Catalog:
    if not catalog_dir.is_dir():
        raise InputError(f"catalog folder {catalog_dir} does not exist", hint="set BACKBONE_CATALOG_DIR")
    catalog = Catalog([load_system(p, schemas_dir, topic_prefix) for p in sorted(catalog_dir.glob("*.yaml"))])
    seen: dict[str, Path] = {}
    for entity in catalog.entities:
        if entity.cdc_topic in seen:
            raise InputError(
                f"{entity.catalog_file}: entity {entity.name!r} of domain {entity.domain!r} "
                f"is already declared in {seen[entity.cdc_topic]}"
            )
        seen[entity.cdc_topic] = entity.catalog_file
    return catalog


def catalog_for(settings: Settings) -> Catalog:
    """The catalog as configured: folders and topic prefix from the settings."""
    return load_catalog(settings.catalog_dir, settings.schemas_dir, settings.topic_prefix)
