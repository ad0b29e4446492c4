"""The cyclic garbage collector, tuned for processes that move many small records.

Each event allocates a hundred or so objects (decoded records, datetimes, decimals) that reference
counting frees at once. With Python's default thresholds the cyclic collector still ran every few
events and walked the young objects and, often, the whole heap (Faust, tables, schemas): 15-25 % of
the processor's time in `Cleaner.process` over a batch. Long-running commands
call this once their long-lived objects exist."""

from __future__ import annotations

import gc

# A young-generation collection after this many net allocations instead of 700.
YOUNG_THRESHOLD = 50_000


def tune_garbage_collector() -> None:
    """Leave what exists now out of every later collection, and collect the young less often."""
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 100)
