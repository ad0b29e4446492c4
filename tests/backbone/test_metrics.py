"""Metric helpers: observations counted in the store add exactly what observe() per value adds."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Histogram

from backbone.metrics import observe_counted, observe_many

BOUNDS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)


def samples(histogram: Histogram) -> dict[tuple[str, str], float]:
    [family] = histogram.collect()
    return {(s.name, s.labels.get("le", "")): s.value for s in family.samples if not s.name.endswith("_created")}


def test_counted_observations_equal_one_observe_per_value():
    rng = random.Random(7)
    values = [rng.choice([0.0, 0.05, 0.1, 3.0, 1e6]) if i % 5 == 0 else rng.expovariate(0.5) for i in range(2000)]
    one_by_one = Histogram("one", "h", ["table"], buckets=BOUNDS, registry=CollectorRegistry())
    counted = Histogram("one", "h", ["table"], buckets=BOUNDS, registry=CollectorRegistry())
    for v in values:
        one_by_one.labels("t").observe(v)
    child = counted.labels("t")
    cumulative = [sum(v <= b for v in values) for b in child._upper_bounds]
    observe_counted(child, cumulative, sum(values))
    assert samples(counted) == pytest.approx(samples(one_by_one))


def test_a_batch_observed_at_once_equals_one_observe_per_value():
    rng = random.Random(8)
    values = [rng.choice([0.0, 0.05, 0.1, 30.0, 1e6]) if i % 5 == 0 else rng.expovariate(0.5) for i in range(2000)]
    one_by_one = Histogram("one", "h", buckets=BOUNDS, registry=CollectorRegistry())
    at_once = Histogram("one", "h", buckets=BOUNDS, registry=CollectorRegistry())
    for v in values:
        one_by_one.observe(v)
    observe_many(at_once, values)
    assert samples(at_once) == pytest.approx(samples(one_by_one))


def test_counts_must_match_the_buckets():
    child = Histogram("two", "h", buckets=BOUNDS, registry=CollectorRegistry())
    with pytest.raises(ValueError, match="3 counts for 10 buckets"):
        observe_counted(child, [1, 2, 3], 1.0)
