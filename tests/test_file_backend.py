"""File backend: OTLP/JSON lines (hex trace/span ids, camelCase, as the collector's file exporter
writes them), size rotation, private files; the embedded default when no backend is configured."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from exporter_harness import make_app
from google.protobuf.json_format import ParseDict
from opentelemetry import trace
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk.trace import TracerProvider

from otel_ext.backends import backend_from_url
from otel_ext.backends.outcome import OutcomeKind
from otel_ext.backends.urls import BackendConfigError
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


def test_a_planted_symlink_for_the_active_file_gets_nothing_and_the_records_stay_queued(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir(mode=0o700)
    victim = tmp_path / "victim_bashrc"
    victim.write_text("export PATH=/usr/bin\n")
    (out / "logs.jsonl").symlink_to(victim)
    app = make_app([f"file://{out}"], tmp_path / "q")
    app.emit(5)
    assert not app.deliver(timeout=1.0)  # refused, not lost: still in the queue
    stats = app.exporter.stats()
    assert stats["queue"]["records"] == 5
    (health,) = stats["lanes"]["main"]["backends"].values()
    assert "is a symlink; refusing to follow it" in health["last_error"]
    assert victim.read_text() == "export PATH=/usr/bin\n"  # not one byte appended
    (out / "logs.jsonl").unlink()  # the operator removes the plant
    assert app.deliver()
    app.close()
    assert victim.read_text() == "export PATH=/usr/bin\n"
    assert sum(len(sl["logRecords"]) for d in read_lines(out) for rl in d["resourceLogs"]
               for sl in rl["scopeLogs"]) == 5


def test_an_unsafe_directory_is_refused_at_start_up_with_one_line_naming_it(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "passwd"
    not_a_dir.write_text("root:x:0:0\n")
    with pytest.raises(BackendConfigError, match=r"passwd is not a directory"):
        backend_from_url(f"file://{not_a_dir}")
    with pytest.raises(BackendConfigError, match=r"passwd is not a directory"):
        backend_from_url(f"file://{not_a_dir}?insecure_dir=true")  # no opt-in for this one
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(BackendConfigError, match=r"shared is writable by group and others .*insecure_dir=true"):
        backend_from_url(f"file://{shared}")
    assert backend_from_url(f"file://{shared}?insecure_dir=true").send(b"", 0).kind is OutcomeKind.OK
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(BackendConfigError, match=r"link is a symlink"):
        backend_from_url(f"file://{link}")
    with pytest.raises(BackendConfigError):  # a key the scheme does not know is still refused
        backend_from_url(f"file://{real}?insecure=true")
