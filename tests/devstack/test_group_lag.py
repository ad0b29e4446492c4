"""Every consumer group's lag from the real broker: committed offsets against high watermarks, per
partition, exported as a gauge; a group that goes away leaves no stale series."""

from __future__ import annotations

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client import REGISTRY

from backbone import kafka
from devstack.group_lag import LAG, export_once, group_lags


def test_lag_per_group_and_partition_and_no_stale_series(make_settings):
    settings = make_settings()
    admin = AdminClient(kafka.client_config(settings))
    topic = f"{settings.topic_prefix}lag-probe"
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    producer = Producer(kafka.client_config(settings))
    for i in range(10):
        producer.produce(topic, b"x", partition=i % 2)
    assert producer.flush(30) == 0
    group = f"{settings.topic_prefix}lag-group"
    consumer = Consumer(kafka.client_config(settings, **{"group.id": group, "enable.auto.commit": False}))
    consumer.commit(offsets=[TopicPartition(topic, 0, 4), TopicPartition(topic, 1, 5)], asynchronous=False)
    consumer.close()

    assert group_lags(admin, [group]) == {(group, topic, 0): 1, (group, topic, 1): 0}

    seen: set = set()
    export_once(admin, seen)
    assert REGISTRY.get_sample_value(LAG._name, {"group": group, "topic": topic, "partition": "0"}) == 1
    admin.delete_consumer_groups([group])[group].result(30)
    export_once(admin, seen)
    assert REGISTRY.get_sample_value(LAG._name, {"group": group, "topic": topic, "partition": "0"}) is None
