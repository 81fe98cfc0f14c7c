"""Benchmark: otel-ext's durable path into a real Kafka 4.4.0 broker (KRaft, one node, loopback)
against a plain confluent-kafka producer sending the same messages, same broker, same run.

Both sides start from the same ready OTLP request bytes (encoded once, before any clock runs):

- **durable** (the figure the goal is about): every entry appended to the on-disk queue (its
  payload framed into a segment file, then one committed SQLite transaction per 512-record batch,
  as export() does), while a delivery lane drains it: read -> coalesce -> KafkaBackend (idempotent,
  acks=all, lz4; a window of requests in flight) -> every message acknowledged -> lane cursor
  written and the entries deleted. The clock stops when the last entry is deleted.
- **anchor**: a plain confluent-kafka producer with the same settings (``KafkaConfig.producer_config``)
  producing the very messages our path produced (read back from our topic) and flushing.

Where the time goes, measured on the same bytes in the same run:

- **append only**: the queue appends of those entries (segment write + SQLite commit), no lane;
- **drain only**: a pre-filled queue drained by the lane (read, send, ack, cursor, delete);
- **send only**: ``KafkaBackend.submit_parts()`` of the lane's coalesced requests, all in flight at once,
  until every ticket is acknowledged, no queue;
- a per-stage split of the drain (read / submit / wait for acks / cursor+delete), from timers around
  those calls;
- for information, the whole exporter: ``FailoverLogExporter.export()`` of SDK records (encoding
  included) until every record is acknowledged.

Rounds are interleaved (which side runs first alternates); each ratio is ours/anchor within one
pair, and the medians of those ratios are printed.

    python benchmarks/bench_kafka.py [--records 200000] [--rounds 5] [--export-records 20000] [--durable-only]
"""

from __future__ import annotations

import argparse
import collections
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
from otel_ext.export.policy import Policy
from otel_ext.export.sender import Lane
from otel_ext.queue.store import NewEntry, PersistentQueue
from otel_ext.telemetry import Counters

ATTRS = {"http.request.method": "GET", "http.route": "/api/orders/{id}", "http.response.status_code": 200,
         "url.path": "/api/orders/12345", "client.address": "10.0.3.17", "labels.event_class": "access"}


def batches(n: int, batch: int = 512) -> list[list[ReadableLogRecord]]:
    resource = LoggerProvider().resource
    return [[ReadableLogRecord(LogRecord(timestamp=time.time_ns(), body=f"GET /api/orders/{i} 200",
                                         attributes=dict(ATTRS), severity_number=SeverityNumber.INFO,
                                         severity_text="INFO"), resource)
             for i in range(start, min(n, start + batch))] for start in range(0, n, batch)]


def warm(backend: Any) -> None:
    """Connected, topic metadata known and the idempotent producer id acquired before any clock runs,
    like the anchor's warm-up produce + flush: an empty OTLP request (no records) produced and
    acknowledged. (A probe alone fetches metadata only; the producer id, when the broker's coordinator
    is still loading, came up to ~0.5 s later, inside the timed run.)"""
    assert backend.probe().delivered
    ticket = backend.submit(b"", 0)
    while ticket.state(time.monotonic()) == "pending":
        backend.serve(0.05)
    assert ticket.state(time.monotonic()) == "ok", ticket.error


