"""File backend: OTLP/JSON lines (hex trace/span ids, camelCase, as the collector's file exporter
writes them), size rotation, private files; the embedded default when no backend is configured."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from exporter_harness import make_app
from google.protobuf.json_format import ParseDict
from opentelemetry import trace
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk.trace import TracerProvider

from otel_ext.export import FailoverLogExporter
from otel_ext.settings import load_settings


def read_lines(directory: Path) -> list[dict]:  # type: ignore[type-arg]
    lines = []
    for path in sorted(directory.glob("*.jsonl")):
        lines += [json.loads(line) for line in path.read_text().splitlines()]
    return lines


def test_file_backend_writes_otlp_json_lines(tmp_path: Path) -> None:
    out = tmp_path / "out"
    app = make_app([f"file://{out}"], tmp_path / "q")
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("req") as span:
        app.emit(10, event_class="security")
        trace_id = format(span.get_span_context().trace_id, "032x")
    assert app.deliver()
    app.close()
    docs = read_lines(out)
    records = [r for d in docs for rl in d["resourceLogs"] for sl in rl["scopeLogs"] for r in sl["logRecords"]]
    assert len(records) == 10
    assert records[0]["traceId"] == trace_id  # hex, not base64
    assert records[0]["severityNumber"] == 9 and records[0]["body"] == {"stringValue": "record 0"}
    keys = {a["key"] for a in records[0]["attributes"]}
    assert {"seq", "labels.event_class", "log.record.uid"} <= keys
    assert trace.get_current_span() is trace.INVALID_SPAN
    for doc in docs:  # lines round-trip through the OTLP protobuf schema (ids aside)
        for rl in doc["resourceLogs"]:
            for sl in rl["scopeLogs"]:
                for r in sl["logRecords"]:
                    r.pop("traceId", None)
                    r.pop("spanId", None)
        ParseDict(doc, ExportLogsServiceRequest())
    assert stat.S_IMODE((out / "logs.jsonl").stat().st_mode) == 0o600
    assert stat.S_IMODE(out.stat().st_mode) == 0o700


def test_file_backend_rotates_by_size_and_keeps_every_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    app = make_app([f"file://{out}?max_bytes=20000"], tmp_path / "q")
    for _ in range(20):
        app.emit(50)
        app.flush_to_queue()
    assert app.deliver()
    app.close()
    assert len(list(out.glob("logs-*.jsonl"))) >= 2
    seqs = [a["value"]["intValue"] for d in read_lines(out) for rl in d["resourceLogs"] for sl in rl["scopeLogs"]
            for r in sl["logRecords"] for a in r["attributes"] if a["key"] == "seq"]
    assert sorted(int(s) for s in seqs) == list(range(1000))


def test_embedded_default_needs_no_configuration(tmp_path: Path) -> None:
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    exporter = FailoverLogExporter(settings=load_settings(env), queue_dir=tmp_path / "q")
    try:
        assert exporter.backends[0].name == f"file://{tmp_path / 'state' / 'otel-ext' / 'logs'}"
    finally:
        exporter.shutdown()
