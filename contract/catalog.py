"""The source catalog: one YAML file per departmental system, naming its entities and schemas.

Everything downstream (topics, processor routing, sink tables) is derived from here, so a new
system is a catalog file plus a schema, with no new code. Each file is validated by pydantic models
(`_SystemFile`, `_EntityEntry`, `_AdapterMapping`); the first problem becomes one InputError naming
the file, line, field and value, e.g. `catalog/x.yaml:12: field 'entities[0].key' has value ...`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
    ValidationInfo,
    WrapValidator,
    field_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from backbone.errors import InputError
from backbone.settings import Settings
from contract import working_hours as hours

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_SYSTEM = re.compile(r"^[a-z][a-z0-9-]*$")
_DEFAULT_ADAPTER = {"kind": "simulator"}

Loc = tuple[str | int, ...]


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
    # Whose pseudonymisation key the entity's personal fields are hashed with (see
    # contract.rules.scope_secret): its domain unless the catalog says `pseudonym_scope:`.
    pseudonym_scope: str = ""

    @property
    def scope(self) -> str:
        return self.pseudonym_scope or self.domain

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
            return _read_schema(self.schema_path)
        except FileNotFoundError:
            raise InputError(
                f"{self.catalog_file}: entities.{self.name}.schema: file {self.schema_path} not found"
            ) from None


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
    pseudonym_scope: str = ""
    # Dotted path under `adapter.` (without the prefix) -> line in catalog_file, for adapter setting errors.
    adapter_lines: dict[str, int] = field(default_factory=dict, compare=False, hash=False)
    # When the system's silence is an incident (contract/working_hours.py; default Mon-Fri 07:30-16:00 WIB).
    working_hours: hours.WorkingHours = hours.DEFAULT

    @property
    def scope(self) -> str:
        """The pseudonym scope of the system's entities (see Entity.pseudonym_scope)."""
        return self.pseudonym_scope or self.domain


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


