"""Documents for Elasticsearch/OpenSearch from queued OTLP ``ExportLogsServiceRequest`` bytes, in the
two mapping modes of the collector's elasticsearchexporter, so documents from both look alike.

Ported from opentelemetry-collector-contrib ``exporter/elasticsearchexporter`` v0.145.0 (the release
pinned in ``collector_configs/builder-config.yaml``): ``model.go`` (``ecsModeEncoder.encodeLog``,
``resourceAttrsConversionMap``, ``encodeLogAgentNameECSMode``, ``encodeHostOsTypeECSMode``),
``internal/objmodel`` (flattening, ``Dedup`` renaming ``a`` to ``a.value`` when ``a.b`` exists,
timestamp layout) and ``internal/serializer/otelserializer`` (``SerializeLog``, ``writeAttributes``).

Differences, by design: every document gets ``_id`` = ``log.record.uid`` (the collector sets none
unless told to), and data streams are routed by event class by default (``logs-security-default``;
``routing=generic`` gives the collector's ``logs-generic-default``), see :func:`route`. Golden
test: ``tests/test_es_golden.py`` against documents captured from the real exporter.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

MAPPING_MODES = ("ecs", "otel")

# model.go resourceAttrsConversionMap (v0.145.0): semconv name -> (ECS name, preserve, skip-if-exists)
_RESOURCE_ECS: dict[str, tuple[str | None, bool, bool]] = {
    "service.instance.id": ("service.node.name", False, False),
    "deployment.environment": ("service.environment", False, False),
    "deployment.environment.name": ("service.environment", False, False),
    "telemetry.sdk.name": (None, False, False),
    "telemetry.sdk.language": (None, False, False),
    "telemetry.sdk.version": (None, False, False),
    "telemetry.distro.name": (None, False, False),
    "telemetry.distro.version": (None, False, False),
    "cloud.platform": ("cloud.service.name", False, False),
    "container.image.tags": ("container.image.tag", False, False),
    "host.name": ("host.hostname", True, True),
    "host.arch": ("host.architecture", False, False),
    "process.parent_pid": ("process.parent.pid", False, False),
    "process.executable.name": ("process.title", False, False),
    "process.executable.path": ("process.executable", False, False),
    "process.command_line": ("process.args", False, False),
    "process.runtime.name": ("service.runtime.name", False, False),
    "process.runtime.version": ("service.runtime.version", False, False),
    "os.name": ("host.os.name", False, False),
    "os.type": ("host.os.platform", False, False),
    "os.description": ("host.os.full", False, False),
    "os.version": ("host.os.version", False, False),
    "client.address": ("client.ip", False, False),
    "source.address": ("source.ip", False, False),
    "k8s.deployment.name": ("kubernetes.deployment.name", False, False),
    "k8s.namespace.name": ("kubernetes.namespace", False, False),
    "k8s.node.name": ("kubernetes.node.name", False, False),
    "k8s.pod.name": ("kubernetes.pod.name", False, False),
    "k8s.pod.uid": ("kubernetes.pod.uid", False, False),
    "k8s.job.name": ("kubernetes.job.name", False, False),
    "k8s.cronjob.name": ("kubernetes.cronjob.name", False, False),
    "k8s.statefulset.name": ("kubernetes.statefulset.name", False, False),
    "k8s.replicaset.name": ("kubernetes.replicaset.name", False, False),
    "k8s.daemonset.name": ("kubernetes.daemonset.name", False, False),
    "k8s.container.name": ("kubernetes.container.name", False, False),
    "k8s.cluster.name": ("orchestrator.cluster.name", False, False),
    "faas.instance": ("faas.id", False, False),
    "faas.trigger": ("faas.trigger.type", False, False),
}
# Where our ecs mode deliberately differs from the collector's elasticsearchexporter (v0.145.0):
# it writes `error.stacktrace`, a field ECS does not have; ECS spells it `error.stack_trace`
# (a wildcard field with a `.text` multi-field), which Kibana and detection rules read.
ECS_DEVIATIONS: dict[str, str] = {"error.stacktrace": "error.stack_trace"}
# model.go ecsModeEncoder.encodeLog recordAttrsConversionMap (with ECS_DEVIATIONS applied)
_RECORD_ECS: dict[str, tuple[str | None, bool, bool]] = {
    "event.name": ("event.action", False, False),
    "exception.message": ("error.message", False, False),
    "exception.stacktrace": ("error.stack_trace", False, False),
    "exception.type": ("error.type", False, False),
    "exception.escaped": ("event.error.exception.handled", False, False),
    "http.response.body.size": ("http.response.encoded_body_size", False, False),
}
# otelserializer writeAttributes: Elastic-specific attributes handled elsewhere, not copied
_OTEL_EXCLUDED = frozenset({"data_stream.type", "data_stream.dataset", "data_stream.namespace",
                            "elasticsearch.mapping.hints", "elastic.mapping.mode", "elasticsearch.document_id",
                            "elasticsearch.ingest_pipeline", "elasticsearch.index"})
_DISALLOWED = re.compile(r"[\\/*?\"<>| ,#:\-]")


@dataclass(frozen=True)
class Index:
    """Where a document goes: a data stream (type, dataset, namespace) or an explicit index."""

    name: str
    type: str = ""
    dataset: str = ""
    namespace: str = ""

    @property
    def is_data_stream(self) -> bool:
        return bool(self.type)


@dataclass(frozen=True)
class MappedRecord:
    resource_logs: ResourceLogs
    scope_logs: ScopeLogs
    record: LogRecord
    index: Index
    doc_id: str
    document: dict[str, Any]


def any_value(value: AnyValue, bytes_as_hex: bool = True) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value, bytes_as_hex) for kv in value.kvlist_value.values}
    if kind == "array_value":
        return [any_value(v, bytes_as_hex) for v in value.array_value.values]
    if kind == "bytes_value":
        return value.bytes_value.hex() if bytes_as_hex else None
    return getattr(value, kind)


def attributes(kvs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        out.setdefault(kv.key, kv.value)  # duplicate keys: the first wins (otelserializer dedup)
    return out


def _sanitize(text: str, limit: int) -> str:
    return _DISALLOWED.sub("_", text.lower())[:limit] or "_"


def _first(key: str, *maps: dict[str, str | None]) -> str | None:
    for attrs in maps:
        value = attrs.get(key)
        if value:
            return value
    return None


def route(record_attrs: dict[str, str | None], scope_attrs: dict[str, str | None],
          resource_attrs: dict[str, str | None], mode: str, namespace: str = "default",
          by_class: bool = True) -> Index:
    """``elasticsearch.index`` wins, then ``data_stream.*`` (record > scope > resource), then the
    event class (``logs-<class>-<namespace>``, ``.otel`` dataset suffix in otel mode), else generic.
    The maps hold :func:`routing_attrs` (a key's first value, None unless a string)."""
    maps = (record_attrs, scope_attrs, resource_attrs)
    explicit = _first("elasticsearch.index", *maps)
    if explicit:
        return Index(explicit)
    dataset = _first("data_stream.dataset", *maps)
    if dataset is None:
        dataset = (_first("labels.event_class", record_attrs) if by_class else None) or "generic"
    dataset = _sanitize(dataset, 100)
    if mode == "otel" and not dataset.endswith(".otel"):
        dataset = f"{dataset}.otel"
    ns = _sanitize(_first("data_stream.namespace", *maps) or namespace, 100)
    return Index(f"logs-{dataset}-{ns}", "logs", dataset, ns)


def document_id(record: LogRecord, uid: str | None) -> str:
    """``log.record.uid`` (idempotent replays); else a hash of the record, stable across replays."""
    if uid:
        return uid
    return hashlib.sha256(record.SerializeToString(deterministic=True)).hexdigest()[:40]


# --- ecs mode ---------------------------------------------------------------------------------


def _timestamp(ns: int) -> str:
    """objmodel tsLayout ``2006-01-02T15:04:05.000000000Z``."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    stamp = dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z"


def _flat_add(fields: list[tuple[str, Any]], key: str, value: AnyValue) -> None:
    kind = value.WhichOneof("value")
    if kind is None:
        return
    if kind == "kvlist_value":
        for kv in value.kvlist_value.values:
            _flat_add(fields, f"{key}.{kv.key}" if key else kv.key, kv.value)
        return
    if kind == "bytes_value":
        return  # objmodel.ValueFromAttribute: bytes become nil and are dropped
    fields.append((key, any_value(value, bytes_as_hex=False)))


def _ecs_attrs(fields: list[tuple[str, Any]], kvs: Any, conversions: dict[str, tuple[str | None, bool, bool]]) -> None:
    present = {kv.key for kv in kvs}
    for kv in kvs:
        conversion = conversions.get(kv.key)
        if conversion is None:
            _flat_add(fields, kv.key, kv.value)
            continue
        target, preserve, skip_if_exists = conversion
        if target is None:
            continue
        if not skip_if_exists or target not in present:
            _flat_add(fields, target, kv.value)
        if preserve:
            _flat_add(fields, kv.key, kv.value)


def _is_empty(value: Any) -> bool:
    return value is None or (type(value) in (list, dict) and not value)


_PARTS: dict[str, list[str]] = {}


def _parts(key: str) -> list[str]:
    """``key.split(".")``, memoised: the same few dozen keys recur on every record."""
    parts = _PARTS.get(key)
    if parts is None:
        parts = key.split(".")
        if len(_PARTS) < 65536:
            _PARTS[key] = parts
    return parts


def _dedup(fields: list[tuple[str, Any]]) -> dict[str, Any]:
    """objmodel.Document.Dedup: stable sort by key; ``a`` becomes ``a.value`` when ``a.b`` exists;
    for duplicate keys the last added wins."""
    ordered = sorted(fields, key=lambda f: f[0])
    keys = [k for k, _ in ordered]
    renamed = False
    for i in range(len(keys) - 1):
        if keys[i + 1].startswith(keys[i] + "."):
            keys[i] = keys[i] + ".value"
            renamed = True
    pairs = list(zip(keys, (v for _, v in ordered), strict=True))
    if renamed:
        pairs.sort(key=lambda f: f[0])
    deduped: dict[str, Any] = {}
    for key, value in pairs:
        if not _is_empty(value):
            deduped[key] = value
    return deduped


def _nest_fast(fields: list[tuple[str, Any]]) -> dict[str, Any] | None:
    """Dedup + dedot in one pass (the last value of a key wins); None when a key is both a value
    and a parent of other keys, for which the collector's renaming rules apply (:func:`_dedup`)."""
    root: dict[str, Any] = {}
    leaves: set[int] = set()  # ids of dicts that are values, not parents
    for key, value in fields:
        if value is None or (type(value) in (list, dict) and not value):
            continue
        node = root
        parts = _parts(key)
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict) or id(child) in leaves:
                return None
            node = child
        last = parts[-1]
        existing = node.get(last)
        if isinstance(existing, dict) and id(existing) not in leaves:
            return None
        node[last] = value
        if isinstance(value, dict):
            leaves.add(id(value))
    return root


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """Dedot: ``{"a.b": 1}`` -> ``{"a": {"b": 1}}`` (objmodel Serialize with dedot=true)."""
    root: dict[str, Any] = {}
    for key, value in flat.items():
        node = root
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return root


