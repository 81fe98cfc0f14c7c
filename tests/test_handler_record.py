"""The handler's writable record: built without re-validating attributes that need no cleaning, it
is what the SDK's ``Logger.emit`` makes of the same API record (property-tested); everything else
takes the SDK's own path."""

from __future__ import annotations

import dataclasses
import enum
import logging
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, LogRecordLimits, LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.resources import Resource

from otel_ext._sdk_compat import writable_record
from otel_ext.handler import OtelExtLoggingHandler


class Collect(LogRecordProcessor):
    def __init__(self) -> None:
        self.items: list[Any] = []

    def on_emit(self, log_record: Any) -> None:
        self.items.append(log_record)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class Level(enum.IntEnum):
    HIGH = 3


values = st.one_of(
    st.text(max_size=12), st.integers(-(1 << 70), 1 << 70), st.floats(), st.booleans(), st.none(),
    st.binary(max_size=4), st.just(Level.HIGH), st.just(object()),
    st.lists(st.text(max_size=8), max_size=3), st.tuples(st.text(max_size=8)),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
attributes = st.dictionaries(st.one_of(st.text(max_size=6), st.just("")), values, max_size=8)


def _snapshot(item: Any) -> tuple[Any, ...]:
    rec = item.log_record
    attrs = rec.attributes
    return (type(item), dict(attrs) if attrs is not None else None, getattr(attrs, "dropped", None),
            getattr(attrs, "maxlen", None), getattr(attrs, "max_value_len", None),
            getattr(attrs, "_immutable", None), item.resource, item.instrumentation_scope, item.limits,
            rec.body, rec.severity_number, rec.severity_text, rec.timestamp, rec.observed_timestamp)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(attributes, st.sampled_from([None, 0, 3, 128]), st.sampled_from([None, 0, 5, 100]))
def test_writable_record_equals_the_sdks_wrapping(attrs: dict[str, Any], maxlen: int | None,
                                                 max_value_len: int | None) -> None:
    limits = LogRecordLimits(max_log_record_attributes=maxlen, max_log_record_attribute_length=max_value_len)
    collect = Collect()
    provider = LoggerProvider(resource=Resource({"service.name": "svc"}), log_record_limits=limits)
    provider.add_log_record_processor(collect)
    logger = provider.get_logger("lib", "1.0")
    logging.disable(logging.WARNING)  # the SDK's path warns about what it cleans
    try:
        for use_fast in (False, True):
            record = LogRecord(timestamp=1, observed_timestamp=2, severity_number=SeverityNumber.INFO,
                               severity_text="INFO", body="b", attributes=dict(attrs))
            logger.emit(writable_record(logger, record) if use_fast else record)
    finally:
        logging.disable(logging.NOTSET)
    sdk, ours = collect.items
    assert _snapshot(ours) == _snapshot(sdk)
    assert [type(v) for v in ours.log_record.attributes.values()] == \
        [type(v) for v in sdk.log_record.attributes.values()]


def test_plain_attributes_take_the_direct_path_and_others_the_sdks() -> None:
    provider = LoggerProvider()
    logger = provider.get_logger("lib")
    plain = LogRecord(body="x", attributes={"http.route": "/a", "n": 1, "f": 0.5, "ok": True, "raw": b"\x00"})
    assert isinstance(writable_record(logger, plain), ReadWriteLogRecord)
    for odd in ({"t": ("a",)}, {"": 1}, {"e": Level.HIGH}, {"o": object()}, {"d": {"k": 1}}):
        record = LogRecord(body="x", attributes=odd)
        assert writable_record(logger, record) is record
    assert writable_record(object(), plain) is plain  # not an SDK logger

    class Hostile:
        @property
        def _resource(self) -> Any:
            raise RuntimeError("no")

    assert writable_record(Hostile(), plain) is plain  # never raises into the handler


def test_the_sdk_record_still_has_the_four_fields_we_set() -> None:
    """An SDK upgrade that adds state to ReadWriteLogRecord must fail here, not go unset."""
    assert [f.name for f in dataclasses.fields(ReadWriteLogRecord)] == [
        "log_record", "resource", "instrumentation_scope", "limits"]


def test_the_handler_emits_through_it_with_the_same_attributes_as_before() -> None:
    collect = Collect()
    provider = LoggerProvider()
    provider.add_log_record_processor(collect)
    handler = OtelExtLoggingHandler(logger_provider=provider)
    log = logging.getLogger("test.handler.record")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("hello %s", "you", extra={"http.route": "/x", "n": 2, "t": ["a", "b"]})
        log.warning("plain", extra={"http.route": "/y", "n": 3})
    finally:
        log.removeHandler(handler)
    first, second = collect.items
    assert first.log_record.attributes["t"] == ("a", "b")  # cleaned by the SDK's path
    assert dict(second.log_record.attributes) == {"http.route": "/y", "n": 3}
    assert second.log_record.body == "plain" and second.instrumentation_scope.name == "test.handler.record"
