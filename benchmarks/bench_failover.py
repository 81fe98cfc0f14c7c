"""Benchmarks for the failover exporter; every figure is a ratio against an anchor measured in the
same run, on the same machine.

    python benchmarks/bench_failover.py throughput [--records 100000]
    python benchmarks/bench_failover.py failover
    python benchmarks/bench_failover.py outage-latency
    python benchmarks/bench_failover.py queue
    python benchmarks/bench_failover.py rss [--seconds 120 --rate 1000]
    python benchmarks/bench_failover.py all

throughput: records/s into one real rotel gRPC receiver (blackhole exporter), FailoverLogExporter
(queue on, default fsync) / the SDK's OTLPLogExporter, both behind a BatchLogRecordProcessor.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from peers import free_port, port_open, rotel_binary, wait_until

from otel_ext.export import FailoverLogExporter
from otel_ext.queue.store import NewEntry, PersistentQueue
from otel_ext.telemetry import Counters

ATTRS = {"http.request.method": "GET", "http.route": "/api/orders/{id}", "http.response.status_code": 200,
         "url.path": "/api/orders/12345", "client.address": "10.0.3.17", "labels.event_class": "access"}


class Receiver:
    """A rotel receiver with the blackhole exporter (no debug output: as cheap as a receiver gets)."""

    def __init__(self, workdir: Path, debug: bool = False) -> None:
        import subprocess

        self.port = free_port()
        args = [rotel_binary(), "start", "--otlp-grpc-endpoint", f"127.0.0.1:{self.port}", "--otlp-http-endpoint",
                f"127.0.0.1:{free_port()}", "--exporter", "blackhole", "--pid-file", str(workdir / f"{self.port}.pid"),
                "--log-file", str(workdir / f"{self.port}.log")]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_until(lambda: port_open(self.port), 15)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def emit(provider: LoggerProvider, n: int) -> None:
    logger = provider.get_logger("bench")
    for i in range(n):
        logger.emit(body=f"GET /api/orders/{i} 200", severity_number=SeverityNumber.INFO, attributes=ATTRS)


def run_throughput(exporter: LogRecordExporter, n: int, ours: bool) -> float:
    provider = LoggerProvider()
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter, max_queue_size=n + 1))
    start = time.perf_counter()
    emit(provider, n)
    provider.force_flush(600_000)
    if ours:
        assert exporter.force_flush(600_000)  # type: ignore[attr-defined]
    elapsed = time.perf_counter() - start
    provider.shutdown()
    return n / elapsed


def bench_throughput(n: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rx = Receiver(Path(tmp))
        try:
            sdk, ours = [], []
            for r in range(rounds):
                sdk.append(run_throughput(OTLPLogExporter(endpoint=f"127.0.0.1:{rx.port}", insecure=True), n, False))
                exporter = FailoverLogExporter([f"otlp+grpc://127.0.0.1:{rx.port}"], queue_dir=Path(tmp) / f"q{r}",
                                               counters=Counters("b"), queue_counters=Counters("bq"))
                ours.append(run_throughput(exporter, n, True))
        finally:
            rx.kill()
    s, o = statistics.median(sdk), statistics.median(ours)
    print(f"throughput ({n} records x {rounds} rounds, medians): SDK OTLPLogExporter {s:,.0f} rec/s; "
          f"FailoverLogExporter {o:,.0f} rec/s; ratio {o / s:.2f} (goal >= 1.0)")


def bench_failover(rounds: int) -> None:
    results = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            a, b = Receiver(Path(tmp)), Receiver(Path(tmp))
            counters = Counters("b")
            exporter = FailoverLogExporter([f"otlp+grpc://127.0.0.1:{a.port}?name=a",
                                            f"otlp+grpc://127.0.0.1:{b.port}?name=b"],
                                           queue_dir=Path(tmp) / "q", counters=counters, queue_counters=Counters("bq"))
            provider = LoggerProvider()
            provider.add_log_record_processor(BatchLogRecordProcessor(exporter, schedule_delay_millis=10))
            stop = threading.Event()

            def produce(provider: LoggerProvider = provider, stop: threading.Event = stop) -> None:
                while not stop.is_set():
                    emit(provider, 20)
                    time.sleep(0.002)

            producer = threading.Thread(target=produce)
            producer.start()
            assert wait_until(lambda counters=counters: counters.get("delivered", "a") > 2000, 30)
            t_kill = time.perf_counter()
            a.kill()
            assert wait_until(lambda counters=counters: counters.get("delivered", "b") > 0, 30, interval=0.0005)
            results.append(time.perf_counter() - t_kill)
            stop.set()
            producer.join()
            provider.shutdown()
            b.kill()
    print(f"failover: primary kill -9 -> first record acknowledged by the secondary: median "
          f"{statistics.median(results) * 1000:.0f} ms, max {max(results) * 1000:.0f} ms over {rounds} runs "
          f"(goal <= 1000 ms)")


def emit_latencies(exporter: LogRecordExporter, n: int) -> list[float]:
    provider = LoggerProvider()
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter, max_queue_size=n + 1))
    logger = provider.get_logger("bench")
    samples = []
    clock = time.perf_counter
    for i in range(n):
        t0 = clock()
        logger.emit(body=f"GET /api/orders/{i} 200", severity_number=SeverityNumber.INFO, attributes=ATTRS)
        samples.append(clock() - t0)
        if i % 100 == 0:
            time.sleep(0.002)  # an app does other things between log calls
    provider.shutdown()
    samples.sort()
    return samples


def bench_outage_latency(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rx = Receiver(Path(tmp))
        healthy = FailoverLogExporter([f"otlp+grpc://127.0.0.1:{rx.port}"], queue_dir=Path(tmp) / "h",
                                      counters=Counters("b"), queue_counters=Counters("bq"), shutdown_timeout=1)
        h = emit_latencies(healthy, n)
        rx.kill()
        dead = f"otlp+grpc://127.0.0.1:{free_port()}"
        outage = FailoverLogExporter([dead, f"otlp+http://127.0.0.1:{free_port()}"], queue_dir=Path(tmp) / "o",
                                     counters=Counters("b"), queue_counters=Counters("bq"), shutdown_timeout=0.2)
        o = emit_latencies(outage, n)
    def p(samples: list[float], q: float) -> float:
        return samples[int(len(samples) * q)] * 1e6

    print(f"emit latency ({n} records): healthy p50 {p(h, .5):.2f} us p99 {p(h, .99):.2f} us; total outage p50 "
          f"{p(o, .5):.2f} us p99 {p(o, .99):.2f} us; p99 ratio {p(o, .99) / p(h, .99):.2f} (goal <= 1.2)")


def bench_queue(fsync: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        provider = LoggerProvider()
        from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
        from opentelemetry.sdk._logs import ReadableLogRecord
        from opentelemetry.sdk._logs._internal import LogRecord

        batch = [ReadableLogRecord(LogRecord(body=f"GET /api/orders/{i} 200", attributes=ATTRS,
                                             severity_number=SeverityNumber.INFO), provider.resource)
                 for i in range(512)]
        payload = encode_logs(batch).SerializeToString()
        q = PersistentQueue(Path(tmp) / "q.db", max_bytes=10**10, fsync=fsync, counters=Counters("bq"))
        q.register_lanes(["main"])
        batches = 400
        t0 = time.perf_counter()
        for _ in range(batches):
            q.append([NewEntry(0, 512, {"access": 512}, payload)])
        t_append = time.perf_counter() - t0
        t0 = time.perf_counter()
        drained = 0
        while True:
            entries = q.read_after(q.cursor("main"), 10_000, 3 * 1024 * 1024)
            if not entries:
                break
            b"".join(e.payload for e in entries)
            q.advance("main", entries[-1].id)
            drained += sum(e.records for e in entries)
        t_drain = time.perf_counter() - t0
        q.close()
    total = batches * 512
    print(f"queue fsync={fsync} ({len(payload)} B per 512-record batch): append {total / t_append:,.0f} rec/s, "
          f"drain {drained / t_drain:,.0f} rec/s (goal >= 100,000 each)")


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_rss(seconds: float, rate: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        exporter = FailoverLogExporter([f"otlp+grpc://127.0.0.1:{free_port()}", f"otlp+http://127.0.0.1:{free_port()}"],
                                       queue_dir=Path(tmp) / "q", counters=Counters("b"), queue_counters=Counters("bq"),
                                       shutdown_timeout=0.2)
        provider = LoggerProvider()
        provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
        emit(provider, 2000)  # warm up
        provider.force_flush()
        before = rss_mb()
        start = time.monotonic()
        sent = 0
        while time.monotonic() - start < seconds:
            emit(provider, rate // 10)
            sent += rate // 10
            time.sleep(max(0.0, start + sent / rate - time.monotonic()))
        provider.force_flush()
        after = rss_mb()
        queued = exporter.queue.pending_records
        provider.shutdown()
    print(f"RSS during a {seconds:.0f} s total outage at {rate} rec/s: {before:.1f} MB -> {after:.1f} MB "
          f"(+{after - before:.1f} MB; goal <= 50 MB); {queued} records queued on disk")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["throughput", "failover", "outage-latency", "queue", "rss", "all"])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--rate", type=int, default=1000)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    if args.what in ("throughput", "all"):
        bench_throughput(args.records, args.rounds)
    if args.what in ("failover", "all"):
        bench_failover(max(args.rounds, 5))
    if args.what in ("outage-latency", "all"):
        bench_outage_latency(min(args.records, 50_000))
    if args.what in ("queue", "all"):
        bench_queue("process")
        bench_queue("always")
    if args.what in ("rss", "all"):
        bench_rss(args.seconds, args.rate)


if __name__ == "__main__":
    main()