def _resource_fields(resource_logs: ResourceLogs) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """The resource's converted attributes, and the agent/host fields derived from it (once per resource)."""
    fields: list[tuple[str, Any]] = []
    resource = resource_logs.resource.attributes
    _ecs_attrs(fields, resource, _RESOURCE_ECS)
    return fields, _agent_fields(attributes(resource))


def ecs_field_list(resource_logs: ResourceLogs, scope_logs: ScopeLogs, record: LogRecord, index: Index,
                   cached: tuple[list[tuple[str, Any]], list[tuple[str, Any]], list[tuple[str, Any]]] | None = None
                   ) -> list[tuple[str, Any]]:
    """The ECS fields of one record, in the collector's insertion order."""
    if cached is None:
        res_fields, agent_fields = _resource_fields(resource_logs)
        scope_fields: list[tuple[str, Any]] = []
        for kv in scope_logs.scope.attributes:
            _flat_add(scope_fields, kv.key, kv.value)
    else:
        res_fields, agent_fields, scope_fields = cached
    fields = [*res_fields, *scope_fields]
    _ecs_attrs(fields, record.attributes, _RECORD_ECS)
    if index.is_data_stream:
        fields += [("data_stream.type", index.type), ("data_stream.dataset", index.dataset),
                   ("data_stream.namespace", index.namespace)]
    fields += agent_fields
    fields.append(("@timestamp", _timestamp(record.time_unix_nano or record.observed_time_unix_nano)))
    if record.trace_id and any(record.trace_id):
        fields.append(("trace.id", record.trace_id.hex()))
    if record.span_id and any(record.span_id):
        fields.append(("span.id", record.span_id.hex()))
    if record.severity_number:
        fields.append(("event.severity", int(record.severity_number)))
    if record.severity_text:
        fields.append(("log.level", record.severity_text))
    if record.body.WhichOneof("value") == "string_value":
        fields.append(("message", record.body.string_value))
    return fields


