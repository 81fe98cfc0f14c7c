"""The records of the Elasticsearch golden test: every value type, body shape and mapping special
case of the collector's elasticsearchexporter (conversions, dedot conflicts, routing overrides)."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

T = 1_795_600_000_123_456_789


def value(v: Any) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, bytes):
        return AnyValue(bytes_value=v)
    if isinstance(v, dict):
        out = AnyValue()
        out.kvlist_value.values.extend(KeyValue(key=k, value=value(x)) for k, x in v.items())
        return out
    if isinstance(v, list):
        out = AnyValue()
        out.array_value.values.extend(value(x) for x in v)
        return out
    return AnyValue(string_value=str(v))


def kvs(attrs: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=value(v)) for k, v in attrs.items()]


RESOURCES: list[dict[str, Any]] = [
    {"service.name": "shop-api", "service.version": "1.4.2", "service.instance.id": "pod-7",
     "deployment.environment.name": "prod", "host.name": "web-1", "host.arch": "amd64", "os.type": "linux",
     "os.description": "Debian 12", "telemetry.sdk.name": "opentelemetry", "telemetry.sdk.language": "python",
     "telemetry.sdk.version": "1.45.2", "k8s.namespace.name": "shop", "k8s.pod.name": "shop-api-7"},
    {"service.name": "billing", "telemetry.sdk.name": "opentelemetry", "telemetry.sdk.language": "java",
     "telemetry.distro.name": "edot", "telemetry.distro.version": "9.1", "os.type": "darwin",
     "cloud.platform": "aws_ecs"},
]

RECORDS: list[tuple[int, dict[str, Any]]] = [
    (0, {"body": "GET /api/orders 200", "severity_text": "INFO", "severity_number": 9,
         "attributes": {"http.request.method": "GET", "http.route": "/api/orders", "http.response.status_code": 200,
                        "client.address": "10.0.0.7", "labels.event_class": "access", "tags": ["access"],
                        "event.duration": 12_500_000, "http.server.request.duration": 0.0125}}),
    (0, {"body": "Failed login for bob", "severity_text": "WARN", "severity_number": 13,
         "trace_id": bytes(range(1, 17)), "span_id": bytes(range(1, 9)),
         "attributes": {"event.action": "authn_login_fail", "event.category": ["authentication"], "user.id": "bob",
                        "event.outcome": "failure", "event.name": "authn_login_fail"}}),
    (0, {"body": {"order": {"id": 42, "total": 19.5, "items": ["a", "b"]}, "ok": True}, "severity_number": 9,
         "attributes": {"flag": True, "ratio": 0.25, "count": 3, "raw": b"\x00\xff", "nested": {"a": 1, "b": {"c": "d"}},
                        "list.mixed": [1, "two", 3.5]}}),
    (0, {"body": [{"a": 1}, {"b": 2}], "attributes": {"kind": "all-maps array body"}}),
    (0, {"body": [1, "x", True], "attributes": {"kind": "mixed array body"}}),
    (0, {"body": "boom", "severity_text": "ERROR", "severity_number": 17, "event_name": "app.crash",
         "attributes": {"exception.type": "ValueError", "exception.message": "bad input",
                        "exception.stacktrace": "Traceback ...\nValueError: bad input", "exception.escaped": False,
                        "http.response.body.size": 512}}),
    (0, {"body": "conflict", "attributes": {"a": "top", "a.b": "nested", "x.y": 1, "x": {"z": 2}}}),
    (0, {"body": "observed only", "time": 0, "attributes": {"note": "no timestamp"}}),
    (1, {"body": "routed by data_stream", "attributes": {"data_stream.dataset": "payments", "data_stream.namespace": "eu"}}),
    (1, {"body": "", "severity_text": "DEBUG", "severity_number": 5, "attributes": {"empty.list": [], "empty.map": {},
                                                                                 "blank": ""}}),
    (1, {"body": 7, "attributes": {"geo.location.lat": 52.5, "geo.location.lon": 13.4}}),
]


def request() -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    per_resource: dict[int, Any] = {}
    for i, (res_index, spec) in enumerate(RECORDS):
        if res_index not in per_resource:
            rl = req.resource_logs.add()
            rl.resource.attributes.extend(kvs(RESOURCES[res_index]))
            sl = rl.scope_logs.add()
            sl.scope.name = "shop.api" if res_index == 0 else "billing.jobs"
            sl.scope.version = "2.0"
            per_resource[res_index] = sl
        record = per_resource[res_index].log_records.add()
        record.time_unix_nano = spec.get("time", T + i * 1000)
        record.observed_time_unix_nano = T + i * 1000 + 7
        if "severity_text" in spec:
            record.severity_text = spec["severity_text"]
        record.severity_number = spec.get("severity_number", 0)
        if spec["body"] != "":
            record.body.CopyFrom(value(spec["body"]))
        record.attributes.extend(kvs({**spec["attributes"], "log.record.uid": f"golden-{i:02d}"}))
        if "event_name" in spec:
            record.event_name = spec["event_name"]
        if "trace_id" in spec:
            record.trace_id = spec["trace_id"]
            record.span_id = spec["span_id"]
    return req
