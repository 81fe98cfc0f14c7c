"""``otel-ext report``: one self-contained HTML page (charts + the numbers behind them) about how
clients use the API, from where the logs live: a search backend (aggregations, no full scan) or
records read back from the file backend / an archive.

    from otel_ext.report import build_report, OTLPJsonFileReader
    build_report(OTLPJsonFileReader("/var/lib/app/logs"), "report.html")
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from otel_ext.report.model import DEFAULT_CLIENT_ATTRIBUTE, Aggregator, ReportData
from otel_ext.report.records import (
    OTLPJsonFileReader,
    Record,
    RecordReader,
    S3ArchiveReader,
    records_from_otlp_json,
)

__all__ = [
    "OTLPJsonFileReader",
    "Record",
    "RecordReader",
    "ReportData",
    "S3ArchiveReader",
    "aggregate_records",
    "build_report",
    "records_from_otlp_json",
    "write_report",
]


def aggregate_records(reader: RecordReader, client_attribute: str = DEFAULT_CLIENT_ATTRIBUTE,
                      retention_days: Mapping[str, int] | None = None,
                      progress: Callable[[int], None] | None = None) -> ReportData:
    return Aggregator(client_attribute, reader.describe(), retention_days, progress).build(reader.records())


def write_report(data: ReportData, out: str | Path, title: str = "API usage report") -> Path:
    """Write the HTML page (0644, atomically: a reader never sees half a report)."""
    from otel_ext.report.render import render_html

    path = Path(out)
    page = render_html(data, title=title)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # O_EXCL, random
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(page)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def build_report(reader: RecordReader, out: str | Path, client_attribute: str = DEFAULT_CLIENT_ATTRIBUTE,
                 retention_days: Mapping[str, int] | None = None) -> Path:
    return write_report(aggregate_records(reader, client_attribute, retention_days), out)