def ecs_document(resource_logs: ResourceLogs, scope_logs: ScopeLogs, record: LogRecord, index: Index,
                 cached: Any = None) -> dict[str, Any]:
    """The nested ECS document, as the collector serializes it (dedup, then dedot)."""
    fields = ecs_field_list(resource_logs, scope_logs, record, index, cached)
    fast = _nest_fast(fields)
    return fast if fast is not None else nest(_dedup(fields))


def _agent_fields(res: dict[str, AnyValue]) -> list[tuple[str, Any]]:
    fields: list[tuple[str, Any]] = []

    def res_str(key: str) -> str | None:
        value = res.get(key)
        return str(value.string_value) if value is not None and value.WhichOneof("value") == "string_value" else None

    sdk_name, sdk_lang, distro = res_str("telemetry.sdk.name") or "otlp", res_str("telemetry.sdk.language"), \
        res_str("telemetry.distro.name")
    if distro:
        agent = f"{sdk_name}/{sdk_lang or 'unknown'}/{distro}"
    elif sdk_lang:
        agent = f"{sdk_name}/{sdk_lang}"
    else:
        agent = sdk_name
    fields.append(("agent.name", agent))
    version = res_str("telemetry.distro.version") or res_str("telemetry.sdk.version")
    if version:
        fields.append(("agent.version", version))
    os_type = {"windows": "windows", "linux": "linux", "darwin": "macos", "aix": "unix", "hpux": "unix",
               "solaris": "unix"}.get(res_str("os.type") or "")
    os_type = {"Android": "android", "iOS": "ios"}.get(res_str("os.name") or "", os_type)
    if os_type:
        fields.append(("host.os.type", os_type))
    return fields


