"""KPI declarations: one YAML file per domain in kpis/ (beside catalog/), read by the KPI engine
(stream_processors/kpi_app.py) and the sink (sinks/kpi_tables.py). A KPI names an entity of the
catalog, a filter, grouping fields, a measure and a window; no code per KPI or per domain.

    - name: lead_time
      entity: permit_application
      filter: {status: [APPROVED, REJECTED]}       # field: value or list of values
      group_by: [permit_type]                      # fields of the clean record, or `overdue`
      measure: {kind: percentiles, from: submitted_at, to: decided_at, unit: working_days}
      window: {size: month, time: decided_at, grace: 7d}    # or `none`: a live gauge
      deadline: {from: submitted_at, working_days_field: sla_days}   # or {at: resolution_due_at}

Measures: count; sum and average of a numeric field (average also of a duration from/to);
percentiles of a duration (counts per whole unit, so the state per group stays small);
share_within: the share of durations within `limit` or `limit_field` units. `deadline` adds the
grouping field `overdue`, which turns true when the deadline passes, with or without an event.
Problems are one InputError naming the file, line, field and value, as for the catalog."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr

from backbone.settings import Settings
from contract.catalog import Catalog, Entity, Loc, _input_error, _required, validated_yaml
from contract.rules import PayloadRules

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_GRACE = re.compile(r"^(\d+)\s*([smhd]?)$")
_GRACE_MS = {"": 1000, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
OVERDUE = "overdue"
TS_SOURCE = "ts_source"
DECIMAL_OUT = {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 2}
_TS = {"type": "long", "logicalType": "timestamp-millis"}

Scalar = StrictStr | StrictInt | bool | float | None


def _measure_shorthand(value: Any) -> Any:
    """`measure: count` is short for `measure: {kind: count}`."""
    return {"kind": value} if isinstance(value, str) else value


def _window_shorthand(value: Any) -> Any:
    return None if value in (None, "none") else value


def _grace_ms(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return value * 1000
    match = _GRACE.match(str(value).strip()) if isinstance(value, str) else None
    if not match:
        raise ValueError("expected a duration such as 30m, 12h or 7d")
    return int(match.group(1)) * _GRACE_MS[match.group(2)]


class Measure(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True)

    kind: Literal["count", "sum", "average", "percentiles", "share_within"]
    field: StrictStr | None = None
    from_field: StrictStr | None = Field(None, alias="from")
    to_field: StrictStr | None = Field(None, alias="to")
    unit: Literal["hours", "days", "working_days"] = "days"
    percentiles: list[Annotated[int, Field(ge=1, le=99)]] = [50, 90]
    limit: Annotated[int, Field(ge=0)] | None = None
    limit_field: StrictStr | None = None
    # Durations above this many units are counted in the last bucket (percentiles' state bound).
    max_bucket: Annotated[int, Field(ge=1, le=10_000)] = 400

    @property
    def is_duration(self) -> bool:
        return self.from_field is not None


class Window(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    size: Literal["hour", "day", "month"]
    time: StrictStr = TS_SOURCE  # the event's own time: a timestamp field of the record
    grace_ms: Annotated[int, BeforeValidator(_grace_ms), Field(alias="grace", ge=0)] = 0


class Deadline(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True)

    at: StrictStr | None = None  # a timestamp field holding the deadline itself
    from_field: StrictStr | None = Field(None, alias="from")  # or: from a timestamp, plus working days
    working_days: Annotated[int, Field(ge=0)] | None = None
    working_days_field: StrictStr | None = None


class KpiEntry(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    name: Annotated[StrictStr, BeforeValidator(_required), Field(pattern=_NAME.pattern)]
    title: StrictStr = ""
    entity: Annotated[StrictStr, BeforeValidator(_required)]
    filter: dict[StrictStr, Scalar | list[Scalar]] = {}
    group_by: list[StrictStr] = []
    measure: Annotated[Measure, BeforeValidator(_measure_shorthand)]
    window: Annotated[Window | None, BeforeValidator(_window_shorthand)] = None
    deadline: Deadline | None = None


class KpiFile(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    domain: Annotated[StrictStr, BeforeValidator(_required)]
    kpis: Annotated[list[KpiEntry], BeforeValidator(_required), Field(min_length=1)]


def text(value: Any) -> str | None:
    """A value as KPI groups and filters compare and show it."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class Kpi:
    domain: str
    spec: KpiEntry
    entity: Entity
    field_types: dict[str, Any]  # clean record field -> Avro type
    topic: str
    source_file: Path

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def qualified(self) -> str:
        return f"{self.domain}.{self.spec.name}"

    @property
    def table(self) -> str:
        return f"kpi_{self.domain}_{self.spec.name}"

    def allowed(self) -> dict[str, frozenset[str | None]]:
        values = {k: v if isinstance(v, list) else [v] for k, v in self.spec.filter.items()}
        return {k: frozenset(text(x) for x in v) for k, v in values.items()}

    def money(self) -> bool:
        """Whether the measured field is a decimal (Rupiah): summed exactly, never as a float."""
        field = self.spec.measure.field
        return field is not None and _kind(self.field_types.get(field)) == "decimal"


