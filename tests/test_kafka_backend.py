"""Kafka backend against a real Apache Kafka 4.4.0 broker (KRaft, from Maven Central jars).

Delivery is counted by consuming the topic back and decoding every message as the OTLP
ExportLogsServiceRequest the collector's kafkareceiver (encoding otlp_proto) reads.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError
from exporter_harness import make_app, queued_records
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka_server import KafkaBroker, consume, record_uids
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from peers import collect, wait_until

from otel_ext.backends import BackendConfigError, backend_from_url
from otel_ext.backends.kafka import KafkaBackend, classify_kafka_error, halves, messages_for
from otel_ext.backends.outcome import OutcomeKind


def _request(services: dict[str, int], body_bytes: int = 20) -> bytes:
    request = ExportLogsServiceRequest()
    for service, n in services.items():
        rl = ResourceLogs(resource=Resource(attributes=[KeyValue(key="service.name",
                                                                 value=AnyValue(string_value=service))]))
        sl = ScopeLogs()
        for i in range(n):
            sl.log_records.append(LogRecord(
                body=AnyValue(string_value=f"{service} {i} " + "x" * body_bytes),
                attributes=[KeyValue(key="log.record.uid", value=AnyValue(string_value=f"{service}-{i}"))]))
        rl.scope_logs.append(sl)
        request.resource_logs.append(rl)
    return request.SerializeToString()


# --- without a broker -------------------------------------------------------------------------

def test_one_service_goes_out_byte_for_byte_keyed_by_service_name() -> None:
    payload = _request({"checkout": 5})
    assert messages_for(payload) == [(b"checkout", payload)]


def test_several_services_become_one_message_each_with_their_own_key() -> None:
    payload = _request({"checkout": 3, "billing": 2})
    messages = messages_for(payload)
    assert [(k, len(record_uids([(k, v)]))) for k, v in messages] == [(b"checkout", 3), (b"billing", 2)]
    assert sorted(record_uids(messages)) == sorted(record_uids([(None, payload)]))


def test_a_coalesced_payload_is_packed_into_messages_under_the_limit_at_entry_boundaries() -> None:
    entries = [_request({"checkout": 100}, body_bytes=2000) for _ in range(5)]  # ~200 KB each
    payload = b"".join(entries)  # how the sender coalesces queued entries
    messages = messages_for(payload, limit=500_000)
    assert [len(record_uids([m])) for m in messages] == [200, 200, 100]
    assert all(len(v) <= 500_000 and k == b"checkout" for k, v in messages)
    assert sorted(record_uids(messages)) == sorted(record_uids([(None, payload)]))
    # cut on the wire format: each message is the entries' bytes, unchanged
    assert messages[0][1] == entries[0] + entries[1] and messages[2][1] == entries[4]


@settings(max_examples=40, deadline=None)
@given(entries=st.lists(st.dictionaries(st.sampled_from(["checkout", "billing", ""]), st.integers(1, 30),
                                        min_size=1, max_size=3), min_size=1, max_size=6),
       limit=st.integers(2_000, 40_000))
def test_messages_cut_from_the_entries_as_parts_are_those_of_their_concatenation(
        entries: list[dict[str, int]], limit: int) -> None:
    """The lane hands a request over as its entries (no joined copy); the messages must be exactly
    those of the joined request: same keys, same bytes, same order."""
    parts = [_request(services, body_bytes=300) for services in entries]
    assert messages_for(parts, limit) == messages_for(b"".join(parts), limit)


def test_wire_format_walk_refuses_garbage_instead_of_guessing() -> None:
    with pytest.raises(ValueError):
        messages_for(b"\x0a\xff\xff\xff\x0f" + b"x" * 10)  # a length far past the end
    with pytest.raises(ValueError):
        messages_for(b"\x0a\xff")  # a truncated varint
    backend = backend_from_url("kafka://127.0.0.1:9/logs", env={})
    assert backend.send(b"\x0a\xff", 1).kind is OutcomeKind.PERMANENT  # dead-lettered, not retried for ever
    backend.close()


def test_halves_keep_every_record_and_its_resource() -> None:
    payload = _request({"checkout": 7})
    parts = halves(payload)
    assert parts is not None
    a, b = parts
    assert (len(record_uids([(None, a)])), len(record_uids([(None, b)]))) == (3, 4)
    assert record_uids([(None, a), (None, b)]) == [f"checkout-{i}" for i in range(7)]
    assert messages_for(a)[0][0] == b"checkout"
    assert halves(_request({"checkout": 1})) is None


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (KafkaError._ALL_BROKERS_DOWN, "retryable"),
        (KafkaError._MSG_TIMED_OUT, "retryable"),
        (KafkaError.NOT_ENOUGH_REPLICAS, "retryable"),
        (KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND, "retryable"),
        (KafkaError.LEADER_NOT_AVAILABLE, "retryable"),
        (KafkaError.SASL_AUTHENTICATION_FAILED, "auth"),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, "auth"),
        (KafkaError.INVALID_RECORD, "permanent"),
        (KafkaError.MSG_SIZE_TOO_LARGE, "split"),
    ],
)
def test_kafka_errors_map_to_our_outcome_classes(code: int, kind: str) -> None:
    verdict = classify_kafka_error(KafkaError(code))
    assert (verdict if isinstance(verdict, str) else verdict.kind.value) == kind


@pytest.mark.parametrize(
    ("url", "env", "problem"),
    [
        ("kafka://b1:9092", {}, "needs brokers and a topic"),
        ("kafka://b1:9092,b2/logs", {}, "broker 'b2' needs host:port"),
        ("kafka://b1:9092/logs%20x", {}, "not a legal Kafka topic name"),
        ("kafka://b1:9092/logs?compression=brotli", {}, "compression must be one of lz4, zstd"),
        ("kafka://b1:9092/logs?mapping=ecs", {}, r"allowed: ca_file, compression, linger_ms, max_message_bytes, name, sasl_mechanism, timeout"),
        ("kafka://b1:9092/logs", {"OTEL_EXT_KAFKA_USERNAME": "svc"}, "set both or neither"),
        ("kafka://b1:9092/logs?sasl_mechanism=PLAIN", {"OTEL_EXT_KAFKA_USERNAME": "svc", "OTEL_EXT_KAFKA_PASSWORD": "pw"},
         "password in clear"),
        ("kafka://b1:9092/logs?sasl_mechanism=GSSAPI", {"OTEL_EXT_KAFKA_USERNAME": "svc", "OTEL_EXT_KAFKA_PASSWORD": "pw"},
         "sasl_mechanism must be one of"),
        ("kafka://svc:pw@b1:9092/logs", {}, "credentials in a backend URL are not allowed"),
    ],
)
def test_bad_kafka_urls(url: str, env: dict[str, str], problem: str) -> None:
    with pytest.raises(BackendConfigError, match=problem) as info:
        backend_from_url(url, env=env)
    assert "pw" not in str(info.value).replace("password", "")


def test_sasl_credentials_come_from_env_and_never_show_in_the_name() -> None:
    backend = backend_from_url("kafkas://b1:9093,b2:9093/logs", env={"OTEL_EXT_KAFKA_USERNAME": "svc",
                                                                      "OTEL_EXT_KAFKA_PASSWORD": "s3cret"})
    assert isinstance(backend, KafkaBackend)
    conf = backend.config.producer_config()
    assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.mechanisms"] == "SCRAM-SHA-512"
    assert conf["enable.idempotence"] is True and conf["acks"] == "all"
    assert "s3cret" not in backend.describe() and backend.describe() == "kafkas://b1:9093,b2:9093/logs"
    backend.close()


# --- against a real broker --------------------------------------------------------------------

@pytest.fixture(scope="module")
def broker() -> Iterator[KafkaBroker]:
    b = KafkaBroker(partitions=3).start()
    yield b
    b.stop()


def _topic(broker: KafkaBroker) -> str:
    topic = f"logs-{uuid.uuid4().hex[:8]}"
    broker.create_topic(topic)
    return topic


@pytest.mark.peers
def test_every_record_lands_once_in_the_topic_as_otlp_proto(broker: KafkaBroker, tmp_path: Path) -> None:
    topic = _topic(broker)
    app = make_app([broker.url(topic, timeout="5s")], tmp_path / "q")
    app.emit(3000)
    assert app.deliver()
    app.close()
    assert queued_records(tmp_path / "q") == 0
    messages = consume(broker.bootstrap, topic, expect=1)
    uids = record_uids(messages)
    assert len(uids) == 3000 and len(set(uids)) == 3000
    assert {key for key, _ in messages} == {b"unknown_service:python"}  # the SDK's default service.name


@pytest.mark.peers
def test_services_are_keyed_and_spread_over_partitions(broker: KafkaBroker) -> None:
    topic = _topic(broker)
    backend = backend_from_url(broker.url(topic, timeout="5s"), env={})
    payload = _request({f"svc-{i}": 10 for i in range(12)})
    assert backend.send(payload, 120).kind is OutcomeKind.OK
    backend.close()
    messages = consume(broker.bootstrap, topic, expect=12)
    assert Counter(key for key, _ in messages) == Counter({f"svc-{i}".encode(): 1 for i in range(12)})
    assert len(set(record_uids(messages))) == 120


@pytest.mark.peers
def test_too_large_messages_are_split_and_a_lone_giant_record_is_dead_lettered(broker: KafkaBroker) -> None:
    topic = _topic(broker)
    backend = backend_from_url(broker.url(topic, timeout="5s", max_message_bytes="20000"), env={})
    payload = _request({"checkout": 40}, body_bytes=2000)  # ~80 KB: four times the limit
    assert backend.send(payload, 40).kind is OutcomeKind.OK
    messages = consume(broker.bootstrap, topic, expect=4)
    assert sorted(record_uids(messages)) == sorted(f"checkout-{i}" for i in range(40))
    assert all(len(value) <= 20000 for _, value in messages) and len(messages) >= 4

    request = ExportLogsServiceRequest.FromString(_request({"billing": 3}))
    request.resource_logs[0].scope_logs[0].log_records[1].body.string_value = "y" * 50_000
    outcome = backend.send(request.SerializeToString(), 3)
    assert outcome.kind is OutcomeKind.PARTIAL and outcome.rejected == 1 and outcome.dead_letter
    assert record_uids([(None, outcome.dead_letter)]) == ["billing-1"]
    delivered = record_uids(consume(broker.bootstrap, topic, expect=6))
    assert {"billing-0", "billing-2"} <= set(delivered) and "billing-1" not in delivered
    backend.close()


@pytest.mark.peers
def test_unreachable_broker_is_retryable_and_probe_says_so(tmp_path: Path) -> None:
    from peers import free_port

    backend = backend_from_url(f"kafka://127.0.0.1:{free_port()}/logs?timeout=500ms", env={})
    started = time.monotonic()
    assert backend.send(_request({"a": 2}), 2).kind is OutcomeKind.RETRYABLE
    assert backend.probe().kind is OutcomeKind.RETRYABLE
    assert time.monotonic() - started < 20  # generous: bounded by the timeout, not hanging
    backend.close()


@pytest.mark.peers
def test_broker_killed_and_restarted_mid_stream_loses_nothing(tmp_path: Path) -> None:
    broker = KafkaBroker(partitions=3).start()
    try:
        topic = _topic(broker)
        app = make_app([broker.url(topic, timeout="1s")], tmp_path / "q")
        stop = threading.Event()

        def produce() -> None:
            while not stop.is_set() and app.emitted < 20_000:
                app.emit(50)
                time.sleep(0.01)

        producer = threading.Thread(target=produce)
        producer.start()
        assert wait_until(lambda: app.emitted > 2000, 30)
        broker.kill()  # kill -9 mid-stream
        time.sleep(3)  # records keep coming: they wait in our queue
        stop_at = app.emitted
        broker.start()
        stop.set()
        producer.join()
        assert app.emitted > stop_at or app.emitted >= 20_000
        assert app.deliver(timeout=90)
        app.close()
        assert queued_records(tmp_path / "q") == 0
        uids = record_uids(consume(broker.bootstrap, topic, expect=1, timeout=30))
        assert len(set(uids)) == app.emitted, f"{len(set(uids))} unique of {app.emitted}"
        print(f"broker kill: {app.emitted} records, {len(uids) - len(set(uids))} duplicates in the topic")
    finally:
        broker.stop()


@pytest.mark.peers
def test_failover_from_kafka_to_otlp_when_the_broker_dies(receivers: Any, tmp_path: Path) -> None:
    broker = KafkaBroker(partitions=1).start()
    secondary = receivers("secondary")
    try:
        topic = _topic(broker)
        app = make_app([broker.url(topic, timeout="1s"), secondary.grpc_url], tmp_path / "q")
        app.emit(1000)
        assert app.deliver()
        broker.kill()
        app.emit(1000)
        assert app.deliver(timeout=60)
        app.close()
        assert queued_records(tmp_path / "q") == 0
        broker.start()
        in_kafka = set(record_uids(consume(broker.bootstrap, topic, expect=1, timeout=30)))
        in_otlp = set(collect(1, secondary, timeout=10))
        assert len(in_kafka | in_otlp) == 2000
        assert len(in_kafka) >= 1000 and len(in_otlp) >= 900  # the second half went to the secondary
    finally:
        broker.stop()


@pytest.mark.peers
def test_sasl_scram_credentials_from_env_and_a_wrong_password_is_an_auth_outcome() -> None:
    broker = KafkaBroker(partitions=1, scram=("otel", "right-secret")).start()
    try:
        topic = _topic(broker)
        url = f"kafka://127.0.0.1:{broker.sasl_port}/{topic}?timeout=3s&sasl_mechanism=SCRAM-SHA-512"
        good = backend_from_url(url, env={"OTEL_EXT_KAFKA_USERNAME": "otel", "OTEL_EXT_KAFKA_PASSWORD": "right-secret"})
        assert good.send(_request({"checkout": 3}), 3).kind is OutcomeKind.OK
        good.close()
        bad = backend_from_url(url, env={"OTEL_EXT_KAFKA_USERNAME": "otel", "OTEL_EXT_KAFKA_PASSWORD": "wrong"})
        outcome = bad.send(_request({"checkout": 2}), 2)
        assert outcome.kind is OutcomeKind.AUTH, outcome
        assert "wrong" not in outcome.message and "right-secret" not in outcome.message
        bad.close()
        assert sorted(record_uids(consume(broker.bootstrap, topic, expect=3))) == [f"checkout-{i}" for i in range(3)]
    finally:
        broker.stop()


@pytest.mark.peers
def test_broker_killed_with_many_requests_in_flight_cursor_never_passes_an_unacknowledged_entry(
        tmp_path: Path) -> None:
    """A lane with a window of requests in flight; kill -9 while it is full. Every entry at or
    below the cursor the queue file holds must be in the broker's log (acknowledged) even though
    the lane never gets another chance; after a restart every record arrives at least once."""
    from otel_ext.export.policy import Policy
    from otel_ext.export.sender import Lane
    from otel_ext.queue.store import NewEntry, PersistentQueue
    from otel_ext.telemetry import Counters

    broker = KafkaBroker(partitions=3).start()
    try:
        topic = _topic(broker)
        queue = PersistentQueue(tmp_path / "q.db", counters=Counters("tq"))
        queue.register_lanes(["main"])
        entries, per_entry = 240, 100
        for k in range(entries):
            queue.append([NewEntry(0, per_entry, {"access": per_entry},
                                   _request({f"e{k}": per_entry}, body_bytes=1000))])
        expected = {f"e{k}-{i}" for k in range(entries) for i in range(per_entry)}

        def lane_to(url: str) -> tuple[Lane, Any]:
            backend = backend_from_url(url, env={})
            lane = Lane("main", queue, Policy([backend], "priority"), Counters("tl"),
                        max_request_records=300, max_request_bytes=256 * 1024,
                        max_inflight_requests=8, max_inflight_bytes=4 * 1024 * 1024)
            return lane, backend

        lane, backend = lane_to(broker.url(topic, timeout="1s"))
        assert backend.probe().delivered
        seen_in_flight = 0

        def window_full() -> bool:
            nonlocal seen_in_flight
            seen_in_flight = max(seen_in_flight, lane.in_flight)
            return lane.in_flight >= 4 and queue.cursor("main") >= entries // 6

        lane.start()
        assert wait_until(window_full, 60, interval=0.0005), f"never more than {seen_in_flight} in flight"
        broker.kill()  # kill -9 with requests in flight
        time.sleep(2.5)  # acknowledgements that made it out are recorded, the rest fail
        lane.stop(0)
        lane.join(15)
        backend.close()
        cursor = queue.cursor("main")
        assert 0 < cursor < entries, cursor  # part delivered, part not: the kill landed mid-stream

        broker.start()
        acknowledged = {f"e{k - 1}-{i}" for k in range(1, cursor + 1) for i in range(per_entry)}
        before = set(record_uids(consume(broker.bootstrap, topic, expect=1, timeout=30)))
        missing = acknowledged - before
        assert not missing, f"cursor {cursor} passed {len(missing)} records the broker never took"

        lane, backend = lane_to(broker.url(topic, timeout="5s"))
        lane.start()
        assert wait_until(lambda: queue.stats().entries == 0, 90)
        lane.stop(0)
        lane.join(15)
        backend.close()
        queue.close()
        uids = record_uids(consume(broker.bootstrap, topic, expect=1, timeout=30))
        assert set(uids) == expected, f"{len(expected - set(uids))} records lost"
        print(f"kill with {seen_in_flight} requests in flight: cursor at entry {cursor} of {entries}; "
              f"{len(uids) - len(expected)} duplicates in the topic")
    finally:
        broker.stop()


@pytest.mark.peers
def test_a_window_request_with_a_giant_record_is_resent_through_send_and_only_that_record_is_dead_lettered(
        broker: KafkaBroker, tmp_path: Path) -> None:
    """Outcome classes through the window are those of send(): the request holding a record above
    max_message_bytes fails in flight, goes again through send(), which splits it and dead-letters
    the lone giant record; every other entry, before and after it in the window, is delivered."""
    from otel_ext.export.policy import Policy
    from otel_ext.export.sender import Lane
    from otel_ext.queue.store import NewEntry, PersistentQueue
    from otel_ext.telemetry import Counters

    topic = _topic(broker)
    queue = PersistentQueue(tmp_path / "q.db", counters=Counters("tq"))
    queue.register_lanes(["main"])
    for k in range(30):
        payload = _request({f"g{k}": 20}, body_bytes=500)
        if k == 12:
            request = ExportLogsServiceRequest.FromString(payload)
            request.resource_logs[0].scope_logs[0].log_records[3].body.string_value = "z" * 60_000
            payload = request.SerializeToString()
        queue.append([NewEntry(0, 20, {"access": 20}, payload)])
    backend = backend_from_url(broker.url(topic, timeout="5s", max_message_bytes="30000"), env={})
    lane = Lane("main", queue, Policy([backend], "priority"), Counters("tl"), max_request_records=40,
                max_request_bytes=20_000, max_inflight_requests=8)
    lane.start()
    assert wait_until(lambda: queue.stats().entries == 0, 60)
    lane.stop(0)
    lane.join(10)
    backend.close()
    (letter,) = queue.dead_letters()
    assert record_uids([(None, letter.payload)]) == ["g12-3"] and letter.records == 1
    uids = set(record_uids(consume(broker.bootstrap, topic, expect=1, timeout=30)))
    assert uids == {f"g{k}-{i}" for k in range(30) for i in range(20)} - {"g12-3"}
    queue.close()