# --- otel mode --------------------------------------------------------------------------------


def _otel_timestamp(ns: int) -> str:
    """otelserializer writeTimestampField: milliseconds '.' remaining nanoseconds."""
    ms, rest = divmod(ns, 1_000_000)
    return f"{ms}.{rest}"


def _otel_attributes(kvs: Any) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    geo: dict[str, dict[str, float]] = {}
    for kv in kvs:
        if kv.key in out or kv.key in _OTEL_EXCLUDED:
            continue
        if kv.value.WhichOneof("value") == "double_value" and kv.key.endswith(("geo.location.lat", "geo.location.lon")):
            prefix, axis = kv.key[: -len("geo.location.lat")], kv.key[-3:]
            if prefix == "" or prefix.endswith("."):
                geo.setdefault(prefix, {})[axis] = kv.value.double_value
                continue
        out[kv.key] = any_value(kv.value)
    for prefix, point in geo.items():  # otelserializer writeGeolocationAttributes: [lon, lat]
        if "lat" in point and "lon" in point:
            out[f"{prefix}geo.location"] = [point["lon"], point["lat"]]
        else:
            out.update({f"{prefix}geo.location.{axis}": v for axis, v in point.items()})
    return out or None


def _otel_object(attributes: Any, dropped_attributes_count: int, **named: str) -> dict[str, Any]:
    """otelserializer writeResource/writeScope: named fields, attributes, dropped count; empty ones skipped."""
    out: dict[str, Any] = {key: value for key, value in named.items() if value}
    attrs = _otel_attributes(attributes)
    if attrs:
        out["attributes"] = attrs
    if dropped_attributes_count:
        out["dropped_attributes_count"] = dropped_attributes_count
    return out


def otel_document(
    resource_logs: ResourceLogs, scope_logs: ScopeLogs, record: LogRecord, index: Index
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "@timestamp": _otel_timestamp(record.time_unix_nano or record.observed_time_unix_nano),
        "observed_timestamp": _otel_timestamp(record.observed_time_unix_nano),
    }
    if index.is_data_stream:
        doc["data_stream"] = {"type": index.type, "dataset": index.dataset, "namespace": index.namespace}
    if record.severity_text:
        doc["severity_text"] = record.severity_text
    if record.severity_number:
        doc["severity_number"] = int(record.severity_number)
    if record.trace_id and any(record.trace_id):
        doc["trace_id"] = record.trace_id.hex()
    if record.span_id and any(record.span_id):
        doc["span_id"] = record.span_id.hex()
    attrs = _otel_attributes(record.attributes)
    if attrs:
        doc["attributes"] = attrs
    if record.dropped_attributes_count:
        doc["dropped_attributes_count"] = record.dropped_attributes_count
    if record.event_name:
        doc["event_name"] = record.event_name
    else:  # the first event.name attribute, if it is a non-empty string (pcommon Value.Str())
        first = next((kv.value for kv in record.attributes if kv.key == "event.name"), None)
        if first is not None and first.WhichOneof("value") == "string_value" and first.string_value:
            doc["event_name"] = first.string_value
    resource = resource_logs.resource
    doc["resource"] = _otel_object(schema_url=resource_logs.schema_url, attributes=resource.attributes,
                                   dropped_attributes_count=resource.dropped_attributes_count)
    scope = scope_logs.scope
    doc["scope"] = _otel_object(schema_url=scope_logs.schema_url, name=scope.name, version=scope.version,
                                attributes=scope.attributes, dropped_attributes_count=scope.dropped_attributes_count)
    body = otel_body(record)
    if body is not None:
        doc["body"] = body
    return doc


