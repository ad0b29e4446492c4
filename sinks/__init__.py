"""Sinks: keep ClickHouse current from the clean topics."""