def _kind(avro_type: Any) -> str | None:
    """'timestamp', 'decimal', 'int', 'number', 'string', 'other' for a (nullable) Avro type."""
    if isinstance(avro_type, list):
        inner = [t for t in avro_type if t != "null"]
        return _kind(inner[0]) if len(inner) == 1 else "other"
    if isinstance(avro_type, dict):
        logical = avro_type.get("logicalType")
        if logical in ("timestamp-millis", "timestamp-micros"):
            return "timestamp"
        if logical == "decimal":
            return "decimal"
        if avro_type.get("type") == "enum":
            return "string"
        return _kind(avro_type.get("type"))
    return {"int": "int", "long": "int", "float": "number", "double": "number", "string": "string"}.get(
        avro_type, "other"
    )


def _field_problems(entry: KpiEntry, types: dict[str, Any], entity_names: set[str]) -> list[tuple[Loc, Any, str]]:
    """(location, value, rule) of every reference to a field the entity's clean record lacks or
    of the wrong kind; the first is reported."""
    if entry.entity not in entity_names:
        return [(("entity",), entry.entity, f"not an entity of this domain ({', '.join(sorted(entity_names))})")]
    problems: list[tuple[Loc, Any, str]] = []

    def need(loc: Loc, name: str | None, kinds: tuple[str, ...], what: str) -> None:
        if name is None:
            problems.append((loc, None, f"required: {what}"))
        elif name not in types:
            problems.append((loc, name, f"not a field of {entry.entity}"))
        elif kinds and _kind(types[name]) not in kinds:
            problems.append((loc, name, f"expected {what}"))

    for name in entry.filter:
        need(("filter", name), name, (), "a field")
    for i, name in enumerate(entry.group_by):
        if name == OVERDUE:
            if entry.deadline is None:
                problems.append((("group_by", i), name, "needs a `deadline`"))
        else:
            need(("group_by", i), name, (), "a field")
    m = entry.measure
    timestamp, numeric = ("timestamp",), ("int", "decimal", "number")
    if m.kind in ("sum", "average") and not (m.kind == "average" and m.from_field):
        need(("measure", "field"), m.field, numeric, "a numeric field")
    if m.kind in ("percentiles", "share_within") or (m.kind == "average" and m.from_field):
        need(("measure", "from"), m.from_field, timestamp, "a timestamp field")
        need(("measure", "to"), m.to_field, timestamp, "a timestamp field")
    if m.kind == "share_within":
        if m.limit is None:
            need(("measure", "limit_field"), m.limit_field, ("int",), "`limit` or an integer `limit_field`")
    if entry.window is not None and entry.window.time != TS_SOURCE:
        need(("window", "time"), entry.window.time, timestamp, "a timestamp field")
    d = entry.deadline
    if d is not None:
        if d.at is not None:
            need(("deadline", "at"), d.at, timestamp, "a timestamp field")
        else:
            need(("deadline", "from"), d.from_field, timestamp, "a timestamp field (or `at`)")
            if d.working_days is None:
                need(("deadline", "working_days_field"), d.working_days_field, ("int",), "working days")
    return problems