def _read_schema(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: line {exc.lineno}: invalid JSON: {exc.msg}") from None


# -- the models ----------------------------------------------------------------------------------
# Problems are raised as two custom error kinds, worded as the messages show them:
#   "expected": `has value X, expected <what>`      "rule": `has value X: <rule>`


def _expected(what: str) -> PydanticCustomError:
    return PydanticCustomError("expected", "expected {what}", {"what": what})


def _broken(rule: str) -> PydanticCustomError:
    return PydanticCustomError("rule", "{rule}", {"rule": rule})


def _required(value: Any) -> Any:
    """A field written with no value (`system:`) counts as missing, as an absent one does."""
    if value is None:
        raise PydanticCustomError("missing", "is missing")
    return value


def _expecting(what: str) -> WrapValidator:
    """Any problem with the field's value is reported as one: `has value X, expected <what>`."""

    def check(value: Any, handler: Any) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise _expected(what) from None

    return WrapValidator(check)


def _matching(pattern: re.Pattern[str], rule: str) -> WrapValidator:
    def check(value: Any, handler: Any) -> Any:
        value = handler(value)
        if not pattern.match(value):
            raise _broken(f"use {rule}")
        return value

    return WrapValidator(check)


def _adapter_or_default(value: Any, handler: Any) -> Any:
    try:
        return handler(value or _DEFAULT_ADAPTER)
    except ValidationError:
        raise _expected("a mapping with a 'kind'") from None


Required = BeforeValidator(_required)
SystemName = Annotated[StrictStr, Required, _matching(_SYSTEM, "lowercase letters, digits and '-'")]
Name = Annotated[StrictStr, Required, _matching(_NAME, "lowercase letters, digits and '_'")]


class _AdapterMapping(BaseModel):
    """The `adapter:` mapping as the catalog sees it: a `kind`; its other settings belong to the
    adapter of that kind (producers/adapters/options.py validates them)."""

    model_config = ConfigDict(strict=True, extra="allow")

    kind: StrictStr


class _EntityEntry(BaseModel):
    model_config = ConfigDict(strict=True)

    name: Name
    schema_file: Annotated[StrictStr, Required, Field(alias="schema")]
    key: Annotated[list[StrictStr], Field(min_length=1), _expecting("a list of field names")]

    @field_validator("schema_file")
    @classmethod
    def _schema_exists(cls, value: str, info: ValidationInfo) -> str:
        schemas_dir: Path = info.context["schemas_dir"]
        if not (schemas_dir / value).is_file():
            raise _broken(f"no such file under {schemas_dir}")
        return value

    @field_validator("key")
    @classmethod
    def _key_is_in_payload(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if "schema_file" not in info.data:
            return value  # the schema's own problem is reported first
        schema = info.context["schemas_dir"] / info.data["schema_file"]
        payload_fields = {f.get("name") for f in _read_schema(schema).get("fields", [])}
        missing = [k for k in value if k not in payload_fields]
        if missing:
            raise _broken(f"{', '.join(missing)} not a field of {schema.name}")
        return value


class _SystemFile(BaseModel):
    """One catalog file. Fields are checked in this order; the first problem is reported."""

    model_config = ConfigDict(strict=True)

    system: SystemName
    domain: Name
    department: Annotated[StrictStr, Required]
    adapter: Annotated[_AdapterMapping, WrapValidator(_adapter_or_default)] = _AdapterMapping(**_DEFAULT_ADAPTER)
    entities: Annotated[list[_EntityEntry], Required]
    freshness_seconds: Annotated[int, Field(gt=0), _expecting("a positive whole number")] = 60
    # Systems that name the same scope share a pseudonymisation key, so their pseudonyms can be
    # joined; by default each domain has its own and records cannot be linked across domains.
    pseudonym_scope: Name | None = None
    working_hours: hours.WorkingHoursEntry | None = None
    title: Any = None


# -- errors with file, line and field ------------------------------------------------------------

_TYPE_ERRORS = {"string_type": "a str", "list_type": "a list", "model_type": "a mapping", "dict_type": "a mapping"}


def _node_lines(node: yaml.Node, loc: Loc = ()) -> dict[Loc, int]:
    """Field location (as pydantic names it: keys and list indexes) -> 1-based line in the file."""
    lines: dict[Loc, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            here = (*loc, key_node.value)
            lines[here] = key_node.start_mark.line + 1
            lines.update(_node_lines(value_node, here))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*loc, i)] = item.start_mark.line + 1
            lines.update(_node_lines(item, (*loc, i)))
    return lines


def _dotted(loc: Loc) -> str:
    """('entities', 0, 'key') -> 'entities[0].key', as the messages name fields."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _problem(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "missing":
        return "is missing"
    value = repr(error["input"])
    if kind == "expected":
        return f"has value {value}, {error['msg']}"
    if kind in _TYPE_ERRORS:
        return f"has value {value}, expected {_TYPE_ERRORS[kind]}"
    return f"has value {value}: {error['msg']}"


def _input_error(path: Path, lines: dict[Loc, int], error: ErrorDetails) -> InputError:
    """The field's line, or (for a missing field) the nearest enclosing one's."""
    loc = tuple(error["loc"])
    line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), None)
    where = f"{path}:{line}" if line else str(path)
    return InputError(f"{where}: field {_dotted(loc)!r} {_problem(error)}")


M = TypeVar("M", bound=BaseModel)


def validated_yaml(path: Path, model: type[M], context: dict[str, Any] | None = None) -> tuple[M, dict[Loc, int]]:
    """A YAML file validated by `model`, with the line of each field; the first problem is one
    InputError naming the file, line, field and value (the catalog's and the KPI files' way)."""
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
    lines = _node_lines(node)
    try:
        return model.model_validate(doc, context=context), lines
    except ValidationError as exc:
        raise _input_error(path, lines, exc.errors(include_url=False)[0]) from None


def load_system(path: Path, schemas_dir: Path, topic_prefix: str = "") -> SourceSystem:
    model, lines = validated_yaml(path, _SystemFile, {"schemas_dir": schemas_dir})
    entities = tuple(
        Entity(
            model.system,
            model.department,
            model.domain,
            e.name,
            schemas_dir / e.schema_file,
            tuple(e.key),
            path,
            topic_prefix,
            model.pseudonym_scope or model.domain,
        )
        for e in model.entities
    )
    return SourceSystem(
        system=model.system,
        title=str(model.title) if "title" in model.model_fields_set else model.system,
        department=model.department,
        domain=model.domain,
        adapter=model.adapter.model_dump(),
        freshness_seconds=model.freshness_seconds,
        entities=entities,
        catalog_file=path,
        pseudonym_scope=model.pseudonym_scope or model.domain,
        working_hours=hours.parse(model.working_hours and model.working_hours.model_dump(by_alias=True)),
        adapter_lines={
            ".".join(str(part) for part in loc[1:]): line
            for loc, line in lines.items()
            if len(loc) > 1 and loc[0] == "adapter"
        },
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
