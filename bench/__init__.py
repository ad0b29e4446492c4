"""Benchmarks of the pipeline on a real local stack: `make bench` runs bench.run."""
