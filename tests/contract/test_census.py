"""The census's hash and comparison (contract/census.py): order-independent, exact for a few
differences, lower bounds otherwise; the message survives the topic and refuses what is not a census."""

from __future__ import annotations

import hashlib
import random

import pytest

from contract.census import Census, buckets_from_rows, buckets_of, compare, key_hash, single_key_hashes

KEYS = [f"IZN-{i:05d}" for i in range(2000)]


def test_the_hash_is_md5_and_the_checksum_does_not_depend_on_order():
    digest = hashlib.md5(b"IZN-00001").digest()
    assert key_hash("IZN-00001") == (digest[8], int.from_bytes(digest[:8], "big"))
    shuffled = random.Random(3).sample(KEYS, len(KEYS))
    assert buckets_of(KEYS) == buckets_of(shuffled)
    assert sum(n for n, _ in buckets_of(KEYS).values()) == len(KEYS)
    # A database's signed or wider sums reduce to the same 64 bits.
    assert buckets_from_rows([(5, 2, -1), (6, 0, 0)]) == {5: (2, (1 << 64) - 1)}


def test_differences_are_counted_and_single_keys_found_by_their_hash():
    source = buckets_of(KEYS)
    assert compare(source, buckets_of(KEYS)).matches
    # Three rows deleted in the source behind the pipeline's back, one insert it never saw.
    store = buckets_of([*KEYS[3:], "IZN-lost"])
    diff = compare(buckets_of([*KEYS, "IZN-new"]), store)
    assert (diff.missing, diff.extra) == (4, 1)  # their five buckets differ
    diff = compare(buckets_of(KEYS[3:]), buckets_of(KEYS))  # the store still has three deleted keys
    assert (diff.missing, diff.extra, diff.rows) == (0, 3, 3)
    extra, missing = single_key_hashes(diff)
    assert sorted(extra.items()) == sorted(key_hash(k) for k in KEYS[:3]) and missing == {}
    diff = compare(buckets_of(KEYS), buckets_of(KEYS[1:]))
    assert (diff.missing, diff.extra) == (1, 0) and single_key_hashes(diff)[1] == dict([key_hash(KEYS[0])])


def test_a_changed_key_in_one_bucket_counts_as_one_missing_and_one_extra():
    source = {7: (2, 10)}
    assert (compare(source, {7: (2, 11)}).missing, compare(source, {7: (2, 11)}).extra) == (1, 1)


def test_the_message_round_trips_and_refuses_anything_else():
    census = Census("pg", "permit", "postgres_cdc", "position", "00000000DEADBEEF-0000000000", buckets=buckets_of(KEYS))
    back = Census.from_bytes(census.to_bytes())
    assert (back.buckets, back.position, back.rows, back.taken_at) == (
        census.buckets, census.position, len(KEYS), census.taken_at
    )  # fmt: skip
    for bad in (b"", b"{}", b'{"mode": "other"}', census.to_bytes().replace(b'"position"', b'"p"', 1)):
        with pytest.raises(ValueError):
            Census.from_bytes(bad)
