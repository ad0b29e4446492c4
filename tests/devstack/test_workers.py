"""`backbone processor --workers 2` on the real stack: two processes in one consumer group share
the partitions, every change comes out (at least once), a worker killed with -9 is restarted and
the two go on, and stopping the command stops both."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from backbone import kafka
from backbone.settings import Settings
from contract.catalog import catalog_for
from contract.codec import Registry, decode
from contract.topics import DLQ_PROCESSOR, named
from devstack.workers import STATE_FILE
from simulators.simulate import run_simulator
from tests.helpers import wait_for


def topic_event_ids(settings: Settings, topic: str) -> list[str]:
    """The event ids of every record in the topic now (from its beginning to its end)."""
    registry = Registry.for_settings(settings)
    config = kafka.client_config(settings, **{"group.id": "test-workers-reader", "enable.auto.commit": False})
    consumer = Consumer(config)
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in partitions}
        consumer.assign([TopicPartition(topic, p, low) for p, (low, _) in ends.items()])
        remaining = {p for p, (low, high) in ends.items() if high > low}
        ids = []
        while remaining:
            message = consumer.poll(10)
            assert message is not None, f"{topic}: no record within 10 s"
            if message.error():
                continue
            ids.append(decode(registry, message.value())[1]["event_id"])
            if message.offset() + 1 >= ends[message.partition()][1]:
                remaining.discard(message.partition())
        return ids
    finally:
        consumer.close()


def end_offsets(settings: Settings, topic: str) -> int:
    consumer = Consumer(kafka.client_config(settings, **{"group.id": "test-workers-ends"}))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)
    finally:
        consumer.close()


def members_holding(settings: Settings, topic: str) -> int:
    """Members of the processor's group that hold partitions of `topic`."""
    admin = AdminClient(kafka.client_config(settings))
    (group,) = admin.describe_consumer_groups([settings.processor_app_id]).values()
    members = group.result(timeout=10).members
    return sum(1 for m in members if any(tp.topic == topic for tp in m.assignment.topic_partitions))


def events_in(address: str) -> float:
    text = urllib.request.urlopen(f"http://{address}/metrics", timeout=5).read().decode()  # noqa: S310 - loopback
    lines = [line for line in text.splitlines() if line.startswith("backbone_events_in_total{")]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def workers_state(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / STATE_FILE).read_text())["processes"]
    except (OSError, ValueError, KeyError):
        return {}


def test_two_workers_share_the_partitions_and_survive_a_kill(pipeline_settings, stage_process):
    settings = pipeline_settings
    (entity,) = catalog_for(settings).system("sim-licensing").entities
    dlq = named(settings, DLQ_PROCESSOR)
    command = stage_process(settings, "processor", "--workers", "2", BACKBONE_PROCESSOR_METRICS_PORT="0")
    wait_for(lambda: members_holding(settings, entity.cdc_topic) == 2, 120, "two workers holding partitions",
             alive=(command,))
    assert run_simulator(settings, "licensing", rate=0, count=3000, serve_metrics=False) == 3000
    wait_for(lambda: end_offsets(settings, entity.clean_topic) + end_offsets(settings, dlq) >= 3000, 120,
             "3,000 changes through two workers", alive=(command,))
    state = workers_state(settings.run_dir)
    assert sorted(state) == ["processor 1", "processor 2"]
    # Both took part: the group gave each some of the four partitions.
    wait_for(lambda: all(events_in(p["metrics"]) > 0 for p in workers_state(settings.run_dir).values()), 30,
             "events read by each worker", alive=(command,))

    os.kill(state["processor 1"]["pid"], signal.SIGKILL)
    wait_for(lambda: workers_state(settings.run_dir).get("processor 1", {}).get("restarts") == 1, 60,
             "the killed worker restarted", alive=(command,))
    assert run_simulator(settings, "licensing", rate=0, count=1000, seed=2, serve_metrics=False) == 1000
    wait_for(lambda: end_offsets(settings, entity.clean_topic) + end_offsets(settings, dlq) >= 4000, 120,
             "1,000 more changes after the restart", alive=(command,))

    produced = set(topic_event_ids(settings, entity.cdc_topic))
    assert len(produced) == 4000
    out = set(topic_event_ids(settings, entity.clean_topic))
    assert out <= produced
    # Nothing lost (a re-read may repeat): what is not clean was dead-lettered (sealed, so counted).
    assert len(produced - out) <= end_offsets(settings, dlq)
    pids = [p["pid"] for p in workers_state(settings.run_dir).values()]
    assert command.stop() == 0
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_each_worker_gets_its_own_metrics_port_and_runs_one_worker(tmp_path):
    from backbone.settings import load_settings
    from devstack.up import topology
    from devstack.workers import worker_processes

    settings = load_settings(run_dir=tmp_path, processor_metrics_port=9500, processor_workers=3)
    workers = worker_processes(settings, 3)
    assert [w.target.address for w in workers] == ["127.0.0.1:9500", "127.0.0.1:9501", "127.0.0.1:9502"]
    assert {w.child.env["BACKBONE_PROCESSOR_WORKERS"] for w in workers} == {"1"}
    # `backbone up` runs the same number, each supervised and scraped as the processor job.
    up = {p.child.name: p for p in topology(settings, {}) if p.target and p.target.job == "processor"}
    assert sorted(up) == ["processor 1", "processor 2", "processor 3"]
    assert len({p.target.address for p in up.values()}) == 3
    assert all(list(p.child.argv[-3:]) == ["processor", "--workers", "1"] for p in up.values())
