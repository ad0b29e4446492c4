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
from contract.coerce import TIMESTAMP_WINDOW, FieldErrors, coerce_record
from contract.rules import PayloadRules, Rejected, clean_event
from producers.adapters.pii import PiiMask
from producers.emitter import Change

ITEM_FIELDS = ("op", "record", "before", "changed_at", "position")
PUSH_OPS = ("c", "u", "d")
_FIELD_IN_REASON = re.compile(r"field '([A-Za-z_][A-Za-z0-9_]*)'")
MAX_JSON_DEPTH = 32  # a change is 3 levels deep; anything deeper is refused before it is walked
MAX_POSITION_CHARS = 1000
_PARENS = str.maketrans("[]{}", "()()")
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_JSON_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"')
# Errors a hostile value can raise while it is checked: the item is refused, never answered with a 500.
_VALUE_ERRORS = (ValueError, TypeError, OverflowError, RecursionError, UnicodeError, ArithmeticError)


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


def _number(text: str) -> Decimal:
    """A JSON number with a fraction or exponent, exact: as a float, money would change silently
    (99999999999999.99 became ...98, 1e-400 became 0) and 1e400 would be infinite. The coercion
    judges the exact value and refuses, naming the field, what the field cannot hold."""
    return Decimal(text)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose names are each given once: parsers disagree on which of two values wins
    ({"op": "c", "op": "d"} is a delete here, a create elsewhere), so a sender's intent is unknown."""
    document = dict(pairs)
    if len(document) < len(pairs):
        seen: set[str] = set()
        twice = next(name for name, _ in pairs if name in seen or seen.add(name))
        raise ValueError(f"name {_shown(twice)} is given twice in one object")
    return document


def json_depth(text: str) -> int:
    """How deeply a well-formed JSON text nests arrays and objects, up to MAX_JSON_DEPTH + 1 (linear
    time per level, in C: strings dropped, then the innermost bracket pairs removed level by level)."""
    opening = text.count("[") + text.count("{")
    if opening <= MAX_JSON_DEPTH:
        return opening  # an upper bound, enough to pass
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)).translate(_PARENS)
    for level in range(MAX_JSON_DEPTH + 1):
        if not brackets:
            return level
        brackets = brackets.replace("()", "")
    return MAX_JSON_DEPTH + 1


def _too_deep() -> HttpError:
    return HttpError(400, [error(f"malformed JSON: nested more than {MAX_JSON_DEPTH} levels deep")])


def parse_json(body: bytes) -> Any:
    """The request body as JSON; HttpError(400) naming where it is malformed. Nesting is bounded
    (MAX_JSON_DEPTH), so no body makes the parser or anything after it recurse without limit."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HttpError(
            400, [error(f"body is not UTF-8: {exc.reason} at byte {exc.start}", position=exc.start)]
        ) from None

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        document = json.loads(text, parse_constant=constant, parse_float=_number, object_pairs_hook=_object)
    except RecursionError:
        raise _too_deep() from None
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
    except ValueError as exc:  # NaN/Infinity, a name given twice, or an integer of more digits than Python converts
        raise HttpError(400, [error(f"malformed JSON: {str(exc)[:200]}")]) from None
    if json_depth(text) > MAX_JSON_DEPTH:
        raise _too_deep()
    return document


class ChangeValidator:
    """Turns the items of a request for one entity into Changes, or refuses them all (422)."""

    def __init__(
        self, entities: dict[str, Entity], regions: dict[str, dict[str, str]], pii: PiiMask | None = None
    ) -> None:
        self.schemas = {name: e.payload_schema() for name, e in entities.items()}
        self.rules = {name: PayloadRules.from_schema(s) for name, s in self.schemas.items()}
        self.regions = regions
        # Error messages never echo personal data in clear, not even the sender's own.
        self.pii = pii or PiiMask(b"", entities.values())

    def changes(self, entity: Entity, items: list[Any]) -> list[Change]:
        """Every item as a Change, or HttpError(422) with every problem of every item."""
        errors: list[dict[str, Any]] = []
        changes: list[Change] = []
        for index, item in enumerate(items):
            found: list[dict[str, Any]] = []
            try:
                change = self._change(entity, item, index, found)
            except _VALUE_ERRORS as exc:  # a value no check foresaw: this item is refused, with its index
                found.append({"index": index, "field": None, "message": f"cannot be read ({type(exc).__name__})"})
                change = None
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
            problem("op", f"value {_shown(op)} is not one of {', '.join(PUSH_OPS)}")
        changed_at = self._changed_at(item.get("changed_at"), problem)
        position = item.get("position")
        if position is not None and (not isinstance(position, str) or not position.strip()):
            problem("position", f"value {_shown(position)} is not a non-empty string")
        elif isinstance(position, str) and (len(position) > MAX_POSITION_CHARS or not _unicode(position)):
            problem("position", f"is not valid Unicode text of at most {MAX_POSITION_CHARS} characters")
        schema = self.schemas[entity.name]
        record = self._record(entity.name, schema, item.get("record"), "record", problem)
        before = None
        if item.get("before") is not None:
            before = self._record(entity.name, schema, item["before"], "before", problem)
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
            reason = self.pii.record_text(entity.name, str(exc), change.before, change.after)
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
            problem("changed_at", f"value {_shown(value)} is not an ISO 8601 text")
            return None
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            if parsed.tzinfo is not None:
                parsed = parsed.astimezone(UTC)
        except (ValueError, OverflowError):
            problem("changed_at", f"value {_shown(value)} is not an ISO 8601 time (e.g. 2026-11-26T08:30:00+07:00)")
            return None
        if parsed.tzinfo is None:
            problem("changed_at", f"value {_shown(value)} has no zone: add Z or an offset such as +07:00")
            return None
        if not TIMESTAMP_WINDOW[0] <= parsed < TIMESTAMP_WINDOW[1]:
            window = f"{TIMESTAMP_WINDOW[0]:%Y} to {TIMESTAMP_WINDOW[1]:%Y}"
            problem("changed_at", f"value {_shown(value)} is outside the plausible years {window}")
            return None
        return parsed

    def _record(self, entity: str, schema: dict[str, Any], raw: Any, where: str, problem: Any) -> dict[str, Any] | None:
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
                problem(f"{where}.{name}", self.pii.message(entity, name, raw.get(name), message))
            return None


def _unicode(text: str) -> bool:
    """Whether a text is valid Unicode (no lone surrogates, which JSON escapes can carry)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(value: Any) -> str:
    """A value as an error message shows it: its repr, cut to 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"
