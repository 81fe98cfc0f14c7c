"""OTLP/JSON (as the collector's file exporter writes it: camelCase, hex trace/span ids, int64 as
strings, enums as numbers) straight from ``ExportLogsServiceRequest`` protobuf bytes.

:func:`to_otlp_json` walks the wire format itself instead of building message objects and a
``MessageToDict`` tree: attribute ``KeyValue``s and bodies are looked up by their raw bytes in a
bounded cache of ready JSON fragments (most repeat: methods, routes, status codes, the classifier's
labels), so a typical record costs a few dictionary lookups. Anything it does not know (an unknown
field, a repeated singular field, bad UTF-8) falls back to :func:`to_otlp_json_reference`, the
``MessageToDict`` path, whose document it equals (property-tested in tests/test_encoding.py).
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_quote = json.encoder.encode_basestring  # the C string quoter behind _dumps for a str (ensure_ascii=False)


class _Fallback(Exception):
    """The fast path does not handle this payload; use the reference path."""


# --- reference: protobuf's generic JSON mapping ---------------------------------------------------

def _hex_ids(node: Any) -> None:
    """OTLP/JSON writes trace and span ids as hex, not base64 (protobuf JSON's default)."""
    if isinstance(node, dict):
        for key in ("traceId", "spanId"):
            value = node.get(key)
            if isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
        for value in node.values():
            _hex_ids(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids(item)


def to_otlp_json_reference(payload: bytes) -> str:
    request = ExportLogsServiceRequest.FromString(payload)
    doc = MessageToDict(request, use_integers_for_enums=True)
    _hex_ids(doc)
    return _dumps(doc)


# --- value fragments (from parsed KeyValue / AnyValue messages, cached by raw bytes) --------------

def _double(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _any_value(value: Any) -> dict[str, Any]:
    kind = value.WhichOneof("value")
    if kind is None:
        return {}
    if kind == "string_value":
        return {"stringValue": value.string_value}
    if kind == "int_value":
        return {"intValue": str(value.int_value)}
    if kind == "bool_value":
        return {"boolValue": value.bool_value}
    if kind == "double_value":
        return {"doubleValue": _double(value.double_value)}
    if kind == "bytes_value":
        return {"bytesValue": base64.b64encode(value.bytes_value).decode("ascii")}
    if kind == "array_value":
        items = [_any_value(v) for v in value.array_value.values]
        return {"arrayValue": {"values": items} if items else {}}
    if kind == "kvlist_value":
        pairs = [_key_value(kv) for kv in value.kvlist_value.values]
        return {"kvlistValue": {"values": pairs} if pairs else {}}
    raise _Fallback(kind)


def _key_value(kv: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if kv.key:
        out["key"] = kv.key
    if kv.HasField("value"):
        out["value"] = _any_value(kv.value)
    return out


def _simple_key_value(raw: bytes) -> str | None:
    """The common KeyValue shapes (non-empty key; string or int value) without a message object;
    None for anything else."""
    try:
        if raw[0] != 0x0A:
            return None
        n, i = _varint(raw, 1)
        if n == 0:  # an empty key is omitted in JSON: leave it to the general path
            return None
        key = raw[i:i + n].decode("utf-8")
        i += n
        if raw[i] != 0x12:
            return None
        n, i = _varint(raw, i + 1)
        if i + n != len(raw) or n == 0:
            return None
        tag = raw[i]
        if tag == 0x0A:
            m, j = _varint(raw, i + 1)
            if j + m != len(raw):
                return None
            value = '{"stringValue":' + _quote(raw[j:j + m].decode("utf-8")) + "}"
        elif tag == 0x18:
            number, j = _varint(raw, i + 1)
            if j != len(raw):
                return None
            value = f'{{"intValue":"{number - (1 << 64) if number >= 1 << 63 else number}"}}'
        else:
            return None
        return '{"key":' + _quote(key) + ',"value":' + value + "}"
    except (IndexError, UnicodeDecodeError, _Fallback):
        return None


class _Fragments:
    """JSON text of KeyValue / AnyValue messages by their raw bytes; bounded (cleared when full).
    A key whose values do not repeat (record uids, ids, paths) stops being cached after
    ``max_per_key`` values, so it does not keep flushing the repeating ones out."""

    def __init__(self, max_entries: int = 16384, max_len: int = 512, max_per_key: int = 1024) -> None:
        self.max_entries, self.max_len, self.max_per_key = max_entries, max_len, max_per_key
        self.kv: dict[bytes, str] = {}
        self.any: dict[bytes, str] = {}
        self._per_key: dict[bytes, int] = {}  # cached values per raw key field
        self._heads: dict[bytes, str] = {}  # '{"key":"…","value":{"stringValue":' per raw key field
        # the classifier's labels, a function of the rule that fired, arrive as one run of attributes
        # starting with labels.event_class: by the raw bytes of that first attribute, the runs seen
        # (their bytes and JSON), matched with one bytes comparison instead of one lookup per attribute
        self.runs: dict[bytes, list[tuple[bytes, str]]] = {}
        self._run_count = 0
        self.severities: dict[bytes, str] = {}  # severity number + text fields -> their JSON members

    def key_value(self, raw: bytes) -> str:
        found = self.kv.get(raw)
        if found is not None:
            return found
        key_end = 2 + raw[1] if len(raw) > 2 and raw[0] == 0x0A and raw[1] < 0x80 else 0
        found = self._short_string(raw, key_end) if key_end else None
        if found is None:
            found = _simple_key_value(raw) or _dumps(_key_value(KeyValue.FromString(raw)))
        if len(raw) <= self.max_len and not raw.startswith(_RUN_ANCHOR):  # anchors: attribute_run
            key_field = raw[:key_end]
            count = self._per_key.get(key_field, 0)
            if count < self.max_per_key:
                if len(self.kv) >= self.max_entries:
                    self.kv.clear()
                    self._per_key.clear()
                    count = 0
                self._per_key[key_field] = count + 1
                self.kv[raw] = found
        return found

    def _short_string(self, raw: bytes, key_end: int) -> str | None:
        """A KeyValue with a non-empty key and a short string value, by the bytes layout alone
        (``0a klen key 12 vlen+2 0a vlen value``); None for any other shape."""
        n = len(raw)
        if key_end == 2 or key_end + 4 > n or raw[key_end] != 0x12 or raw[key_end + 2] != 0x0A:
            return None
        size = raw[key_end + 3]
        if size >= 0x80 or raw[key_end + 1] != size + 2 or key_end + 4 + size != n:
            return None
        key_field = raw[:key_end]
        head = self._heads.get(key_field)
        try:
            if head is None:
                head = '{"key":' + _quote(raw[2:key_end].decode("utf-8")) + ',"value":{"stringValue":'
                if len(self._heads) >= 4096:
                    self._heads.clear()
                self._heads[key_field] = head
            return head + _quote(raw[key_end + 4:].decode("utf-8")) + "}}"
        except UnicodeDecodeError:
            return None

    def attribute_run(self, buf: bytes, i: int, j: int, end: int) -> tuple[str, int]:
        """The JSON of the attribute ``buf[i:j]`` (its KeyValue bytes) and where parsing goes on;
        from a classifier-label anchor, that of a whole run of attributes at once."""
        raw = buf[i:j]
        candidates = self.runs.get(raw)
        if candidates is not None:
            for k, (run, text) in enumerate(candidates):
                stop = i - 2 + len(run)
                if stop <= end and buf.startswith(run, i - 2):
                    if k:  # move to the front: the runs seen most are tried first
                        candidates.insert(0, candidates.pop(k))
                    return text, stop
        elif not raw.startswith(_RUN_ANCHOR):
            return self.key_value(raw), j
        return self._learn_run(buf, i - 2, end, raw)

    def _learn_run(self, buf: bytes, start: int, end: int, anchor: bytes) -> tuple[str, int]:
        """Walk the run of label attributes at ``start`` (each its own fragment); remember it."""
        texts: list[str] = []
        i = start
        while i < end and buf[i] == 0x32:
            n, k = _varint(buf, i + 1)
            if k + n > end:
                raise _Fallback("truncated")
            raw = buf[k:k + n]
            if texts and not raw.startswith(_RUN_KEYS):
                break
            texts.append(self.key_value(raw))
            i = k + n
        text = ",".join(texts)
        run = buf[start:i]
        if len(run) <= 1024:
            candidates = self.runs.get(anchor)
            if candidates is None:
                if self._run_count >= 4096:
                    self.runs.clear()
                    self._run_count = 0
                candidates = self.runs[anchor] = []
            if len(candidates) >= 64:  # full: the least recently matched run makes room
                candidates.pop()
                self._run_count -= 1
            candidates.insert(0, (run, text))
            self._run_count += 1
        return text, i

    def severity(self, raw: bytes) -> str:
        """The JSON members of a severity number field (one-byte varint) followed by a severity
        text field (``10 n 1a len text``); raises ``_Fallback`` on bad UTF-8."""
        parts = [f'"severityNumber":{raw[1]}'] if raw[1] else []
        if len(raw) > 4:
            parts.append('"severityText":' + _text(raw, (4, len(raw))))
        text = ",".join(parts)
        if len(self.severities) < 256:
            self.severities[raw] = text
        return text

    def any_value(self, raw: bytes) -> str:
        found = self.any.get(raw)
        if found is None:
            found = _dumps(_any_value(AnyValue.FromString(raw)))
            self._keep(self.any, raw, found)
        return found

    def _keep(self, cache: dict[bytes, str], raw: bytes, text: str) -> None:
        if len(raw) <= self.max_len:
            if len(cache) >= self.max_entries:
                cache.clear()
            cache[raw] = text


def _key_prefix(key: str) -> bytes:
    data = key.encode("utf-8")
    return b"\x0a" + bytes((len(data),)) + data


_RUN_ANCHOR = _key_prefix("labels.event_class")
_RUN_KEYS = tuple(_key_prefix(k) for k in ("labels.event_class", "tags", "event.kind", "event.category",
                                           "event.type", "event.outcome", "event.action"))
_FRAGMENTS = _Fragments()


# --- wire walking ---------------------------------------------------------------------------------

def _varint(buf: bytes, i: int) -> tuple[int, int]:
    b = buf[i]
    if b < 0x80:
        return b, i + 1
    result, shift = b & 0x7F, 7
    while True:
        i += 1
        b = buf[i]
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i + 1
        shift += 7
        if shift > 63:
            raise _Fallback("varint too long")


def _fields(buf: bytes, start: int, end: int) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) of one message; value: int, or (start, end) for LEN."""
    out: list[tuple[int, int, Any]] = []
    i = start
    append = out.append
    while i < end:
        key = buf[i]  # one-byte tags and lengths are the rule: no call for them
        if key < 0x80:
            i += 1
        else:
            key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 2:
            n = buf[i]
            if n < 0x80:
                i += 1
            else:
                n, i = _varint(buf, i)
            if i + n > end:
                raise _Fallback("truncated")
            append((number, 2, (i, i + n)))
            i += n
        elif wire == 0:
            value, i = _varint(buf, i)
            out.append((number, 0, value))
        elif wire == 1:
            out.append((number, 1, int.from_bytes(buf[i:i + 8], "little")))
            i += 8
        elif wire == 5:
            out.append((number, 5, int.from_bytes(buf[i:i + 4], "little")))
            i += 4
        else:
            raise _Fallback(f"wire type {wire}")
    if i != end:
        raise _Fallback("overrun")
    return out


def _text(buf: bytes, span: tuple[int, int]) -> str:
    try:
        return _quote(buf[span[0]:span[1]].decode("utf-8"))
    except UnicodeDecodeError:
        raise _Fallback("utf-8") from None


def _attributes(buf: bytes, spans: list[tuple[int, int]], fragments: _Fragments) -> str:
    kv = fragments.key_value
    return "[" + ",".join([kv(buf[s:e]) for s, e in spans]) + "]"


def _holder(buf: bytes, start: int, end: int, names: dict[int, str], fragments: _Fragments) -> str:
    """Resource / InstrumentationScope: string fields ``names``, attributes, dropped count."""
    parts: dict[int, str] = {}
    attrs: list[tuple[int, int]] = []
    attrs_no = 1 if not names else 3
    dropped_no = 2 if not names else 4
    for number, wire, value in _fields(buf, start, end):
        if number == attrs_no and wire == 2:
            attrs.append(value)
        elif number in names and wire == 2 and number not in parts:
            if value[1] > value[0]:
                parts[number] = f'"{names[number]}":{_text(buf, value)}'
        elif number == dropped_no and wire == 0 and number not in parts:
            if value:
                parts[number] = f'"droppedAttributesCount":{value}'
        else:
            raise _Fallback(f"field {number}")
    if attrs:
        parts[attrs_no] = f'"attributes":{_attributes(buf, attrs, fragments)}'
    return "{" + ",".join(parts[k] for k in sorted(parts)) + "}"


_SCOPE_NAMES = {1: "name", 2: "version"}


def _log_record(buf: bytes, i: int, end: int, fragments: _Fragments) -> str:
    """One LogRecord, parsed in a single pass (the hot loop: no per-field tuples)."""
    out: list[str] = []
    attrs: list[str] = []
    append_attr = attrs.append
    seen = 0
    key_value = fragments.key_value
    known = fragments.kv.get
    attribute_run = fragments.attribute_run
    severities = fragments.severities
    bodies = fragments.any.get
    while i < end:
        key = buf[i]
        if key == 0x32 and buf[i + 1] < 0x80:  # an attribute under 128 bytes: the bulk of a record
            j = i + 2 + buf[i + 1]
            found = known(buf[i + 2:j])  # j beyond end: the 'overrun' check below falls back
            if found is None:
                found, j = attribute_run(buf, i + 2, j, end)
            append_attr(found)
            i = j
            continue
        if key == 0x09 or key == 0x59:  # time_unix_nano / observed_time_unix_nano (fixed64): every record
            bit = 0x2 if key == 0x09 else 0x800
            if seen & bit:
                raise _Fallback("repeated singular field")
            seen |= bit
            j = i + 9
            if j > end:
                raise _Fallback("truncated")
            value = int.from_bytes(buf[i + 1:j], "little")
            if value:
                out.append(f'"timeUnixNano":"{value}"' if key == 0x09 else f'"observedTimeUnixNano":"{value}"')
            i = j
            continue
        if key == 0x10 and buf[i + 1] < 0x80 and buf[i + 2] == 0x1A and buf[i + 3] < 0x80:
            # severity number and text, as a logging handler's records carry them: one lookup
            if seen & 0xC:
                raise _Fallback("repeated singular field")
            seen |= 0xC
            j = i + 4 + buf[i + 3]
            if j > end:
                raise _Fallback("truncated")
            text = severities.get(buf[i:j])
            if text is None:
                text = fragments.severity(buf[i:j])
            if text:
                out.append(text)
            i = j
            continue
        if key == 0x2A and buf[i + 1] < 0x80:  # a short body
            if seen & 0x20:
                raise _Fallback("repeated singular field")
            seen |= 0x20
            j = i + 2 + buf[i + 1]
            if j > end:
                raise _Fallback("truncated")
            raw = buf[i + 2:j]
            text = bodies(raw)
            out.append('"body":' + (text if text is not None else fragments.any_value(raw)))
            i = j
            continue
        if key < 0x80:
            i += 1
        else:
            key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if number == 6 and wire == 2:  # a longer attribute
            n = buf[i]
            if n < 0x80:
                i += 1
            else:
                n, i = _varint(buf, i)
            if i + n > end:
                raise _Fallback("truncated")
            attrs.append(key_value(buf[i:i + n]))
            i += n
            continue
        bit = 1 << number
        if seen & bit:
            raise _Fallback("repeated singular field")
        seen |= bit
        if wire == 2:
            n = buf[i]
            if n < 0x80:
                i += 1
            else:
                n, i = _varint(buf, i)
            j = i + n
            if j > end:
                raise _Fallback("truncated")
            if number == 5:
                out.append('"body":' + fragments.any_value(buf[i:j]))
            elif number not in (3, 9, 10, 12):
                raise _Fallback(f"log record field {number}")
            elif n:
                if number == 3:
                    out.append('"severityText":' + _text(buf, (i, j)))
                elif number == 9:
                    out.append(f'"traceId":"{buf[i:j].hex()}"')
                elif number == 10:
                    out.append(f'"spanId":"{buf[i:j].hex()}"')
                else:
                    out.append('"eventName":' + _text(buf, (i, j)))
            i = j
        elif wire == 1 and (number == 1 or number == 11):
            if i + 8 > end:
                raise _Fallback("truncated")
            value = int.from_bytes(buf[i:i + 8], "little")
            i += 8
            if value:
                out.append(f'"timeUnixNano":"{value}"' if number == 1 else f'"observedTimeUnixNano":"{value}"')
        elif wire == 0 and (number == 2 or number == 7):
            value, i = _varint(buf, i)
            if value > (0x7FFFFFFF if number == 2 else 0xFFFFFFFF):
                raise _Fallback("out of range")
            if value:
                out.append(f'"severityNumber":{value}' if number == 2 else f'"droppedAttributesCount":{value}')
        elif wire == 5 and number == 8:
            if i + 4 > end:
                raise _Fallback("truncated")
            value = int.from_bytes(buf[i:i + 4], "little")
            i += 4
            if value:
                out.append(f'"flags":{value}')
        else:
            raise _Fallback(f"log record field {number}")
    if i != end:
        raise _Fallback("overrun")
    if attrs:
        out.append('"attributes":[' + ",".join(attrs) + "]")
    return "{" + ",".join(out) + "}"


def _scope_logs(buf: bytes, start: int, end: int, fragments: _Fragments, w: list[str]) -> None:
    """Append the JSON of one ScopeLogs to ``w`` (pieces: the document is joined once, at the end)."""
    scope = schema = None
    records: list[str] = []  # record texts with "," between them
    append = records.append
    i = start
    while i < end:
        if buf[i] == 0x12 and (buf[i + 1] < 0x80 or buf[i + 2] < 0x80 <= buf[i + 1]):
            # a log record (under 16 KiB): the bulk; no field tuple for it
            n = buf[i + 1]
            if n < 0x80:
                i += 2
            else:
                n = (n & 0x7F) | buf[i + 2] << 7
                i += 3
            j = i + n
            if j > end:
                raise _Fallback("truncated")
            if records:
                append(",")
            append(_log_record(buf, i, j, fragments))
            i = j
            continue
        number, wire, value, i = _one_field(buf, i, end)
        if number == 2 and wire == 2:
            if records:
                append(",")
            append(_log_record(buf, value[0], value[1], fragments))
        elif number == 1 and wire == 2 and scope is None:
            scope = _holder(buf, value[0], value[1], _SCOPE_NAMES, fragments)
        elif number == 3 and wire == 2 and schema is None:
            schema = _text(buf, value) if value[1] > value[0] else ""
        else:
            raise _Fallback(f"scope logs field {number}")
    if i != end:
        raise _Fallback("overrun")
    _members(w, "scope", scope, "logRecords", records, schema)


def _members(w: list[str], holder_name: str, holder: str | None, list_name: str, items: list[str],
             schema: str | None) -> None:
    """``{"<holder_name>":…,"<list_name>":[…],"schemaUrl":…}`` onto ``w``, absent members left out."""
    sep = "{"
    if holder is not None:
        w.append(f'{sep}"{holder_name}":{holder}')
        sep = ","
    if items:
        w.append(f'{sep}"{list_name}":[')
        w.extend(items)
        w.append("]")
        sep = ","
    if schema:
        w.append(f'{sep}"schemaUrl":{schema}')
        sep = ","
    w.append("{}" if sep == "{" else "}")


def _one_field(buf: bytes, i: int, end: int) -> tuple[int, int, Any, int]:
    """The field at ``i`` as in :func:`_fields`, and where the next one starts."""
    key, i = _varint(buf, i)
    number, wire = key >> 3, key & 7
    if wire == 2:
        n, i = _varint(buf, i)
        if i + n > end:
            raise _Fallback("truncated")
        return number, 2, (i, i + n), i + n
    if wire == 0:
        value, i = _varint(buf, i)
        return number, 0, value, i
    if wire == 1 and i + 8 <= end:
        return number, 1, int.from_bytes(buf[i:i + 8], "little"), i + 8
    if wire == 5 and i + 4 <= end:
        return number, 5, int.from_bytes(buf[i:i + 4], "little"), i + 4
    raise _Fallback(f"wire type {wire}")


def _resource_logs(buf: bytes, start: int, end: int, fragments: _Fragments, w: list[str]) -> None:
    """Append the JSON of one ResourceLogs to ``w``."""
    resource = schema = None
    scopes: list[str] = []  # pieces of the scope logs, with "," between them
    for number, wire, value in _fields(buf, start, end):
        if number == 2 and wire == 2:
            if scopes:
                scopes.append(",")
            _scope_logs(buf, value[0], value[1], fragments, scopes)
        elif number == 1 and wire == 2 and resource is None:
            resource = _holder(buf, value[0], value[1], {}, fragments)
        elif number == 3 and wire == 2 and schema is None:
            schema = _text(buf, value) if value[1] > value[0] else ""
        else:
            raise _Fallback(f"resource logs field {number}")
    _members(w, "resource", resource, "scopeLogs", scopes, schema)


def to_otlp_json_fast(payload: bytes, fragments: _Fragments = _FRAGMENTS) -> str:
    """The fast path alone: raises (``_Fallback`` or a decoding error) on what it does not handle."""
    w: list[str] = ['{"resourceLogs":[']
    for number, wire, value in _fields(payload, 0, len(payload)):
        if number != 1 or wire != 2:
            raise _Fallback(f"request field {number}")
        if len(w) > 1:
            w.append(",")
        _resource_logs(payload, value[0], value[1], fragments, w)
    if len(w) == 1:
        return "{}"
    w.append("]}")
    return "".join(w)


def to_otlp_json(payload: bytes, fragments: _Fragments = _FRAGMENTS) -> str:
    """One OTLP/JSON document (a line of the file backend) for an ``ExportLogsServiceRequest``."""
    try:
        return to_otlp_json_fast(payload, fragments)
    except Exception:  # noqa: BLE001 - anything unusual: the reference path decides (or raises)
        return to_otlp_json_reference(payload)
