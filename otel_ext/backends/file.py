"""File backend (``file:///dir``): OTLP/JSON lines, one ExportLogsServiceRequest per line — the
format of the collector's file exporter and otlpjsonfile receiver — with size-based rotation.
The embedded default when no backend is configured.

Files are created 0600 in a 0700 directory. A line is acknowledged once written and flushed
(and fsync'd when ``fsync=True``). Rotated files are kept (``max_files=0``, the default) or the
oldest beyond ``max_files`` are removed and counted.
"""

from __future__ import annotations

import base64
import json
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from otel_ext.backends.base import Backend
from otel_ext.backends.outcome import Outcome

ACTIVE_NAME = "logs.jsonl"


@dataclass(frozen=True)
class FileConfig:
    directory: str
    max_bytes: int = 64 * 1024 * 1024
    max_files: int = 0  # rotated files kept; 0 = keep all
    fsync: bool = False
    name: str = ""


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
    """OTLP/JSON through protobuf's generic ``MessageToDict`` (the reference the fast path is tested
    against, and the fallback for messages it does not know)."""
    request = ExportLogsServiceRequest.FromString(payload)
    doc = MessageToDict(request, use_integers_for_enums=True)
    _hex_ids(doc)
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


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
    raise _Unknown(kind)


def _key_value(kv: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if kv.key:
        out["key"] = kv.key
    if kv.HasField("value"):
        out["value"] = _any_value(kv.value)
    return out


class _Unknown(Exception):
    """A field the fast path does not know: use the reference path."""


def _log_record(r: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if r.time_unix_nano:
        out["timeUnixNano"] = str(r.time_unix_nano)
    if r.severity_number:
        out["severityNumber"] = r.severity_number
    if r.severity_text:
        out["severityText"] = r.severity_text
    if r.HasField("body"):
        out["body"] = _any_value(r.body)
    if r.attributes:
        out["attributes"] = [_key_value(kv) for kv in r.attributes]
    if r.dropped_attributes_count:
        out["droppedAttributesCount"] = r.dropped_attributes_count
    if r.flags:
        out["flags"] = r.flags
    if r.trace_id:
        out["traceId"] = r.trace_id.hex()
    if r.span_id:
        out["spanId"] = r.span_id.hex()
    if r.observed_time_unix_nano:
        out["observedTimeUnixNano"] = str(r.observed_time_unix_nano)
    if r.event_name:
        out["eventName"] = r.event_name
    return out


def _attributes_holder(message: Any, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in extra:
        value = getattr(message, name)
        if value:
            out[name] = value
    if message.attributes:
        out["attributes"] = [_key_value(kv) for kv in message.attributes]
    if message.dropped_attributes_count:
        out["droppedAttributesCount"] = message.dropped_attributes_count
    return out


def _fast_doc(request: Any) -> dict[str, Any]:
    resource_logs = []
    for rl in request.resource_logs:
        rl_out: dict[str, Any] = {}
        if rl.HasField("resource"):
            if len(rl.resource.ListFields()) > (1 if rl.resource.attributes else 0) + (
                    1 if rl.resource.dropped_attributes_count else 0):
                raise _Unknown("resource")
            rl_out["resource"] = _attributes_holder(rl.resource)
        scope_logs = []
        for sl in rl.scope_logs:
            sl_out: dict[str, Any] = {}
            if sl.HasField("scope"):
                sl_out["scope"] = _attributes_holder(sl.scope, ("name", "version"))
            if sl.log_records:
                sl_out["logRecords"] = [_log_record(r) for r in sl.log_records]
            if sl.schema_url:
                sl_out["schemaUrl"] = sl.schema_url
            scope_logs.append(sl_out)
        if scope_logs:
            rl_out["scopeLogs"] = scope_logs
        if rl.schema_url:
            rl_out["schemaUrl"] = rl.schema_url
        resource_logs.append(rl_out)
    return {"resourceLogs": resource_logs} if resource_logs else {}


def to_otlp_json(payload: bytes) -> str:
    """One OTLP/JSON line for an ``ExportLogsServiceRequest`` (hex ids, int64 as strings, enums as
    numbers): the same document as :func:`to_otlp_json_reference`, ~3x cheaper (property-tested)."""
    request = ExportLogsServiceRequest.FromString(payload)
    try:
        doc = _fast_doc(request)
    except _Unknown:
        return to_otlp_json_reference(payload)
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def ensure_private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)


class FileBackend(Backend):
    """Appends OTLP/JSON lines to ``<directory>/logs.jsonl``, rotating by size."""

    def __init__(self, config: FileConfig) -> None:
        self.config = config
        self.directory = Path(config.directory)
        self.name = config.name or f"file://{self.directory}"
        self._lock = threading.Lock()
        self.removed_files = 0

    def _open(self) -> int:
        ensure_private_dir(self.directory)
        return os.open(self.directory / ACTIVE_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def _rotate(self) -> None:
        active = self.directory / ACTIVE_NAME
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        target = self.directory / f"logs-{stamp}-{time.time_ns() % 1_000_000_000:09d}.jsonl"
        os.replace(active, target)
        if self.config.max_files > 0:
            rotated = sorted(p for p in self.directory.glob("logs-*.jsonl"))
            for old in rotated[: max(0, len(rotated) - self.config.max_files)]:
                old.unlink(missing_ok=True)
                self.removed_files += 1

    def send(self, payload: bytes, records: int) -> Outcome:
        if records == 0 and not payload:
            try:
                ensure_private_dir(self.directory)
                return Outcome.ok() if os.access(self.directory, os.W_OK) else Outcome.retryable("not writable")
            except OSError as exc:
                return Outcome.retryable(f"{exc}")
        try:
            line = (to_otlp_json(payload) + "\n").encode("utf-8")
        except Exception as exc:  # noqa: BLE001 - an undecodable payload is permanent
            return Outcome.permanent(f"cannot encode OTLP/JSON: {exc}"[:500])
        with self._lock:
            try:
                fd = self._open()
                try:
                    size = os.fstat(fd).st_size
                    if size and size + len(line) > self.config.max_bytes:
                        os.close(fd)
                        self._rotate()
                        fd = self._open()
                    written = os.write(fd, line)
                    if written != len(line):  # short write (disk full): never leave half a line
                        os.ftruncate(fd, size if size + len(line) <= self.config.max_bytes else 0)
                        return Outcome.retryable(f"short write ({written} of {len(line)} bytes)")
                    if self.config.fsync:
                        os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                return Outcome.retryable(f"{type(exc).__name__}: {exc}"[:500])
        return Outcome.ok()
