"""The SQL of the query_poll adapter, portable across DB-API drivers: identifiers quoted and placeholders
written as the driver wants them, the batch query after the checkpoint's last row, and the typed cursor
and key values that the checkpoint and the positions are made of."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from contract.catalog import Entity
from producers.adapters import _sql_common as common


def encode_value(value: Any) -> dict[str, Any]:
    """A cursor or key value for the checkpoint, restored with its type by decode_value."""
    if isinstance(value, datetime):
        return {"t": "datetime", "v": value.isoformat()}
    if isinstance(value, date):
        return {"t": "date", "v": value.isoformat()}
    if isinstance(value, bool):
        return {"t": "bool", "v": value}
    if isinstance(value, int):
        return {"t": "int", "v": value}
    if isinstance(value, Decimal):
        return {"t": "decimal", "v": str(value)}
    if isinstance(value, float):
        return {"t": "float", "v": value}
    return {"t": "str", "v": str(value)}


def decode_value(item: dict[str, Any]) -> Any:
    kind, value = item["t"], item["v"]
    if kind == "datetime":
        return datetime.fromisoformat(value)
    if kind == "date":
        return date.fromisoformat(value)
    if kind == "decimal":
        return Decimal(value)
    return value


def position_part(value: Any) -> str:
    """A value's fixed-width text, so that lexical order is value order."""
    if isinstance(value, datetime):
        value = common.utc(value)
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return f"{value:020d}"
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return f"{int(value):020d}"
    return str(value)


@dataclass
class PolledTable:
    """One configured table: where it is, its entity, and the columns that drive the polling."""

    name: str  # as configured
    schema: str | None
    table: str
    entity: Entity
    payload: dict[str, Any]
    fields: frozenset[str]
    cursor: str
    created: str | None
    deleted: str | None
    time_column: str | None
    reconcile_seconds: float
    key_types: dict[str, Any] = field(default_factory=dict)


class PollSql:
    """The queries of one driver (its quoting; its paramstyle, known once connected)."""

    def __init__(self, driver: str, batch_size: int) -> None:
        self.batch_size = batch_size
        self.quote = '"' if driver == "postgres" else "`"
        self.paramstyle = "pyformat"

    def q(self, name: str) -> str:
        return f"{self.quote}{name}{self.quote}"

    def table(self, table: PolledTable) -> str:
        return f"{self.q(table.schema)}.{self.q(table.table)}" if table.schema else self.q(table.table)

    def placeholders(self, count: int, start: int = 0) -> list[str]:
        style = self.paramstyle
        if style == "qmark":
            return ["?"] * count
        if style == "numeric":
            return [f":{i + 1}" for i in range(start, start + count)]
        if style == "named":
            return [f":p{i}" for i in range(start, start + count)]
        return ["%s"] * count

    def args(self, values: list[Any]) -> Any:
        return {f"p{i}": v for i, v in enumerate(values)} if self.paramstyle == "named" else values

    def poll(self, table: PolledTable, last: list[Any] | None, bound: Any = None) -> tuple[str, list[Any]]:
        """The batch query after `last` (cursor value, key values), with its parameters."""
        columns = [table.cursor, *table.entity.key]
        where = [f"{self.q(table.cursor)} IS NOT NULL"]
        values: list[Any] = []
        if last is not None:
            alternatives = []
            for i in range(len(columns)):
                terms = [f"{self.q(c)} = {{}}" for c in columns[:i]] + [f"{self.q(columns[i])} > {{}}"]
                alternatives.append("(" + " AND ".join(terms) + ")")
                values.extend(last[: i + 1])
            where.append("(" + " OR ".join(alternatives) + ")")
        if bound is not None:
            where.append(f"{self.q(table.cursor)} <= {{}}")
            values.append(bound)
        text = (
            f"SELECT * FROM {self.table(table)} WHERE {' AND '.join(where)} "
            f"ORDER BY {', '.join(self.q(c) for c in columns)} LIMIT {int(self.batch_size)}"
        )
        return text.format(*self.placeholders(len(values))), values

    def keys(self, table: PolledTable) -> str:
        """The query of every key of the table."""
        return f"SELECT {', '.join(self.q(k) for k in table.entity.key)} FROM {self.table(table)}"
