"""The direct OTLP encoder: its bytes decode to the same ExportLogsServiceRequest as the SDK's
``encode_logs`` (property-tested, in fact byte-identical), and a record that cannot be encoded is
repaired or set aside alone and counted, its batch-mates always encoded (and delivered)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs import ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import TraceFlags

from otel_ext.export.encoding import encode_batch, encode_log_record, encode_request
from otel_ext.telemetry import Counters

INT64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
scalars = st.one_of(st.none(), st.booleans(), st.text(max_size=30), INT64,
                    st.floats(allow_nan=False), st.binary(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)
attributes = st.dictionaries(st.text(max_size=12), values, max_size=8)
RESOURCES = [Resource({"service.name": "shop"}), Resource({"service.name": "shop", "k": 1}, "https://s/1"),
             Resource({})]
SCOPES = [None, InstrumentationScope("a"), InstrumentationScope("b", "1.0", "https://s/2", {"x": "y"})]


@st.composite
def records(draw: Any) -> ReadableLogRecord:
    severity = draw(st.sampled_from([None, *SeverityNumber]))
    rec = LogRecord(
        timestamp=draw(st.one_of(st.none(), st.integers(0, (1 << 64) - 1))),
        observed_timestamp=draw(st.integers(0, (1 << 64) - 1)),
        trace_id=draw(st.integers(0, (1 << 128) - 1)), span_id=draw(st.integers(0, (1 << 64) - 1)),
        trace_flags=TraceFlags(draw(st.integers(0, 255))),
        severity_text=draw(st.one_of(st.none(), st.text(max_size=8))), severity_number=severity,
        body=draw(values), attributes=draw(attributes),
        event_name=draw(st.one_of(st.none(), st.text(max_size=8))),
    )
    return ReadWriteLogRecord(rec, resource=draw(st.sampled_from(RESOURCES)),  # type: ignore[return-value]
                              instrumentation_scope=draw(st.sampled_from(SCOPES)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records(), min_size=1, max_size=6))
def test_direct_encoder_matches_the_sdk_encoder(batch: list[ReadableLogRecord]) -> None:
    sdk = encode_logs(batch).SerializeToString()
    ours = encode_request([(item, encode_log_record(item)) for item in batch])
    assert ExportLogsServiceRequest.FromString(ours) == ExportLogsServiceRequest.FromString(sdk)
    assert ours == sdk  # field order and presence are the same, so even the bytes are


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(max_size=40), min_size=1, max_size=20), st.sampled_from(["", "k", "url.path", "é"]))
def test_a_key_whose_values_never_repeat_encodes_like_the_sdk(tail: list[str], key: str) -> None:
    """Past its cache's 512 values a key's strings are encoded directly: still the SDK's bytes."""
    from otel_ext.export.encoding import _AttributeCache

    cache = _AttributeCache(max_values=4)
    batch = [_item(f"b{i}", {key: f"v{i}"}) for i in range(8)] + [_item("x", {key: v, "n": 3}) for v in tail]
    sdk = encode_logs(batch).SerializeToString()
    ours = encode_request([(item, encode_log_record(item, cache)) for item in batch])
    assert ours == sdk


def _item(body: Any, attrs: dict[str, Any] | None = None, event_class: str = "access") -> ReadWriteLogRecord:
    rec = LogRecord(timestamp=1, observed_timestamp=2, severity_number=SeverityNumber.INFO, body=body,
                    attributes={"labels.event_class": event_class})
    item = ReadWriteLogRecord(rec, resource=RESOURCES[0], instrumentation_scope=SCOPES[1])
    # written past the SDK's validation, as processors that set attributes in bulk do
    item.log_record.attributes._dict.update(attrs or {})  # type: ignore[union-attr]
    return item


def _decoded_records(entries: list[Any]) -> list[Any]:
    out = []
    for entry in entries:
        req = ExportLogsServiceRequest.FromString(entry.payload)
        out.extend(r for rl in req.resource_logs for sl in rl.scope_logs for r in sl.log_records)
    return out


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")


def test_a_bad_record_is_repaired_alone_and_its_batch_mates_are_encoded() -> None:
    counters = Counters("enc")
    batch = [_item("fine 1"), _item("lone \ud800 surrogate", event_class="security"),
             _item("huge", {"n": 1 << 70}), _item("obj", {"o": object()}, event_class="error"),
             _item("bad key", {"k\udfff": "v"}), _item("fine 2")]
    entries = encode_batch(batch, counters)
    logs = _decoded_records(entries)
    bodies = sorted(r.body.string_value for r in logs)
    assert bodies == sorted(["fine 1", "lone \ufffd surrogate", "huge", "obj", "bad key", "fine 2"])
    by_body = {r.body.string_value: {kv.key: kv.value for kv in r.attributes} for r in logs}
    assert by_body["huge"]["n"].string_value == str(1 << 70)
    assert by_body["obj"]["o"].string_value.startswith("<object object at")
    assert "k\ufffd" in by_body["bad key"]
    assert counters.snapshot()["repaired"] == {"security": 1, "access": 2, "error": 1}
    assert "set_aside" not in counters.snapshot()
    assert sum(e.records for e in entries) == 6


