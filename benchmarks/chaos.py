"""Chaos figures on real peers: what reaches the backend when things go wrong.

Scenarios (each a few seconds; rotel receivers from tests/peers.py, wire faults from
tests/faults.py, real SQLite files damaged on disk, a real tmpfs for disk full):

- ``kill_storm``: writer processes started one after another on the same queue directory, each
  killed with SIGKILL at a random moment while logging; then one drain process. Once more with
  ``OTEL_EXT_MAX_REQUEST_RECORDS=200``: the at-least-once window is one request per killed writer.
- ``disk_full``: the queue fills a small tmpfs while the backend is down; the backend comes back.
- ``corrupt_<kind>``: an orphaned queue file damaged on disk (truncated, bad header, bad page, bad
  WAL, truncated WAL, WAL cut after a commit with its -shm index deleted; or its payload segments:
  a byte flipped every 64 KiB, the segment cut in half, the segment deleted) is adopted by a healthy
  process. A row says "NOT DETECTED" if records were lost and neither quarantined nor kept as dead
  letters with the reason.
- ``backend_kill_restart``: the receiver is killed mid-stream and restarted on the same port.
- ``slow_backend``: every chunk to the receiver is delayed past the attempt timeout half the time.
- ``all_down_then_back``: every backend refuses connections for a while, then returns.

Prints: scenario | acknowledged | delivered | lost | duplicates | max app emit latency, where
acknowledged = records export() made durable, delivered = distinct acknowledged records the
receiver printed, lost = acknowledged - delivered, duplicates = extra deliveries. For the corrupt
scenarios, "lost" are the records in the damaged part of the file (quarantined and counted,
never silent). Usage: ``python benchmarks/chaos.py [--only NAME] [--writers 8]``
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from durable_helpers import damage, damage_segment, fill, orphan_file, storm, tmpfs  # noqa: E402
from faults import TcpProxy  # noqa: E402
from opentelemetry._logs import SeverityNumber  # noqa: E402
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord  # noqa: E402
from opentelemetry.sdk._logs.export import (  # noqa: E402
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from peers import Rotel, wait_until  # noqa: E402

from otel_ext.export import FailoverLogExporter  # noqa: E402
from otel_ext.queue.ownership import prepare_dir  # noqa: E402
from otel_ext.queue.salvage import list_quarantine  # noqa: E402
from otel_ext.telemetry import Counters  # noqa: E402


@dataclass
class Row:
    scenario: str
    acknowledged: int
    delivered: int
    lost: int
    duplicates: int
    max_emit_ms: float


def tally(name: str, acked: set[str], seen: list[str], max_emit_ms: float) -> Row:
    counts = Counter(s for s in seen if s in acked)
    return Row(name, len(acked), len(counts), len(acked - set(counts)),
               sum(c - 1 for c in counts.values()), max_emit_ms)


def kill_storm(work: Path, writers: int, backend_up: bool, seed: int = 7, request_records: int | None = None) -> Row:
    """Writers run the code at $CHAOS_CODE (default: this checkout), to compare revisions."""
    tag = f"{backend_up}-{request_records}"
    rx = Rotel(work, f"storm-{tag}").start()
    env = {"OTEL_EXT_MAX_REQUEST_RECORDS": str(request_records)} if request_records else None
    try:
        acked, worst = storm(work / f"q-storm-{tag}", writers, rx.grpc_url if backend_up else None,
                             rx.grpc_url, os.environ.get("CHAOS_CODE", str(ROOT)), seed, env)
        seen = settled_values(rx, len(acked))
    finally:
        rx.kill()
    state = "backend up" if backend_up else "backend down until the drain"
    if request_records:
        state += f", requests of at most {request_records} records"
    return tally(f"kill -9 storm, {writers} writers, {state}", acked, seen, worst)


def settled_values(rx: Rotel, expected: int, timeout: float = 30.0) -> list[str]:
    wait_until(lambda: len(set(rx.attribute_values("seq"))) >= expected, timeout)
    last = -1
    while True:
        values: list[str] = rx.attribute_values("seq")
        if len(values) == last:
            return values
        last = len(values)
        time.sleep(0.2)


class Acknowledging(LogRecordExporter):
    """Between the SDK batch processor and FailoverLogExporter: notes the ``seq`` of every record
    in a batch that export() made durable (SUCCESS), i.e. what the app was promised."""

    def __init__(self, inner: FailoverLogExporter) -> None:
        self.inner = inner
        self.acked: set[str] = set()

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        result = self.inner.export(batch)
        if result is LogRecordExportResult.SUCCESS:
            self.acked.update(str((r.log_record.attributes or {}).get("seq")) for r in batch)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


class App:
    """In-process app behind the SDK's BatchLogRecordProcessor, as in production; the emit
    latency measured is what the app thread pays per log call."""

    def __init__(self, backends: list[str], queue_dir: Path, tag: str) -> None:
        self.exp = FailoverLogExporter(backends, queue_dir=queue_dir, counters=Counters("c"),
                                       queue_counters=Counters("cq"), shutdown_timeout=2, probe_interval=0.05)
        self.ack = Acknowledging(self.exp)
        self.provider = LoggerProvider()
        self.provider.add_log_record_processor(BatchLogRecordProcessor(
            self.ack, schedule_delay_millis=20, max_export_batch_size=20, max_queue_size=100_000))
        self.logger = self.provider.get_logger("chaos")
        self.tag = tag
        self.i = 0
        self.worst = 0.0

    @property
    def acked(self) -> set[str]:
        return self.ack.acked

    def emit(self, n: int, body: int = 100) -> int:
        """Emit ``n`` records and wait until they went through export(); returns how many were made durable."""
        before = len(self.ack.acked)
        for _ in range(n):
            t = time.perf_counter()
            self.logger.emit(body="c" * body, severity_number=SeverityNumber.INFO,
                             attributes={"seq": f"{self.tag}-{self.i}", "labels.event_class": "access"})
            self.worst = max(self.worst, time.perf_counter() - t)
            self.i += 1
        self.provider.force_flush(30_000)
        return len(self.ack.acked) - before


def disk_full(work: Path) -> Row:
    rx = Rotel(work, "df").start()
    proxy = TcpProxy(rx.grpc_port)
    proxy.mode = "reset"
    try:
        with tmpfs("4m") as mnt:
            app = App([f"otlp+grpc://127.0.0.1:{proxy.port}?name=df"], mnt / "q", "df")
            filler = fill(mnt, leave=1_500_000)
            while app.emit(20, body=300) == 20:  # the queue fills the rest of the disk
                pass
            app.emit(50)  # refused while full (counted as dropped: not acknowledged)
            proxy.mode = "pass"
            time.sleep(3.0)  # backend back; would have been a duplicate storm
            os.unlink(filler)  # space freed: normal operation resumes
            app.emit(200)
            assert app.exp.force_flush(30_000)
            app.exp.shutdown()
            seen = settled_values(rx, len(app.acked))
    finally:
        proxy.close()
        rx.kill()
    return tally("disk full, backend back, space freed", app.acked, seen, app.worst * 1000)


def corrupt(work: Path, kind: str) -> Row:
    rx = Rotel(work, f"c-{kind}").start()
    queue_dir = prepare_dir(work / f"q-{kind}")
    wal = "wal" in kind
    segment = kind.startswith("segment_")
    total = 1000 if wal else 2000
    # 100 records (~21 KB) per entry put the payloads in segment files, 10 (~2 KB) keep them inline
    orphan = orphan_file(queue_dir, total, 100 if segment else 10, checkpoint=not wal)
    (damage_segment if segment else damage)(orphan, kind)
    try:
        app = App([rx.grpc_url], queue_dir, kind)  # adopts (and quarantines) at start
        app.emit(100)
        assert app.exp.force_flush(30_000)
        kept = sum(d.records for d in app.exp.queue.dead_letters() if d.reason.startswith("damaged payload"))
        app.exp.shutdown()
        seen = settled_values(rx, 1) + [f"orphan-{v}" for v in rx_ints(rx)]
    finally:
        rx.kill()
    acked = app.acked | {f"orphan-{i}" for i in range(total)}
    row = tally(f"corrupt orphan: {kind.replace('_', ' ')}", acked, seen, app.worst * 1000)
    if kept:
        row.scenario += f" ({kept:,} kept as dead letters with the reason)"
    if row.lost and not list_quarantine(queue_dir) and kept < row.lost:
        row.scenario += " (NOT DETECTED)"
    return row


def rx_ints(rx: Rotel) -> list[str]:
    import re

    return re.findall(r"-> seq: Int\((\d+)\)\n", rx.output())


def backend_kill_restart(work: Path) -> Row:
    rx = Rotel(work, "kr").start()
    try:
        app = App([rx.grpc_url], work / "q-kr", "kr")
        app.emit(1000)
        rx.kill()
        app.emit(1000)  # the backend is dead: records wait on disk
        rx.start()
        app.emit(1000)
        assert app.exp.force_flush(30_000)
        app.exp.shutdown()
        seen = settled_values(rx, len(app.acked))
    finally:
        rx.kill()
    return tally("backend kill -9 and restart", app.acked, seen, app.worst * 1000)


def slow_backend(work: Path) -> Row:
    """Every chunk to the backend waits 0.3 s (over the 0.25 s attempt timeout half the time):
    the app must not notice, nothing may be lost."""
    rx = Rotel(work, "slow").start()
    proxy = TcpProxy(rx.grpc_port)
    proxy.delay = 0.3
    try:
        app = App([f"otlp+grpc://127.0.0.1:{proxy.port}?name=slow&timeout=250ms"], work / "q-slow", "slow")
        for _ in range(20):
            app.emit(100)
            time.sleep(0.05)
        proxy.delay = 0.0
        assert app.exp.force_flush(60_000)
        app.exp.shutdown()
        seen = settled_values(rx, len(app.acked))
    finally:
        proxy.close()
        rx.kill()
    return tally("slow backend (0.3 s per chunk, 0.25 s timeout)", app.acked, seen, app.worst * 1000)


def all_down_then_back(work: Path, seconds: float) -> Row:
    rx_a, rx_b = Rotel(work, "da").start(), Rotel(work, "db").start()
    pa, pb = TcpProxy(rx_a.grpc_port), TcpProxy(rx_b.grpc_port)
    try:
        app = App([f"otlp+grpc://127.0.0.1:{pa.port}?name=a", f"otlp+grpc://127.0.0.1:{pb.port}?name=b"],
                  work / "q-down", "down")
        app.emit(500)
        pa.mode = pb.mode = "reset"
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            app.emit(100)
            time.sleep(0.05)
        pa.mode = pb.mode = "pass"
        app.emit(500)
        assert app.exp.force_flush(60_000)
        app.exp.shutdown()
        seen = settled_values(rx_a, 1) + settled_values(rx_b, 1)
    finally:
        pa.close()
        pb.close()
        rx_a.kill()
        rx_b.kill()
    return tally(f"all backends down {seconds:.0f} s, then back", app.acked, seen, app.worst * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="run one scenario (kill_storm, disk_full, corrupt, kill_restart, slow, down)")
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--down-seconds", type=float, default=5.0)
    args = parser.parse_args()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="otel-ext-chaos-") as tmp:
        work = Path(tmp)
        plan: list[tuple[str, object]] = [
            ("kill_storm", lambda: kill_storm(work, args.writers, backend_up=True)),
            ("kill_storm", lambda: kill_storm(work, args.writers, backend_up=True, request_records=200)),
            ("kill_storm", lambda: kill_storm(work, args.writers, backend_up=False)),
            ("disk_full", lambda: disk_full(work)),
            *[("corrupt", functools.partial(corrupt, work, kind))
              for kind in ("truncated", "bad_header", "bad_page", "bad_wal", "truncated_wal", "cut_wal_no_shm",
                           "segment_flipped", "segment_truncated", "segment_missing")],
            ("kill_restart", lambda: backend_kill_restart(work)),
            ("slow", lambda: slow_backend(work)),
            ("down", lambda: all_down_then_back(work, args.down_seconds)),
        ]
        for name, run in plan:
            if args.only and args.only != name:
                continue
            row = run()  # type: ignore[operator]
            rows.append(row)
            print(f"  {row.scenario}: {row.acknowledged} acknowledged, {row.delivered} delivered, {row.lost} lost, "
                  f"{row.duplicates} duplicates", file=sys.stderr, flush=True)
    print("| scenario | acknowledged | delivered | lost | duplicates | max app emit latency |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r.scenario} | {r.acknowledged:,} | {r.delivered:,} | {r.lost:,} | {r.duplicates:,} "
              f"| {r.max_emit_ms:.1f} ms |")


if __name__ == "__main__":
    main()
