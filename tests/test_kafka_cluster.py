"""Kafka backend against a real three-node Apache Kafka 4.4.0 cluster (KRaft; node 1 controller and
broker, nodes 2 and 3 brokers), topics with replication factor 3 and min.insync.replicas=2.

- one broker killed -9 mid-stream (the partition's leader): leadership moves to an in-sync replica
  and every record is in the topic exactly once;
- two brokers down: the leader's ISR shrinks below min.insync.replicas, the broker refuses with
  NOT_ENOUGH_REPLICAS, our outcome is retryable and the records wait in our queue; after the
  restart every record is delivered, once.

Three JVMs on a 2-core box: ~40-60 s. ``OTEL_EXT_SKIP_KAFKA_CLUSTER=1`` skips the module.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, Producer
from exporter_harness import make_app, queued_records
from kafka_server import KafkaCluster, consume, record_uids
from peers import wait_until

from otel_ext.backends.kafka import classify_kafka_error
from otel_ext.backends.outcome import Outcome, OutcomeKind

pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(os.environ.get("OTEL_EXT_SKIP_KAFKA_CLUSTER") == "1",
                       reason="OTEL_EXT_SKIP_KAFKA_CLUSTER=1 (three Kafka JVMs)"),
]


@pytest.fixture(scope="module")
def cluster() -> Iterator[KafkaCluster]:
    c = KafkaCluster(3).start()
    yield c
    c.stop()


def test_partition_leader_killed_mid_stream_loses_and_duplicates_nothing(cluster: KafkaCluster,
                                                                        tmp_path: Path) -> None:
    topic = cluster.topic_led_by(2)
    # a timeout longer than a leader election: the idempotent producer rides through it itself
    app = make_app([cluster.url(topic, timeout="20s")], tmp_path / "q")
    stop = threading.Event()

    def produce() -> None:
        while not stop.is_set() and app.emitted < 10_000:
            app.emit(50)
            time.sleep(0.005)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        assert wait_until(lambda: app.emitted > 2000, 30)
        cluster.kill(2)  # kill -9 the leader mid-stream
        killed_at = app.emitted
    finally:
        producer.join()
    assert app.emitted > killed_at  # records kept coming after the kill
    assert app.deliver(timeout=90)
    app.close()
    assert queued_records(tmp_path / "q") == 0
    assert wait_until(lambda: cluster.leader(topic) in (1, 3), 30), cluster.leader(topic)
    uids = record_uids(consume(cluster.bootstrap, topic, expect=1, timeout=60))
    assert len(set(uids)) == app.emitted, f"{len(set(uids))} unique of {app.emitted}"
    assert len(uids) == app.emitted, f"{len(uids) - len(set(uids))} duplicates"
    cluster.start(2)


def test_two_brokers_down_is_not_enough_replicas_retryable_then_everything_arrives(
        cluster: KafkaCluster, tmp_path: Path) -> None:
    topic = cluster.topic_led_by(1)  # led by the node that also holds the controller quorum
    app = make_app([cluster.url(topic, timeout="2s")], tmp_path / "q")
    app.emit(1000)
    assert app.deliver()
    cluster.kill(2, 3)
    assert wait_until(lambda: cluster.isr(topic) == [1], 60), cluster.isr(topic)
    app.emit(1000)
    assert not app.deliver(timeout=8)  # refused: the records wait in our queue
    assert app.exporter.queue.pending() >= 1000
    health = app.exporter.stats()["lanes"]["main"]["backends"]
    (last_error,) = [b["last_error"] for b in health.values()]
    attempts = app.counters.snapshot().get("attempts", {})
    assert any(key.endswith(":retryable") and n for key, n in attempts.items()), attempts
    assert not any(key.endswith((":permanent", ":auth")) for key in attempts), attempts
    # what the broker answers: a plain producer without retries sees its refusal itself (ours retries
    # inside librdkafka until its timeout, so its last word is _MSG_TIMED_OUT); our mapping of it
    witness = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": False,
                        "retries": 0, "message.timeout.ms": 5000})
    errors: list[Any] = []
    witness.produce(topic, b"not-otlp", on_delivery=lambda err, _msg: errors.append(err))
    witness.flush(10)
    assert [e.code() for e in errors] == [KafkaError.NOT_ENOUGH_REPLICAS], errors
    verdict = classify_kafka_error(errors[0])
    assert isinstance(verdict, Outcome) and verdict.kind is OutcomeKind.RETRYABLE
    print(f"two brokers down: the broker says {errors[0].name()}; our backend's last outcome: {last_error}")
    cluster.start(2, 3)
    assert app.deliver(timeout=120)
    app.close()
    assert queued_records(tmp_path / "q") == 0
    uids = record_uids(consume(cluster.bootstrap, topic, expect=1, timeout=60))
    assert len(set(uids)) == 2000, f"{len(set(uids))} unique of 2000"
    assert len(uids) == 2000, f"{len(uids) - len(set(uids))} duplicates"
