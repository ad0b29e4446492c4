"""The processor with every data-quality rule on against the original rules only, on one backlog in one
run (bench.stages.rules_phase) on a fresh local stack; `make bench` runs it as part of bench.run.

    .venv/bin/python -m bench.rules --per-system 3000
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rich.console import Console

from backbone.net import free_port
from backbone.settings import load_settings
from bench import local_stack, save_results
from bench.stages import rules_phase


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-system", type=int, default=3000, help="events per simulated system")
    parser.add_argument("--bad-ratio", type=float, default=0.02, help="bad records (doubtful: half as many more)")
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="bench-rules-") as tmp:
        work = Path(tmp)
        with local_stack(work) as addresses:
            settings = load_settings(
                run_dir=work / "rules",
                kafka_bootstrap=addresses.kafka_bootstrap,
                registry_url=addresses.registry_url,
                topic_prefix="rules.",
                processor_app_id="rules-processor",
                pii_key="bench-key-not-secret",
                processor_metrics_port=free_port(),
            )
            n = args.per_system * 7
            result = rules_phase(settings, args.per_system, args.bad_ratio, 120 + n / 100, 30.0)
    for label in ("rules_on", "rules_off"):
        r = result[label]
        console.print(
            f"processor, {label.replace('_', ' ')}: {r['steady_events_per_s'] or r['events_per_s']:,.0f} "
            f"events/s ({r['events']:,} events; outcomes {r['outcomes']})"
        )
    console.print(f"rules on / off: {result['on_vs_off']:.2f}")
    save_results("rules", result)


if __name__ == "__main__":
    main()
