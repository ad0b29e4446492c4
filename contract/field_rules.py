"""Data-quality rules declared on payload fields, each with a severity, read once per schema.

A rule is a custom attribute of a field in the payload schema (schemas/<domain>/*.avsc), written as a
plain value (severity `reject`) or as an object with its value and severity, e.g.
  "max": 100                                  or  "max": {"value": 100, "severity": "flag"}
  "min": 0                                    (a lower bound; numbers, decimals)
  "max": 12                                   (an upper bound)
  "pattern": "NIK"                            a named pattern (NAMED_PATTERNS below), or a regular
  "pattern": "^[A-Z]{3}$"                     expression the whole (string) value must match
  "one_of": ["A", "B"]                        the allowed values
  "required": true                            a nullable field the business still needs
  "compare": {">=": "submitted_at"}           a comparison with another field of the same record:
                                              one or more of <, <=, >, >=, ==, != (plus "severity")
  "references": {"entity": "school", "field": "npsn"}   the value must be the key of an existing
                                              entity ("domain.entity", or an entity of the same
                                              domain); checked by the processor (plus "severity")
  "region": "village"                         (contract.rules) an official region code
A `reject` rule dead-letters the record; a `flag` rule keeps it and lists the rule's id in the clean
record's `dq_flags`. A rule's id is "<field>:<kind>" (e.g. progress_pct:max, decided_at:compare,
school_id:ref). Null values pass every rule but `required`; a comparison with a null field passes."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from backbone.errors import InputError

REJECT, FLAG = "reject", "flag"
SEVERITIES = (REJECT, FLAG)
# The kinds of rule this module reads (min and required were there before severities).
KINDS = ("min", "max", "pattern", "one_of", "required", "compare", "references")
# A rule's id names its kind so: "references" -> "<field>:ref".
RULE_KIND_IDS = {"references": "ref"}


@dataclass(frozen=True)
class NamedPattern:
    regex: str
    what: str
    # Characters dropped before matching (a phone number written with spaces or dashes is the number).
    strip: str = ""


# Defined once for every schema: written as "pattern": "<name>".
NAMED_PATTERNS: dict[str, NamedPattern] = {
    "NIK": NamedPattern(r"[0-9]{16}", "a NIK (national identity number: 16 digits)"),
    "NPSN": NamedPattern(r"[0-9]{8}", "an NPSN (national school id: 8 digits)"),
    "NISN": NamedPattern(r"[0-9]{10}", "an NISN (national student number: 10 digits)"),
    # Mobile (08xx, 8-12 digits after the 8) or landline with area code, national (0) or +62 form.
    "PHONE_ID": NamedPattern(
        r"(?:\+62|62|0)(?:8[1-9][0-9]{6,11}|[2-7][0-9]{7,10})", "an Indonesian phone number", strip=" -.()"
    ),
    # Permendagri 90/2019: account, group, type (2), object (2), object detail (2), sub-detail (4).
    "ACCOUNT_CODE": NamedPattern(
        r"[1-9](?:\.[1-9](?:\.[0-9]{2}(?:\.[0-9]{2}(?:\.[0-9]{2}(?:\.[0-9]{4})?)?)?)?)?",
        "a Permendagri 90/2019 account code (e.g. 5.1.02.01.01.0024)",
    ),
}

_COMPARISONS: dict[str, tuple[Callable[[Any, Any], bool], str]] = {
    "<": (operator.lt, "before"),
    "<=": (operator.le, "not after"),
    ">": (operator.gt, "after"),
    ">=": (operator.ge, "not before"),
    "==": (operator.eq, "equal to"),
    "!=": (operator.ne, "different from"),
}
_NUMBER_WORDS = {"<": "less than", "<=": "at most", ">": "more than", ">=": "at least"}

Shown = Callable[[str, Any], str]  # (field, value) -> the value as a message may quote it


@dataclass(frozen=True)
class FieldRule:
    """One declared rule of one field, compiled once; `passes` runs per event."""

    field: str
    kind: str  # min | max | pattern | one_of | required | compare
    severity: str
    passes: Callable[[Any, Mapping[str, Any]], bool]  # (the field's value, the whole record)
    explain: Callable[[Any, Mapping[str, Any], Shown], str]  # why a value fails, for the message
    arg: Any = None  # as declared: the bound, pattern, allowed values, or (operator, other field)

    @property
    def rule_id(self) -> str:
        return f"{self.field}:{RULE_KIND_IDS.get(self.kind, self.kind)}"

    def message(self, value: Any, record: Mapping[str, Any], show: Shown) -> str:
        if self.kind == "required":
            return f"field {self.field!r} is missing"
        return f"field {self.field!r} value {show(self.field, value)}: {self.explain(value, record, show)}"


@dataclass(frozen=True)
class Reference:
    """`references`: the field's value must be the key of an entity that currently exists."""

    field: str
    entity: str  # "domain.entity" once resolved against the catalog, or as written
    target_field: str
    severity: str

    @property
    def rule_id(self) -> str:
        return f"{self.field}:ref"

    def qualified(self, domain: str) -> str:
        return self.entity if "." in self.entity else f"{domain}.{self.entity}"


