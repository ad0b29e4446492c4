"""Small-cell suppression with known small counts: the cells hidden, the complementary ones, and
that no hidden cell can be derived from a line's total."""

from __future__ import annotations

from portal.datasets import BY_SLUG, Dataset
from portal.suppression import safe_total, suppress, suppressed_cells

GRID = Dataset(
    "grid",
    "public_grid",
    "test",
    {"en": "", "id": ""},
    {"en": "", "id": ""},
    "CC-BY-4.0",
    (),
    ("row", "col"),
    BY_SLUG["complaints"].columns[:0],
    person_measures=("n",),
)


def grid(values: dict[str, dict[str, int]]) -> list[dict]:
    return [{"row": r, "col": c, "n": n} for r, cols in values.items() for c, n in cols.items()]


def hidden(rows: list[dict], min_cell: int = 5) -> set[tuple[str, str]]:
    return {(r["row"], r["col"]) for r in suppress(rows, GRID, min_cell) if r["n"] is None}


def test_one_small_cell_hides_a_rectangle_of_four():
    rows = grid({"A": {"x": 20, "y": 2, "z": 30}, "B": {"x": 15, "y": 25, "z": 40}, "C": {"x": 50, "y": 60, "z": 70}})
    # A/y primary; A/x (smallest in row A), B/y (smallest in column y), B/x (then alone in column x).
    assert hidden(rows) == {("A", "y"), ("A", "x"), ("B", "y"), ("B", "x")}


def test_no_line_keeps_exactly_one_hidden_cell():
    rows = grid({"A": {"x": 1, "y": 9, "z": 7}, "B": {"x": 6, "y": 3, "z": 11}, "C": {"x": 8, "y": 12, "z": 4}})
    cells = suppressed_cells(rows, GRID, 5)
    out = suppress(rows, GRID, 5)
    assert all(v["n"] is None or v["n"] >= 5 for v in out)
    lines = [[i for i, r in enumerate(rows) if r[dim] == value] for dim in ("row", "col") for value in "ABCxyz"]
    lines.append(list(range(len(rows))))  # the grand total
    for line in filter(None, lines):
        assert sum((i, "n") in cells for i in line) != 1, line


def test_zeros_are_shown_and_large_counts_untouched():
    rows = grid({"A": {"x": 0, "y": 40}, "B": {"x": 0, "y": 50}})
    assert hidden(rows) == set()
    assert suppress(rows, GRID, 5) == rows


def test_threshold_is_the_setting():
    rows = grid({"A": {"x": 7, "y": 40}, "B": {"x": 9, "y": 50}})
    assert hidden(rows, 5) == set()
    assert hidden(rows, 10) == {("A", "x"), ("B", "x"), ("A", "y"), ("B", "y")}


def test_measures_of_a_row_protect_each_other_and_dependents_follow_their_base():
    complaints = BY_SLUG["complaints"]
    base = {"department_name": "", "first_response_hours_median": 2.0, "resolution_days_median": 1.0}
    rows = [
        {
            **base,
            "department_code": "A",
            "channel": "WEB",
            "complaints": 40,
            "open": 3,
            "overdue": 0,
            "awaiting_first_response": 12,
        },
        {
            **base,
            "department_code": "B",
            "channel": "WEB",
            "complaints": 2,
            "open": 2,
            "overdue": 0,
            "awaiting_first_response": 0,
        },
    ]
    out = suppress(rows, complaints, 5)
    assert out[1]["complaints"] is None and out[1]["open"] is None
    assert out[1]["first_response_hours_median"] is None and out[1]["resolution_days_median"] is None
    assert out[0]["open"] is None  # primary
    assert out[0]["complaints"] is None or out[0]["awaiting_first_response"] is None  # its row's complement
    assert out[0]["overdue"] == 0 and rows[0]["open"] == 3  # zeros shown; the input is not changed


def test_datasets_without_person_counts_are_not_suppressed():
    rows = [{"permit_type": "PBG", "decided": 1}]
    assert suppress(rows, BY_SLUG["licensing-lead-time"], 5) is rows


def test_a_total_that_is_itself_small_is_not_published():
    assert safe_total([1, 2, None], 5) is None
    assert safe_total([1, 2, 3], 5) == 6
    assert safe_total([0, 0], 5) == 0
