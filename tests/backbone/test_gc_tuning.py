"""Long-running commands collect young objects rarely and leave start-up objects alone."""

from __future__ import annotations

import gc

from backbone.gc_tuning import YOUNG_THRESHOLD, tune_garbage_collector


def test_tuning_freezes_what_exists_and_raises_the_young_threshold():
    before = gc.get_threshold()
    try:
        tune_garbage_collector()
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
