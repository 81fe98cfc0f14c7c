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

    def __init__(self) -> None:
        self.inner = InMemoryLogRecordExporter()
        self.release = threading.Event()

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        self.release.wait(30)
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
