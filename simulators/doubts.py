"""Doubtful records: a small share of a simulated office's changes made to break one data-quality
rule its entity's schema declares (max, pattern, one_of, compare, references; contract/field_rules.py),
read from the schema, so every kind of rule a steward declared is seen in the demo, flagged or
rejected as declared. No per-domain code: a new rule in a schema is exercised without a change here.

A doubtful change is a copy: the office's own state stays as it was. Key fields are never touched (the
change would then be another entity's). Breaks keep a text value's length (sources have column
widths): the last character becomes "x"."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from contract.catalog import SourceSystem
from contract.rules import PayloadRules
from producers.emitter import Change


@dataclass(frozen=True)
class Break:
    rule_id: str
    severity: str
    apply: Callable[[dict[str, Any]], bool]  # changes the record; False when it cannot (a null value)


def _step(value: Any) -> Any:
    """A small step of a value's kind: a day, one unit."""
    if isinstance(value, datetime | date):
        return timedelta(days=1)
    if isinstance(value, Decimal):
        return Decimal("1000")
    return 1


def _text_break(value: Any) -> Any:
    if not isinstance(value, str) or not value:
        return None
    return value[:-1] + ("x" if value[-1] != "x" else "y")


def _breaks(rules: PayloadRules, keys: tuple[str, ...]) -> list[Break]:
    out: list[Break] = []
    for rule in rules.checks:
        name = rule.field
        if name in keys or rule.kind not in ("max", "pattern", "one_of", "compare"):
            continue
        if rule.kind == "max":

            def apply(r: dict[str, Any], name=name, limit=rule.arg) -> bool:  # noqa: ANN001
                if r.get(name) is None:
                    return False
                r[name] = type(r[name])(limit + 1) if isinstance(r[name], int | float) else limit + 1
                return True
        elif rule.kind == "pattern":

            def apply(r: dict[str, Any], name=name) -> bool:  # noqa: ANN001
                broken = _text_break(r.get(name))
                if broken is None:
                    return False
                r[name] = broken
                return True
        elif rule.kind == "one_of":

            def apply(r: dict[str, Any], name=name) -> bool:  # noqa: ANN001
                if r.get(name) is None:
                    return False
                r[name] = "UNKNOWN"
                return True
        else:
            op, other = rule.arg

            def apply(r: dict[str, Any], name=name, op=op, other=other) -> bool:  # noqa: ANN001
                against = r.get(other)
                if against is None or r.get(name) is None or op in ("==", "!="):
                    return False
                r[name] = against - _step(against) if op in (">", ">=") else against + _step(against)
                return True

        out.append(Break(rule.rule_id, rule.severity, apply))
    for ref in rules.references:
        if ref.field in keys:
            continue

        def apply(r: dict[str, Any], name=ref.field) -> bool:  # noqa: ANN001
            value = r.get(name)
            if not isinstance(value, str) or not value:
                return False
            r[name] = "9" * len(value) if value.isdigit() else _text_break(value)
            return True

        out.append(Break(ref.rule_id, ref.severity, apply))
    return out


class Doubter:
    """Makes a share of a system's changes doubtful (its own random stream: the office's records and
    timeline are the same with or without it)."""

    def __init__(self, system: SourceSystem, ratio: float, seed: int = 1) -> None:
        self.ratio = ratio
        self.rng = random.Random(seed * 7_907 + 13)
        self.default = system.entities[0].name
        self.breaks = {e.name: _breaks(PayloadRules.from_schema(e.payload_schema()), e.key) for e in system.entities}
        self.made: dict[str, int] = {}  # rule id -> doubtful changes made
        self.last: str | None = None  # the rule the last doubtful change breaks

    def __call__(self, change: Change) -> Change:
        if not self.ratio or change.after is None or change.op == "d" or self.rng.random() >= self.ratio:
            return change
        options = self.breaks.get(change.entity or self.default) or []
        for index in self.rng.sample(range(len(options)), len(options)):
            after = dict(change.after)
            if options[index].apply(after):
                self.last = options[index].rule_id
                self.made[self.last] = self.made.get(self.last, 0) + 1
                return replace(change, after=after)
        return change

    def changes(self, changes: Iterator[Change]) -> Iterator[Change]:
        for change in changes:
            yield self(change)
