"""The change-event contract shared by every departmental system.

A payload schema (one .avsc per entity) describes the entity's record. Custom attributes on its
fields carry the rules the processor applies without per-domain code:
  "pii": true         personal data: pseudonymised with a keyed hash before analytics
  "region": "village" | "kecamatan"   an official region code: validated and enriched with names
  "min": <number>     a lower bound (amounts, counts)
  "required": true    a nullable field the business still needs (null is dead-lettered)
  "transitions": {"FROM": ["TO", ...]}   the allowed lifecycle moves of a status field, checked
                      on updates from `before` to `after`; "initial": [...] lists allowed
                      states at creation (op c; a snapshot read may find any state); an update
                      without `before` (file drops, query polling) passes unchecked
Timestamps must be plausible: the envelope's ts_source and ts_emitted between 1970 and a year after
processing (a later ts_source would stay its key's newest state); timestamp fields of the payload
from 1970 to a century ahead (deadlines, and business clocks that run ahead, are legitimate).
The envelope (schemas/envelope.avsc) wraps the payload as `before`/`after` with source metadata.
The clean schema is the flat record the processor emits and the sink stores.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any

from backbone.errors import InputError

PAYLOAD_PLACEHOLDER = "__PAYLOAD__"
ENVELOPE_FILE = "envelope.avsc"
OPS = ("c", "u", "d", "r")

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
]


def event_id(system: str, entity: str, key: str, position: str) -> str:
    """Deterministic id: the same change captured twice gets the same id."""
    digest = hashlib.blake2b(digest_size=16)
    for part in (system, entity, key, position):
        digest.update(part.encode())
        digest.update(b"\x00")
    return digest.hexdigest()


_SEPARATORS = re.compile(r"[\s\-.()/]+")


def normalise_identity(value: str) -> str:
    """The form a personal value is hashed in, so that one person gives one pseudonym however a
    system wrote it: Unicode compatibility form, any script's digits as ASCII digits, trimmed and
    single-spaced, case-folded; a number-like value (NIK, phone) without separators, and an
    Indonesian phone number in its national form (+62 812... -> 0812...)."""
    text = unicodedata.normalize("NFKC", value)
    text = "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() else ch for ch in text)
    text = " ".join(text.split()).casefold()
    compact = _SEPARATORS.sub("", text)
    if compact.lstrip("+").isdigit():
        return "0" + compact[3:] if compact.startswith("+62") else compact.lstrip("+")
    return text


def scope_secret(master: bytes, scope: str) -> bytes:
    """The pseudonymisation key of one scope (a domain, or a scope the catalog names), derived from
    the one master key: pseudonyms join within a scope and cannot be linked across scopes."""
    return hmac.new(master, b"pseudonym-scope\x00" + scope.encode(), hashlib.sha256).digest()


def pseudonymise(secret: bytes, value: str) -> str:
    """Keyed hash of the normalised value: stable across events and the systems of one scope (joins
    still work there), irreversible without the key."""
    return hmac.new(secret, normalise_identity(value).encode(), hashlib.sha256).hexdigest()[:32]


def load_envelope_template(schemas_dir: Path) -> dict[str, Any]:
    return json.loads((schemas_dir / ENVELOPE_FILE).read_text())


def compose_envelope(template: Mapping[str, Any], payload: Mapping[str, Any], entity_name: str) -> dict[str, Any]:
    """The topic's value schema: the envelope with the payload record in before/after."""
    envelope = copy.deepcopy(dict(template))
    payload_name = _full_name(payload)
    envelope["name"] = f"{payload['name']}Change"
    first = True
    for f in envelope["fields"]:
        if f["type"] == ["null", PAYLOAD_PLACEHOLDER]:
            # A named type is defined once; the second use refers to it by name.
            f["type"] = ["null", copy.deepcopy(dict(payload)) if first else payload_name]
            first = False
    envelope.setdefault("doc", f"Change events of {entity_name}")
    return envelope


def full_name(schema: Mapping[str, Any]) -> str:
    """A named schema's full name (namespace.name)."""
    return _full_name(schema)


