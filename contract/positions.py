"""An entity's version: an unsigned integer, strictly increasing per entity in source order, made
from the change event's source position (the current-state tables keep the row with the highest).

Each adapter kind writes its positions in its own format (see producers/adapters/*):
  postgres_cdc    <commit LSN, 16 hex>-<index in the transaction, 10 digits>, snapshot rows
                  0000000000000000-snapshot: LSN * 2**40 + index + 1 (a snapshot row is LSN * 2**40)
  mariadb_binlog  <file index, 8>:<end position, 10>:<row, 6>: the 24 digits as one number
  query_poll      <cursor>|<key>[|deleted]: the cursor (UTC timestamp in microseconds, an integer, or a
                  date as the microseconds of its midnight) times 2, plus 1 for a reconciled delete (it
                  carries the key's last cursor and comes after it)
  http_push       the sender's sequence number when the position is one (up to 38 digits)
  file_drop       <file digest>:<line>: the digest orders nothing, so ts_source (the row's timestamp
                  column or the file's mtime) in milliseconds * 10**8 + the line
  simulator       the simulator's sequence number
A position a kind does not recognise (an http_push digest, a free-text one, an unknown kind) falls back
on ts_source in milliseconds * 4 + the rank of the operation (snapshot or create, update, delete), so
that within one millisecond a delete wins over the update it follows. Never a hash: equal positions
give equal versions, and ClickHouse then keeps the row stored last.

Versions of different kinds are not comparable: an entity's versions must come from one kind of
adapter (and an http_push sender sends sequence numbers always or never). Every value is < 2**128
(the column is UInt128)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

MAX_VERSION = (1 << 128) - 1
_POSTGRES = re.compile(r"^([0-9A-F]{16})-(\d{10}|snapshot)$")
_MARIADB = re.compile(r"^(\d{8}):(\d{10}):(\d{6})$")
_FILE_DROP = re.compile(r"^[0-9a-f]{16}:(\d{8})$")
_SEQUENCE = re.compile(r"^\d{1,38}$")
_POLL_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
_POLL_INTEGER = re.compile(r"^\d{20}$")
_POLL_DATE = re.compile(r"^\d{4}-\d\d-\d\d$")
_OP_RANK = {"r": 0, "c": 1, "u": 2, "d": 3}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def fallback_version(ts_source_ms: int, op: str) -> int:
    """Source time in milliseconds, then the operation: the order the source's clock gives."""
    return max(0, ts_source_ms) * 4 + _OP_RANK.get(op, 2)


def _postgres(position: str) -> int | None:
    match = _POSTGRES.match(position)
    if not match:
        return None
    lsn = int(match.group(1), 16) << 40
    return lsn if match.group(2) == "snapshot" else lsn + int(match.group(2)) + 1


def _mariadb(position: str) -> int | None:
    match = _MARIADB.match(position)
    return int("".join(match.groups())) if match else None


def _poll_cursor(cursor: str) -> int | None:
    if _POLL_TIMESTAMP.match(cursor):
        moment = datetime.strptime(cursor, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        delta = moment - _EPOCH
        return max(0, (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)
    if _POLL_INTEGER.match(cursor):
        return int(cursor)
    if _POLL_DATE.match(cursor):
        return max(0, (date.fromisoformat(cursor) - _EPOCH.date()).days * 86_400 * 1_000_000)
    return None


def _query_poll(position: str) -> int | None:
    cursor = _poll_cursor(position.split("|", 1)[0])
    return None if cursor is None else cursor * 2 + (1 if position.endswith("|deleted") else 0)


def _sequence(position: str) -> int | None:
    return int(position) if _SEQUENCE.match(position) else None


def version_of(kind: str, position: str, ts_source_ms: int, op: str) -> int:
    """The version of a change captured by an adapter of `kind` at `position` (see the module doc)."""
    found: int | None = None
    if kind == "postgres_cdc":
        found = _postgres(position)
    elif kind == "mariadb_binlog":
        found = _mariadb(position)
    elif kind == "query_poll":
        found = _query_poll(position)
    elif kind in ("http_push", "simulator"):
        found = _sequence(position)
    elif kind == "file_drop":
        match = _FILE_DROP.match(position)
        found = max(0, ts_source_ms) * 10**8 + int(match.group(1)) if match else None
    version = fallback_version(ts_source_ms, op) if found is None else found
    return min(version, MAX_VERSION)
