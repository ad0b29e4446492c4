"""The change-event contract shared by every departmental system.

A payload schema (one .avsc per entity) describes the entity's record. Custom attributes on its
fields carry the rules the processor applies without per-domain code:
  "pii": true         personal data: pseudonymised with a keyed hash before analytics
  "region": "village" | "kecamatan"   an official region code: validated and enriched with names
  "min", "max", "pattern", "one_of", "required", "compare", "references"
                      data-quality rules, each with a severity (reject: dead-lettered; flag: kept,
                      its id in the clean record's `dq_flags`): see contract/field_rules.py
  "transitions": {"FROM": ["TO", ...]}   the allowed lifecycle moves of a status field, checked
                      on updates from `before` to `after`; "initial": [...] lists allowed
                      states at creation (op c; a snapshot read may find any state); an update
                      without `before` (file drops, query polling) passes unchecked
Timestamps must be plausible: the envelope's ts_source and ts_emitted between 1970 and a year after
processing (a later ts_source would stay its key's newest state); timestamp fields of the payload
from 1970 to a century ahead (deadlines, and business clocks that run ahead, are legitimate).
The envelope (schemas/envelope.avsc, contract/envelope.py) wraps the payload as `before`/`after`
with source metadata. The clean schema is the flat record the processor emits and the sink stores.
Every rejection names a rule id "<field>:<kind>" (or envelope:<what>, key:mismatch): Rejected.rule.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from backbone.errors import InputError
from contract.envelope import (  # noqa: F401 - re-exported: the contract's one import for the stages
    ENVELOPE_FILE,
    OPS,
    PAYLOAD_PLACEHOLDER,
    compose_envelope,
    event_id,
    full_name,
    load_envelope_template,
)
from contract.field_rules import (
    FLAG,
    REJECT,
    FieldRule,
    Reference,
    field_rules,
    missing_rule,
    reference,
    required_severity,
    split_severity,
)
from contract.pseudonyms import normalise_identity, pseudonymise, scope_secret  # noqa: F401 - re-exported

_TS_MILLIS = {"type": "long", "logicalType": "timestamp-millis"}
# Plausible timestamps: not before the epoch, at most this far after the processing time (the
# envelope's: a query-polled source stamps changes with its own business clock, which may run ahead
# by weeks; a year still keeps out the placeholder dates, such as 9999, that would stay a key's newest
# state for ever), or this far (the payload's: deadlines run ahead).
FUTURE_MARGIN = timedelta(days=366)
PAYLOAD_FUTURE_MARGIN = timedelta(days=36_525)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Timestamp logical types and how many of their units make a millisecond (micros: 1000).
_TS_UNITS = {
    "timestamp-millis": 1,
    "timestamp-micros": 1000,
    "local-timestamp-millis": 1,
    "local-timestamp-micros": 1000,
}
# A value quoted in a reason is cut to this many characters (a reason travels in a Kafka header).
MAX_SHOWN = 120

# Fields every clean record starts with, ahead of the payload's own fields.
CLEAN_META_FIELDS: list[dict[str, Any]] = [
    {"name": "event_id", "type": "string"},
    {"name": "op", "type": "string"},
    {"name": "entity_key", "type": "string"},
    {"name": "is_deleted", "type": "boolean"},
    {"name": "source_system", "type": "string"},
    {"name": "source_department", "type": "string"},
    {"name": "source_entity", "type": "string"},
    {"name": "source_position", "type": "string"},
    {"name": "ts_source", "type": _TS_MILLIS},
    {"name": "ts_emitted", "type": _TS_MILLIS},
    {"name": "ts_processed", "type": _TS_MILLIS},
    {"name": "payload_version", "type": "int"},
    # The entity's version in source order (contract/positions.py), computed once by the processor
    # for the state tables and the KPI worker; nullable so that the clean schemas evolve compatibly.
    {"name": "source_version", "type": ["null", "string"], "default": None},
]
SOURCE_VERSION = "source_version"
# The rules of severity `flag` a record failed (rule ids "<field>:<kind>"): the last clean field.
DQ_FLAGS = "dq_flags"
DQ_FLAGS_FIELD: dict[str, Any] = {
    "name": DQ_FLAGS,
    "type": {"type": "array", "items": "string"},
    "default": [],
    "doc": "Data-quality rules of severity flag the record failed, as rule ids <field>:<kind> (empty: none).",
}


def _is_nullable(avro_type: Any) -> bool:
    return isinstance(avro_type, list) and "null" in avro_type


def _timestamp_unit(avro_type: Any) -> int | None:
    """Units per millisecond of a (nullable) timestamp type; None for any other type."""
    t = _non_null(avro_type)
    if isinstance(t, dict) and t.get("type") == "long":
        return _TS_UNITS.get(t.get("logicalType", ""))
    return None


def _non_null(avro_type: Any) -> Any:
    if isinstance(avro_type, list):
        rest = [t for t in avro_type if t != "null"]
        return rest[0] if len(rest) == 1 else rest
    return avro_type


@dataclass(frozen=True)
class RegionField:
    name: str
    level: str  # "village" or "kecamatan"
    nullable: bool
    severity: str = REJECT  # of an unknown code (flag: kept, without the names)

    @property
    def prefix(self) -> str:
        suffix = f"{self.level}_code"
        return self.name[: -len(suffix)] if self.name.endswith(suffix) else f"{self.name}_"

    def enrichment_fields(self) -> list[tuple[str, str]]:
        """(output field, what it holds) pairs added next to the code."""
        if self.level == "village":
            return [
                (f"{self.prefix}village_name", "village_name"),
                (f"{self.prefix}kecamatan_code", "kecamatan_code"),
                (f"{self.prefix}kecamatan_name", "kecamatan_name"),
            ]
        return [(f"{self.prefix}kecamatan_name", "kecamatan_name")]


def region_of(f: Mapping[str, Any]) -> tuple[str, str] | None:
    """(level, severity) of a field's `region` rule, written plain or with a severity; None without."""
    declared = f.get("region")
    value, severity = (
        split_severity("", f["name"], "region", declared) if isinstance(declared, dict) else (declared, REJECT)
    )
    return (value, severity) if value in ("village", "kecamatan") else None


