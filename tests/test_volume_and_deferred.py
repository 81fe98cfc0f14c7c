"""Per-class volume dial (wrapping the export processor) and deferred processing in the export
worker: dropped records never reach the exporter and are counted; deferred labels equal in-line."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, InMemoryLogRecordExporter
from opentelemetry.sdk.trace import TracerProvider

from otel_ext import DeferredProcessingExporter, EventClassifierProcessor, RedactionProcessor, VolumeGate, VolumePolicy
from otel_ext.redact import Redactor
from otel_ext.telemetry import Counters

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _mix import make_events


def emit_mix(pipe: Any, n: int) -> None:
    for log in ("shop.api", "uvicorn.access"):
        pipe.logger(log)
    for i, event in enumerate(make_events()):
        if i >= n:
            break
        event()


def test_sampling_access_drops_only_access_and_counts_every_drop(make_pipeline: Any) -> None:
    counters = Counters("v")
    pipe = make_pipeline(EventClassifierProcessor(counters=Counters("c")),
                         wrap=lambda p: VolumeGate(p, VolumePolicy(sample={"access": 0.0}), counters))
    log = pipe.logger("shop.api")
    for status in [200] * 20 + [401] * 5 + [500] * 3:
        log.info("r", extra={"http.response.status_code": status, "http.route": "/api/orders"})
    log.info("plain")
    classes = [r.log_record.attributes["labels.event_class"] for r in pipe.records()]  # type: ignore[index]
    assert classes.count("access") == 0
    assert classes.count("security") == 5 and classes.count("error") == 3 and classes.count("application") == 1
    assert counters.snapshot()["dropped"] == {"access:sampled": 20}


def test_min_severity_per_class(make_pipeline: Any) -> None:
    counters = Counters("v")
    policy = VolumePolicy.parse(min_severity="application=WARN")
    pipe = make_pipeline(EventClassifierProcessor(counters=Counters("c")), wrap=lambda p: VolumeGate(p, policy, counters))
    log = pipe.logger("shop.api")
    log.info("chatty")
    log.debug("chattier")
    log.warning("kept")
    log.info("r", extra={"http.response.status_code": 403})  # security at INFO is raised to WARN anyway
    assert [r.log_record.body for r in pipe.records()] == ["kept", "r"]
    assert counters.snapshot()["dropped"] == {"application:severity": 2}


def test_partial_sampling_is_consistent_per_trace(make_pipeline: Any) -> None:
    tracer = TracerProvider().get_tracer("t")
    pipe = make_pipeline(EventClassifierProcessor(counters=Counters("c")),
                         wrap=lambda p: VolumeGate(p, VolumePolicy(sample={"access": 0.5}), Counters("v")))
    log = pipe.logger("shop.api")
    kept_per_trace = []
    for _ in range(200):
        with tracer.start_as_current_span("req"):
            before = len(pipe.records())
            for _ in range(3):
                log.info("r", extra={"http.response.status_code": 200})
            kept_per_trace.append(len(pipe.records()) - before)
    assert set(kept_per_trace) <= {0, 3}  # all or nothing within one trace
    assert 40 < sum(k == 3 for k in kept_per_trace) < 160  # ~50% of traces, loose bound
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_security_and_error_are_never_sampled_by_default() -> None:
    policy = VolumePolicy()
    assert policy.is_noop
    assert policy.decide("security", 1, 0) is None and policy.decide("error", 1, 0) is None


@pytest.mark.parametrize(
    ("sample", "severity", "problem"),
    [("access=2", None, "between 0 and 1"), ("acces=0.1", None, "unknown event class"),
     ("access", None, "expected class=value"), ("access=lots", None, "not a number"),
     (None, "error=LOUD", "not a severity")],
)
def test_bad_volume_settings_are_clear_errors(sample: str | None, severity: str | None, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        VolumePolicy.parse(sample, severity)


def test_deferred_labels_equal_inline_labels() -> None:
    def run(deferred: bool) -> list[tuple[Any, ...]]:
        provider = LoggerProvider()
        memory = InMemoryLogRecordExporter()
        classifier = EventClassifierProcessor(counters=Counters("c"))
        redaction = RedactionProcessor(redactor=Redactor(counters=Counters("r")))
        if deferred:
            exporter = DeferredProcessingExporter(memory, classifier, redaction, VolumePolicy())
            provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
        else:
            provider.add_log_record_processor(classifier)
            provider.add_log_record_processor(redaction)
            provider.add_log_record_processor(BatchLogRecordProcessor(memory))
        handler = LoggingHandler(logger_provider=provider)
        loggers = [logging.getLogger(n) for n in ("shop.api", "uvicorn.access")]
        for log in loggers:
            log.addHandler(handler)
            log.setLevel(logging.INFO)
            log.propagate = False
        try:
            for event in make_events():
                event()
            provider.force_flush()
        finally:
            for log in loggers:
                log.removeHandler(handler)
            provider.shutdown()
        out = []
        for item in memory.get_finished_logs():
            rec = item.log_record
            attrs = dict(rec.attributes or {})
            attrs.pop("client.address", None)
            out.append((rec.body, rec.severity_text, rec.event_name, tuple(sorted(attrs.items(), key=str))))
        return sorted(out, key=str)

    inline, deferred = run(False), run(True)
    assert len(inline) == 2000
    assert inline == deferred
    assert not any("hunter2" in str(r) for r in deferred)


def test_deferred_volume_policy_drops_in_worker_and_counts() -> None:
    memory = InMemoryLogRecordExporter()
    counters = Counters("v")
    exporter = DeferredProcessingExporter(memory, EventClassifierProcessor(counters=Counters("c")), None,
                                          VolumePolicy(sample={"access": 0.0}), counters)
    provider = LoggerProvider()
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    log = logging.getLogger("deferred.volume")
    handler = LoggingHandler(logger_provider=provider)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        for _ in range(50):
            log.info("r", extra={"http.response.status_code": 200})
        log.info("r", extra={"http.response.status_code": 403})
        provider.force_flush()
    finally:
        log.removeHandler(handler)
        provider.shutdown()
    assert len(memory.get_finished_logs()) == 1
    assert counters.get("dropped", "access:sampled") == 50