def otel_body(record: LogRecord) -> dict[str, Any] | None:
    """otelserializer: ``body.text`` for scalars, ``body.structured`` for maps and arrays (an array
    that is not all maps goes under ``structured.value``)."""
    body_kind = record.body.WhichOneof("value")
    if body_kind is None:
        return None
    body = any_value(record.body)
    if body_kind == "kvlist_value":
        return {"structured": body}
    if body_kind == "array_value":
        all_maps = all(v.WhichOneof("value") == "kvlist_value" for v in record.body.array_value.values)
        return {"structured": body if all_maps else {"value": body}}
    return {"text": body}


# --- requests -> documents --------------------------------------------------------------------


_ROUTING_KEYS = frozenset({"elasticsearch.index", "data_stream.dataset", "data_stream.namespace", "labels.event_class",
                           "log.record.uid"})


def routing_attrs(kvs: Any) -> dict[str, str | None]:
    """Only the attributes routing and ids read: the first value of each key, None unless it is a
    string (cheaper than a dict of all of them)."""
    out: dict[str, str | None] = {}
    for kv in kvs:
        if kv.key in _ROUTING_KEYS and kv.key not in out:
            value = kv.value
            out[kv.key] = value.string_value if value.WhichOneof("value") == "string_value" else None
    return out


def iter_mapped(payload: bytes, mode: str, namespace: str = "default", by_class: bool = True) -> Iterator[MappedRecord]:
    request = ExportLogsServiceRequest.FromString(payload)
    for resource_logs in request.resource_logs:
        resource_attrs = routing_attrs(resource_logs.resource.attributes)
        res_cache = _resource_fields(resource_logs) if mode == "ecs" else None
        for scope_logs in resource_logs.scope_logs:
            scope_attrs = routing_attrs(scope_logs.scope.attributes)
            cached = None
            if res_cache is not None:
                scope_fields: list[tuple[str, Any]] = []
                for kv in scope_logs.scope.attributes:
                    _flat_add(scope_fields, kv.key, kv.value)
                cached = (res_cache[0], res_cache[1], scope_fields)
            for record in scope_logs.log_records:
                record_attrs = routing_attrs(record.attributes)
                index = route(record_attrs, scope_attrs, resource_attrs, mode, namespace, by_class)
                if mode == "ecs":
                    document = ecs_document(resource_logs, scope_logs, record, index, cached)
                else:
                    document = otel_document(resource_logs, scope_logs, record, index)
                doc_id = document_id(record, record_attrs.get("log.record.uid"))
                yield MappedRecord(resource_logs, scope_logs, record, index, doc_id, document)


def otlp_payload(records: Iterable[tuple[ResourceLogs, ScopeLogs, LogRecord]]) -> bytes:
    """A replayable OTLP request holding just ``records`` (resource, scope, record) — for the
    dead-letter store."""
    request = ExportLogsServiceRequest()
    for resource_logs, scope_logs, record in records:
        out_resource = request.resource_logs.add()
        out_resource.resource.CopyFrom(resource_logs.resource)
        out_resource.schema_url = resource_logs.schema_url
        out_scope = out_resource.scope_logs.add()
        out_scope.scope.CopyFrom(scope_logs.scope)
        out_scope.schema_url = scope_logs.schema_url
        out_scope.log_records.add().CopyFrom(record)
    return bytes(request.SerializeToString())


__all__ = ["MAPPING_MODES", "Index", "MappedRecord", "document_id", "ecs_document", "iter_mapped", "nest",
           "otel_document", "otlp_payload", "route"]
