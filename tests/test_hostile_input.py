"""Hostile input never raises into the application: huge, binary, non-UTF-8, deeply nested and
oddly typed bodies and attributes pass through the processors, labelled and redacted or, at worst,
unlabelled and counted."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs._internal import LogRecord

from otel_ext.classify import EventClassifierProcessor
from otel_ext.redact import RedactionProcessor, Redactor
from otel_ext.telemetry import Counters


def nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"password": "deep-secret"}
    for i in range(depth):
        node = {f"k{i}": node}
    return node


HOSTILE_BODIES: list[Any] = [
    "x" * 5_000_000,
    "password=" + "a" * 2_000_000,
    b"\xff\xfe\x00binary\x80\x81 password=hunter2",
    "nul\x00byte and \ud800 lone surrogate",
    "\u202e right-to-left override \u0000 and emoji \U0001f600 token=abcdef12",
    nested(50),
    [1, "two", {"three": [None, 4.5]}],
    "",
    '"GET ' + "/a" * 100_000 + ' HTTP/1.1" 200',
]


@pytest.mark.parametrize("body", HOSTILE_BODIES, ids=[f"body{i}" for i in range(len(HOSTILE_BODIES))])
def test_hostile_bodies_do_not_raise(make_pipeline: Any, body: Any) -> None:
    counters = Counters("t")
    pipe = make_pipeline(EventClassifierProcessor(counters=counters),
                         RedactionProcessor(redactor=Redactor(counters=Counters("r"))))
    pipe.logger("uvicorn.access").info(body)
    record = pipe.last().log_record
    assert record.attributes["labels.event_class"] in {"application", "access", "error", "security"}  # type: ignore[index]
    assert counters.get("failed") == 0
    assert "hunter2" not in str(record.body)


def test_hostile_attributes_do_not_raise(make_pipeline: Any) -> None:
    pipe = make_pipeline(EventClassifierProcessor(counters=Counters("t")),
                         RedactionProcessor(redactor=Redactor(counters=Counters("r"))))
    extra = {
        "http.response.status_code": "not-a-number",
        "http.route": 12345,
        "http.server.request.duration": "slow-ish",
        "duration_ms": float("nan"),
        "event.action": ["authn_login_fail"],
        "bytes.value": b"\x00\xff",
        "big": "y" * 1_000_000,
        "secret": 42,
    }
    pipe.logger("shop.api").info("x", extra=extra)
    attrs = pipe.attrs()
    assert attrs["labels.event_class"] == "application"
    assert attrs["secret"] == "[REDACTED:secret]"


def test_record_that_breaks_a_rule_passes_unlabelled_and_is_counted() -> None:
    class Explosive:
        def __str__(self) -> str:
            raise RuntimeError("boom")

    counters = Counters("t")
    proc = EventClassifierProcessor([{"id": "x", "when": {"attributes.weird": {"matches": "a"}}, "class": "error"}],
                                    counters=counters)
    record = LogRecord(body="hi", attributes={"weird": Explosive()},  # type: ignore[dict-item]
                       severity_number=SeverityNumber.INFO)
    assert proc.classify_record(record, "app") is None
    assert counters.get("failed") == 1
    assert "labels.event_class" not in (record.attributes or {})


def test_redaction_failure_fails_closed() -> None:
    class Explosive:
        def items(self) -> Any:
            raise RuntimeError("boom")

    counters = Counters("r")
    proc = RedactionProcessor(redactor=Redactor(counters=counters))
    record = LogRecord(body="password=hunter2", attributes={"a": "b"}, severity_number=SeverityNumber.INFO)
    record.attributes = Explosive()  # type: ignore[assignment]
    proc.redact_record(record)
    assert record.body == "[REDACTED:unprocessable]"
    assert counters.get("failed") == 1


def test_nesting_beyond_the_scan_limit_is_withheld_not_shipped() -> None:
    counters = Counters("r")
    redactor = Redactor(counters=counters, max_depth=8)
    assert "deep-secret" not in str(redactor.redact_value(nested(3)))
    out = redactor.redact_value(nested(900))  # no RecursionError, and nothing unscanned leaks
    assert "deep-secret" not in str(out)
    assert "[REDACTED:too_deep]" in str(out)
    assert counters.get("redacted", "too_deep") == 1


def test_non_string_bodies_are_classified_as_application(make_pipeline: Any) -> None:
    pipe = make_pipeline(EventClassifierProcessor(counters=Counters("t")))
    log = pipe.logger("shop.api")
    log.info({"dict": "body", "password": "p"})
    log.info(["list", "body"])
    log.info(None)
    assert [r.log_record.attributes["labels.event_class"] for r in pipe.records()] == ["application"] * 3  # type: ignore[index]
