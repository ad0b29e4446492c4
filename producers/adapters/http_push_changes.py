"""What a push request carries, without HTTP: the JSON body parsed, every item checked against the
entity's payload schema and the processor's own rules, and turned into a Change with a deterministic
position. A refusal is an HttpError with the status and the errors list the sender gets."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from contract.catalog import Entity
from contract.coerce import FieldErrors, coerce_record
from contract.rules import PayloadRules, Rejected, clean_event
from producers.emitter import Change

ITEM_FIELDS = ("op", "record", "before", "changed_at", "position")
PUSH_OPS = ("c", "u", "d")
_FIELD_IN_REASON = re.compile(r"field '([A-Za-z_][A-Za-z0-9_]*)'")


def canonical_json(value: Any) -> str:
    """Stable text of a coerced record: sorted keys, no spaces, typed values in one spelling."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_plain)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def default_position(entity: str, op: str, key: str, changed_at: datetime, record: dict[str, Any]) -> str:
    """The position of a change sent without one: the same change always gets the same position."""
    digest = hashlib.blake2b(digest_size=16)
    for part in (entity, op, key, _plain(changed_at), canonical_json(record)):
        digest.update(part.encode())
        digest.update(b"\x00")
    return "push-" + digest.hexdigest()


class HttpError(Exception):
    """A refused request: status and the JSON errors list."""

    def __init__(self, status: int, errors: list[dict[str, Any]], headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status}: {errors[:1]}")
        self.status = status
        self.errors = errors
        self.headers = headers or {}


def error(message: str, **extra: Any) -> dict[str, Any]:
    return {"index": None, "field": None, "message": message, **extra}


def parse_json(body: bytes) -> Any:
    """The request body as JSON; HttpError(400) naming where it is malformed."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HttpError(
            400, [error(f"body is not UTF-8: {exc.reason} at byte {exc.start}", position=exc.start)]
        ) from None

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        return json.loads(text, parse_constant=constant)
    except json.JSONDecodeError as exc:
        raise HttpError(
            400,
            [
                error(
                    f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos})",
                    line=exc.lineno,
                    column=exc.colno,
                    position=exc.pos,
                )
            ],
        ) from None
    except ValueError as exc:
        raise HttpError(400, [error(f"malformed JSON: {exc}")]) from None


class ChangeValidator:
    """Turns the items of a request for one entity into Changes, or refuses them all (422)."""

    def __init__(self, entities: dict[str, Entity], regions: dict[str, dict[str, str]]) -> None:
        self.schemas = {name: e.payload_schema() for name, e in entities.items()}
        self.rules = {name: PayloadRules.from_schema(s) for name, s in self.schemas.items()}
        self.regions = regions

    def changes(self, entity: Entity, items: list[Any]) -> list[Change]:
        """Every item as a Change, or HttpError(422) with every problem of every item."""
        errors: list[dict[str, Any]] = []
        changes: list[Change] = []
        for index, item in enumerate(items):
            found: list[dict[str, Any]] = []
            change = self._change(entity, item, index, found)
            errors.extend(found)
            if change is not None and not found:
                changes.append(change)
        if errors:
            raise HttpError(422, errors)
        return changes

    def _change(self, entity: Entity, item: Any, index: int, errors: list[dict[str, Any]]) -> Change | None:
        def problem(name: str | None, message: str) -> None:
            errors.append({"index": index, "field": name, "message": message})

        if not isinstance(item, dict):
            problem(None, f"is a JSON {type(item).__name__}, expected an object with 'record' and 'changed_at'")
            return None
        for name in item:
            if name not in ITEM_FIELDS:
                problem(name, f"is not a field of a change (expected {', '.join(ITEM_FIELDS)})")
        op = item.get("op", "c")
        if op not in PUSH_OPS:
            problem("op", f"value {op!r} is not one of {', '.join(PUSH_OPS)}")
        changed_at = self._changed_at(item.get("changed_at"), problem)
        position = item.get("position")
        if position is not None and (not isinstance(position, str) or not position.strip()):
            problem("position", f"value {position!r} is not a non-empty string")
        schema = self.schemas[entity.name]
        record = self._record(schema, item.get("record"), "record", problem)
        before = None
        if item.get("before") is not None:
            before = self._record(schema, item["before"], "before", problem)
        if errors or record is None:
            return None
        key = "|".join(str(record[k]) for k in entity.key)
        if not position:
            position = default_position(entity.name, op, key, changed_at, record)
        if op == "d":
            change = Change("d", key, position, changed_at, before=record, entity=entity.name)
        else:
            change = Change(op, key, position, changed_at, before=before, after=record, entity=entity.name)
        # The processor's own rules: what it would dead-letter is refused here, where the sender can fix it.
        event = {"event_id": "check", "op": op, "key": key, "before": change.before, "after": change.after}
        event |= {"source": {"system": "", "department": "", "entity": "", "position": ""}}
        event |= {"ts_source": changed_at, "ts_emitted": changed_at}
        try:
            clean_event(event, self.rules[entity.name], self.regions, b"check", entity.key)
        except Rejected as exc:
            reason = str(exc)
            match = _FIELD_IN_REASON.search(reason)
            where = "before" if op == "d" else "record"
            problem(f"{where}.{match.group(1)}" if match else where, reason)
            return None
        return change

    @staticmethod
    def _changed_at(value: Any, problem: Any) -> datetime | None:
        if value is None:
            problem("changed_at", "is missing (the time of the change in the source, ISO 8601 with a zone)")
            return None
        if not isinstance(value, str):
            problem("changed_at", f"value {value!r} is not an ISO 8601 text")
            return None
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            problem("changed_at", f"value {value!r} is not an ISO 8601 time (e.g. 2026-11-26T08:30:00+07:00)")
            return None
        if parsed.tzinfo is None:
            problem("changed_at", f"value {value!r} has no zone: add Z or an offset such as +07:00")
            return None
        return parsed.astimezone(UTC)

    @staticmethod
    def _record(schema: dict[str, Any], raw: Any, where: str, problem: Any) -> dict[str, Any] | None:
        if raw is None:
            problem(where, f"is missing (the {schema['name']} fields)")
            return None
        if not isinstance(raw, dict):
            problem(where, f"is a JSON {type(raw).__name__}, expected an object of {schema['name']} fields")
            return None
        try:
            return coerce_record(schema, raw, strict=True)
        except FieldErrors as exc:
            for name, message in exc.errors.items():
                problem(f"{where}.{name}", message)
            return None
