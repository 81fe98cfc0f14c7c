"""ECS conformance of what we emit in ``ecs`` mode, checked against the ECS field definitions
(a subset derived from elastic/ecs ``generated/ecs/ecs_flat.yml``, see tests/ecs/ecs_subset.json):
classified records (labelled cases, attack corpus sample, an exception with a stack trace) and
detector alerts go through the classifier, then through our Elasticsearch ecs-mode mapping."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from test_attack_detection import SCANNER_LINES, crs_rows, request_attrs
from test_classify_cases import CASES

from otel_ext.backends.elasticsearch.mapping import iter_mapped
from otel_ext.classify import EventClassifierProcessor
from otel_ext.detect import DetectionEngine, DetectorConfig, DetectorProcessor
from otel_ext.telemetry import Counters

ECS = json.loads((Path(__file__).parent / "ecs" / "ecs_subset.json").read_text())
T0 = 1_800_000_000 * 10**9


def flatten(doc: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def ecs_documents() -> list[dict[str, Any]]:
    provider = LoggerProvider()
    memory = InMemoryLogRecordExporter()
    engine = DetectionEngine(DetectorConfig.parse({"latency_slo": {"min_samples": 5}, "error_spike": {"min_errors": 3}}),
                             provider, counters=Counters("d"))
    provider.add_log_record_processor(EventClassifierProcessor(counters=Counters("c")))
    provider.add_log_record_processor(DetectorProcessor(engine))
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    handler = LoggingHandler(logger_provider=provider)
    for case in CASES:
        log = logging.getLogger(case.logger)
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)
        try:
            if case.level == "exception":
                try:
                    raise ValueError("bad")
                except ValueError:
                    log.exception(case.message, extra=case.extra)
            else:
                getattr(log, case.level)(case.message, extra=case.extra)
        finally:
            log.removeHandler(handler)
    api = provider.get_logger("shop.api")
    for i, row in enumerate(crs_rows()[::15]):
        api.emit(LogRecord(timestamp=T0 + i, severity_number=SeverityNumber.INFO, body="request",
                           attributes={**request_attrs(row), "http.response.status_code": (200, 403)[i % 2],
                                       "client.address": "203.0.113.5"}))
    access = provider.get_logger("gunicorn.access")
    for line, _ in SCANNER_LINES:
        access.emit(LogRecord(timestamp=T0, severity_number=SeverityNumber.INFO, body=line))
    for i in range(10):  # alerts: latency SLO (extras: samples) and error spike (extras: baseline)
        api.emit(LogRecord(timestamp=T0 + i * 10**9, severity_number=SeverityNumber.INFO, body="r", attributes={
            "http.route": "/api/slow", "http.response.status_code": 500, "http.server.request.duration": 2.0}))
    records = list(memory.get_finished_logs())
    provider.shutdown()
    payload = encode_logs(records).SerializeToString()
    return [flatten(m.document) for m in iter_mapped(payload, "ecs", by_class=False)]


def test_ecs_mode_documents_conform_to_the_ecs_field_definitions() -> None:
    docs = ecs_documents()
    categories: dict[str, list[str]] = ECS["event.category"]
    fields: dict[str, str] = ECS["fields"]
    seen_alerts = seen_attacks = seen_stack = 0
    for doc in docs:
        cats = doc.get("event.category") or []
        cats = [cats] if isinstance(cats, str) else cats
        types = doc.get("event.type") or []
        types = [types] if isinstance(types, str) else types
        assert all(c in categories for c in cats), doc
        for typ in types:  # every event.type is expected for one of the record's categories
            assert any(typ in categories[c] for c in cats), (cats, typ, doc.get("message"))
        assert doc.get("event.kind", "event") in ECS["event.kind"]
        assert doc.get("event.outcome", "unknown") in ECS["event.outcome"]
        for key, value in doc.items():
            if key.startswith("labels."):  # ECS labels are keyword strings
                assert isinstance(value, str), (key, value)
            if key.startswith(("rule.", "event.", "error.")):
                assert key in fields, f"{key} is not an ECS field"
        assert "error.stacktrace" not in doc  # ECS spells it error.stack_trace
        assert not {"samples", "baseline"} & set(doc), "alert extras belong under otel_ext.alert.*"
        seen_alerts += doc.get("event.kind") == "alert"
        seen_attacks += "rule.category" in doc and doc.get("event.kind") != "alert"
        seen_stack += "error.stack_trace" in doc
    assert seen_alerts >= 2 and seen_attacks >= 50 and seen_stack >= 1