def split_severity(schema: str, name: str, kind: str, declared: Any) -> tuple[Any, str]:
    """(value, severity) of a rule written plain (reject) or as {"value": ..., "severity": ...}."""
    if isinstance(declared, dict) and kind not in ("compare", "references"):
        if "value" not in declared:
            raise InputError(f"schema {schema}: field {name!r}: {kind} {declared!r} needs a 'value'")
        return declared["value"], _severity(schema, name, kind, declared)
    if isinstance(declared, dict):
        return declared, _severity(schema, name, kind, declared)
    return declared, REJECT


def _severity(schema: str, name: str, kind: str, declared: Mapping[str, Any]) -> str:
    severity = declared.get("severity", REJECT)
    if severity not in SEVERITIES:
        raise InputError(
            f"schema {schema}: field {name!r}: {kind} severity {severity!r} is not one of {', '.join(SEVERITIES)}"
        )
    return severity


def _bound(name: str, kind: str, limit: float, severity: str) -> FieldRule:
    exact = Decimal(str(limit))
    below = kind == "min"

    def passes(value: Any, _record: Mapping[str, Any]) -> bool:
        if value is None or isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            return True
        bound = exact if isinstance(value, Decimal) else limit
        return value >= bound if below else value <= bound

    word = "below the minimum" if below else "above the maximum"
    return FieldRule(name, kind, severity, passes, lambda _v, _r, _s: f"{word} {limit}", limit)


def _pattern(schema: str, name: str, declared: Any, severity: str) -> FieldRule:
    if not isinstance(declared, str) or not declared:
        raise InputError(f"schema {schema}: field {name!r}: pattern must be a pattern name or a regular expression")
    named = NAMED_PATTERNS.get(declared)
    try:
        compiled = re.compile(named.regex if named else declared)
    except re.error as exc:
        raise InputError(
            f"schema {schema}: field {name!r}: pattern {declared!r} is not a regular expression: {exc}"
        ) from None
    table = str.maketrans("", "", named.strip) if named and named.strip else None
    match = compiled.fullmatch

    def passes(value: Any, _record: Mapping[str, Any]) -> bool:
        if value is None:
            return True
        text = value if isinstance(value, str) else str(value)
        return match(text.translate(table) if table else text) is not None

    what = f"not {named.what}" if named else f"does not match the pattern {declared!r}"
    return FieldRule(name, "pattern", severity, passes, lambda _v, _r, _s: what, declared)


def _one_of(schema: str, name: str, declared: Any, severity: str) -> FieldRule:
    if not isinstance(declared, list) or not declared:
        raise InputError(f"schema {schema}: field {name!r}: one_of must be a non-empty list of values")
    allowed = frozenset(declared)
    listed = ", ".join(map(str, declared))
    return FieldRule(
        name,
        "one_of",
        severity,
        lambda value, _record: value is None or value in allowed,
        lambda _v, _r, _s: f"not one of {listed}",
        list(declared),
    )