def load_kpi_file(path: Path, catalog: Catalog, topic_prefix: str = "") -> list[Kpi]:
    """The KPIs of one file; [] when the catalog has no entity of its domain (nothing to compute)."""
    model, lines = validated_yaml(path, KpiFile)
    entities = {e.name: e for e in catalog.entities if e.domain == model.domain}
    if not entities:
        return []
    kpis: list[Kpi] = []
    seen: set[str] = set()
    for i, entry in enumerate(model.kpis):
        entity = entities.get(entry.entity)
        types = _clean_types(entity) if entity else {}
        problems = _field_problems(entry, types, set(entities))
        if entry.name in seen:
            problems.insert(0, (("name",), entry.name, "declared twice in this file"))
        if problems:
            loc, value, rule = problems[0]
            error = {"type": "rule", "loc": ("kpis", i, *loc), "input": value, "msg": rule}
            raise _input_error(path, lines, error) from None  # type: ignore[arg-type]
        seen.add(entry.name)
        topic = f"{topic_prefix}kpi.{model.domain}.{entry.name}"
        kpis.append(Kpi(model.domain, entry, entity, types, topic, path))  # type: ignore[arg-type]
    return kpis


def _clean_types(entity: Entity) -> dict[str, Any]:
    schema = PayloadRules.from_schema(entity.payload_schema()).clean_schema()
    return {f["name"]: f["type"] for f in schema["fields"]}


def load_kpis(kpi_dir: Path, catalog: Catalog, topic_prefix: str = "") -> list[Kpi]:
    if not kpi_dir.is_dir():
        return []
    return [k for path in sorted(kpi_dir.glob("*.yaml")) for k in load_kpi_file(path, catalog, topic_prefix)]


def kpis_for(settings: Settings, catalog: Catalog) -> list[Kpi]:
    return load_kpis(settings.kpi_dir, catalog, settings.topic_prefix)


# -- the kpi.* topics' values --------------------------------------------------------------------


def measure_fields(kpi: Kpi) -> list[dict[str, Any]]:
    """The measure's output fields, after `count` (entities in the group and window)."""
    m = kpi.spec.measure
    number: Any = DECIMAL_OUT if kpi.money() else "double"
    if m.kind == "sum":
        whole = _kind(kpi.field_types.get(m.field)) == "int"
        return [{"name": "sum", "type": DECIMAL_OUT if kpi.money() else "long" if whole else "double"}]
    if m.kind == "average":
        return [
            {"name": "sum", "type": number},
            {"name": "average", "type": ["null", number], "default": None},
        ]
    if m.kind == "percentiles":
        return [{"name": f"p{p}", "type": ["null", "long"], "default": None, "doc": m.unit} for p in m.percentiles]
    if m.kind == "share_within":
        return [
            {"name": "within", "type": "long"},
            {"name": "share", "type": ["null", "double"], "default": None, "doc": "within / count, 0 to 1"},
        ]
    return []


def value_schema(kpi: Kpi) -> dict[str, Any]:
    """The Avro value of kpi.<domain>.<name>: one record per group and window, replaced on update."""
    fields: list[dict[str, Any]] = [{"name": "group_key", "type": "string", "doc": "The message key."}]
    for name in kpi.spec.group_by:
        fields.append({"name": name, "type": ["null", "string"], "default": None})
    fields += [
        {"name": "window_start", "type": ["null", _TS], "default": None, "doc": "null for a live gauge"},
        {"name": "window_end", "type": ["null", _TS], "default": None},
        {"name": "count", "type": "long"},
        *measure_fields(kpi),
        {"name": "version", "type": "long", "doc": "Update sequence: the row with the highest is current."},
        {"name": "updated_at", "type": _TS},
    ]
    return {
        "type": "record",
        "name": "Kpi_" + "_".join(part.capitalize() for part in kpi.qualified.replace(".", "_").split("_")),
        "namespace": "id.go.bojonegoro.kpi",
        "doc": kpi.spec.title or f"KPI {kpi.qualified}",
        "fields": fields,
    }
