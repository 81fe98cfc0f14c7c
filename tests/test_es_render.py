"""The compiled bulk renderer writes exactly what the general mapper + json.dumps write: same
action (index, _id), same document, same key order — on the golden corpus and on generated records
(hostile keys and values, dedot conflicts, duplicate keys, every value kind, routing overrides)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

sys.path.insert(0, str(Path(__file__).resolve().parent / "golden"))
from corpus import kvs, request

from otel_ext.backends.elasticsearch import render as es_render
from otel_ext.backends.elasticsearch.mapping import iter_mapped
from otel_ext.backends.elasticsearch.render import BulkRenderer

PROPS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def expected(payload: bytes, mode: str, namespace: str, by_class: bool) -> list[tuple[dict[str, Any], Any]]:
    return [(m.document, {"create": {"_index": m.index.name, "_id": m.doc_id}})
            for m in iter_mapped(payload, mode, namespace, by_class)]


def assert_same(renderer: BulkRenderer, payload: bytes) -> None:
    want = expected(payload, renderer.mode, renderer.namespace, renderer.by_class)
    got = [text for _, text in renderer.render(payload)]
    assert len(got) == len(want)
    for text, (document, action) in zip(got, want, strict=True):
        assert text.endswith("\n") and text.count("\n") == 2, text  # NDJSON: no raw newline inside
        action_line, doc_line, _ = text.split("\n")
        assert json.loads(action_line) == action
        parsed = json.loads(doc_line)
        assert parsed == document
        assert json.dumps(parsed) == json.dumps(document)  # the same key order, nested too


@pytest.mark.parametrize("mode", ["ecs", "otel"])
@pytest.mark.parametrize("by_class", [True, False])
def test_golden_corpus_renders_as_the_mapper_maps(mode: str, by_class: bool) -> None:
    renderer = BulkRenderer(mode, "default", by_class)
    payload = request().SerializeToString()
    assert_same(renderer, payload)
    assert_same(renderer, payload)  # second time from the compiled templates
    if mode == "ecs":
        # kvlist attributes and empty arrays take the general path; the rest is compiled
        assert renderer.compiled_records >= 14 and renderer.general_records >= 4
    else:  # only the geo point record takes the general path
        assert renderer.compiled_records == 20 and renderer.general_records == 2


def test_percent_signs_quotes_and_newlines_stay_data() -> None:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.extend(kvs({"service.name": 'sh%sop "api"\n', "host.name": "%(x)s"}))
    sl = rl.scope_logs.add()
    sl.scope.attributes.extend(kvs({"scope.%d": "100%"}))
    for body in ("%s %d %%", 'line1\nline2 "quoted" \\ \u2028 \x00', "ümlaut ✓ 𝄞"):
        record = sl.log_records.add()
        record.time_unix_nano = 1_795_600_000_123_456_789
        record.body.string_value = body
        record.attributes.extend(kvs({"%s": "%s", "log.record.uid": 'id"%s\n', "labels.event_class": 'sec"urity%',
                                      "a\nb": ["%", 1.5, float("inf")]}))
    renderer = BulkRenderer()
    for _ in range(2):
        assert_same(renderer, req.SerializeToString())
    assert renderer.compiled_records == 6


def test_schema_urls_are_part_of_the_cached_resource() -> None:
    req = ExportLogsServiceRequest()
    for schema in ("https://opentelemetry.io/schemas/1.30.0", "https://opentelemetry.io/schemas/1.37.0"):
        rl = req.resource_logs.add(schema_url=schema)
        rl.resource.attributes.extend(kvs({"service.name": "same"}))
        sl = rl.scope_logs.add(schema_url=schema + "/scope")
        sl.log_records.add().body.string_value = schema
    renderer = BulkRenderer("otel")
    assert_same(renderer, req.SerializeToString())
    assert renderer.compiled_records == 2


def test_shape_cache_is_bounded_and_output_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(es_render, "_MAX_SHAPES", 5)
    req = ExportLogsServiceRequest()
    sl = req.resource_logs.add().scope_logs.add()
    for i in range(20):
        record = sl.log_records.add()
        record.body.string_value = f"r{i}"
        record.attributes.extend(kvs({f"key{i}": i, "log.record.uid": f"u{i}"}))
    renderer = BulkRenderer()
    assert_same(renderer, req.SerializeToString())
    plan = next(iter(renderer._plans.values()))
    assert len(plan.shapes) == 5
    assert renderer.compiled_records == 5 and renderer.general_records == 15


KEYS = st.sampled_from(["a", "a.b", "a.b.c", "x", "x.y", "event.name", "event.kind", "exception.message",
                        "exception.type", "http.response.body.size", "log.level", "log.record.uid", "message",
                        "labels.event_class", "data_stream.dataset", "data_stream.namespace", "elasticsearch.index",
                        "service.name", "host.name", "telemetry.sdk.name", "%s", 'q"uote', "ü.✓", "trace.id",
                        "data_stream.type", "agent.name", "@timestamp", "event.severity", "geo.location.lat",
                        "client.geo.location.lon", "attributes", "body.text"])
SCALARS = st.one_of(st.text(max_size=12), st.integers(-2**63, 2**63 - 1), st.booleans(),
                    st.floats(allow_nan=False), st.binary(max_size=4), st.none())
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.sampled_from(["k", "k.j", "z"]),
                                                                           SCALARS, max_size=2))
ATTRS = st.lists(st.tuples(KEYS, VALUES), max_size=8)


def build(resource: list[tuple[str, Any]], records: list[dict[str, Any]]) -> bytes:
    from corpus import value as corpus_value
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

    def value(v: Any) -> AnyValue:
        return AnyValue() if v is None else corpus_value(v)  # None: an unset value

    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    for key, v in resource:
        rl.resource.attributes.add(key=key).value.CopyFrom(value(v))
    sl = rl.scope_logs.add()
    for spec in records:
        record = sl.log_records.add()
        record.time_unix_nano = spec["time"]
        record.observed_time_unix_nano = min(spec["time"] + 5, 2**64 - 1)
        if spec["trace"]:
            record.trace_id = spec["trace"]
        if spec["span"]:
            record.span_id = spec["span"]
        record.severity_number = spec["sev"]
        record.severity_text = spec["level"]
        if spec["body"] is not None:
            record.body.CopyFrom(value(spec["body"]))
        record.event_name = spec["event_name"]
        record.dropped_attributes_count = spec["dropped"]
        for key, v in spec["attrs"]:  # duplicates kept, in order
            record.attributes.add(key=key).value.CopyFrom(value(v))
    return bytes(req.SerializeToString())


RECORDS = st.lists(st.fixed_dictionaries({
    "time": st.integers(0, 2**64 - 1), "trace": st.sampled_from([b"", bytes(16), bytes(range(16))]),
    "span": st.sampled_from([b"", bytes(8), bytes(range(8))]), "sev": st.integers(0, 24),
    "level": st.sampled_from(["", "INFO", 'W"%s']), "body": st.one_of(st.none(), SCALARS, st.just({"m": 1})),
    "event_name": st.sampled_from(["", "app.crash"]), "dropped": st.sampled_from([0, 3]),
    "attrs": ATTRS}), min_size=1, max_size=6)


@PROPS
@given(resource=ATTRS, records=RECORDS, by_class=st.booleans(), namespace=st.sampled_from(["default", "E-U %s"]),
       mode=st.sampled_from(["ecs", "otel"]))
def test_generated_records_render_as_the_mapper_maps(resource: list[tuple[str, Any]], records: list[dict[str, Any]],
                                                     by_class: bool, namespace: str, mode: str) -> None:
    payload = build(resource, records)
    renderer = BulkRenderer(mode, namespace, by_class)
    assert_same(renderer, payload)
    assert_same(renderer, payload)
