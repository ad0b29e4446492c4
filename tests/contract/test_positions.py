"""Source positions -> versions: per adapter kind, source order is version order; ties are decided by
the position's own parts or the operation, never by a hash."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from contract.positions import MAX_VERSION, fallback_version, version_of
from producers.adapters.file_drop_rows import event_position
from producers.adapters.http_push_changes import default_position
from producers.adapters.mariadb_snapshot import format_position
from producers.adapters.query_poll_sql import position_part

TS = 1_750_000_000_000  # ms


def ordered(kind: str, positions: list[str], ts: list[int] | None = None, ops: list[str] | None = None) -> bool:
    ts = ts or [TS] * len(positions)
    ops = ops or ["u"] * len(positions)
    versions = [version_of(kind, p, t, o) for p, t, o in zip(positions, ts, ops, strict=True)]
    return all(a < b for a, b in zip(versions, versions[1:], strict=False)) and all(
        0 <= v <= MAX_VERSION for v in versions
    )


def test_postgres_commit_lsn_then_index_and_the_snapshot_first():
    positions = [
        "0000000000000000-snapshot",
        "0000000001A2B3C0-0000000000",
        "0000000001A2B3C0-0000000001",
        "0000000001A2B3C0-0000000010",
        "0000000001A2B3D0-0000000000",
        "FFFFFFFFFFFFFFFF-9999999999",
    ]
    assert ordered("postgres_cdc", positions)
    assert version_of("postgres_cdc", "0000000001A2B3C0-0000000000", TS, "u") == (0x1A2B3C0 << 40) + 1


def test_mariadb_binlog_file_then_position_then_row():
    positions = [
        format_position("mysql-bin.000001", 4),  # the snapshot's coordinates
        format_position("mysql-bin.000001", 900, 0),
        format_position("mysql-bin.000001", 900, 1),
        format_position("mysql-bin.000001", 1200, 0),
        format_position("mysql-bin.000002", 4, 0),
    ]
    assert ordered("mariadb_binlog", positions)


def test_query_poll_timestamp_cursor_and_the_reconciled_delete_after_the_last_change():
    first, later = datetime(2025, 1, 1, 8, tzinfo=UTC), datetime(2025, 1, 1, 8, 0, 0, 1, tzinfo=UTC)
    key = position_part(17)
    positions = [
        f"{position_part(first)}|{key}",
        f"{position_part(later)}|{key}",
        f"{position_part(later)}|{key}|deleted",
    ]
    assert ordered("query_poll", positions)
    # microseconds since the epoch, doubled
    assert version_of("query_poll", positions[0], 0, "u") == int(first.timestamp()) * 1_000_000 * 2


def test_query_poll_integer_and_date_cursors():
    assert ordered("query_poll", [f"{position_part(n)}|k" for n in (0, 1, 2, 10**19)])
    assert ordered("query_poll", ["2024-12-31|k", "2025-01-01|k", "2025-01-01|k|deleted", "2025-01-02|k"])


def test_http_push_sequence_numbers():
    assert ordered("http_push", ["1", "2", "10", "00000000000000000011", "9" * 38])


def test_http_push_without_a_sequence_orders_by_source_time_then_operation():
    """A digest orders nothing: source time first, then create < update < delete in one millisecond."""
    changed = datetime(2025, 1, 1, tzinfo=UTC)
    digests = [default_position("e", op, "k", changed, {"a": op}) for op in ("c", "u", "d")]
    assert ordered("http_push", digests, ops=["c", "u", "d"])
    assert ordered("http_push", [digests[2], digests[0]], ts=[TS, TS + 1], ops=["d", "c"])
    assert version_of("http_push", "order-17", TS, "u") == fallback_version(TS, "u") == TS * 4 + 2


def test_file_drop_source_time_then_line_whatever_the_file_digest():
    """Two files: the later file's rows come after, whatever their digests; within one file, line order."""
    later_file, earlier_file = "0" * 64, "f" * 64
    positions = [event_position(earlier_file, 2), event_position(earlier_file, 3), event_position(later_file, 2)]
    assert ordered("file_drop", positions, ts=[TS, TS, TS + 1000])
    assert version_of("file_drop", event_position(later_file, 7), TS, "u") == TS * 10**8 + 7


def test_simulator_sequence():
    assert ordered("simulator", [f"{n:012d}" for n in (1, 2, 3, 999_999_999_999)])


@pytest.mark.parametrize("kind", ["postgres_cdc", "mariadb_binlog", "query_poll", "file_drop", "simulator", "other"])
def test_an_unrecognised_position_falls_back_on_source_time(kind):
    assert version_of(kind, "not a position of this kind", TS, "d") == TS * 4 + 3
    assert version_of(kind, "", -5, "c") == 1  # never negative (a UInt128 column)
