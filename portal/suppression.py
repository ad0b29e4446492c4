"""Small-cell suppression of person counts, with complementary suppression.

A cell counting fewer than `min_cell` persons (but not zero) is hidden (primary suppression). A
hidden cell must not be derivable from what is shown: along every line of the table (all rows that
agree on every dimension but one, each measure's whole column, whose total the portal may show,
and each row's person measures together) a line with exactly one hidden cell gets a second one, the
smallest other non-zero cell, until no line has exactly one (complementary suppression; a line whose
other cells are all zero keeps its one hidden cell: the portal publishes no line totals but the
regency's, and a regency total below the threshold is not published either, see safe_total). Measures computed
over a person count (a median over the complaints of a row) are hidden with it.

Suppression runs on the whole dataset before any filter, so every page and download shows the
same cells hidden."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from portal.datasets import Dataset

Cell = tuple[int, str]  # (row index, measure)


def primary(value: Any, min_cell: int) -> bool:
    return value is not None and 0 < value < min_cell


def _lines(rows: list[dict[str, Any]], dims: list[str], measures: tuple[str, ...]) -> list[list[Cell]]:
    lines: list[list[Cell]] = []
    for m in measures:
        lines.append([(i, m) for i in range(len(rows))])
        for d in dims:
            groups: dict[tuple, list[Cell]] = defaultdict(list)
            for i, row in enumerate(rows):
                groups[tuple(row[x] for x in dims if x != d)].append((i, m))
            lines.extend(g for g in groups.values() if len(g) > 1)
    lines.extend([(i, m) for m in measures] for i in range(len(rows)))
    return [line for line in lines if len(line) > 1]


def suppressed_cells(rows: list[dict[str, Any]], dataset: Dataset, min_cell: int) -> set[Cell]:
    measures = dataset.person_measures
    hidden = {(i, m) for i, row in enumerate(rows) for m in measures if primary(row.get(m), min_cell)}
    if not hidden:
        return hidden
    dims = [d for d in dataset.dimensions if rows and d in rows[0]]
    lines = _lines(rows, dims, measures)
    lines_of: dict[Cell, list[list[Cell]]] = defaultdict(list)
    for line in lines:
        for c in line:
            lines_of[c].append(line)

    def mends(cell: Cell) -> int:
        """How many other lines hiding `cell` would also mend (those with exactly one hidden cell)."""
        return sum(sum(c in hidden for c in line) == 1 for line in lines_of[cell])

    changed = True
    while changed:
        changed = False
        for line in lines:
            if sum(c in hidden for c in line) != 1:
                continue
            # The smallest other non-zero cell (a hidden zero would protect nothing: zeros are not persons).
            shown = [c for c in line if c not in hidden and rows[c[0]].get(c[1])]
            if not shown:
                continue
            # Prefer a cell that mends other lines too (fewer cells hidden in all), then the smallest.
            pick = min(shown, key=lambda c: (-mends(c), rows[c[0]][c[1]], c))
            hidden.add(pick)
            changed = True
    return hidden


def suppress(rows: list[dict[str, Any]], dataset: Dataset, min_cell: int) -> list[dict[str, Any]]:
    """The rows with hidden cells set to None (a dataset without person counts: unchanged)."""
    if not dataset.counts_persons:
        return rows
    hidden = suppressed_cells(rows, dataset, min_cell)
    out = [dict(r) for r in rows]
    for i, m in hidden:
        out[i][m] = None
    for row in out:
        for dependent, base in dataset.dependents.items():
            if row.get(base) is None:
                row[dependent] = None
    return out


def safe_total(values: list[Any], min_cell: int, complete: bool = True) -> Any:
    """A total of person counts fit to publish: None when it is itself a small count. `complete`:
    the values are the unsuppressed ones (the store's), so the total is exact."""
    total = sum(v for v in values if v is not None)
    return None if primary(total, min_cell) or not complete else total