def test_a_record_beyond_repair_is_set_aside_alone_and_counted() -> None:
    counters = Counters("enc")
    broken = _item("broken", event_class="error")
    broken.log_record.trace_id = -5  # not representable as 16 bytes: cannot be repaired
    entries = encode_batch([_item("a"), broken, _item("b"), _item("c", {"u": Unprintable()})], counters)
    bodies = sorted(r.body.string_value for r in _decoded_records(entries))
    assert bodies == ["a", "b", "c"]
    assert counters.snapshot()["set_aside"] == {"error": 1}
    assert counters.snapshot()["repaired"] == {"access": 1}
    assert sum(e.records for e in entries) == 3


def test_dropped_attribute_count_and_ids_survive(tmp_path: Path) -> None:
    attrs = BoundedAttributes(maxlen=2, attributes={"a": 1, "b": 2, "c": 3}, immutable=False)
    rec = LogRecord(timestamp=5, body="x", attributes=attrs, trace_id=7, span_id=9, trace_flags=TraceFlags(1))
    item = ReadWriteLogRecord(rec, resource=RESOURCES[1], instrumentation_scope=SCOPES[2])
    assert encode_request([(item, encode_log_record(item))]) == encode_logs([item]).SerializeToString()


@pytest.mark.peers
def test_batch_with_a_surrogate_record_is_delivered_whole(receivers: Any, tmp_path: Path) -> None:
    """Through the real pipeline: stdlib logging -> handler -> first hop -> exporter -> rotel."""
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs import LoggerProvider
    from peers import collect

    from otel_ext import FailoverLogExporter
    from otel_ext.export.firsthop import FirstHopProcessor

    rx = receivers("rx")
    exporter = FailoverLogExporter([rx.grpc_url], queue_dir=tmp_path / "q", counters=Counters("e"),
                                   queue_counters=Counters("q"))
    provider = LoggerProvider()
    provider.add_log_record_processor(FirstHopProcessor(exporter, tmp_path / "q", counters=Counters("f")))
    handler = LoggingHandler(logger_provider=provider)
    log = logging.getLogger("enc.test")
    log.addHandler(handler)
    log.propagate = False
    try:
        for i in range(50):
            log.warning("mate %d", i)
            if i == 25:
                log.warning("bad \udc80 body", extra={"weird": "\ud83d", "big": 1 << 80})
        assert provider.force_flush(10_000) and exporter.force_flush(10_000)
        uids = collect(51, rx)
        assert len(set(uids)) == 51
        assert "bad \ufffd body" in rx.output()
    finally:
        log.removeHandler(handler)
        provider.shutdown()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records(), min_size=1, max_size=5))
def test_file_backend_fast_json_equals_message_to_dict(batch: list[ReadableLogRecord]) -> None:
    import json

    from otel_ext.backends.file import to_otlp_json, to_otlp_json_reference
    from otel_ext.backends.otlp_json import to_otlp_json_fast

    payload = encode_logs(batch).SerializeToString()
    reference = json.loads(to_otlp_json_reference(payload))
    assert json.loads(to_otlp_json(payload)) == reference
    try:  # the fast path alone, where it does not hand over to the reference
        fast = to_otlp_json_fast(payload)
    except Exception:  # noqa: BLE001
        return
    assert json.loads(fast) == reference


def test_file_backend_fast_json_handles_every_length_form_itself() -> None:
    """Records with one-, two- and three-byte lengths, scope and schema urls, ids, dropped counts:
    the fast path's own output (no hand-over to the reference) equals the reference."""
    import json

    from otel_ext.backends.otlp_json import _Fragments, to_otlp_json_fast, to_otlp_json_reference

    batch = [_item("x" * n, {"k": "v" * (n // 3), "labels.event_class": "error", "tags": ("error",)})
             for n in (0, 1, 60, 100, 127, 128, 300, 16_383, 16_384, 70_000)]
    attrs = BoundedAttributes(maxlen=2, attributes={"a": 1, "b": 2, "c": 3}, immutable=False)
    rec = LogRecord(timestamp=5, body="ids", attributes=attrs, trace_id=7, span_id=9, trace_flags=TraceFlags(1))
    batch.append(ReadWriteLogRecord(rec, resource=RESOURCES[1], instrumentation_scope=SCOPES[2]))
    payload = encode_request([(item, encode_log_record(item)) for item in batch])
    expected = json.loads(to_otlp_json_reference(payload))
    fragments = _Fragments()
    for _ in range(2):  # cold, then with learned fragments and runs
        assert json.loads(to_otlp_json_fast(payload, fragments)) == expected


def test_file_backend_json_falls_back_to_the_reference_on_what_it_does_not_know() -> None:
    import json

    from otel_ext.backends.file import to_otlp_json, to_otlp_json_reference

    payload = encode_logs([_item("x", {"k": "v"})]).SerializeToString()
    for odd in (payload + b"\x12\x00", payload + b"\x0a\x02\x20\x01"):  # unknown request / resource-logs field
        assert json.loads(to_otlp_json(odd)) == json.loads(to_otlp_json_reference(odd))


# --- fast paths of the encoder and of the OTLP/JSON writer, against the reference paths ------------

LABEL_KEYS = ["labels.event_class", "tags", "event.kind", "event.category", "event.type", "event.outcome",
              "event.action"]
label_values = st.one_of(st.sampled_from(["access", "security", "error", "x" * 130, "é"]),
                         st.tuples(st.sampled_from(["web", "iam"])), st.integers(0, 3), st.floats(allow_nan=False))
label_runs = st.lists(st.tuples(st.sampled_from([*LABEL_KEYS, "url.path", "log.record.uid", ""]), label_values),
                      max_size=9).map(dict)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["", "k", "url.path", "é" * 40, "x" * 121, "y" * 126]),
                          st.one_of(st.text(max_size=200), st.floats(), st.integers(-3, 3),
                                    st.tuples(st.sampled_from(["a", "b"])))), min_size=1, max_size=30))
