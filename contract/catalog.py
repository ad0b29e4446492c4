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


def _key_lines(node: yaml.Node, prefix: str = "") -> dict[str, int]:
    """Dotted field path (as error messages name it) -> 1-based line, from the YAML node tree."""
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = f"{prefix}{key_node.value}"
            lines[path] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, path + "."))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = f"{prefix.rstrip('.')}[{i}]"
            lines[path] = item.start_mark.line + 1
            lines.update(_key_lines(item, path + "."))
    return lines


class _Fields:
    """Reads fields of one catalog file; every problem names the file, line, field and value."""

    def __init__(self, path: Path, lines: dict[str, int]) -> None:
        self.path = path
        self.lines = lines

    def error(self, field: str, message: str) -> InputError:
        line = self.lines.get(field) or self.lines.get(field.rsplit(".", 1)[0])
        where = f"{self.path}:{line}" if line else str(self.path)
        return InputError(f"{where}: field {field!r} {message}")

    def require(self, doc: dict[str, Any], key: str, kind: type, where: str = "") -> Any:
        value = doc.get(key)
        if value is None:
            raise self.error(f"{where}{key}", "is missing")
        if not isinstance(value, kind):
            raise self.error(f"{where}{key}", f"has value {value!r}, expected a {kind.__name__}")
        return value

    def name(self, doc: dict[str, Any], key: str, pattern: re.Pattern, rule: str, where: str = "") -> str:
        value = self.require(doc, key, str, where)
        if not pattern.match(value):
            raise self.error(f"{where}{key}", f"has value {value!r}: use {rule}")
        return value


def load_system(path: Path, schemas_dir: Path, topic_prefix: str = "") -> SourceSystem:
    try:
        text = path.read_text()
        node = yaml.compose(text)
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"{mark.line + 1}:" if mark else ""
        raise InputError(f"{path}:{line} invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a mapping at the top level, found {type(doc).__name__}")
    fields = _Fields(path, _key_lines(node))
    system = fields.name(doc, "system", _SYSTEM, "lowercase letters, digits and '-'")
    domain = fields.name(doc, "domain", _NAME, "lowercase letters, digits and '_'")
    department = fields.require(doc, "department", str)
    adapter = doc.get("adapter") or {"kind": "simulator"}
    if not isinstance(adapter, dict) or not isinstance(adapter.get("kind"), str):
        raise fields.error("adapter", f"has value {adapter!r}, expected a mapping with a 'kind'")
    raw_entities = fields.require(doc, "entities", list)
    entities = []
    for i, raw in enumerate(raw_entities):
        where = f"entities[{i}]."
        if not isinstance(raw, dict):
            raise fields.error(f"entities[{i}]", f"has value {raw!r}, expected a mapping")
        name = fields.name(raw, "name", _NAME, "lowercase letters, digits and '_'", where)
        schema = schemas_dir / fields.require(raw, "schema", str, where)
        if not schema.is_file():
            raise fields.error(f"{where}schema", f"has value {raw['schema']!r}: no such file under {schemas_dir}")
        key = raw.get("key")
        if not (isinstance(key, list) and key and all(isinstance(k, str) for k in key)):
            raise fields.error(f"{where}key", f"has value {key!r}, expected a list of field names")
        entity = Entity(system, department, domain, name, schema, tuple(key), path, topic_prefix)
        payload_fields = {f.get("name") for f in entity.payload_schema().get("fields", [])}
        missing = [k for k in key if k not in payload_fields]
        if missing:
            raise fields.error(f"{where}key", f"has value {key!r}: {', '.join(missing)} not a field of {schema.name}")
        entities.append(entity)
    freshness = doc.get("freshness_seconds", 60)
    if not isinstance(freshness, int) or isinstance(freshness, bool) or freshness <= 0:
        raise fields.error("freshness_seconds", f"has value {freshness!r}, expected a positive whole number")
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


def validate_catalog(catalog_dir: Path, schemas_dir: Path) -> list[tuple[Path, str | None]]:
    """Every catalog file with its first problem (None when it is fine); does not stop at the first file."""
    results: list[tuple[Path, str | None]] = []
    for path in sorted(catalog_dir.glob("*.yaml")):
        try:
            load_system(path, schemas_dir)
            results.append((path, None))
        except InputError as exc:
            results.append((path, str(exc)))
    if all(problem is None for _, problem in results):
        try:
            load_catalog(catalog_dir, schemas_dir)
        except InputError as exc:
            results.append((catalog_dir, str(exc)))
    return results


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
