"""Benchmarks of the pipeline on a real local stack: `make bench` runs bench.run."""


def save_results(name: str, results: dict) -> None:
    """Adapter benches: bench/results/<name>-<UTC time>.json and <name>-latest.json, with the core count."""
    import json
    import os
    from datetime import UTC, datetime
    from pathlib import Path

    folder = Path(__file__).resolve().parent / "results"
    folder.mkdir(exist_ok=True)
    document = json.dumps({"cores": os.cpu_count(), "timestamp": datetime.now(UTC).isoformat(), **results}, indent=2)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for path in (folder / f"{name}-{stamp}.json", folder / f"{name}-latest.json"):
        path.write_text(document + "\n")
