"""Reading log records back from where otel-ext stored them, as flat :class:`Record` objects.

A *record reader* is anything with ``records() -> Iterator[Record]`` (:class:`RecordReader`):
:class:`OTLPJsonFileReader` reads the file backend's OTLP/JSON lines (``logs.jsonl`` and its
rotated siblings, plain or gzip). An S3 archive reader plugs in the same way: list the objects,
decode each one's OTLP JSON with :func:`records_from_otlp_json`, yield the records.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Record:
    """One log record, flattened: time in ns since the epoch, severity number, body text and the
    record's attributes as plain Python values (resource attributes under ``resource``)."""

    time_ns: int
    severity: int
    body: str
    attributes: dict[str, Any]
    resource: dict[str, Any] = field(default_factory=dict)
    size: int = 0  # stored bytes attributed to the record (its share of its OTLP/JSON line)

    def get(self, key: str, default: Any = None) -> Any:
        return self.attributes.get(key, default)


class RecordReader(Protocol):
    """Where records come from for a report (file backend, S3 archive, …)."""

    def records(self) -> Iterator[Record]: ...

    def describe(self) -> str: ...


def _value(node: dict[str, Any]) -> Any:
    """An OTLP/JSON AnyValue as a Python value."""
    if "stringValue" in node:
        return node["stringValue"]
    if "intValue" in node:
        return int(node["intValue"])
    if "doubleValue" in node:
        return float(node["doubleValue"])
    if "boolValue" in node:
        return bool(node["boolValue"])
    if "arrayValue" in node:
        return [_value(v) for v in node["arrayValue"].get("values", [])]
    if "kvlistValue" in node:
        return {kv["key"]: _value(kv.get("value", {})) for kv in node["kvlistValue"].get("values", [])}
    if "bytesValue" in node:
        return node["bytesValue"]
    return None


def _attrs(items: Iterable[dict[str, Any]]) -> dict[str, Any]:
    return {kv["key"]: _value(kv.get("value", {})) for kv in items if "key" in kv}


def records_from_otlp_json(doc: dict[str, Any], record_size: int = 0) -> Iterator[Record]:
    """The records of one OTLP/JSON ``ExportLogsServiceRequest`` document (raises ValueError,
    TypeError, KeyError or AttributeError on a document of the wrong shape). ``record_size`` is the
    stored size to attribute to each record (e.g. the line's length / its record count)."""
    for rl in doc.get("resourceLogs", []):
        resource = _attrs(rl.get("resource", {}).get("attributes", []))
        for sl in rl.get("scopeLogs", []):
            for rec in sl.get("logRecords", []):
                time_ns = int(rec.get("timeUnixNano") or rec.get("observedTimeUnixNano") or 0)
                body = rec.get("body", {})
                text = _value(body) if isinstance(body, dict) else None
                yield Record(time_ns, int(rec.get("severityNumber") or 0), "" if text is None else str(text),
                             _attrs(rec.get("attributes", [])), resource, record_size)


class OTLPJsonFileReader:
    """The file backend's output directory (or one file): every ``*.jsonl`` / ``*.jsonl.gz`` line.
    A damaged line is skipped and counted in :attr:`bad_lines`, never fatal."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.bad_lines = 0

    def files(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        found = [p for p in self.path.rglob("*") if p.is_file() and (p.name.endswith(".jsonl")
                                                                    or ".jsonl." in p.name or p.suffix == ".json")]
        return sorted(found)

    def records(self) -> Iterator[Record]:
        for path in self.files():
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    line = line.strip()
                    if not line:
                        continue
                    try:  # one line is one batch: decode it whole, so a damaged line yields nothing
                        doc = json.loads(line)
                        count = sum(len(sl.get("logRecords", [])) for rl in doc.get("resourceLogs", [])
                                    for sl in rl.get("scopeLogs", []))
                        size = len(line) // max(count, 1)  # each record's share of the line
                        batch = list(records_from_otlp_json(doc, size))
                    except (ValueError, TypeError, KeyError, AttributeError):
                        self.bad_lines += 1
                        continue
                    yield from batch

    def describe(self) -> str:
        return f"file://{self.path}"


class S3ArchiveReader:
    """An otel-ext S3 archive (``s3://bucket/prefix?region=…&endpoint=…``, the layout of
    :mod:`otel_ext.backends.s3`): every archived object, JSON or protobuf, gzip or not. An object that
    cannot be read or decoded is skipped and counted in :attr:`bad_objects`, never fatal."""

    def __init__(self, url: str) -> None:
        from otel_ext.archive import s3_backend

        self.url = url
        self.backend = s3_backend(url, "--backend")
        self.bad_objects = 0
        self.objects = 0
        self.bytes = 0

    def records(self) -> Iterator[Record]:
        from otel_ext.backends.otlp_json import to_otlp_json
        from otel_ext.backends.s3 import decode_object

        try:
            for key in self.backend.iter_keys(None, None, None):
                try:
                    data = self.backend.get(key)
                    doc = json.loads(to_otlp_json(decode_object(key, data)))
                    count = sum(len(sl.get("logRecords", [])) for rl in doc.get("resourceLogs", [])
                                for sl in rl.get("scopeLogs", []))
                    batch = list(records_from_otlp_json(doc, len(data) // max(count, 1)))
                except Exception:  # noqa: BLE001 - a damaged or foreign object is counted, not fatal
                    self.bad_objects += 1
                    continue
                self.objects += 1
                self.bytes += len(data)
                yield from batch
        finally:
            self.backend.close()

    def describe(self) -> str:
        return self.url.split("?", 1)[0]
