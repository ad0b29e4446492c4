"""One change event judged against its payload's rules (contract/rules.py, contract/field_rules.py):
the envelope, required fields, the field rules by severity, plausible timestamps, the lifecycle, the
region codes; the result is the clean record (pseudonymised, enriched, with its dq_flags)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from contract.envelope import OPS
from contract.field_rules import REJECT
from contract.pseudonyms import pseudonymise
from contract.rules import (
    DQ_FLAGS,
    EPOCH,
    FUTURE_MARGIN,
    MAX_SHOWN,
    PAYLOAD_FUTURE_MARGIN,
    PayloadRules,
    Rejected,
    shown,
)


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
    raise Rejected(f"message key {got} differs from the record's key {want}", "key:mismatch")


def _check_envelope(event: Mapping[str, Any], key_fields: tuple[str, ...]) -> tuple[str, Mapping[str, Any]]:
    op = event.get("op")
    if op not in OPS:
        raise Rejected(f"field 'op' value {op!r}: not one of {', '.join(OPS)}", "envelope:op")
    state = event.get("before") if op == "d" else event.get("after")
    if state is None:
        raise Rejected(f"field '{'before' if op == 'd' else 'after'}' is empty for op {op!r}", "envelope:state")
    if not event.get("event_id"):
        raise Rejected("field 'event_id' is empty", "envelope:event_id")
    for name in key_fields:
        if state.get(name) in (None, ""):
            raise Rejected(f"key field {name!r} is empty", f"{name}:required")
    return op, state


def _check_lifecycle(
    event: Mapping[str, Any], op: str, state: Mapping[str, Any], rules: PayloadRules, secret: bytes, prior: Any
) -> None:
    for name, allowed in rules.initial.items():
        if op == "c" and state.get(name) not in allowed:  # a snapshot read may find any state
            raise Rejected(
                f"field {name!r} value {shown(rules, secret, name, state.get(name))}: "
                f"not a valid initial state ({', '.join(allowed)})",
                f"{name}:initial",
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
                        f"{shown(rules, secret, name, new)} is not allowed",
                        f"{name}:transition",
                    )
                raise Rejected(
                    f"field {name!r} transition {old!r} -> {new!r} is not allowed "
                    f"(from {old!r}: {', '.join(moves.get(old, [])) or 'none'})",
                    f"{name}:transition",
                )


def clean_event(
    event: Mapping[str, Any],
    rules: PayloadRules,
    regions: Mapping[str, Mapping[str, Any]],
    secret: bytes,
    key_fields: tuple[str, ...],
    now: datetime | None = None,
    prior: Mapping[str, Any] | None = None,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """Validate one decoded change event and turn it into a clean record, or raise Rejected (at the
    first rule of severity reject it breaks). Rules of severity flag it breaks are listed in the
    record's dq_flags, and their messages appended to `notes` when given.

    `prior`: the entity's lifecycle fields as the processor last saw them, the `before` of an update
    that carries none (file drops, query polling), from which the new status must be reachable.
    A delete is judged on its `before` state alone:
    a delete of a key never seen is accepted like any other (the change log keeps it; the current
    state has nothing to hide). References to other entities are the processor's to check."""
    now = now or datetime.now(UTC)
    op, state = _check_envelope(event, key_fields)
    for name in rules.required:
        if state.get(name) is None:
            raise Rejected(f"field {name!r} is missing", f"{name}:required")
    flags: list[str] = []

    def show(name: str, value: Any) -> str:
        return shown(rules, secret, name, value) if name in rules.pii else _plain(value)

    for rule in rules.checks:
        value = state.get(rule.field)
        if rule.passes(value, state):
            continue
        if rule.severity == REJECT:
            raise Rejected(rule.message(value, state, show), rule.rule_id)
        if rule.rule_id not in flags:
            flags.append(rule.rule_id)
            if notes is not None:
                notes.append(rule.message(value, state, show))
    high = now + FUTURE_MARGIN
    for name in ("ts_source", "ts_emitted"):
        if _implausible(event.get(name), 1, high):
            raise Rejected(_window_reason(name, event.get(name), high), f"{name}:window")
    payload_high = now + PAYLOAD_FUTURE_MARGIN
    for name, unit in rules.timestamps.items():
        value = state.get(name)
        if value is not None and _implausible(value, unit, payload_high):
            if name in rules.pii:
                raise Rejected(
                    f"field {name!r} value {shown(rules, secret, name, value)}: outside the plausible window",
                    f"{name}:window",
                )
            raise Rejected(_window_reason(name, value, payload_high), f"{name}:window")
    _check_lifecycle(event, op, state, rules, secret, prior)

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
        info = regions.get(code) if code is not None else None
        if code is not None and (info is None or info.get("level") != region.level):
            message = (
                f"field {region.name!r} value {shown(rules, secret, region.name, code)}: unknown {region.level} code"
            )
            if region.severity == REJECT:
                raise Rejected(message, f"{region.name}:region")
            flags.append(f"{region.name}:region")
            if notes is not None:
                notes.append(message)
            info = None
        if info is None:
            for name, _ in region.enrichment_fields():
                record[name] = None
            continue
        parent = regions.get(info.get("parent", "")) or {}
        values = {
            "village_name": info["name"],
            "kecamatan_name": parent.get("name") if region.level == "village" else info["name"],
            "kecamatan_code": info.get("parent"),
        }
        for name, what in region.enrichment_fields():
            record[name] = values[what]
    record[DQ_FLAGS] = flags
    return record


def _plain(value: Any) -> str:
    """A value as the bound messages always showed it (a Decimal as 1000.00, not Decimal('1000.00'))."""
    text = str(value) if isinstance(value, int | float) or type(value).__name__ == "Decimal" else repr(value)
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN]}... ({len(text)} characters)"
