"""The first hop's spill file: what is spilled comes back identical (same OTLP bytes), damage is
counted instead of crashing the worker, and only our own private files are adopted."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import TraceFlags
from peers import wait_until

from otel_ext.export.encoding import encode_log_record
from otel_ext.export.firsthop import FirstHopProcessor, SpillFile, parse_overload
from otel_ext.telemetry import Counters


class Held(LogRecordExporter):
    """An in-memory exporter whose first export waits for ``release`` (a busy worker)."""

    def __init__(self, timeout: float = 30) -> None:
        self.inner = InMemoryLogRecordExporter()
        self.release = threading.Event()
        self.timeout = timeout

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        self.release.wait(self.timeout)
        return self.inner.export(batch)

    def shutdown(self) -> None:
        self.release.set()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _record(i: int) -> ReadWriteLogRecord:
    rec = LogRecord(timestamp=1_700_000_000_000_000_000 + i, observed_timestamp=5, trace_id=(1 << 127) + i,
                    span_id=(1 << 63) + i, trace_flags=TraceFlags(1), severity_text="WARN",
                    severity_number=SeverityNumber.WARN, body={"msg": f"m{i}", "n": [1, 2.5, True, None, b"\x00"]},
                    attributes={"s": "x", "i": -i, "f": 0.5, "b": False, "t": ("a", "b"), "bytes": b"\x01"},
                    event_name="ev")
    item = ReadWriteLogRecord(rec, resource=Resource({"service.name": "svc"}, "https://schema/1"),
                              instrumentation_scope=InstrumentationScope("lib", "1.2", "https://schema/2", {"a": 1}))
    item.log_record.attributes._dict["lone"] = "bad \ud800"  # type: ignore[union-attr]
    return item


def test_spilled_records_come_back_with_the_same_otlp_bytes(tmp_path: Path) -> None:
    held = Held()
    hop = FirstHopProcessor(held, tmp_path, max_queue_size=10, max_export_batch_size=10, counters=Counters("f"))
    originals = [_record(i) for i in range(600)]
    try:
        for item in originals:
            hop.on_emit(item)
        assert hop.spill_bytes > 0
        held.release.set()
        assert hop.force_flush(30_000)
    finally:
        hop.shutdown()
    out = sorted(held.inner.get_finished_logs(), key=lambda r: r.log_record.timestamp or 0)
    assert len(out) == 600

    def normalised(item: ReadableLogRecord) -> bytes:
        item.log_record.attributes._dict["lone"] = "bad \ufffd"  # type: ignore[union-attr]  # as the spill repairs it
        return encode_log_record(item)

    assert [normalised(r) for r in out] == [normalised(r) for r in originals]
    assert {r.resource.attributes["service.name"] for r in out} == {"svc"}
    assert {r.instrumentation_scope.version for r in out if r.instrumentation_scope} == {"1.2"}


def test_a_damaged_spill_frame_is_counted_and_the_rest_still_flows(tmp_path: Path) -> None:
    spill = SpillFile.create(tmp_path)
    spill.append(b"\x00\x00\x00\x10\xde\xad\xbe\xef" + b"garbage-garbage!")  # CRC does not match
    path = spill.path
    os.close(spill.fd)  # owner "dies": the lock goes away
    counters = Counters("f")
    exporter = InMemoryLogRecordExporter()
    hop = FirstHopProcessor(exporter, tmp_path, counters=counters, schedule_delay_millis=10)
    provider = LoggerProvider()
    provider.add_log_record_processor(hop)
    try:
        assert wait_until(lambda: counters.get("dropped", "unknown:spill_corrupt") == 1, 10)
        provider.get_logger("t").emit(body="after")
        assert hop.force_flush(10_000)
        assert [r.log_record.body for r in exporter.get_finished_logs()] == ["after"]
        assert not path.exists()
    finally:
        provider.shutdown()


def test_a_spill_file_others_can_write_is_not_adopted(tmp_path: Path) -> None:
    spill = SpillFile.create(tmp_path)
    spill.append(b"\x00" * 8)
    os.close(spill.fd)
    os.chmod(spill.path, 0o666)
    assert SpillFile.adopt(spill.path) is None
    os.chmod(spill.path, 0o600)
    adopted = SpillFile.adopt(spill.path)
    assert adopted is not None
    assert SpillFile.adopt(spill.path) is None  # locked by the adopter now
    adopted.close(remove=True)


def test_overload_policy_names() -> None:
    assert parse_overload(None) == "spill" and parse_overload(" DROP ") == "drop"
    try:
        parse_overload("block")
    except ValueError as exc:
        assert "OTEL_EXT_OVERLOAD" in str(exc)
    else:
        raise AssertionError("accepted an unknown policy")


class CountingRedaction:
    """A real RedactionProcessor, counting how often each record (by its body tag) is redacted."""

    def __init__(self) -> None:
        from otel_ext.redact import RedactionProcessor

        self.inner = RedactionProcessor()
        self.calls: dict[str, int] = {}

    def redact_item(self, item: ReadWriteLogRecord) -> None:
        tag = str(getattr(item.log_record, "event_name", ""))
        self.calls[tag] = self.calls.get(tag, 0) + 1
        self.inner.redact_item(item)


def _secret_record(i: int) -> ReadWriteLogRecord:
    body = f"call {i} failed password=hunter{i}x token=abcd1234efgh{i} from 10.0.0.{i % 250}"
    rec = LogRecord(timestamp=1_700_000_000_000_000_000 + i, observed_timestamp=5, severity_text="ERROR",
                    severity_number=SeverityNumber.ERROR, body=body, event_name=f"r{i}",
                    attributes={"http.route": "/api/login", "http.response.status_code": 401 if i % 3 else 500,
                                "http.request.method": "POST", "user.id": f"user{i % 7}",
                                "api_key": f"sk_live_{i:024d}", "url.query": f"token=secret{i}&page=2"})
    return ReadWriteLogRecord(rec, resource=Resource({"service.name": "svc"}),
                              instrumentation_scope=InstrumentationScope("shop.api"))


def test_spilled_records_are_redacted_once_and_leave_as_if_processed_again(tmp_path: Path) -> None:
    """Records the app thread spilled go to disk sealed and unprepared; the worker prepares them when
    it takes them back, and records it prepared itself are not redacted a second time
    (``export_prepared``). Each record is redacted exactly once, and what leaves is byte for byte
    what the full path (classify, redact, then everything once more) gives."""
    from otel_ext.classify.processor import EventClassifierProcessor
    from otel_ext.deferred import DeferredProcessingExporter
    from otel_ext.redact import RedactionProcessor

    held = Held()
    redaction = CountingRedaction()
    deferred = DeferredProcessingExporter(held, EventClassifierProcessor(), redaction)  # type: ignore[arg-type]
    hop = FirstHopProcessor(deferred, tmp_path, max_queue_size=10, max_export_batch_size=10,
                            counters=Counters("f"), prepare=deferred.prepare)
    try:
        for i in range(600):  # frames on disk (256 rows each) and rows still pending at the end
            hop.on_emit(_secret_record(i))
        assert hop.spill_bytes > 0
        held.release.set()
        assert hop.force_flush(30_000)
    finally:
        hop.shutdown()
    spilled = hop.counters.get("spilled")
    assert spilled >= 500
    assert redaction.calls == {f"r{i}": 1 for i in range(600)}  # once each: app thread or worker
    out = {r.log_record.event_name: encode_log_record(r) for r in held.inner.get_finished_logs()}
    assert len(out) == 600

    reference = DeferredProcessingExporter(InMemoryLogRecordExporter(), EventClassifierProcessor(),
                                           RedactionProcessor())
    for i in range(600):
        item = _secret_record(i)
        reference.prepare(item)  # what a spilled record went through, then the whole stage again
        reference.export([item])
        assert out[f"r{i}"] == encode_log_record(item)
        assert b"hunter" not in out[f"r{i}"] and b"sk_live_" not in out[f"r{i}"]


class SecretObject:
    def __str__(self) -> str:
        return "object holding password=hunter2x and token=abcd1234efgh"


def test_a_spilled_frame_that_needed_repair_is_redacted_again(tmp_path: Path) -> None:
    """A foreign object cannot be written as it is: the spill writes its ``str()``, which redaction
    never saw. Such a frame is not treated as prepared: the worker redacts it again."""
    from otel_ext.deferred import DeferredProcessingExporter
    from otel_ext.redact import RedactionProcessor

    held = Held()
    deferred = DeferredProcessingExporter(held, None, RedactionProcessor())
    hop = FirstHopProcessor(deferred, tmp_path, max_queue_size=1, max_export_batch_size=1,
                            counters=Counters("f"), prepare=deferred.prepare)
    try:
        for i in range(300):  # more than one frame: the repaired one reaches the disk
            item = _record(i)
            item.log_record.body = SecretObject() if i % 2 else f"plain {i}"
            hop.on_emit(item)
        held.release.set()
        assert hop.force_flush(30_000)
    finally:
        hop.shutdown()
    bodies = [r.log_record.body for r in held.inner.get_finished_logs()]
    assert len(bodies) == 300
    # the few records that never spilled keep their object (redaction does not look into foreign
    # objects; the encoder later writes its str(): a gap of the redaction rules, not of the spill)
    spilled = [b for b in bodies if isinstance(b, str)]
    assert len(spilled) >= 256  # one frame at least went to the disk (the rest: still pending rows)
    assert not [b for b in spilled if "hunter2x" in b or "abcd1234efgh" in b]
    secret = [b for b in spilled if b.startswith("object holding")]
    assert len(secret) >= 128 and all("[REDACTED" in b for b in secret)


# --- sealed frames: what the app thread spilled unprepared -------------------------------------------

def _frames(path: Path) -> list[tuple[bool, bytes]]:
    """(sealed, payload) of every frame in a spill file, read as an outsider would."""
    import struct

    data = path.read_bytes()
    pos, out = 16, []  # the header: magic + consumed offset
    while pos + 8 <= len(data):
        word, _crc = struct.unpack_from(">II", data, pos)
        length = word & 0x7FFFFFFF
        out.append((bool(word & 0x80000000), data[pos + 8:pos + 8 + length]))
        pos += 8 + length
    return out


# every secret of _secret_record starts with one of these (password, api_key, token in the query)
_SECRET_MARKERS = (b"hunter", b"sk_live_", b"token=secret")


def _leaks(blob: bytes) -> list[bytes]:
    return [m for m in _SECRET_MARKERS if m in blob]


def _secrets_of(i: int) -> list[bytes]:
    return [f"hunter{i}x".encode(), f"sk_live_{i:024d}".encode(), f"token=secret{i}&".encode()]


def _deferred(held: LogRecordExporter) -> object:
    from otel_ext.classify.processor import EventClassifierProcessor
    from otel_ext.deferred import DeferredProcessingExporter
    from otel_ext.redact import RedactionProcessor

    return DeferredProcessingExporter(held, EventClassifierProcessor(), RedactionProcessor())


def test_frames_the_app_thread_spilled_are_sealed_with_a_nonce_never_reused(tmp_path: Path) -> None:
    held = Held()
    deferred = _deferred(held)
    hop = FirstHopProcessor(deferred, tmp_path, max_queue_size=10, max_export_batch_size=10,  # type: ignore[arg-type]
                            counters=Counters("f"), prepare=deferred.prepare)  # type: ignore[attr-defined]
    try:
        for i in range(1100):
            hop.on_emit(_secret_record(i))
        frames = _frames(hop._spill.path)  # type: ignore[union-attr]
        assert len(frames) >= 4 and all(sealed for sealed, _ in frames)
        blob = b"".join(payload for _, payload in frames)
        assert not _leaks(blob)
        assert b"/api/login" not in blob and b"service.name" not in blob  # nothing of it in the clear
        nonces = [payload[:8] for _, payload in frames]
        assert len(set(nonces)) == len(nonces)
        held.release.set()
        assert hop.force_flush(30_000)
    finally:
        hop.shutdown()
    out = held.inner.get_finished_logs()
    assert sorted(r.log_record.event_name or "" for r in out) == sorted(f"r{i}" for i in range(1100))
    assert all(r.log_record.attributes["labels.event_class"] for r in out)  # type: ignore[index]
    assert not [r for r in out if "hunter" in str(r.log_record.body)]
    assert hop.counters.get("dropped") == 0


def test_shutdown_opens_sealed_frames_for_the_successor_which_delivers_every_record(tmp_path: Path) -> None:
    """The sealed frames' key dies with the process: at shutdown what is left of them is prepared
    and the spill file rewritten in the clear, so the next process delivers all of it."""
    held = Held(timeout=1)
    deferred = _deferred(held)
    hop = FirstHopProcessor(deferred, tmp_path, max_queue_size=10, max_export_batch_size=10,  # type: ignore[arg-type]
                            counters=Counters("f"), prepare=deferred.prepare)  # type: ignore[attr-defined]
    for i in range(700):
        hop.on_emit(_secret_record(i))
    assert any(sealed for sealed, _ in _frames(hop._spill.path))  # type: ignore[union-attr]
    hop.shutdown(timeout_millis=200)  # the worker is stuck in its first export (1 s): little goes out
    left = list(tmp_path.glob("spill-*.bin"))
    assert len(left) == 1
    frames = _frames(left[0])
    assert frames and not [1 for sealed, _ in frames if sealed]
    blob = left[0].read_bytes()
    assert not _leaks(blob)  # prepared before the disk
    held.release.set()

    successor = InMemoryLogRecordExporter()
    counters = Counters("g")
    nxt = FirstHopProcessor(successor, tmp_path, counters=counters, schedule_delay_millis=10)
    try:
        assert wait_until(lambda: counters.get("adopted") >= 690, 20)
        assert nxt.force_flush(10_000)
    finally:
        nxt.shutdown()
    names = [r.log_record.event_name for r in successor.get_finished_logs()]
    in_first = [r.log_record.event_name for r in held.inner.get_finished_logs()]
    assert sorted(names + in_first) == sorted(f"r{i}" for i in range(700))  # each once, none lost
    assert len(names) >= 690 and counters.get("dropped") == 0 and hop.counters.get("dropped") == 0
    assert not [r for r in successor.get_finished_logs() if "hunter" in str(r.log_record.body)]


def test_sealed_frames_of_a_killed_process_are_counted_never_read(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import textwrap

    root = Path(__file__).resolve().parents[1]
    child = textwrap.dedent(f"""
        import os, signal, sys, threading
        sys.path.insert(0, {str(root / 'tests')!r})
        from test_spill import Held, _secret_record, _deferred
        from otel_ext.export.firsthop import FirstHopProcessor
        held = Held()
        deferred = _deferred(held)
        hop = FirstHopProcessor(deferred, {str(tmp_path)!r}, max_queue_size=10, max_export_batch_size=10,
                                prepare=deferred.prepare)
        for i in range(800):
            hop.on_emit(_secret_record(i))
        print(hop._spill_records, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    on_disk = int(proc.stdout.split()[0])
    assert on_disk >= 512
    spill = next(tmp_path.glob("spill-*.bin"))
    assert all(sealed for sealed, _ in _frames(spill))
    exporter = InMemoryLogRecordExporter()
    counters = Counters("k")
    hop = FirstHopProcessor(exporter, tmp_path, counters=counters, schedule_delay_millis=10)
    try:
        assert wait_until(lambda: counters.get("dropped", "unknown:spill_sealed") == on_disk, 20)
        assert hop.force_flush(10_000)
    finally:
        hop.shutdown()
    assert exporter.get_finished_logs() == ()  # nothing half-read, nothing made up
    assert not list(tmp_path.glob("spill-*.bin"))


class Slow(LogRecordExporter):
    """Exports into memory, taking ``delay`` seconds per batch (a worker slower than the app)."""

    def __init__(self, delay: float) -> None:
        self.inner = InMemoryLogRecordExporter()
        self.delay = delay

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        threading.Event().wait(self.delay)
        return self.inner.export(batch)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def test_the_worker_relieves_a_full_buffer_by_spilling_prepared_records(tmp_path: Path) -> None:
    """A worker slower than the app relieves the buffer past three quarters full by spilling
    prepared records (plain frames, adoptable) besides the app thread's sealed ones; every record is
    still delivered once and redacted once, and no secret is on disk in either kind of frame."""
    from otel_ext.classify.processor import EventClassifierProcessor
    from otel_ext.deferred import DeferredProcessingExporter

    slow = Slow(0.02)
    redaction = CountingRedaction()
    deferred = DeferredProcessingExporter(slow, EventClassifierProcessor(), redaction)  # type: ignore[arg-type]
    counters = Counters("w")
    hop = FirstHopProcessor(deferred, tmp_path, max_queue_size=2048, max_export_batch_size=64,
                            counters=counters, prepare=deferred.prepare)
    try:
        for i in range(6000):
            hop.on_emit(_secret_record(i))
        # the worker relieves once its first slow export returns; it then exports 1,536 buffered
        # records (24 slow exports) before it takes any spilled frame back: the frames stay to be seen
        assert wait_until(lambda: counters.get("spilled_by_worker") > 0, 30)
        frames = _frames(hop._spill.path)  # type: ignore[union-attr]
        assert any(not sealed for sealed, _ in frames) and any(sealed for sealed, _ in frames)
        blob = b"".join(payload for _, payload in frames)
        assert not _leaks(blob)
        assert hop.force_flush(60_000)
    finally:
        hop.shutdown()
    by_worker = counters.get("spilled_by_worker")
    assert by_worker > 0 and counters.get("spilled") > by_worker and counters.get("dropped") == 0
    out = slow.inner.get_finished_logs()
    assert sorted(r.log_record.event_name or "" for r in out) == sorted(f"r{i}" for i in range(6000))
    assert redaction.calls == {f"r{i}": 1 for i in range(6000)}


class RaisingItems(dict):  # type: ignore[type-arg]
    def items(self):  # type: ignore[no-untyped-def]
        raise RuntimeError("no items for you")

    def __iter__(self):  # type: ignore[no-untyped-def]
        raise RuntimeError("no keys either")


class RaisingStr:
    def __str__(self) -> str:
        raise RuntimeError("no str")


def test_hostile_bodies_spilled_raw_never_raise_and_every_record_is_delivered_or_counted(tmp_path: Path) -> None:
    """The app thread spills records as they are (no redaction first), so the spill itself must
    contain what cannot be written: a body nested too deep, a mapping whose iteration raises, an
    object whose ``__str__`` raises. None of it may raise into the app or take its neighbours down."""
    held = Held()
    deferred = _deferred(held)
    counters = Counters("h")
    hop = FirstHopProcessor(deferred, tmp_path, max_queue_size=10, max_export_batch_size=10,  # type: ignore[arg-type]
                            counters=counters, prepare=deferred.prepare)  # type: ignore[attr-defined]
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    hostile = [deep, RaisingItems(a=1), RaisingStr()]
    try:
        for i in range(600):
            item = _secret_record(i)
            if i % 50 == 7:
                item.log_record.body = hostile[(i // 50) % 3]
            hop.on_emit(item)  # never raises
        held.release.set()
        assert hop.force_flush(30_000)
    finally:
        hop.shutdown()
    delivered = {r.log_record.event_name: r.log_record.body for r in held.inner.get_finished_logs()}
    assert counters.get("dropped") == 0 and sorted(delivered) == sorted(f"r{i}" for i in range(600))
    # spilled raw, a value that cannot be written is replaced by a marker; the record is kept
    markers = [b for b in delivered.values() if isinstance(b, str) and b.startswith("[unencodable ")]
    assert markers and counters.get("spilled") >= 500
    assert not [r for r in held.inner.get_finished_logs() if "hunter" in str(r.log_record.body)]


def test_a_resource_per_record_keeps_its_own_resource_and_the_table_stays_bounded(tmp_path: Path) -> None:
    """An app that makes a Resource per record (a pod id in it): every spilled record comes back with
    its own resource, while the hop's resource table is reset between frames (not one entry, and one
    live Resource, per record ever seen)."""
    held = Held(timeout=30)
    hop = FirstHopProcessor(held, tmp_path, max_queue_size=16, max_export_batch_size=16,
                            counters=Counters("res"), schedule_delay_millis=10)
    try:
        for i in range(3000):
            item = _record(i)
            item.log_record.attributes._dict.pop("lone")  # type: ignore[union-attr]
            item.resource = Resource({"service.name": "svc", "k8s.pod.uid": f"pod-{i}"})
            item.log_record.event_name = f"r{i}"
            hop.on_emit(item)
        assert hop.counters.get("spilled") > 2000
        assert len(hop._resources) <= 64 + 256 and len(hop._resource_refs) <= 64 + 256
        held.release.set()
        assert hop.force_flush(30_000)
    finally:
        held.release.set()
        hop.shutdown()
    got = {r.log_record.event_name: r.resource.attributes.get("k8s.pod.uid") for r in held.inner.get_finished_logs()}
    assert len(got) == 3000
    assert all(pod == f"pod-{name[1:]}" for name, pod in got.items()), [kv for kv in got.items()
                                                                      if kv[1] != f"pod-{kv[0][1:]}"][:5]