@dataclass
class PayloadRules:
    """What the processor needs to know about one payload schema, read from its attributes once."""

    schema: dict[str, Any]
    pii: frozenset[str] = field(default_factory=frozenset)
    regions: tuple[RegionField, ...] = ()
    minimums: dict[str, float] = field(default_factory=dict)
    required: frozenset[str] = field(default_factory=frozenset)  # null is rejected
    transitions: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    initial: dict[str, list[str]] = field(default_factory=dict)
    # Timestamp fields bounded to the plausible window: name -> units per millisecond.
    timestamps: dict[str, int] = field(default_factory=dict)
    # The field rules (min, flagged required, max, pattern, one_of, compare) in schema order.
    checks: tuple[FieldRule, ...] = ()
    references: tuple[Reference, ...] = ()  # checked by the processor against its reference tables

    @classmethod
    def from_schema(cls, payload: Mapping[str, Any], extended: bool = True) -> PayloadRules:
        """`extended=False`: only the rules there were before severities (pii, region, min,
        required, lifecycle), as reject; the others (max, pattern, one_of, compare, references,
        flags) are left out - the bench's comparison, BACKBONE_PROCESSOR_DQ_RULES=false."""
        schema = str(payload.get("name", "?"))
        names = {f["name"] for f in payload["fields"]}
        pii, regions, minimums, required = set(), [], {}, set()
        transitions, initial, timestamps = {}, {}, {}
        checks: list[FieldRule] = []
        references: list[Reference] = []
        for f in payload["fields"]:
            name, nullable = f["name"], _is_nullable(f["type"])
            unit = _timestamp_unit(f["type"])
            if unit is not None:
                timestamps[name] = unit
            if isinstance(f.get("transitions"), dict):
                transitions[name] = f["transitions"]
            if isinstance(f.get("initial"), list):
                initial[name] = f["initial"]
            if f.get("pii") is True:
                pii.add(name)
            region = region_of(f)
            if region is not None:
                regions.append(RegionField(name, region[0], nullable, region[1] if extended else REJECT))
            missing = required_severity(schema, f, nullable)
            if missing == REJECT or (missing == FLAG and not extended):
                required.add(name)
            elif missing == FLAG:
                checks.append(missing_rule(name, FLAG))
            for rule in field_rules(schema, f, names):
                if rule.kind == "min":
                    minimums[name] = f["min"]["value"] if isinstance(f["min"], dict) else f["min"]
                if extended or rule.kind == "min":
                    checks.append(rule if extended else FieldRule(name, "min", REJECT, rule.passes, rule.explain))
            ref = reference(schema, f)
            if ref is not None and extended:
                references.append(ref)
        return cls(
            dict(payload),
            frozenset(pii),
            tuple(regions),
            minimums,
            frozenset(required),
            transitions,
            initial,
            timestamps,
            tuple(checks),
            tuple(references),
        )

    @cached_property
    def version(self) -> int:
        return int(self.schema.get("version", 1))

    @cached_property
    def reachable(self) -> dict[str, dict[str, list[str]]]:
        """Per status field: the statuses reachable from each status through one or more allowed
        moves (what a source that is only seen now and then - a poll, a daily file - may show next)."""
        closure: dict[str, dict[str, list[str]]] = {}
        for name, moves in self.transitions.items():
            closure[name] = {}
            for start in moves:
                seen: list[str] = []
                frontier = list(moves.get(start, []))
                while frontier:
                    status = frontier.pop()
                    if status not in seen:
                        seen.append(status)
                        frontier.extend(moves.get(status, []))
                closure[name][start] = sorted(seen)
        return closure

    def clean_schema(self) -> dict[str, Any]:
        """The flat record on clean.* topics and in the sink's tables."""
        fields: list[dict[str, Any]] = copy.deepcopy(CLEAN_META_FIELDS)
        for f in self.schema["fields"]:
            out = copy.deepcopy(f)
            if f["name"] in self.pii:
                out["type"] = ["null", "string"] if _is_nullable(f["type"]) else "string"
                out["doc"] = "Pseudonymised (keyed hash) personal data."
                out.pop("default", None)
                if _is_nullable(f["type"]):
                    out["default"] = None
            fields.append(out)
            for region in self.regions:
                if region.name == f["name"]:
                    for name, _ in region.enrichment_fields():
                        # Nullable: a code unknown to an older reference table must not block storage.
                        fields.append({"name": name, "type": ["null", "string"], "default": None})
        fields.append(copy.deepcopy(DQ_FLAGS_FIELD))
        names = [f["name"] for f in fields]
        clashes = sorted({n for n in names if names.count(n) > 1})
        if clashes:
            raise InputError(
                f"schema {self.schema['name']}: field(s) {', '.join(clashes)} clash with the processor's metadata "
                "or region enrichment fields; rename them in the payload schema"
            )
        return {
            "type": "record",
            "name": f"{self.schema['name']}Clean",
            "namespace": self.schema.get("namespace", ""),
            "doc": f"Validated, enriched and pseudonymised {self.schema['name']} changes.",
            "fields": fields,
        }


class Rejected(Exception):
    """An event that fails validation; the message is the dead-letter reason, `rule` the id of the
    rule it broke ("<field>:<kind>", or envelope:<what>, key:mismatch)."""

    def __init__(self, message: str, rule: str = "") -> None:
        super().__init__(message)
        self.rule = rule


def to_millis(value: Any) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value)


def shown(rules: PayloadRules, secret: bytes, name: str, value: Any) -> str:
    """A field's value as a reason quotes it: pseudonymised when the field is personal data, cut
    when long (a reason travels in a Kafka header)."""
    if name in rules.pii and value is not None:
        return f"<pseudonym {pseudonymise(secret, str(value))}>"
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN]}... ({len(text)} characters)"


# Checking one event against these rules lives in contract/validate.py; exported here as before.
_VALIDATE = ("clean_event", "check_message_key")


def __getattr__(name: str) -> Any:
    if name in _VALIDATE:
        from contract import validate

        return getattr(validate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
