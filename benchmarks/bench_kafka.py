"""Benchmark: records/s into a real Kafka 4.4.0 broker (KRaft, one node, loopback) through otel-ext
— FailoverLogExporter.export() (encode, durable SQLite queue) -> sender -> KafkaBackend, until every
message is acknowledged (acks=all, idempotent) — divided by a plain confluent-kafka producer with the
same settings sending the very same message bytes (read back from our topic), same broker, same run.
The KafkaBackend alone (coalesced queue payloads -> send(), no queue) is printed too.

    python benchmarks/bench_kafka.py [--records 50000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs._internal import LogRecord

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from kafka_server import KafkaBroker, consume, record_uids

from otel_ext.backends import backend_from_url
from otel_ext.backends.kafka import KafkaConfig
from otel_ext.export import FailoverLogExporter
from otel_ext.export.encoding import encode_batch

ATTRS = {"http.request.method": "GET", "http.route": "/api/orders/{id}", "http.response.status_code": 200,
         "url.path": "/api/orders/12345", "client.address": "10.0.3.17", "labels.event_class": "access"}


def batches(n: int, batch: int = 512) -> list[list[ReadableLogRecord]]:
    resource = LoggerProvider().resource
    return [[ReadableLogRecord(LogRecord(timestamp=time.time_ns(), body=f"GET /api/orders/{i} 200",
                                         attributes=dict(ATTRS), severity_number=SeverityNumber.INFO,
                                         severity_text="INFO"), resource)
             for i in range(start, min(n, start + batch))] for start in range(0, n, batch)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    broker = KafkaBroker(partitions=1).start()
    work = Path(tempfile.mkdtemp(prefix="bench-kafka-"))
    ours: list[float] = []
    backend_only: list[float] = []
    anchor: list[float] = []
    tails: list[float] = []  # seconds from the last export() return until every record was acknowledged
    ours_ratio: list[float] = []
    backend_ratio: list[float] = []
    last_values: dict[object, list[bytes]] = {}
    try:
        def run_ours(n: int) -> tuple[float, list[bytes]]:
            topic = f"ours-{uuid.uuid4().hex[:8]}"
            broker.create_topic(topic, 1)
            data = batches(n)
            exporter = FailoverLogExporter([broker.url(topic, timeout="30s")], queue_dir=work / topic)
            assert exporter.backends[0].probe().delivered  # connected, like the warmed-up anchor
            t0 = time.perf_counter()
            for batch in data:
                exporter.export(batch)
            t1 = time.perf_counter()
            assert exporter.force_flush(120_000)
            t2 = time.perf_counter()
            rate = n / (t2 - t0)
            tails.append(t2 - t1)
            exporter.shutdown()
            messages = consume(broker.bootstrap, topic, expect=1, timeout=60)
            assert len(set(record_uids(messages))) == n
            return rate, [value for _, value in messages]

        def run_backend(n: int) -> tuple[float, list[bytes]]:
            topic = f"backend-{uuid.uuid4().hex[:8]}"
            broker.create_topic(topic, 1)
            payloads = [e.payload for batch in batches(n) for e in encode_batch(batch)]
            # the sender coalesces up to 10,000 queued records into one send()
            requests = [b"".join(payloads[i:i + 19]) for i in range(0, len(payloads), 19)]
            backend = backend_from_url(broker.url(topic, timeout="30s"), env={})
            assert backend.probe().delivered
            t0 = time.perf_counter()
            for payload in requests:
                assert backend.send(payload, 0).delivered
            rate = n / (time.perf_counter() - t0)
            backend.close()
            messages = consume(broker.bootstrap, topic, expect=1, timeout=60)
            assert len(set(record_uids(messages))) == n
            return rate, [value for _, value in messages]

        def run_anchor(n: int, values: list[bytes]) -> float:
            topic = f"anchor-{uuid.uuid4().hex[:8]}"
            broker.create_topic(topic, 1)
            conf = KafkaConfig(bootstrap=broker.bootstrap, topic=topic, timeout=30).producer_config()
            producer = Producer(conf)
            producer.produce(topic, b"warm-up")  # connected and holding its idempotent producer id
            producer.flush(30)
            acked = 0

            def report(err: object, _msg: object) -> None:
                nonlocal acked
                assert err is None, err
                acked += 1

            t0 = time.perf_counter()
            for value in values:
                while True:
                    try:
                        producer.produce(topic, value, b"unknown_service:python", on_delivery=report)
                        break
                    except BufferError:
                        producer.poll(0.01)
            producer.flush(120)
            rate = n / (time.perf_counter() - t0)
            assert acked == len(values)
            return rate

        _, warm = run_ours(10_000)
        tails.clear()
        run_anchor(10_000, warm)
        run_backend(10_000)
        for r in range(args.rounds):  # paired runs, alternating which goes first: ratios per pair
            for path, results, ratios in ((run_ours, ours, ours_ratio), (run_backend, backend_only, backend_ratio)):
                if r % 2 == 0:
                    rate, values = path(args.records)
                    plain = run_anchor(args.records, values)
                else:
                    # the anchor needs the bytes first: take them from the previous pair's run
                    plain = run_anchor(args.records, last_values[path])
                    rate, values = path(args.records)
                last_values[path] = values
                results.append(rate)
                anchor.append(plain)
                ratios.append(rate / plain)
    finally:
        broker.stop()
    o, b, a = statistics.median(ours), statistics.median(backend_only), statistics.median(anchor)
    print(f"Kafka 4.4.0, 1 broker, acks=all, idempotent, lz4 ({args.records} records x {args.rounds} paired rounds, "
          f"medians): KafkaBackend.send() of the sender's coalesced queue payloads {b:,.0f} records/s vs a plain "
          f"confluent-kafka producer sending the same message bytes: ratio {statistics.median(backend_ratio):.2f} "
          f"(goal >= 0.9). Whole exporter (export(): encode + durable SQLite queue, sender, KafkaBackend) "
          f"{o:,.0f} records/s, ratio {statistics.median(ours_ratio):.2f} to the producer with its bytes "
          f"(plain producer median {a:,.0f} records/s). "
          f"The exporter's export() (encode + durable queue) sets its pace: the last record was acknowledged "
          f"{statistics.median(tails) * 1000:.0f} ms (median) after the last export() returned")


if __name__ == "__main__":
    main()
