"""The Python peer of issue 12: a Quix Streams app doing the processor's job on the same topic.

Run in a venv of its own (bench/quix-peer-requirements.txt; `peer_venv` makes it), as a script (the
bench package needs the project's venv): Quix Streams pins confluent-kafka and pydantic below the
project's versions. `measure` starts it from bench.run. The app reads the licensing cdc topic
and, per message, does what the processor does: the project's own `Cleaner` decodes, validates
(every rule, the lifecycle state included), enriches, pseudonymises and encodes; Quix produces the
clean record to a topic of its own and commits offsets (at least once). Dead letters and the
lifecycle state records are computed but not produced (none of the bench's events is refused)."""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REQUIREMENTS = Path(__file__).with_name("quix-peer-requirements.txt")


def peer_venv(cache: Path) -> Path:
    """The peer's Python, in a venv under `cache` made once per requirements file (pip, by name)."""
    stamp = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    venv = cache / f"quix-peer-{stamp}"
    python = venv / "bin" / "python"
    if not (venv / ".installed").is_file():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True)
        (venv / ".installed").touch()
    return python


def measure(settings: Any, table: str, n: int, work: Path, timeout: float, stall: float) -> dict[str, Any]:
    """The peer on the bench's backlog of `table` (n clean records expected): its rate, timed as the
    processor's is (first record written to last)."""
    from dataclasses import asdict

    from confluent_kafka.admin import AdminClient, NewTopic

    from backbone import kafka
    from backbone.settings import PROJECT_ROOT
    from bench.stages import KafkaProgress
    from bench.stages import measure as measure_child
    from devstack.procs import Child
    from devstack.stack import cache_dir

    python = peer_venv(cache_dir())
    out_topic = f"{settings.topic_prefix}bench.quix-peer.clean"
    admin = AdminClient(kafka.client_config(settings))
    for future in admin.create_topics(
        [NewTopic(out_topic, settings.topic_partitions, settings.topic_replication)]
    ).values():
        future.result(timeout=30)
    command = [str(python), str(Path(__file__).resolve()), "--table", table, "--out-topic", out_topic,
               "--group", f"{settings.processor_app_id}-quix-peer", "--state-dir", str(work / "quix-state")]
    child = Child("quix-peer", command, work / "quix-peer.log", cwd=PROJECT_ROOT, stop_timeout=20,
                  env={**settings.as_env(), "PYTHONPATH": str(PROJECT_ROOT)})
    written = KafkaProgress(settings, [out_topic])
    started = time.monotonic()
    try:
        child.start()
        result = measure_child(child, started, n, written, lambda value: value >= n, timeout, stall)
    finally:
        written.close()
        child.stop()
    return {**asdict(result), "quixstreams": "3.28.1"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.quix_peer", description=__doc__)
    parser.add_argument("--table", required=True)
    parser.add_argument("--out-topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", required=True)
    args = parser.parse_args(argv)

    from quixstreams import Application, message_context  # only in the peer's venv

    from backbone.sealing import Sealer
    from backbone.settings import load_settings
    from contract.catalog import catalog_for
    from contract.codec import Registry
    from contract.deadletter import Output, RawEvent
    from contract.reference import load_regions
    from contract.topics import DLQ_PROCESSOR, STATE_LIFECYCLE, STATE_REFERENCES, named
    from stream_processors.cleaning import Cleaner
    from stream_processors.lifecycle import LifecycleState
    from stream_processors.references import ReferenceTable

    settings = load_settings()
    catalog = catalog_for(settings)
    entity = next(e for e in catalog.entities if e.table == args.table)
    cleaner = Cleaner(
        catalog,
        Registry.for_settings(settings),
        load_regions(settings.regions_csv),
        settings.pii_secret(),
        named(settings, DLQ_PROCESSOR),
        sealer=Sealer(settings.dead_letter_secret()),
        lifecycle=LifecycleState(named(settings, STATE_LIFECYCLE)),
        references=ReferenceTable(named(settings, STATE_REFERENCES), {}),
    )
    app = Application(
        broker_address=settings.kafka_bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        use_changelog_topics=False,
        loglevel="WARNING",
    )
    source = app.topic(entity.cdc_topic, key_deserializer="bytes", value_deserializer="bytes")
    out = app.topic(args.out_topic, key_serializer="bytes", value_serializer="bytes")

    def clean(value: bytes, key: bytes, timestamp: int, _headers: object) -> bytes | None:
        context = message_context()
        outputs: list[Output] = []
        event = RawEvent(entity.cdc_topic, context.partition, context.offset, key, value, timestamp)
        cleaner.process([event], outputs.append)
        return next((o.value for o in outputs if o.topic == entity.clean_topic), None)

    sdf = app.dataframe(source).apply(clean, metadata=True).filter(lambda value: value is not None)
    sdf.to_topic(out)
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