def _full_name(schema: Mapping[str, Any]) -> str:
    ns = schema.get("namespace")
    return f"{ns}.{schema['name']}" if ns and "." not in schema["name"] else schema["name"]


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


@dataclass
class PayloadRules:
    """What the processor needs to know about one payload schema, read from its attributes."""

    schema: dict[str, Any]
    pii: frozenset[str] = field(default_factory=frozenset)
    regions: tuple[RegionField, ...] = ()
    minimums: dict[str, float] = field(default_factory=dict)
    required: frozenset[str] = field(default_factory=frozenset)
    transitions: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    initial: dict[str, list[str]] = field(default_factory=dict)
    # Timestamp fields bounded to the plausible window: name -> units per millisecond.
    timestamps: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_schema(cls, payload: Mapping[str, Any]) -> PayloadRules:
        pii, regions, minimums, required = set(), [], {}, set()
        transitions, initial, timestamps = {}, {}, {}
        for f in payload["fields"]:
            unit = _timestamp_unit(f["type"])
            if unit is not None:
                timestamps[f["name"]] = unit
            if isinstance(f.get("transitions"), dict):
                transitions[f["name"]] = f["transitions"]
            if isinstance(f.get("initial"), list):
                initial[f["name"]] = f["initial"]
            if f.get("pii") is True:
                pii.add(f["name"])
            if f.get("region") in ("village", "kecamatan"):
                regions.append(RegionField(f["name"], f["region"], _is_nullable(f["type"])))
            if isinstance(f.get("min"), int | float):
                minimums[f["name"]] = f["min"]
            if not _is_nullable(f["type"]) or f.get("required") is True:
                required.add(f["name"])
        return cls(
            dict(payload),
            frozenset(pii),
            tuple(regions),
            minimums,
            frozenset(required),
            transitions,
            initial,
            timestamps,
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
    """An event that fails validation; the message is the dead-letter reason."""


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


def _implausible(value: Any, unit: int, high: datetime) -> bool:
    """Whether a timestamp lies before 1970 or after `high`."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment < EPOCH or moment > high
    if isinstance(value, int | float):
        millis = value / unit
        return millis < 0 or millis > high.timestamp() * 1000
    return False


def _window_reason(name: str, value: Any, high: datetime) -> str:
    moment = value.isoformat() if isinstance(value, datetime) else repr(value)
    return (
        f"field {name!r} value {moment}: outside the plausible window "
        f"(1970-01-01 to {high.isoformat(timespec='seconds')})"
    )


def check_message_key(
    record: Mapping[str, Any],
    message_key: bytes | None,
    rules: PayloadRules,
    secret: bytes,
    key_fields: tuple[str, ...],
) -> None:
    """Rejected when the Kafka message key is not the record's key (the partition, the order per key
    and the compaction of clean topics all follow the message key)."""
    expected = record["entity_key"]
    if message_key is not None and message_key == expected.encode():
        return
    pii = any(k in rules.pii for k in key_fields)
    if pii:
        got = (
            "none"
            if message_key is None
            else f"<pseudonym {pseudonymise(secret, message_key.decode(errors='replace'))}>"
        )
        want = f"<pseudonym {pseudonymise(secret, expected)}>"
    else:
        got = "none" if message_key is None else shown(rules, secret, "", message_key.decode(errors="replace"))
        want = shown(rules, secret, "", expected)
    raise Rejected(f"message key {got} differs from the record's key {want}")


def clean_event(
    event: Mapping[str, Any],
    rules: PayloadRules,
    regions: Mapping[str, Mapping[str, Any]],
    secret: bytes,
    key_fields: tuple[str, ...],
    now: datetime | None = None,
    prior: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Validate one decoded change event and turn it into a clean record, or raise Rejected.

    `prior`: the entity's lifecycle fields as the processor last saw them, the `before` of an update
    that carries none (file drops, query polling), from which the new status must be reachable.
    A delete is judged on its `before` state alone:
    a delete of a key never seen is accepted like any other (the change log keeps it; the current
    state has nothing to hide)."""
    now = now or datetime.now(UTC)
    op = event.get("op")
    if op not in OPS:
        raise Rejected(f"field 'op' value {op!r}: not one of {', '.join(OPS)}")
    state = event.get("before") if op == "d" else event.get("after")
    if state is None:
        raise Rejected(f"field '{'before' if op == 'd' else 'after'}' is empty for op {op!r}")
    if not event.get("event_id"):
        raise Rejected("field 'event_id' is empty")
    for name in key_fields:
        if state.get(name) in (None, ""):
            raise Rejected(f"key field {name!r} is empty")
    for name in rules.required:
        if state.get(name) is None:
            raise Rejected(f"field {name!r} is missing")
    for name, minimum in rules.minimums.items():
        value = state.get(name)
        if value is not None and value < (Decimal(str(minimum)) if isinstance(value, Decimal) else minimum):
            value_shown = shown(rules, secret, name, value) if name in rules.pii else value
            raise Rejected(f"field {name!r} value {value_shown}: below the minimum {minimum}")
    high = now + FUTURE_MARGIN
    for name in ("ts_source", "ts_emitted"):
        if _implausible(event.get(name), 1, high):
            raise Rejected(_window_reason(name, event.get(name), high))
    payload_high = now + PAYLOAD_FUTURE_MARGIN
    for name, unit in rules.timestamps.items():
        value = state.get(name)
        if value is not None and _implausible(value, unit, payload_high):
            if name in rules.pii:
                raise Rejected(
                    f"field {name!r} value {shown(rules, secret, name, value)}: outside the plausible window"
                )
            raise Rejected(_window_reason(name, value, payload_high))

    for name, allowed in rules.initial.items():
        if op == "c" and state.get(name) not in allowed:  # a snapshot read may find any state
            raise Rejected(
                f"field {name!r} value {shown(rules, secret, name, state.get(name))}: "
                f"not a valid initial state ({', '.join(allowed)})"
            )
    # File drops and query polling have no before image: the processor's last state stands in. Such a
    # source is seen only now and then (and a rejected row is never seen), so from the last state a
    # change may skip statuses: it must be reachable, not one move away.
    before = event.get("before")
    allowed_moves = rules.transitions
    if before is None and prior is not None:
        before, allowed_moves = prior, rules.reachable
    if op == "u" and allowed_moves and before is not None:
        for name, moves in allowed_moves.items():
            old, new = before.get(name), state.get(name)
            if old != new and new not in moves.get(old, []):
                if name in rules.pii:
                    raise Rejected(
                        f"field {name!r} transition {shown(rules, secret, name, old)} -> "
                        f"{shown(rules, secret, name, new)} is not allowed"
                    )
                raise Rejected(
                    f"field {name!r} transition {old!r} -> {new!r} is not allowed "
                    f"(from {old!r}: {', '.join(moves.get(old, [])) or 'none'})"
                )

    source = event["source"]
    record: dict[str, Any] = {
        "event_id": event["event_id"],
        "op": op,
        "entity_key": event.get("key") or "|".join(str(state[k]) for k in key_fields),
        "is_deleted": op == "d",
        "source_system": source["system"],
        "source_department": source["department"],
        "source_entity": source["entity"],
        "source_position": source["position"],
        "ts_source": event["ts_source"],
        "ts_emitted": event["ts_emitted"],
        "ts_processed": now,
        "payload_version": event.get("payload_version", rules.version),
    }
    for name, value in state.items():
        if name in rules.pii and value is not None:
            value = pseudonymise(secret, str(value))
        record[name] = value
    for region in rules.regions:
        code = state.get(region.name)
        if code is None:
            for name, _ in region.enrichment_fields():
                record[name] = None
            continue
        info = regions.get(code)
        if info is None or info.get("level") != region.level:
            raise Rejected(
                f"field {region.name!r} value {shown(rules, secret, region.name, code)}: unknown {region.level} code"
            )
        parent = regions.get(info.get("parent", "")) or {}
        values = {
            "village_name": info["name"],
            "kecamatan_name": parent.get("name") if region.level == "village" else info["name"],
            "kecamatan_code": info.get("parent"),
        }
        for name, what in region.enrichment_fields():
            record[name] = values[what]
    return record