def test_direct_string_and_float_entries_encode_like_the_sdk(pairs: list[tuple[str, Any]]) -> None:
    """Strings past a full per-key cache and floats are written from per-key heads (one-byte lengths)
    or in full when a length does not fit one byte: the SDK's bytes either way."""
    from otel_ext.export.encoding import _AttributeCache

    cache = _AttributeCache(max_values=2, max_len=8)
    batch = [_item(f"b{i}", {key: value, "n": 1.5}) for i, (key, value) in enumerate(pairs)]
    sdk = encode_logs(batch).SerializeToString()
    assert encode_request([(item, encode_log_record(item, cache)) for item in batch]) == sdk


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(label_runs, min_size=1, max_size=6), min_size=1, max_size=6),
       st.integers(1, 6), st.integers(1, 4))
def test_json_writer_with_learned_label_runs_equals_message_to_dict(batches: list[list[dict[str, Any]]],
                                                                    max_entries: int, max_per_key: int) -> None:
    """One writer state across many payloads (as in a lane): label runs learned from one record,
    matched by bytes in the next (also as a prefix of a longer run, or at a record's end), tiny
    caches cleared over and over, per-key limits: every document equals the reference."""
    import json

    from otel_ext.backends.otlp_json import _Fragments, to_otlp_json_fast, to_otlp_json_reference

    fragments = _Fragments(max_entries=max_entries, max_per_key=max_per_key)
    for attrs_list in batches:
        batch = [_item("x", {**{"labels.event_class": "access"}, **attrs}) if i % 2 else _item(f"b{i}", attrs)
                 for i, attrs in enumerate(attrs_list)]
        payload = encode_request([(item, encode_log_record(item)) for item in batch])
        assert json.loads(to_otlp_json_fast(payload, fragments)) == json.loads(to_otlp_json_reference(payload))


def test_direct_entries_at_every_one_byte_length_boundary_encode_like_the_sdk() -> None:
    """Keys and values around the 127/128-byte limits of one-byte lengths, through a full cache."""
    from otel_ext.export.encoding import _AttributeCache

    cache = _AttributeCache(max_values=1)
    batch = [_item("fill", {"x" * k: "fill" for k in range(110, 128)})]
    batch += [_item(f"{k}/{n}", {"x" * k: "v" * n, "f" * k: 0.5}) for k in range(110, 128) for n in range(0, 20)]
    batch += [_item(f"long {n}", {"k": "é" * n}) for n in range(55, 70)]
    batch += [_item(body) for n in range(118, 134) for body in ("b" * n, "é" * (n // 2), "")]
    for i, text in enumerate(["INFO", "", "é" * 70, "x" * 200, "WARN"]):
        batch[i].log_record.severity_text = text
    sdk = encode_logs(batch).SerializeToString()
    assert encode_request([(item, encode_log_record(item, cache)) for item in batch]) == sdk


def test_json_writer_with_more_label_runs_than_it_keeps_per_class() -> None:
    """200 distinct label runs under one class, twice over: runs are evicted and learned again,
    every document still equals the reference."""
    import json

    from otel_ext.backends.otlp_json import _Fragments, to_otlp_json_fast, to_otlp_json_reference

    fragments = _Fragments()
    for _ in range(2):
        for start in range(0, 200, 50):
            batch = [_item("x", {"labels.event_class": "security", "tags": ("security",), "event.kind": "event",
                                 "event.action": f"action_{n}", "url.path": f"/p/{n}"})
                     for n in range(start, start + 50)]
            payload = encode_request([(item, encode_log_record(item)) for item in batch])
            assert json.loads(to_otlp_json_fast(payload, fragments)) == json.loads(to_otlp_json_reference(payload))
    assert all(len(runs) <= 64 for runs in fragments.runs.values())
