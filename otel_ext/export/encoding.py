"""Turning an SDK batch into queue entries: assign ``log.record.uid`` where missing, split by drop
tier (so overflow can drop access before error before security), encode each part as an OTLP
``ExportLogsServiceRequest``.

The encoder writes protobuf bytes directly instead of building SDK/proto objects per attribute.
Its output decodes to the same message as the SDK's ``encode_logs`` (property-tested against it in
tests/test_encoding.py); it is about 3-4x cheaper because

- the ``KeyValue`` bytes of repeated string/int attribute values (the ``event.*``, ``labels.*`` and
  ``tags`` the classifier sets, HTTP methods, routes, status codes…) are cached per key, bounded;
- the resource and scope blocks are encoded once per object, not once per batch;
- each record is encoded on its own, which also gives per-record isolation:

Per-record isolation: a record that cannot be encoded as it is (a lone surrogate in its body or an
attribute, an integer beyond int64, a value of a type OTLP has no place for) is *repaired* —
lone surrogates become U+FFFD, out-of-range integers and foreign objects their ``str()`` — and
counted in ``ENCODE_COUNTERS`` (``repaired`` per class). Should a record still fail, it alone is
set aside and counted (``set_aside`` per class); its batch-mates are always encoded. (The SDK's
encoder instead fails the whole batch on a bad body, and drops a bad attribute with a log line.)
"""

from __future__ import annotations

import itertools
import os
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk._logs import ReadableLogRecord

from otel_ext._attrs import read_view, set_many
from otel_ext.queue.store import TIER_BY_CLASS, NewEntry
from otel_ext.telemetry import Counters, register_counters

UID_ATTR = "log.record.uid"
_CLASS_ATTR = "labels.event_class"

ENCODE_COUNTERS = register_counters(Counters("encoding"), {"repaired": ("event_class",),
                                                           "set_aside": ("event_class",)})
"""Records repaired to be encodable, and records set aside because they could not be, per class."""


class UidFactory:
    """Unique record ids: a random per-process prefix (renewed after fork) plus a counter."""

    def __init__(self) -> None:
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count(1)

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter):012x}"  # itertools.count is atomic under the GIL


new_uid = UidFactory()


# --- protobuf wire format ----------------------------------------------------------------------

_pack_q = struct.Struct("<Q").pack
_pack_d = struct.Struct("<d").pack
_pack_i = struct.Struct("<I").pack
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_SMALL_VARINT = [bytes([i]) for i in range(128)]


