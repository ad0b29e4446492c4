"""The census: what a source holds of one entity, as its adapter counts it, for the sink to reconcile
with the store. Adapters publish it on the `census` topic (JSON, key `<system>/<entity>`); the sink
compares it with the entity's state table and writes the result to the `reconciliation` table.

What is counted: the entity's KEYS, not their content. The key travels unchanged from the source to
the store's `entity_key` (fields joined with '|', as producers.adapters._sql_common.key_of spells
them), while the content does not: personal fields are pseudonymised, values coerced (decimals
rescaled, times in UTC), region names added. A content hash both sides compute identically would have
to repeat all of that in three SQL dialects; the key set catches what reconciliation is for: rows lost
or left over (an insert or delete the pipeline never saw). A lost update is a freshness problem and
shows in the timeliness figures instead.

The hash, computable in PostgreSQL, MariaDB and ClickHouse alike: d = MD5 of the key's UTF-8 text;
h = d's first 8 bytes as a big-endian unsigned 64-bit number; bucket = d's 9th byte (0..255). Per
bucket the census carries the row count and the sum of h modulo 2**64 (order-independent, and a
difference in one bucket that is a single key's h names that key when the store ever held it).

Kinds of census (`mode`):
  position  the source's rows as of a source position (`position`, in the adapter's format, see
            contract/positions.py): the sink compares the store as of the same position, so changes
            captured after it never count as differences (postgres_cdc, mariadb_binlog)
  current   the source's rows now: in-flight changes may differ for a moment (query_poll)
  file      one dropped file: its data rows = events emitted + rows rejected by the adapter (file_drop)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

BUCKETS = 256
MASK = (1 << 64) - 1
MAX_KEYS_SHOWN = 20  # differing keys named per reconciliation row


def key_hash(key: str) -> tuple[int, int]:
    """(bucket, h) of an entity key, as the SQL of every side computes it."""
    digest = hashlib.md5(key.encode("utf-8"), usedforsecurity=False).digest()
    return digest[8], int.from_bytes(digest[:8], "big")


def buckets_of(keys: Any) -> dict[int, tuple[int, int]]:
    """Bucket -> (rows, sum of h mod 2**64) of keys (the reference the SQL versions are tested against)."""
    out: dict[int, tuple[int, int]] = {}
    for key in keys:
        bucket, h = key_hash(key)
        rows, total = out.get(bucket, (0, 0))
        out[bucket] = (rows + 1, (total + h) & MASK)
    return out


def buckets_from_rows(rows: Any) -> dict[int, tuple[int, int]]:
    """(bucket, count, sum) rows of a census query (a sum may be signed or wider than 64 bits)."""
    return {int(b): (int(n), int(total) & MASK) for b, n, total in rows if int(n)}


@dataclass
class Census:
    system: str
    entity: str
    kind: str  # the adapter kind (positions are read as contract.positions does for it)
    mode: str  # position | current | file
    position: str = ""
    taken_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    buckets: dict[int, tuple[int, int]] = field(default_factory=dict)
    source: str = ""  # the source table or file name, for people
    file_rows: int = 0  # mode file: data rows in the file
    file_rejected: int = 0  # mode file: rows the adapter rejected (dead letters)

    @property
    def rows(self) -> int:
        return sum(n for n, _ in self.buckets.values()) if self.mode != "file" else self.file_rows

    @property
    def census_id(self) -> str:
        return f"{self.system}/{self.entity}/{self.mode}/{self.position}/{self.taken_at.isoformat()}"

    def key(self) -> bytes:
        return f"{self.system}/{self.entity}".encode()

    def to_bytes(self) -> bytes:
        doc = {
            "system": self.system,
            "entity": self.entity,
            "kind": self.kind,
            "mode": self.mode,
            "position": self.position,
            "taken_at": self.taken_at.isoformat(),
            "source": self.source,
            "buckets": {str(b): [n, f"{s:016x}"] for b, (n, s) in sorted(self.buckets.items())},
            "file_rows": self.file_rows,
            "file_rejected": self.file_rejected,
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, value: bytes) -> Census:
        """ValueError (with what is wrong) for anything that is not a census."""
        try:
            doc = json.loads(value)
            mode = str(doc["mode"])
            if mode not in ("position", "current", "file"):
                raise ValueError(f"unknown mode {mode!r}")
            taken = datetime.fromisoformat(doc["taken_at"])
            buckets = {int(b): (int(n), int(s, 16) & MASK) for b, (n, s) in doc.get("buckets", {}).items()}
            if any(not 0 <= b < BUCKETS or n < 0 for b, (n, _) in buckets.items()):
                raise ValueError("bucket out of range")
            return cls(
                system=str(doc["system"]),
                entity=str(doc["entity"]),
                kind=str(doc["kind"]),
                mode=mode,
                position=str(doc.get("position") or ""),
                taken_at=taken if taken.tzinfo else taken.replace(tzinfo=UTC),
                buckets=buckets,
                source=str(doc.get("source") or ""),
                file_rows=int(doc.get("file_rows") or 0),
                file_rejected=int(doc.get("file_rejected") or 0),
            )
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a census: {exc!r}") from None


@dataclass
class Difference:
    missing: int = 0  # in the source, not in the store
    extra: int = 0  # in the store, not in the source
    # bucket -> (store rows - source rows, store sum - source sum mod 2**64), for the buckets that differ
    buckets: dict[int, tuple[int, int]] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return self.missing + self.extra

    @property
    def matches(self) -> bool:
        return not self.buckets


def compare(source: dict[int, tuple[int, int]], store: dict[int, tuple[int, int]]) -> Difference:
    """Per bucket: more rows in the store are extra, fewer are missing; equal counts with different
    sums are at least one of each. Exact while each differing bucket differs one way (a few
    differences among 256 buckets); otherwise a lower bound."""
    diff = Difference()
    for bucket in sorted(set(source) | set(store)):
        src_n, src_s = source.get(bucket, (0, 0))
        st_n, st_s = store.get(bucket, (0, 0))
        if (src_n, src_s) == (st_n, st_s):
            continue
        delta = st_n - src_n
        diff.buckets[bucket] = (delta, (st_s - src_s) & MASK)
        if delta > 0:
            diff.extra += delta
        elif delta < 0:
            diff.missing -= delta
        else:
            diff.missing += 1
            diff.extra += 1
    return diff


def single_key_hashes(diff: Difference) -> tuple[dict[int, int], dict[int, int]]:
    """The h of the one extra key (bucket -> h) and of the one missing key in buckets that differ by
    exactly one row: the sink looks them up among the keys it holds or has held."""
    extra = {b: s for b, (n, s) in diff.buckets.items() if n == 1}
    missing = {b: (-s) & MASK for b, (n, s) in diff.buckets.items() if n == -1}
    return extra, missing
