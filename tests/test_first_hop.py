"""The first hop (logging handler -> exporter) never drops silently: a burst larger than every
buffer is fully delivered (spilled to disk and processed later) or counted per class under the
overload policy. Real SDK pipeline (stdlib logging -> LoggingHandler -> LoggerProvider ->
FirstHopProcessor -> DeferredProcessingExporter -> FailoverLogExporter), counted at real rotel
receivers by ``log.record.uid``."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from peers import collect, wait_until

from otel_ext import DeferredProcessingExporter, EventClassifierProcessor, FailoverLogExporter, RedactionProcessor
from otel_ext.export.encoding import new_uid
from otel_ext.export.firsthop import FirstHopProcessor, SpillFile
from otel_ext.telemetry import Counters

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _mix import make_events

pytestmark = pytest.mark.peers
ROOT = Path(__file__).resolve().parents[1]


class GatedExporter(LogRecordExporter):
    """Passes batches to a real exporter, but only once ``gate`` is open: a stalled worker, so that
    a burst deterministically outruns every buffer."""

    def __init__(self, inner: DeferredProcessingExporter) -> None:
        self.inner = inner
        self.gate = threading.Event()

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        self.gate.wait(60)
        return self.inner.export(batch)

    def shutdown(self) -> None:
        self.gate.set()
        self.inner.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


@dataclass
class Rig:
    provider: LoggerProvider
    handler: LoggingHandler
    hop: FirstHopProcessor
    gate: GatedExporter
    exporter: FailoverLogExporter
    counters: Counters
    classifier: EventClassifierProcessor

    def burst(self, n: int) -> None:
        """Emit ``n`` records of the API mix through stdlib logging."""
        events = make_events()
        for i in range(n):
            events[i % len(events)]()

    def deliver(self) -> None:
        self.gate.gate.set()
        assert self.hop.force_flush(60_000)
        assert self.exporter.force_flush(60_000)


@pytest.fixture
def rig(receivers: Any, tmp_path: Path) -> Iterator[Any]:
    built: list[Rig] = []

    def factory(rx: Any, *, buffer: int = 200, overload: str = "spill", spill_max_bytes: int = 256 << 20,
                report: Any = None) -> Rig:
        exporter = FailoverLogExporter([rx.grpc_url], queue_dir=tmp_path / "q", counters=Counters("e"),
                                       queue_counters=Counters("q"))
        classifier = EventClassifierProcessor(counters=Counters("c"))
        gate = GatedExporter(DeferredProcessingExporter(exporter, classifier, RedactionProcessor()))
        counters = Counters("fh")
        hop = FirstHopProcessor(gate, tmp_path / "q", max_queue_size=buffer, max_export_batch_size=100,
                                schedule_delay_millis=20, overload=overload, spill_max_bytes=spill_max_bytes,
                                classify=classifier.classify_record, assign_uid=new_uid, counters=counters,
                                prepare=gate.inner.prepare,
                                report_interval=0.0 if report is not None else 60.0, report_stream=report)
        provider = LoggerProvider()
        provider.add_log_record_processor(hop)
        handler = LoggingHandler(logger_provider=provider)
        for name in ("shop.api", "uvicorn.access"):
            log = logging.getLogger(name)
            log.addHandler(handler)
            log.setLevel(logging.INFO)
            log.propagate = False
        r = Rig(provider, handler, hop, gate, exporter, counters, classifier)
        built.append(r)
        return r

    yield factory
    for r in built:
        for name in ("shop.api", "uvicorn.access"):
            logging.getLogger(name).removeHandler(r.handler)
            logging.getLogger(name).propagate = True
        r.gate.gate.set()
        r.provider.shutdown()


def classes_at(rx: Any) -> Counter[str]:
    """Delivered records per ``labels.event_class``, read at the receiver (each uid once)."""
    seen: dict[str, str] = {}
    for attrs in rx.records():
        uid = attrs.get("log.record.uid")
        if uid:
            seen[uid] = attrs.get("labels.event_class", "?")
    return Counter(seen.values())


def expected_classes(n: int) -> Counter[str]:
    """What the classifier makes of the first ``n`` events of the mix (same rules, in memory)."""
    from conftest import build_pipeline

    pipe = build_pipeline(EventClassifierProcessor(counters=Counters("x")))
    for name in ("shop.api", "uvicorn.access"):
        log = logging.getLogger(name)
        log.handlers[:] = [pipe.handler]
    try:
        events = make_events()
        for i in range(n):
            events[i % len(events)]()
        return Counter(r.log_record.attributes["labels.event_class"] for r in pipe.records())  # type: ignore[index]
    finally:
        for name in ("shop.api", "uvicorn.access"):
            logging.getLogger(name).handlers[:] = []
        pipe.provider.shutdown()


def assert_each_once(uids: list[str], expected: int, r: Rig) -> None:
    """Every uid arrived, once; if not, say how (duplicates in runs = one resent request; the
    exporter's counters show a retry when the receiver was slower than the 2 s deadline)."""
    counts = Counter(uids)
    twice = [u for u, n in counts.items() if n > 1]
    assert len(counts) == expected and not twice, (
        f"{len(uids)} deliveries, {len(counts)} unique of {expected}; {len(twice)} uids more than once, "
        f"e.g. {twice[:3]}; first hop {r.counters.snapshot()}; exporter {r.exporter.counters.snapshot()}")


def test_burst_larger_than_every_buffer_is_fully_delivered_by_spilling(rig: Any, receivers: Any) -> None:
    rx = receivers("rx")
    r = rig(rx, buffer=200)
    r.burst(3000)  # the worker is stalled: 200 fit in memory (+ one batch of 100 in its hands), the rest spill
    assert r.hop.buffered == 200
    spilled = r.hop.spill_backlog
    assert 2700 <= spilled < 2800
    assert r.hop.spill_bytes > 0  # on disk, not in memory
    r.deliver()
    uids = collect(3000, rx)
    assert_each_once(uids, 3000, r)
    assert classes_at(rx) == expected_classes(3000)  # spilled records were classified like the others
    snap = r.counters.snapshot()
    assert snap["spilled"] == {"": spilled} and snap["unspilled"] == {"": spilled}
    assert "dropped" not in snap
    assert r.hop.spill_backlog == 0 and r.hop.spill_bytes == 0


def test_spilled_records_are_redacted_before_they_leave(rig: Any, receivers: Any) -> None:
    rx = receivers("rx")
    r = rig(rx, buffer=10)
    r.burst(2000)  # includes "password=hunter2 token=..." warnings, most of them spilled raw
    r.deliver()
    collect(2000, rx)
    assert "hunter2" not in rx.output()


def _bytes_under(directory: Path) -> bytes:
    """Everything on disk under ``directory`` (spill files, queue database, WAL, dead letters)."""
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def test_a_spilled_secret_never_reaches_the_disk(rig: Any, receivers: Any, tmp_path: Path) -> None:
    rx = receivers("rx")
    r = rig(rx, buffer=50)
    log = logging.getLogger("shop.api")
    secrets = [f"s3cr3t{i:04d}Zq" for i in range(400)]
    tokens = [f"sk_live_{i:04d}abcdefghijklmnopqrstuv" for i in range(400)]
    events = make_events()
    seen_on_disk: list[bytes] = []
    for i in range(400):  # the worker is stalled: all but the first ~150 records are spilled
        log.warning("login for bob with password=%s", secrets[i], extra={"api_key": tokens[i], "user.id": "bob"})
        events[i % len(events)]()
        if i % 100 == 99:  # look at the disk during the burst, not only after it
            seen_on_disk.append(_bytes_under(tmp_path / "q"))
    assert r.hop.spill_backlog > 500 and r.hop.spill_bytes > 0
    seen_on_disk.append(_bytes_under(tmp_path / "q"))
    r.deliver()
    collect(800, rx)
    seen_on_disk.append(_bytes_under(tmp_path / "q"))
    assert sum(len(b) for b in seen_on_disk) > 100_000  # the spill frames really were there to read
    for blob in seen_on_disk:
        assert b"hunter2" not in blob
        leaked = [s for s in secrets + tokens if s.encode() in blob]
        assert not leaked, f"{len(leaked)} secrets on disk, e.g. {leaked[:3]}"
    out = rx.output()
    assert "hunter2" not in out and not [s for s in secrets + tokens if s in out]
    assert out.count("[REDACTED:password]") >= 400 and out.count("labels.event_class") >= 800


def test_drop_policy_drops_only_low_tiers_and_counts_every_one(rig: Any, receivers: Any) -> None:
    rx = receivers("rx")
    r = rig(rx, buffer=100, overload="drop")
    r.burst(3000)
    r.deliver()
    sent = expected_classes(3000)
    dropped = {k.split(":")[0]: v for k, v in r.counters.snapshot().get("dropped", {}).items()}
    assert set(r.counters.snapshot()["dropped"]) <= {f"{c}:buffer_full" for c in ("access", "performance", "application")}
    delivered = sum(sent.values()) - sum(dropped.values())
    uids = collect(delivered, rx)
    assert len(set(uids)) == delivered  # delivered + counted as dropped == sent
    at_rx = classes_at(rx)
    assert at_rx["security"] == sent["security"] and at_rx["error"] == sent["error"]  # last to go
    for cls in ("access", "performance", "application"):
        assert at_rx[cls] + dropped.get(cls, 0) == sent[cls]


def test_full_spill_file_drops_access_first_security_last(rig: Any, receivers: Any) -> None:
    rx = receivers("rx")
    r = rig(rx, buffer=50, spill_max_bytes=600_000)  # ~2,700 spilled records; the burst needs ~4,000
    r.burst(4000)
    r.deliver()
    sent = expected_classes(4000)
    drops = r.counters.snapshot().get("dropped", {})
    assert drops, "the spill bound was meant to be reached"
    assert all(k.endswith(":spill_full") for k in drops)
    dropped = Counter({k.split(":")[0]: v for k, v in drops.items()})
    at_rx = classes_at(rx)
    assert sum(at_rx.values()) + sum(dropped.values()) == 4000
    for cls in sent:
        assert at_rx[cls] + dropped[cls] == sent[cls]
    # access/performance/application spill up to 80 % of the bound, error 90 %, security 100 %
    assert dropped["access"] > 0
    assert at_rx["security"] == sent["security"]
    assert dropped["error"] / sent["error"] < dropped["access"] / sent["access"]


def test_once_a_minute_line_on_stderr_names_spills_and_drops(rig: Any, receivers: Any) -> None:
    rx = receivers("rx")
    stream = io.StringIO()
    r = rig(rx, buffer=50, overload="drop", report=stream)
    r.burst(1000)
    r.deliver()
    assert wait_until(lambda: ":buffer_full=" in stream.getvalue(), 5)
    line = next(x for x in stream.getvalue().splitlines() if "buffer_full" in x)
    assert line.startswith("otel-ext: first hop: in the last") and "OTEL_EXT_OVERLOAD=drop" in line


def test_spill_of_a_killed_process_is_adopted_and_delivered(receivers: Any, tmp_path: Path) -> None:
    rx = receivers("rx")
    queue = tmp_path / "q"
    child = textwrap.dedent(f"""
        import logging, os, signal, sys, threading
        sys.path.insert(0, {str(ROOT / 'benchmarks')!r})
        from _mix import make_events
        from opentelemetry.instrumentation.logging.handler import LoggingHandler
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
        from otel_ext.export.encoding import new_uid
        from otel_ext.export.firsthop import FirstHopProcessor
        from otel_ext.queue.ownership import prepare_dir

        class Stalled(LogRecordExporter):
            def export(self, batch):
                threading.Event().wait()
            def shutdown(self):
                pass
            def force_flush(self, timeout_millis=30000):
                return True
        hop = FirstHopProcessor(Stalled(), prepare_dir({str(queue)!r}), max_queue_size=100, assign_uid=new_uid)
        provider = LoggerProvider()
        provider.add_log_record_processor(hop)
        for name in ("shop.api", "uvicorn.access"):
            log = logging.getLogger(name)
            log.addHandler(LoggingHandler(logger_provider=provider))
            log.setLevel(logging.INFO)
            log.propagate = False
        events = make_events()
        for i in range(2100):
            events[i % len(events)]()
        print(hop.spill_backlog, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    backlog = int(proc.stdout.split()[0])  # the rest was in memory (buffer, worker) and died with the process
    assert 1800 <= backlog <= 2000
    spills = list(queue.glob("spill-*.bin"))
    assert len(spills) == 1
    orphan = SpillFile.adopt(spills[0])
    assert orphan is not None and orphan.pending_bytes > 0
    orphan.close(remove=False)

    exporter = FailoverLogExporter([rx.grpc_url], queue_dir=queue, counters=Counters("e"),
                                   queue_counters=Counters("q"))
    counters = Counters("fh")
    hop = FirstHopProcessor(exporter, queue, counters=counters, schedule_delay_millis=20)
    try:
        assert wait_until(lambda: counters.get("adopted") > 0 and hop.spill_bytes == 0, 30)
        assert hop.force_flush(30_000) and exporter.force_flush(30_000)
    finally:
        hop.shutdown()
    adopted = counters.get("adopted")
    uids = collect(adopted, rx)
    assert len(set(uids)) == adopted
    assert adopted == backlog // 256 * 256  # every frame written; rows of the unwritten last frame died in memory
    assert not list(queue.glob("spill-*.bin"))


def test_configure_wires_the_first_hop_and_stats_account_for_every_record(receivers: Any, tmp_path: Path,
                                                                          monkeypatch: Any) -> None:
    import otel_ext

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    rx = receivers("rx")
    pipeline = otel_ext.configure(backends=rx.grpc_url, queue_dir=str(tmp_path / "q"), buffer_size=64,
                                  overload="drop")
    try:
        before = dict(pipeline.stats()["first_hop"]["dropped"])
        alerts_before = sum(pipeline.stats()["alerts"].values())  # counters are per process
        events = make_events()
        for i in range(3000):
            events[i % len(events)]()
        assert pipeline.force_flush(60_000)
        stats = pipeline.stats()
        hop = stats["first_hop"]["processors"][0]
        assert hop["overload"] == "drop" and hop["buffer_size"] == 64
        dropped = {k: v - before.get(k, 0) for k, v in stats["first_hop"]["dropped"].items()}
        assert all(k.split(":")[0] in ("access", "performance", "application") for k, v in dropped.items() if v)
        alerts = sum(stats["alerts"].values()) - alerts_before
        expected = 3000 - sum(dropped.values()) + alerts
        uids = collect(expected, rx)
        assert len(set(uids)) == expected  # delivered + counted as dropped == sent
    finally:
        pipeline.shutdown()


def test_a_new_spill_file_is_never_visible_unlocked(tmp_path: Path) -> None:
    """An adopter scanning the directory (our own worker at start, or another process) must never
    lock a live spill file in the instant between its creation and its owner's lock."""
    stop = threading.Event()
    stolen: list[str] = []

    def adopter() -> None:
        while not stop.is_set():
            for path in tmp_path.glob("spill-*.bin"):
                taken = SpillFile.adopt(path)
                if taken is not None:
                    stolen.append(path.name)
                    taken.close(remove=False)

    thread = threading.Thread(target=adopter)
    thread.start()
    failed = 0
    created = []
    try:
        for _ in range(3000):
            try:
                created.append(SpillFile.create(tmp_path))
            except OSError:
                failed += 1
    finally:
        stop.set()
        thread.join()
    assert failed == 0 and not stolen, f"{failed} creations failed, {len(stolen)} live files taken"
    assert not list(tmp_path.glob(".spill-*")) and len(list(tmp_path.glob("spill-*.bin"))) == 3000
    for spill in created:
        spill.close(remove=True)


class _Null(LogRecordExporter):
    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def test_the_worker_steps_aside_only_for_an_emitting_app_and_never_when_the_buffer_fills(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from otel_ext.export import firsthop

    slept: list[float] = []
    monkeypatch.setattr(firsthop.time, "sleep", slept.append)
    hop = FirstHopProcessor(_Null(), tmp_path, max_queue_size=100, max_export_batch_size=1000,
                            schedule_delay_millis=60_000)
    try:
        hop.pause()
        assert slept == []  # the app has not emitted: nothing to step aside for
        provider = LoggerProvider()
        provider.add_log_record_processor(hop)
        logger = provider.get_logger("t")
        from opentelemetry._logs import LogRecord

        logger.emit(LogRecord(body="x"))
        hop.pause()
        hop.pause()  # no emit since the last pause
        assert len(slept) == 1
        for _ in range(60):  # buffer more than half full: the worker competes like the SDK's
            logger.emit(LogRecord(body="y"))
        hop.pause()
        assert len(slept) == 1
    finally:
        monkeypatch.undo()
        hop.shutdown(timeout_millis=5000)