def _varint(n: int) -> bytes:
    if n < 128:
        return _SMALL_VARINT[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    n = len(payload)
    return tag + (_SMALL_VARINT[n] if n < 128 else _varint(n)) + payload


def _int64(n: int) -> bytes:
    if not _INT64_MIN <= n <= _INT64_MAX:
        raise ValueError(f"integer out of int64 range: {n}")
    return _varint(n if n >= 0 else n + (1 << 64))


def _any_value(value: Any) -> bytes:
    """AnyValue message bytes, with the SDK encoder's order of type checks."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(b"\x0a", value.encode("utf-8"))
    if isinstance(value, int):
        return b"\x18" + _int64(value)
    if isinstance(value, float):
        return b"\x21" + _pack_d(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join([_field(b"\x0a", _any_value(v)) for v in value]))
    if isinstance(value, Mapping):
        return _field(b"\x32", b"".join([_field(b"\x0a", _key_value(str(k), v)) for k, v in value.items()]))
    raise TypeError(f"invalid type {type(value).__name__} of an attribute or body value")


def _key_value(key: str, value: Any) -> bytes:
    value_field = _field(b"\x12", _any_value(value))
    return _field(b"\x0a", key.encode("utf-8")) + value_field if key else value_field


def encode_attributes(attributes: Mapping[str, Any] | None, tag: bytes = b"\x0a") -> bytes:
    if not attributes:
        return b""
    return b"".join([_field(tag, _key_value(k, v)) for k, v in attributes.items()])


class _AttributeCache:
    """Encoded ``attributes`` entries (tag 6 of LogRecord) per key and hashable value, bounded:
    at most ``max_keys`` keys, ``max_values`` values per key, values up to ``max_len`` characters.
    A key whose values never repeat just fills its slots once and then encodes directly."""

    def __init__(self, max_keys: int = 1024, max_values: int = 512, max_len: int = 256) -> None:
        self.max_keys, self.max_values, self.max_len = max_keys, max_values, max_len
        self._by_key: dict[str, dict[Any, bytes]] = {}

    def entry(self, key: str, value: Any) -> bytes:
        kind = type(value)
        if kind is str or kind is int or kind is tuple:
            per = self._by_key.get(key)
            if per is None:
                if len(self._by_key) >= self.max_keys:
                    return _field(b"\x32", _key_value(key, value))
                per = self._by_key[key] = {}
            cache_key = value if kind is str else (kind, value)  # 1 == True == 1.0: keep types apart
            try:
                found = per.get(cache_key)
            except TypeError:  # a tuple holding something unhashable
                return _field(b"\x32", _key_value(key, value))
            if found is not None:
                return found
            encoded = _str_entry(key, value) if kind is str else _field(b"\x32", _key_value(key, value))
            if len(per) < self.max_values and (kind is not str or len(value) <= self.max_len) and \
                    (kind is not tuple or len(encoded) <= self.max_len):
                per[cache_key] = encoded
            return encoded
        return _field(b"\x32", _key_value(key, value))


_CACHE = _AttributeCache()
_SEVERITY: dict[Any, bytes] = {}
_SEVERITY_TEXT: dict[str, bytes] = {}
_KEY_FIELDS: dict[str, bytes] = {}
# per key, the bytes in front of a short AnyValue payload, by payload length (see _entry_head)
_HEADS: dict[str, dict[int, bytes]] = {}


def _key_field(key: str) -> bytes:
    key_field = _KEY_FIELDS.get(key)
    if key_field is None:
        if len(_KEY_FIELDS) >= 1024:
            _KEY_FIELDS.clear()
            _HEADS.clear()
        key_field = _KEY_FIELDS[key] = _field(b"\x0a", key.encode("utf-8")) if key else b""
    return key_field


def _entry_head(key: str, size: int) -> bytes | None:
    """The bytes of an attributes entry (tag 6) up to its AnyValue payload of ``size`` bytes, when
    every length in it fits one byte (the common case); None otherwise. ``head + payload`` equals
    ``_field(b"\x32", _key_value(key, value))``."""
    heads = _HEADS.get(key)
    if heads is None:
        key_field = _key_field(key)
        heads = _HEADS[key] = {}
    else:
        head = heads.get(size)
        if head is not None:
            return head
        key_field = _key_field(key)
    total = len(key_field) + size + 2
    if size >= 128 or total >= 128:
        return None
    head = heads[size] = bytes((0x32, total)) + key_field + bytes((0x12, size))
    return head


def _str_entry(key: str, value: Any) -> bytes:
    """The attributes entry of a string value, built directly (the same bytes as
    ``_field(b"\x32", _key_value(key, value))``); for keys whose values do not repeat."""
    data: bytes = value.encode("utf-8")
    n = len(data)
    if n < 126:
        head = _entry_head(key, n + 2)
        if head is not None:
            return head + _SMALL_STR[n] + data
    return _field(b"\x32", _key_field(key) + _field(b"\x12", _field(b"\x0a", data)))


_SMALL_STR = [b"\x0a" + bytes((n,)) for n in range(128)]


def _float_entry(key: str, value: Any) -> bytes:
    """The attributes entry of a float (``double_value``), as ``_field(b"\x32", _key_value(key, value))``."""
    head = _entry_head(key, 9)
    if head is not None:
        return head + b"\x21" + _pack_d(value)
    return _field(b"\x32", _key_value(key, value))


def encode_log_record(item: ReadableLogRecord, cache: _AttributeCache = _CACHE) -> bytes:
    """One OTLP ``LogRecord`` message (fields in field-number order, as protobuf serializes them)."""
    rec = item.log_record
    out: list[bytes] = []
    if rec.timestamp:
        out.append(b"\x09" + _pack_q(rec.timestamp))
    severity = rec.severity_number
    if severity is not None:
        severity_field = _SEVERITY.get(severity)
        if severity_field is None:
            severity_field = _SEVERITY[severity] = b"\x10" + _varint(severity.value) if severity.value else b""
        if severity_field:
            out.append(severity_field)
    severity_text = rec.severity_text
    if severity_text:
        text_field = _SEVERITY_TEXT.get(severity_text) if severity_text.__class__ is str else None
        if text_field is None:
            text_field = _field(b"\x1a", severity_text.encode("utf-8"))
            if severity_text.__class__ is str and len(_SEVERITY_TEXT) < 64:
                _SEVERITY_TEXT[severity_text] = text_field
        out.append(text_field)
    body = rec.body
    if body.__class__ is str:  # the common body, inlined: the bytes of _field(b"\x2a", _any_value(body))
        data = body.encode("utf-8")
        n = len(data)
        out.append(b"\x2a" + _SMALL_VARINT[n + 2] + _SMALL_STR[n] + data if n < 126
                   else _field(b"\x2a", _field(b"\x0a", data)))
    else:
        out.append(_field(b"\x2a", _any_value(body)))
    attributes = rec.attributes
    if attributes:
        by_key = cache._by_key
        full = cache.max_values
        append = out.append
        for key, value in read_view(attributes).items():
            kind = type(value)
            # the common cases, inlined: one dict lookup per attribute
            if kind is str:
                per = by_key.get(key)
                if per is not None:
                    found = per.get(value)
                    if found is None and len(per) >= full:  # a key whose values do not repeat (ids, paths)
                        found = _str_entry(key, value)
                    if found is not None:
                        append(found)
                        continue
            elif kind is float:  # durations: rarely repeat, not cached
                append(_float_entry(key, value))
                continue
            elif kind is int or kind is tuple:  # status codes, durations; tags, event.category/type
                per = by_key.get(key)
                if per is not None:
                    try:
                        found = per.get((kind, value))
                    except TypeError:  # a tuple holding something unhashable
                        found = None
                    if found is not None:
                        append(found)
                        continue
            append(cache.entry(key, value))
    dropped = attributes.dropped if isinstance(attributes, BoundedAttributes) else 0
    if dropped:
        out.append(b"\x38" + _varint(dropped))
    flags = int(rec.trace_flags) if rec.trace_flags is not None else 0
    if flags:
        out.append(b"\x45" + _pack_i(flags))
    if rec.trace_id:
        out.append(b"\x4a\x10" + rec.trace_id.to_bytes(16, "big"))
    if rec.span_id:
        out.append(b"\x52\x08" + rec.span_id.to_bytes(8, "big"))
    if rec.observed_timestamp:
        out.append(b"\x59" + _pack_q(rec.observed_timestamp))
    if rec.event_name:
        out.append(_field(b"\x62", rec.event_name.encode("utf-8")))
    return b"".join(out)


# --- repair ------------------------------------------------------------------------------------

def _repair_str(text: str) -> str:
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def repair_value(value: Any) -> Any:
    """``value`` made encodable: lone surrogates -> U+FFFD, out-of-range ints and foreign objects ->
    their ``str()``, containers repaired item by item."""
    if value is None or value.__class__ in (bool, float, bytes):
        return value
    if isinstance(value, str):  # a subclass (a str-enum) becomes its plain string
        text = value if value.__class__ is str else str.__str__(value)
        try:
            text.encode("utf-8")
            return text
        except UnicodeEncodeError:
            return _repair_str(text)
    if isinstance(value, int):  # a subclass (an IntEnum, HTTPStatus) becomes its plain int
        number = int(value) if value.__class__ is not int else value
        return number if _INT64_MIN <= number <= _INT64_MAX else str(number)
    if isinstance(value, float):  # e.g. numpy.float64
        return float(value)
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, Sequence):
        return tuple(repair_value(v) for v in value)
    if isinstance(value, Mapping):
        return {repair_value(str(k)): repair_value(v) for k, v in value.items()}
    try:
        return repair_value(str(value))
    except Exception:  # noqa: BLE001 - a __str__ that raises
        return f"<unprintable {type(value).__name__}>"


def repair_record(item: ReadableLogRecord) -> None:
    """Make every part of ``item``'s record encodable, in place."""
    rec = item.log_record
    rec.body = repair_value(rec.body)
    if rec.severity_text is not None:
        rec.severity_text = repair_value(str(rec.severity_text))
    if rec.event_name is not None:
        rec.event_name = repair_value(str(rec.event_name))
    raw = read_view(rec.attributes)
    if raw:
        fixed = {repair_value(str(k)): repair_value(v) for k, v in raw.items()}
        raw.clear()
        raw.update(fixed)


# --- resource / scope blocks -------------------------------------------------------------------

class _Blocks:
    """Encoded Resource and InstrumentationScope messages, once per object (objects kept alive so
    their ``id`` is not reused while cached)."""

    def __init__(self, limit: int = 256) -> None:
        self.limit = limit
        self._resources: dict[int, tuple[Any, bytes, str]] = {}
        self._scopes: dict[int, tuple[Any, tuple[Any, ...], bytes, str]] = {}

    def resource(self, resource: Any) -> tuple[bytes, str]:
        found = self._resources.get(id(resource))
        if found is None or found[0] is not resource:
            if len(self._resources) >= self.limit:
                self._resources.clear()
            attrs = encode_attributes(resource.attributes) if resource is not None else b""
            schema = (resource.schema_url or "") if resource is not None else ""
            found = self._resources[id(resource)] = (resource, attrs, schema)
        return found[1], found[2]

    def scope(self, scope: Any) -> tuple[tuple[Any, ...], bytes, str]:
        """(grouping key as the SDK groups scopes, InstrumentationScope bytes, schema url)."""
        found = self._scopes.get(id(scope))
        if found is None or found[0] is not scope:
            if len(self._scopes) >= self.limit:
                self._scopes.clear()
            if scope is None:
                found = (None, (None,), b"", "")
            else:
                body = b""
                if scope.name:
                    body += _field(b"\x0a", scope.name.encode("utf-8"))
                if scope.version:
                    body += _field(b"\x12", scope.version.encode("utf-8"))
                body += encode_attributes(scope.attributes, b"\x1a")
                found = (scope, (scope.name, scope.version, scope.schema_url), body, scope.schema_url or "")
            self._scopes[id(scope)] = found
        return found[1], found[2], found[3]


_BLOCKS = _Blocks()


def encode_request(records: Sequence[tuple[ReadableLogRecord, bytes]], blocks: _Blocks = _BLOCKS) -> bytes:
    """An ``ExportLogsServiceRequest`` from already-encoded records, grouped by resource then scope
    in first-seen order (as the SDK encoder groups them)."""
    groups: dict[tuple[bytes, str], dict[tuple[Any, ...], tuple[bytes, str, list[bytes]]]] = {}
    # by (resource, scope) object ids: both stay alive (held by ``records``) for this call
    lists: dict[tuple[int, int], list[bytes]] = {}
    for item, encoded in records:
        resource, scope = item.resource, item.instrumentation_scope
        logs = lists.get((id(resource), id(scope)))
        if logs is None:
            resource_key = blocks.resource(resource)
            scope_key, scope_body, scope_schema = blocks.scope(scope)
            scopes = groups.get(resource_key)
            if scopes is None:
                scopes = groups[resource_key] = {}
            group = scopes.get(scope_key)
            if group is None:
                group = scopes[scope_key] = (scope_body, scope_schema, [])
            logs = lists[(id(resource), id(scope))] = group[2]
        logs.append(encoded)
    out: list[bytes] = []
    for (resource_attrs, resource_schema), scopes in groups.items():
        body = [_field(b"\x0a", resource_attrs)]
        for scope_body, scope_schema, logs in scopes.values():
            scope_logs = [_field(b"\x0a", scope_body)]
            scope_logs.extend([_field(b"\x12", log) for log in logs])
            if scope_schema:
                scope_logs.append(_field(b"\x1a", scope_schema.encode("utf-8")))
            body.append(_field(b"\x12", b"".join(scope_logs)))
        if resource_schema:
            body.append(_field(b"\x1a", resource_schema.encode("utf-8")))
        out.append(_field(b"\x0a", b"".join(body)))
    return b"".join(out)


def _class_of(attrs: Mapping[str, Any]) -> str:
    event_class = attrs.get(_CLASS_ATTR) if attrs else None
    return event_class if isinstance(event_class, str) and event_class in TIER_BY_CLASS else "application"


def encode_one(item: ReadableLogRecord, counters: Counters = ENCODE_COUNTERS) -> bytes | None:
    """The record's bytes; repaired (counted) if needed; None (counted) if it cannot be encoded."""
    try:
        return encode_log_record(item)
    except Exception:  # noqa: BLE001 - isolate this record from its batch-mates
        return _repair_and_encode(item, counters)


def _repair_and_encode(item: ReadableLogRecord, counters: Counters) -> bytes | None:
    """``item`` (whose encoding failed) repaired and encoded, counted; None (counted) if it cannot be."""
    event_class = "application"
    try:
        event_class = _class_of(read_view(item.log_record.attributes))
        repair_record(item)
        encoded = encode_log_record(item)
    except Exception:  # noqa: BLE001
        counters.add("set_aside", event_class)
        return None
    counters.add("repaired", event_class)
    return encoded


def encode_batch(batch: Sequence[ReadableLogRecord], counters: Counters = ENCODE_COUNTERS) -> list[NewEntry]:
    """Queue entries for ``batch``: one per drop tier present, uids assigned in place. A record that
    cannot be encoded is left out (counted in ``counters``); the others always are encoded."""
    groups: dict[int, list[tuple[ReadableLogRecord, bytes]]] = {}
    classes: dict[int, dict[str, int]] = {}
    tiers = TIER_BY_CLASS
    for item in batch:
        record = item.log_record
        attributes = record.attributes
        attrs = read_view(attributes)
        if UID_ATTR not in attrs:
            room = isinstance(attributes, BoundedAttributes) and (
                attributes.maxlen is None or len(attrs) < attributes.maxlen)
            if room:
                attrs[UID_ATTR] = new_uid()
            else:
                set_many(record, {UID_ATTR: new_uid()})
                attrs = read_view(record.attributes)
        try:  # encode_one, inlined
            encoded: bytes | None = encode_log_record(item)
        except Exception:  # noqa: BLE001 - isolate this record from its batch-mates
            encoded = _repair_and_encode(item, counters)
            if encoded is None:
                continue
        event_class = attrs.get(_CLASS_ATTR)  # _class_of, inlined
        if not isinstance(event_class, str) or event_class not in tiers:
            event_class = "application"
        tier = tiers[event_class]
        group = groups.get(tier)
        if group is None:
            group = groups[tier] = []
            per_class = classes[tier] = {}
        else:
            per_class = classes[tier]
        group.append((item, encoded))  # type: ignore[arg-type]
        per_class[event_class] = per_class.get(event_class, 0) + 1
    return [NewEntry(tier, len(items), classes[tier], encode_request(items)) for tier, items in sorted(groups.items())]
