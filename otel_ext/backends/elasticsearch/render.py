"""Bulk NDJSON for queued OTLP requests: for every log record, the ``create`` action line and the
document line, as :mod:`otel_ext.backends.elasticsearch.mapping` defines them, rendered without building the
document as a dict.

Records of one service look alike: the same attribute keys with the same value types, under the
same resource. For each such *shape* (resource + scope, attribute keys and value kinds, which
optional record fields are set) the document is built once on placeholder values, mirroring the
mapper, and compiled into a ``%``-template: the resource, agent and scope fields become pre-rendered
JSON and each record value a slot. A record then costs one pass over its attributes, one JSON
escape per value and one string format. Shapes a template cannot express (ecs: kvlist attributes,
an empty array; otel: geo points; a shape cache that is full) go through
:func:`es_mapping.ecs_document` / ``otel_document`` and ``json.dumps``. The output is the same either
way, byte for byte (``tests/test_es_render.py``: the golden corpus and generated records).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from json.encoder import encode_basestring  # the C escaper json.dumps(ensure_ascii=False) uses
from operator import itemgetter
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

from otel_ext.backends.elasticsearch import mapping as m

RecordRef = tuple[ResourceLogs, ScopeLogs, LogRecord]
_ESC: Callable[[str], str] = encode_basestring
# bounds of the template cache; beyond them records take the general path (same output, slower)
_MAX_SHAPES = 4096  # attribute shapes, over all resources
_MAX_RESOURCES = 64  # distinct resource + scope pairs (then the cache starts over)


_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  # json.dumps builds one per call
_dumps: Callable[[Any], str] = _JSON.encode


def _otel_timestamp(ns: int) -> str:
    """otelserializer writeTimestampField: milliseconds '.' remaining nanoseconds, as a JSON string."""
    ms, rest = divmod(ns, 1_000_000)
    return f'"{ms}.{rest}"'


def _double(value: float) -> str:
    return repr(value) if math.isfinite(value) else _dumps(value)


@dataclass(frozen=True)
class _Slot:
    """A placeholder in a compiled document: position ``index`` of the per-record value list."""

    index: int


# positions of the per-record values that are not attributes (attribute i is at _FIXED + i);
# _BODY is ``message`` in ecs mode and the whole ``body`` object in otel mode
(_INDEX, _ID, _TS, _TRACE, _SPAN, _SEV, _LEVEL, _BODY, _DS_TYPE, _DS_DATASET, _DS_NS, _OBSERVED, _DROPPED,
 _EVENT_NAME) = range(14)
_FIXED = 14


_ROUTE_KEYS = ("elasticsearch.index", "data_stream.dataset", "data_stream.namespace", "labels.event_class")
_GEO = ("geo.location.lat", "geo.location.lon")


_SCALARS: dict[str, Callable[[Any], str]] = {
    "int_value": str, "bool_value": lambda raw: "true" if raw else "false", "double_value": _double}


def _encode_ecs(kind: str, raw: Any) -> str | None:
    """JSON text of a non-string attribute value as the ecs document holds it ("" when the field
    is left out; None when only the general path can tell: an empty array)."""
    scalar = _SCALARS.get(kind)
    if scalar is not None:
        return scalar(raw)
    if kind == "array_value":
        items = [m.any_value(v, bytes_as_hex=False) for v in raw.values]
        return _dumps(items) if items else None
    return ""  # bytes (dropped) or kvlist (its shape is never compiled)


def _encode_otel(kind: str, raw: Any) -> str | None:
    """JSON text of a non-string attribute value in otel mode (values are kept as they are)."""
    scalar = _SCALARS.get(kind)
    if scalar is not None:
        return scalar(raw)
    if kind == "bytes_value":
        return f'"{raw.hex()}"'
    return _dumps([m.any_value(v) for v in raw.values] if kind == "array_value"
                  else {kv.key: m.any_value(kv.value) for kv in raw.values})


def _template(node: Any, out: list[str], order: list[int]) -> None:
    """Serialize ``node`` like json.dumps, writing ``%s`` for each slot (literal ``%`` doubled)."""
    if isinstance(node, _Slot):
        out.append("%s")
        order.append(node.index)
    elif isinstance(node, dict):
        out.append("{")
        for i, (key, value) in enumerate(node.items()):
            out.append(("," if i else "") + _dumps(key).replace("%", "%%") + ":")
            _template(value, out, order)
        out.append("}")
    else:
        out.append(_dumps(node).replace("%", "%%"))


@dataclass
class _Compiled:
    template: str
    pick: Callable[[list[str]], tuple[str, ...]]


def _compile(document: dict[str, Any]) -> _Compiled:
    out: list[str] = ['{"create":{"_index":%s,"_id":%s}}\n']
    order = [_INDEX, _ID]
    _template(document, out, order)
    out.append("\n")
    getter = itemgetter(*order)  # at least two slots: the action's
    return _Compiled("".join(out), getter)


@dataclass
class _Shape:
    """One attribute-key sequence (with value kinds): where its routing values are, and its
    compiled documents by optional-field flags."""

    keys: tuple[str, ...]
    kinds: tuple[str | None, ...]
    templatable: bool
    route_pick: Callable[[list[Any]], tuple[str | None, ...]]  # the _ROUTE_KEYS values of a record
    uid_at: int  # position of log.record.uid, -1 when absent or not a string
    event_name_at: int  # position of the first event.name if it is a string, else -1 (otel mode)
    compiled: dict[tuple[bool, ...], _Compiled] = field(default_factory=dict)


@dataclass
class _ResourcePlan:
    resource_fields: list[tuple[str, Any]]
    agent_fields: list[tuple[str, Any]]
    scope_fields: list[tuple[str, Any]]
    resource_attrs: dict[str, str | None]
    scope_attrs: dict[str, str | None]
    otel_resource: dict[str, Any]
    otel_scope: dict[str, Any]
    shapes: dict[tuple[str | None, ...], _Shape] = field(default_factory=dict)
    indices: dict[tuple[str | None, ...], tuple[m.Index, str]] = field(default_factory=dict)


class BulkRenderer:
    """Renders ``(record, NDJSON lines)`` pairs for an OTLP logs request (one renderer per backend)."""

    def __init__(self, mode: str = "ecs", namespace: str = "default", by_class: bool = True) -> None:
        if mode not in m.MAPPING_MODES:
            raise ValueError(f"mapping must be one of {m.MAPPING_MODES}, got {mode!r}")
        self.mode, self.namespace, self.by_class = mode, namespace, by_class
        self._plans: dict[bytes, _ResourcePlan] = {}
        self._shapes = 0  # cached shapes over all plans
        self._stamp = (-1, "")  # (epoch second, its rendering): one tuple, swapped whole (thread-safe)
        self.compiled_records = 0  # rendered from a template (the rest took the general path)
        self.general_records = 0

    # --- general path (any record, any mode) -------------------------------------------------

    def _general(self, ref: RecordRef, index: m.Index, doc_id: str) -> str:
        self.general_records += 1
        resource_logs, scope_logs, record = ref
        if self.mode == "ecs":
            document = m.ecs_document(resource_logs, scope_logs, record, index)
        else:
            document = m.otel_document(resource_logs, scope_logs, record, index)
        action = {"create": {"_index": index.name, "_id": doc_id}}
        return _dumps(action) + "\n" + _dumps(document) + "\n"

    def render(self, payload: bytes) -> Iterator[tuple[RecordRef, str]]:
        request = ExportLogsServiceRequest.FromString(payload)
        for resource_logs in request.resource_logs:
            for scope_logs in resource_logs.scope_logs:
                plan = self._plan(resource_logs, scope_logs)
                for record in scope_logs.log_records:
                    yield (resource_logs, scope_logs, record), self._record(plan, resource_logs, scope_logs, record)

    # --- compiled path ----------------------------------------------------------------------

    def _plan(self, resource_logs: ResourceLogs, scope_logs: ScopeLogs) -> _ResourcePlan:
        key = b"\x00".join((resource_logs.resource.SerializeToString(), scope_logs.scope.SerializeToString(),
                            resource_logs.schema_url.encode(), scope_logs.schema_url.encode()))
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= _MAX_RESOURCES:
                self._plans.clear()
                self._shapes = 0
            res_fields, agent_fields = m._resource_fields(resource_logs)
            scope_fields: list[tuple[str, Any]] = []
            for kv in scope_logs.scope.attributes:
                m._flat_add(scope_fields, kv.key, kv.value)
            resource, scope = resource_logs.resource, scope_logs.scope
            plan = self._plans[key] = _ResourcePlan(
                res_fields, agent_fields, scope_fields, m.routing_attrs(resource.attributes),
                m.routing_attrs(scope.attributes),
                m._otel_object(schema_url=resource_logs.schema_url, attributes=resource.attributes,
                               dropped_attributes_count=resource.dropped_attributes_count),
                m._otel_object(schema_url=scope_logs.schema_url, name=scope.name, version=scope.version,
                               attributes=scope.attributes, dropped_attributes_count=scope.dropped_attributes_count))
        return plan

    def _timestamp(self, ns: int) -> str:
        seconds, nanos = divmod(ns, 1_000_000_000)
        stamp = self._stamp
        if stamp[0] != seconds:
            stamp = self._stamp = (seconds, dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc)
                                   .strftime('"%Y-%m-%dT%H:%M:%S'))
        return f"{stamp[1]}.{nanos:09d}Z\""

    def _new_shape(self, keys: tuple[str, ...], kinds: tuple[str | None, ...]) -> _Shape:
        first: dict[str, int] = {}
        for i, (key, kind) in enumerate(zip(keys, kinds, strict=True)):
            if (key in m._ROUTING_KEYS or key == "event.name") and key not in first:
                first[key] = i if kind == "string_value" else -1  # routing reads the first, if a string
        if self.mode == "ecs":
            templatable = "kvlist_value" not in kinds  # flattened into keys that depend on the value
        else:
            templatable = not any(key.endswith(_GEO) for key in keys)  # geo points are merged
        # -1 picks the None appended to the raw values of every record
        return _Shape(keys, kinds, templatable, itemgetter(*(first.get(k, -1) for k in _ROUTE_KEYS)),
                      first.get("log.record.uid", -1), first.get("event.name", -1))

    def _index(self, plan: _ResourcePlan, values: tuple[str | None, ...]) -> tuple[m.Index, str]:
        cached = plan.indices.get(values)
        if cached is None:
            index = m.route(dict(zip(_ROUTE_KEYS, values, strict=True)), plan.scope_attrs, plan.resource_attrs,
                            self.mode, self.namespace, self.by_class)
            cached = (index, _ESC(index.name))
            if len(plan.indices) < 4096:
                plan.indices[values] = cached
        return cached

    def _record(self, plan: _ResourcePlan, resource_logs: ResourceLogs, scope_logs: ScopeLogs,
                record: LogRecord) -> str:
        ecs = self.mode == "ecs"
        encode = _encode_ecs if ecs else _encode_otel
        null = "" if ecs else "null"
        keys: list[str] = []
        kinds: list[str | None] = []
        raws: list[Any] = []
        encoded: list[str | None] = []  # JSON text of each value; None: cannot be compiled
        for kv in record.attributes:
            value = kv.value
            kind = value.WhichOneof("value")
            keys.append(kv.key)
            kinds.append(kind)
            if kind == "string_value":
                raw = value.string_value
                raws.append(raw)
                encoded.append(_ESC(raw))
            elif kind is None:
                raws.append(None)
                encoded.append(null)
            else:
                raw = getattr(value, kind)
                raws.append(raw)
                encoded.append(encode(kind, raw))
        raws.append(None)
        sig = (*keys, *kinds)
        shape = plan.shapes.get(sig)
        cached_shape = shape is not None
        if shape is None:
            shape = self._new_shape(tuple(keys), tuple(kinds))
            if self._shapes < _MAX_SHAPES:
                plan.shapes[sig] = shape
                self._shapes += 1
                cached_shape = True
        index, index_json = self._index(plan, shape.route_pick(raws))
        doc_id = m.document_id(record, raws[shape.uid_at])
        if not (shape.templatable and cached_shape) or None in encoded:
            return self._general((resource_logs, scope_logs, record), index, doc_id)

        trace, span = record.trace_id, record.span_id
        has_trace, has_span = bool(trace) and any(trace), bool(span) and any(span)
        sev, level = record.severity_number, record.severity_text
        is_data_stream = index.is_data_stream
        values: list[Any]
        if ecs:
            has_body = record.body.WhichOneof("value") == "string_value"
            flags: tuple[bool, ...] = (has_trace, has_span, bool(sev), bool(level), has_body, is_data_stream)
            values = [index_json, _ESC(doc_id),
                      self._timestamp(record.time_unix_nano or record.observed_time_unix_nano),
                      f'"{trace.hex()}"' if has_trace else "", f'"{span.hex()}"' if has_span else "",
                      sev, _ESC(level) if level else "", _ESC(record.body.string_value) if has_body else "",
                      *((_ESC(index.type), _ESC(index.dataset), _ESC(index.namespace)) if is_data_stream
                        else ("", "", "")), "", "", ""]
        else:
            body_kind = record.body.WhichOneof("value")
            if body_kind == "string_value":
                body = '{"text":' + _ESC(record.body.string_value) + "}"
            else:
                body = _dumps(m.otel_body(record)) if body_kind is not None else ""
            event_name = record.event_name or raws[shape.event_name_at]
            dropped = record.dropped_attributes_count
            observed = record.observed_time_unix_nano
            flags = (has_trace, has_span, bool(sev), bool(level), bool(body), is_data_stream, bool(dropped),
                     bool(event_name))
            values = [index_json, _ESC(doc_id), _otel_timestamp(record.time_unix_nano or observed),
                      f'"{trace.hex()}"' if has_trace else "", f'"{span.hex()}"' if has_span else "",
                      sev, _ESC(level) if level else "", body,
                      *((_ESC(index.type), _ESC(index.dataset), _ESC(index.namespace)) if is_data_stream
                        else ("", "", "")),
                      _otel_timestamp(observed), dropped, _ESC(event_name) if event_name else ""]
        values += encoded
        compiled = shape.compiled.get(flags)
        if compiled is None:
            compiled = shape.compiled[flags] = (self._compile_ecs(plan, shape, flags) if ecs
                                                else self._compile_otel(plan, shape, flags))
        self.compiled_records += 1
        text: str = compiled.template % compiled.pick(values)
        return text

    @staticmethod
    def _compile_ecs(plan: _ResourcePlan, shape: _Shape, flags: tuple[bool, ...]) -> _Compiled:
        """The ecs mapper's field list with a slot for every per-record value, nested and compiled
        (mirrors :func:`es_mapping.ecs_field_list`)."""
        has_trace, has_span, has_sev, has_level, has_message, is_data_stream = flags
        fields: list[tuple[str, Any]] = [*plan.resource_fields, *plan.scope_fields]
        present = set(shape.keys)
        for i, (key, kind) in enumerate(zip(shape.keys, shape.kinds, strict=True)):
            if kind is None or kind == "bytes_value":
                continue  # _flat_add drops them
            conversion = m._RECORD_ECS.get(key)
            if conversion is None:
                fields.append((key, _Slot(_FIXED + i)))
                continue
            target, preserve, skip_if_exists = conversion
            if target is None:
                continue
            if not skip_if_exists or target not in present:
                fields.append((target, _Slot(_FIXED + i)))
            if preserve:
                fields.append((key, _Slot(_FIXED + i)))
        if is_data_stream:
            fields += [("data_stream.type", _Slot(_DS_TYPE)), ("data_stream.dataset", _Slot(_DS_DATASET)),
                       ("data_stream.namespace", _Slot(_DS_NS))]
        fields += plan.agent_fields
        fields.append(("@timestamp", _Slot(_TS)))
        if has_trace:
            fields.append(("trace.id", _Slot(_TRACE)))
        if has_span:
            fields.append(("span.id", _Slot(_SPAN)))
        if has_sev:
            fields.append(("event.severity", _Slot(_SEV)))
        if has_level:
            fields.append(("log.level", _Slot(_LEVEL)))
        if has_message:
            fields.append(("message", _Slot(_BODY)))
        fast = m._nest_fast(fields)
        document = fast if fast is not None else m.nest(m._dedup(fields))
        return _compile(document)

    @staticmethod
    def _compile_otel(plan: _ResourcePlan, shape: _Shape, flags: tuple[bool, ...]) -> _Compiled:
        """The otel document with a slot for every per-record value (mirrors
        :func:`es_mapping.otel_document`: same keys, same order)."""
        has_trace, has_span, has_sev, has_level, has_body, is_data_stream, has_dropped, has_event_name = flags
        doc: dict[str, Any] = {"@timestamp": _Slot(_TS), "observed_timestamp": _Slot(_OBSERVED)}
        if is_data_stream:
            doc["data_stream"] = {"type": _Slot(_DS_TYPE), "dataset": _Slot(_DS_DATASET),
                                  "namespace": _Slot(_DS_NS)}
        if has_level:
            doc["severity_text"] = _Slot(_LEVEL)
        if has_sev:
            doc["severity_number"] = _Slot(_SEV)
        if has_trace:
            doc["trace_id"] = _Slot(_TRACE)
        if has_span:
            doc["span_id"] = _Slot(_SPAN)
        attributes: dict[str, Any] = {}
        for i, key in enumerate(shape.keys):  # the first of duplicate keys wins
            if key not in attributes and key not in m._OTEL_EXCLUDED:
                attributes[key] = _Slot(_FIXED + i)
        if attributes:
            doc["attributes"] = attributes
        if has_dropped:
            doc["dropped_attributes_count"] = _Slot(_DROPPED)
        if has_event_name:
            doc["event_name"] = _Slot(_EVENT_NAME)
        doc["resource"] = plan.otel_resource
        doc["scope"] = plan.otel_scope
        if has_body:
            doc["body"] = _Slot(_BODY)
        return _compile(doc)


__all__ = ["BulkRenderer", "RecordRef"]