def _compare(schema: str, name: str, declared: Mapping[str, Any], severity: str, fields: set[str]) -> list[FieldRule]:
    rules = []
    for op, other in declared.items():
        if op == "severity":
            continue
        if op not in _COMPARISONS:
            raise InputError(
                f"schema {schema}: field {name!r}: compare operator {op!r} is not one of {', '.join(_COMPARISONS)}"
            )
        if other not in fields:
            raise InputError(f"schema {schema}: field {name!r}: compare with {other!r}, which is not a field")
        test, word = _COMPARISONS[op]

        def passes(value: Any, record: Mapping[str, Any], test=test, other=other) -> bool:  # noqa: ANN001
            against = record.get(other)
            if value is None or against is None:
                return True
            try:
                return bool(test(value, against))
            except TypeError:
                return False

        def explain(value: Any, record: Mapping[str, Any], show: Shown, op=op, other=other, word=word) -> str:  # noqa: ANN001
            against = record.get(other)
            text = _NUMBER_WORDS.get(op, word) if isinstance(value, int | float | Decimal) else word
            return f"not {op} {other} ({show(other, against)}): must be {text} it"

        rules.append(FieldRule(name, "compare", severity, passes, explain, (op, other)))
    if not rules:
        raise InputError(f"schema {schema}: field {name!r}: compare names no operator")
    return rules


def field_rules(schema: str, f: Mapping[str, Any], fields: set[str]) -> list[FieldRule]:
    """The declared rules of one payload field (min, max, pattern, one_of, required, compare), in
    that order. `required` of a non-nullable field is Avro's job and reject; a nullable one's is here."""
    name = f["name"]
    rules: list[FieldRule] = []
    for kind in ("min", "max"):
        if kind in f:
            limit, severity = split_severity(schema, name, kind, f[kind])
            if isinstance(limit, bool) or not isinstance(limit, int | float):
                raise InputError(f"schema {schema}: field {name!r}: {kind} {limit!r} is not a number")
            rules.append(_bound(name, kind, limit, severity))
    if "pattern" in f:
        rules.append(_pattern(schema, name, *split_severity(schema, name, "pattern", f["pattern"])))
    if "one_of" in f:
        rules.append(_one_of(schema, name, *split_severity(schema, name, "one_of", f["one_of"])))
    if "compare" in f:
        declared, severity = split_severity(schema, name, "compare", f["compare"])
        if not isinstance(declared, dict):
            raise InputError(f'schema {schema}: field {name!r}: compare must be an object such as {{">=": "other"}}')
        rules += _compare(schema, name, declared, severity, fields - {name})
    return rules


def required_severity(schema: str, f: Mapping[str, Any], nullable: bool) -> str | None:
    """The severity of a missing value: reject for a non-nullable field or `"required": true`, the
    declared one for `"required": {"value": true, "severity": ...}`, None when a null is fine."""
    if not nullable:
        return REJECT
    if "required" not in f:
        return None
    value, severity = split_severity(schema, f["name"], "required", f["required"])
    return severity if value is True else None


def reference(schema: str, f: Mapping[str, Any]) -> Reference | None:
    declared = f.get("references")
    if declared is None:
        return None
    name = f["name"]
    if not isinstance(declared, dict) or not isinstance(declared.get("entity"), str):
        raise InputError(f'schema {schema}: field {name!r}: references needs {{"entity": ..., "field": ...}}')
    if f.get("pii") is True:
        raise InputError(f"schema {schema}: field {name!r}: a personal field cannot reference another entity")
    return Reference(
        name, declared["entity"], str(declared.get("field", "")), _severity(schema, name, "references", declared)
    )


def missing_rule(name: str, severity: str) -> FieldRule:
    """`required` as a rule of the list (for a flag; a rejecting one is checked first, as before)."""
    return FieldRule(name, "required", severity, lambda value, _record: value is not None, lambda _v, _r, _s: "")
