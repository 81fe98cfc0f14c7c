"""Deferred processing: run classification, redaction, detection and the volume dial in the export worker.

``DeferredProcessingExporter`` wraps any ``LogRecordExporter``. The BatchLogRecordProcessor hands it
whole batches on its own worker thread, so the application thread pays only for the SDK's bare
pipeline. The same processor objects are used as in-line, so labels are identical.

Trade-off (documented): processors registered on the provider *after* the batch processor see the
record before it is labelled and redacted; only this exporter's output is processed.

A record the first hop has to spill to disk (its buffer is full) is classified and redacted on the
app thread first (:meth:`DeferredProcessingExporter.prepare`): secrets never reach the disk
unredacted, and its labels are the ones it would have had on the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

from otel_ext.classify.processor import EventClassifierProcessor
from otel_ext.detect.engine import DetectionEngine
from otel_ext.redact import RedactionProcessor
from otel_ext.telemetry import Counters
from otel_ext.volume import VOLUME_COUNTERS, VolumePolicy

_logger = logging.getLogger(__name__)


class DeferredProcessingExporter(LogRecordExporter):
    """Classifies, redacts and gates each batch on the export worker, then exports what is kept."""

    def __init__(
        self,
        exporter: LogRecordExporter,
        classifier: EventClassifierProcessor | None = None,
        redaction: RedactionProcessor | None = None,
        volume: VolumePolicy | None = None,
        volume_counters: Counters = VOLUME_COUNTERS,
        detection: DetectionEngine | None = None,
    ) -> None:
        self.exporter = exporter
        self.classifier = classifier
        self.redaction = redaction
        self.volume = None if volume is None or volume.is_noop else volume
        self.volume_counters = volume_counters
        self.detection = detection
        # called every 8 records: the first hop steps aside there for a busy app thread
        self.pause: Callable[[], None] | None = None

    def prepare(self, item: ReadableLogRecord) -> None:
        """Classify and redact one record now (in place), as :meth:`export` would: the first hop
        calls it on the app thread before a record is spilled, so no secret reaches the disk
        unredacted. :meth:`export` later finds the record labelled (classification is skipped)
        and redaction is idempotent. Never raises."""
        record = item.log_record
        if self.classifier is not None:
            scope = item.instrumentation_scope
            self.classifier.classify_record(record, scope.name if scope is not None else "")
        if self.redaction is not None:
            self.redaction.redact_item(item)

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        return self._process(batch, self.redaction)

    def export_prepared(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        """:meth:`export` for records that all went through :meth:`prepare` and are unchanged since
        (the first hop's spilled records): they are labelled and redacted already, so only detection,
        the volume dial and the export remain (redaction is idempotent: skipping it changes nothing)."""
        return self._process(batch, None)

    def _process(self, batch: Sequence[ReadableLogRecord], redaction: RedactionProcessor | None
                 ) -> LogRecordExportResult:
        kept: list[ReadableLogRecord] = []
        classifier, volume, detection = self.classifier, self.volume, self.detection
        pause = self.pause
        for n, item in enumerate(batch, 1):
            if pause is not None and not n & 7:
                pause()
            record = item.log_record
            if classifier is not None:
                scope = item.instrumentation_scope
                classifier.classify_record(record, scope.name if scope is not None else "")
            if redaction is not None:
                redaction.redact_item(item)
            if detection is not None:  # before the volume dial: sampling must not blind a detector
                detection.observe(record)
            if volume is None or volume.keep(record, self.volume_counters):
                kept.append(item)
        if not kept:
            return LogRecordExportResult.SUCCESS
        return self.exporter.export(kept)

    def shutdown(self) -> None:
        if self.detection is not None:
            self.detection.shutdown()
        self.exporter.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)