class Stages:
    """Seconds spent in named calls (timers around methods of one object; nothing is replaced)."""

    def __init__(self) -> None:
        self.seconds: collections.Counter[str] = collections.Counter()

    def time(self, obj: Any, method: str, label: str) -> None:
        inner = getattr(obj, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - t0

        setattr(obj, method, timed)


class Bench:
    def __init__(self, broker: KafkaBroker, records: int, request_bytes: int, request_records: int,
                 window: tuple[int, int] = (8, 24 * 1024 * 1024)) -> None:
        self.window = window
        self.broker = broker
        self.records = records
        self.request_bytes = request_bytes
        self.request_records = request_records
        self.work = Path(tempfile.mkdtemp(prefix="bench-kafka-"))
        # the ready bytes: one queue entry batch per 512-record SDK batch, as export() appends them
        self.entry_batches: list[list[NewEntry]] = [encode_batch(b) for b in batches(records)]
        self.payload_bytes = sum(len(e.payload) for b in self.entry_batches for e in b)

    def _topic(self, kind: str) -> str:
        topic = f"{kind}-{uuid.uuid4().hex[:8]}"
        self.broker.create_topic(topic, 1)
        return topic

    def _lane(self, topic: str, stages: Stages | None = None) -> tuple[PersistentQueue, Lane, Any]:
        backend = backend_from_url(self.broker.url(topic, timeout="30s"), env={})
        warm(backend)
        queue = PersistentQueue(self.work / f"{topic}.db", max_bytes=4 * self.payload_bytes + 2**20,
                                counters=Counters("bq"))
        lane = Lane("main", queue, Policy([backend], "priority"), Counters("be"),
                    max_request_records=self.request_records, max_request_bytes=self.request_bytes,
                    max_inflight_requests=self.window[0], max_inflight_bytes=self.window[1])
        queue.register_lanes(["main"])
        if stages is not None:
            stages.time(queue, "read_after", "read")
            stages.time(backend, "submit_parts", "submit")
            stages.time(backend, "serve", "wait for acks")
            stages.time(backend, "send", "send (after a failure)")
            stages.time(queue, "advance", "cursor+delete")
        return queue, lane, backend

    def _finish(self, topic: str, queue: PersistentQueue, lane: Lane, backend: Any) -> list[bytes]:
        lane.stop(0)
        lane.join(10)
        assert queue.stats().entries == 0, "entries left in the queue"
        queue.close(remove_if_empty=True)
        backend.close()
        messages = consume(self.broker.bootstrap, topic, expect=1, timeout=60)
        uids = record_uids(messages)
        assert len(uids) == self.records and len(set(uids)) == self.records, (len(uids), len(set(uids)))
        return [value for _, value in messages if value]  # not the warm-up message

    @staticmethod
    def _drained(queue: PersistentQueue, lane: Lane, last: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        # delivered, cursor written, entries deleted (the in-memory totals change only after the
        # COMMIT; read without a lock or a query, so the watching costs the lane nothing)
        while lane.delivered_upto() < last or queue.pending_records:
            assert time.monotonic() < deadline, "not drained in time"
            time.sleep(0.001)

    def durable(self, stages: Stages | None = None) -> tuple[float, list[bytes]]:
        """Appends (one commit per batch) while the lane drains; until the last entry is deleted."""
        topic = self._topic("durable")
        queue, lane, backend = self._lane(topic, stages)
        lane.start()
        t0 = time.perf_counter()
        for batch in self.entry_batches:
            queue.append(batch)
            lane.wake.set()
        self._drained(queue, lane, queue.last_id())
        seconds = time.perf_counter() - t0
        return seconds, self._finish(topic, queue, lane, backend)

    def append_only(self, checkpoints: bool = True) -> float:
        queue = PersistentQueue(self.work / f"append-{uuid.uuid4().hex[:8]}.db",
                                max_bytes=4 * self.payload_bytes + 2**20, counters=Counters("bq"))
        if not checkpoints:  # diagnostic only: the WAL is never copied into the database nor fsynced
            queue._conn.execute("PRAGMA wal_autocheckpoint=0")
        t0 = time.perf_counter()
        for batch in self.entry_batches:
            queue.append(batch)
        seconds = time.perf_counter() - t0
        queue.purge()
        queue.close(remove_if_empty=True)
        return seconds

    def drain_only(self, stages: Stages | None = None) -> float:
        topic = self._topic("drain")
        queue, lane, backend = self._lane(topic, stages)
        for batch in self.entry_batches:
            queue.append(batch)
        queue.checkpoint()  # the pre-fill's WAL is not the drain's work
        t0 = time.perf_counter()
        lane.start()
        self._drained(queue, lane, queue.last_id())
        seconds = time.perf_counter() - t0
        self._finish(topic, queue, lane, backend)
        return seconds

    def send_only(self) -> float:
        topic = self._topic("send")
        queue = PersistentQueue(self.work / f"{topic}.db", max_bytes=4 * self.payload_bytes + 2**20,
                                counters=Counters("bq"))
        for batch in self.entry_batches:
            queue.append(batch)
        requests: list[list[bytes]] = []
        cursor = 0
        while entries := queue.read_after(cursor, self.request_records, self.request_bytes):  # the lane's coalescing
            requests.append([e.payload for e in entries])
            cursor = entries[-1].id
        queue.purge()
        queue.close(remove_if_empty=True)
        backend = backend_from_url(self.broker.url(topic, timeout="30s"), env={})
        warm(backend)
        t0 = time.perf_counter()
        tickets = [backend.submit_parts(parts, 0) for parts in requests]
        while any(t.state(time.monotonic()) == "pending" for t in tickets):
            backend.serve(0.05)
        seconds = time.perf_counter() - t0
        assert all(t.state(time.monotonic()) == "ok" for t in tickets)
        backend.close()
        assert len(set(record_uids(consume(self.broker.bootstrap, topic, expect=1, timeout=60)))) == self.records
        return seconds

    def anchor(self, values: list[bytes]) -> float:
        topic = self._topic("anchor")
        producer = Producer(KafkaConfig(bootstrap=self.broker.bootstrap, topic=topic, timeout=30).producer_config())
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
        seconds = time.perf_counter() - t0
        assert acked == len(values)
        return seconds

    def exporter(self, n: int) -> tuple[float, list[bytes]]:
        """For information: FailoverLogExporter.export() of SDK records, encoding included."""
        topic = self._topic("export")
        data = batches(n)
        exporter = FailoverLogExporter([self.broker.url(topic, timeout="30s")], queue_dir=self.work / topic)
        warm(exporter.backends[0])
        t0 = time.perf_counter()
        for batch in data:
            exporter.export(batch)
        assert exporter.force_flush(120_000)
        seconds = time.perf_counter() - t0
        exporter.shutdown()
        messages = consume(self.broker.bootstrap, topic, expect=1, timeout=60)
        assert len(set(record_uids(messages))) == n
        return seconds, [value for _, value in messages if value]


def paired(rounds: int, ours: Callable[[], float], anchor: Callable[[], float]) -> tuple[list[float], list[float]]:
    """(our seconds, anchor seconds) per pair; which side runs first alternates."""
    mine: list[float] = []
    theirs: list[float] = []
    for r in range(rounds):
        if r % 2 == 0:
            mine.append(ours())
            theirs.append(anchor())
        else:
            theirs.append(anchor())
            mine.append(ours())
    return mine, theirs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--export-records", type=int, default=20_000, help="0: skip the export() figure")
    parser.add_argument("--request-mib", type=float, default=3.0, help="the lane's max_request_bytes (default 3)")
    parser.add_argument("--request-records", type=int, default=10_000, help="the lane's max_request_records")
    parser.add_argument("--window-requests", type=int, default=8, help="the lane's max_inflight_requests")
    parser.add_argument("--window-mib", type=float, default=24.0, help="the lane's max_inflight_bytes (MiB)")
    parser.add_argument("--durable-only", action="store_true",
                        help="only the durable path and its anchor pairs (the goal's figure), one line per pair")
    args = parser.parse_args()
    broker = KafkaBroker(partitions=1).start()
    try:
        bench = Bench(broker, args.records, int(args.request_mib * 1024 * 1024), args.request_records,
                      (args.window_requests, int(args.window_mib * 1024 * 1024)))
        _, values = bench.durable()  # warm-up: broker JIT, page cache
        bench.anchor(values)
        bench.drain_only()

        def durable() -> float:
            seconds, fresh = bench.durable()
            values[:] = fresh
            return seconds

        durable_s, anchor_s = paired(args.rounds, durable, lambda: bench.anchor(values))
        if args.durable_only:
            for mine, theirs in zip(durable_s, anchor_s, strict=True):
                print(f"pair: durable {mine * 1000:.1f} ms, anchor {theirs * 1000:.1f} ms, ratio {theirs / mine:.3f}")
            print(f"durable path ÷ plain producer, median of {args.rounds} pairs: "
                  f"{statistics.median(t / m for m, t in zip(durable_s, anchor_s, strict=True)):.2f}")
            return
        drain_s, anchor2_s = paired(args.rounds, bench.drain_only, lambda: bench.anchor(values))
        append_s, anchor3_s = paired(args.rounds, bench.append_only, lambda: bench.anchor(values))
        no_checkpoint_s = [bench.append_only(checkpoints=False) for _ in range(args.rounds)]
        send_s, anchor4_s = paired(args.rounds, bench.send_only, lambda: bench.anchor(values))
        stages = Stages()
        split_rounds = max(1, args.rounds // 2)
        split_s = [bench.drain_only(stages) for _ in range(split_rounds)]
        export_line = ""
        if args.export_records:
            bench.exporter(min(args.export_records, 10_000))  # warm-up
            exp_s: list[float] = []
            exp_anchor: list[float] = []
            for _ in range(max(1, args.rounds // 2)):
                seconds, exp_values = bench.exporter(args.export_records)
                exp_s.append(seconds)
                exp_anchor.append(bench.anchor(exp_values))
            export_line = (f"\n  for information, the whole exporter (FailoverLogExporter.export() of SDK records: "
                           f"encoding + queue + lane + Kafka), {args.export_records:,} records: "
                           f"{args.export_records / statistics.median(exp_s):,.0f} records/s; ratio "
                           f"{statistics.median(a / s for s, a in zip(exp_s, exp_anchor, strict=True)):.2f} to the "
                           f"producer sending its messages")
    finally:
        broker.stop()
        if "bench" in locals():
            shutil.rmtree(bench.work, ignore_errors=True)

    n, mb = args.records, bench.payload_bytes / 1e6

    def rate(seconds: list[float]) -> str:
        s = statistics.median(seconds)
        return f"{n / s:,.0f} records/s, {mb / s:,.0f} MB/s"

    def ratio(mine: list[float], theirs: list[float]) -> float:
        return statistics.median(t / m for m, t in zip(mine, theirs, strict=True))

    split_total = statistics.median(split_s)
    split = ", ".join(f"{label} {seconds / split_rounds:.3f} s ({seconds / split_rounds / split_total:.0%})"
                      for label, seconds in sorted(stages.seconds.items(), key=lambda kv: -kv[1]))
    print(f"Kafka 4.4.0, 1 broker, acks=all, idempotent, lz4; {n:,} records = {mb:.1f} MB of OTLP request bytes, "
          f"lane requests <= {args.request_mib:g} MiB / {args.request_records:,} records, "
          f"<= {args.window_requests} requests / {args.window_mib:g} MiB in flight; "
          f"{args.rounds} interleaved pairs, medians:\n"
          f"  plain confluent-kafka producer, the same messages:   {rate(anchor_s)}\n"
          f"  durable path (append+commit -> lane -> Kafka ack -> cursor+delete): {rate(durable_s)}; "
          f"ratio {ratio(durable_s, anchor_s):.2f} (goal >= 0.9)\n"
          f"  drain only (pre-filled queue -> Kafka ack -> cursor+delete): {rate(drain_s)}; "
          f"ratio {ratio(drain_s, anchor2_s):.2f}\n"
          f"  append only (queue appends of the same entries: segment + SQLite commit, no lane): {rate(append_s)}; "
          f"takes {statistics.median(a / t for a, t in zip(append_s, anchor3_s, strict=True)):.2f}x the anchor's "
          f"whole time; the same commits with SQLite's checkpoints off (diagnostic: no fsync, WAL never "
          f"copied back) {rate(no_checkpoint_s)}\n"
          f"  send only (KafkaBackend.submit_parts() of the lane's requests, no queue): {rate(send_s)}; "
          f"ratio {ratio(send_s, anchor4_s):.2f}\n"
          f"  drain split ({split_total:.3f} s): {split}"
          f"{export_line}")


if __name__ == "__main__":
    main()
