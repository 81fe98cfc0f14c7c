"""Building the whole logs pipeline from settings — shared by ``otel_ext.configure()`` and the
zero-code configurator — and the :class:`Pipeline` handle."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry._logs import get_logger_provider, set_logger_provider
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.resources import Resource

from otel_ext.auto import exit as exit_flush
from otel_ext.auto.settings import ConfigError, Settings, load_settings
from otel_ext.classify import CLASSIFIER_COUNTERS, EventClassifierProcessor, RuleFileError
from otel_ext.classify.loader import read_rule_document
from otel_ext.deferred import DeferredProcessingExporter
from otel_ext.detect.engine import DETECT_COUNTERS, DetectionEngine, DetectorProcessor, engine_from_env
from otel_ext.redact import REDACTION_COUNTERS, RedactionProcessor
from otel_ext.usage import USAGE_COUNTERS, UsageMetricsProcessor
from otel_ext.volume import VOLUME_COUNTERS, VolumeGate, VolumePolicy

_logger = logging.getLogger(__name__)


@dataclass
class Parts:
    """Our processors, and where they go: before the export processor (inline) or inside it."""

    settings: Settings
    classifier: EventClassifierProcessor
    redaction: RedactionProcessor
    volume: VolumePolicy
    detection: DetectionEngine | None = None
    usage: UsageMetricsProcessor | None = None

    @property
    def inline_processors(self) -> list[LogRecordProcessor]:
        # usage metrics first, in both modes: they read the raw tenant id (hashed) before redaction
        usage: list[LogRecordProcessor] = [self.usage] if self.usage is not None else []
        if self.settings.processing != "inline":
            return usage
        detect = [DetectorProcessor(self.detection)] if self.detection is not None else []
        return [*usage, self.classifier, self.redaction, *detect]

    def export_processor(self, exporter: LogRecordExporter, *args: Any, **kwargs: Any) -> LogRecordProcessor:
        """Wrap one exporter: the SDK batch processor (sized by ``buffer_size``) plus our stages."""
        size = self.settings.buffer_size
        # records reach the durable queue within ~100 ms unless OTEL_BLRP_SCHEDULE_DELAY says otherwise
        delay = None if os.environ.get("OTEL_BLRP_SCHEDULE_DELAY") else 100
        if self.settings.processing == "deferred":
            wrapped = DeferredProcessingExporter(exporter, self.classifier, self.redaction, self.volume,
                                                 detection=self.detection)
            return BatchLogRecordProcessor(wrapped, max_queue_size=size, schedule_delay_millis=delay)
        return VolumeGate(BatchLogRecordProcessor(exporter, max_queue_size=size, schedule_delay_millis=delay),
                          self.volume)


def build_parts(settings: Settings) -> Parts:
    """Validate everything that can be wrong before the app starts; raises :class:`ConfigError`."""
    try:
        classifier = EventClassifierProcessor(rules_file=settings.rules_file)
    except RuleFileError as exc:
        raise ConfigError(f"{settings.sources.get('rules_file', 'OTEL_EXT_RULES_FILE')}: {exc}") from None
    try:
        volume = VolumePolicy.parse(settings.sample, settings.min_severity)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    section = None
    if settings.rules_file:
        doc = read_rule_document(settings.rules_file)
        section = doc.get("detectors") if isinstance(doc, dict) else None
    try:
        detection = engine_from_env(section, source=settings.rules_file or "rules file")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    usage = None
    if settings.usage_metrics == "on":
        usage = UsageMetricsProcessor(client_attribute=settings.usage_client_attribute, top_n=settings.usage_top_n)
    return Parts(settings, classifier, RedactionProcessor(), volume, detection, usage)


@dataclass
class Pipeline:
    """Handle on a configured logs pipeline: ``stats()`` and a bounded ``shutdown()``."""

    provider: LoggerProvider
    exporters: Sequence[Any]
    handler: LoggingHandler | None
    parts: Parts
    closed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def stats(self) -> dict[str, Any]:
        exporters = [e.stats() if callable(getattr(e, "stats", None)) else {} for e in self.exporters]
        return {
            "processing": self.parts.settings.processing,
            "classified": CLASSIFIER_COUNTERS.snapshot().get("classified", {}),
            "classification_failed": CLASSIFIER_COUNTERS.get("failed"),
            "redacted": REDACTION_COUNTERS.snapshot().get("redacted", {}),
            "volume_dropped": VOLUME_COUNTERS.snapshot().get("dropped", {}),
            "alerts": DETECT_COUNTERS.snapshot().get("alerts", {}),
            "detector_evicted_keys": DETECT_COUNTERS.snapshot().get("evicted_keys", {}),
            "usage": USAGE_COUNTERS.snapshot(),
            "exporters": exporters,
        }

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        ok = self.provider.force_flush(timeout_millis)
        for exporter in self.exporters:
            flush: Callable[[int], bool] | None = getattr(exporter, "force_flush", None)
            if flush is not None:
                ok = flush(timeout_millis) and ok
        return ok

    def shutdown(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        if self.handler is not None:
            logging.getLogger().removeHandler(self.handler)
        self.provider.shutdown()


_CURRENT: Pipeline | None = None
_CURRENT_LOCK = threading.Lock()


def current_pipeline() -> Pipeline | None:
    return _CURRENT


def set_current(pipeline: Pipeline) -> None:
    global _CURRENT
    _CURRENT = pipeline


def configure(**overrides: Any) -> Pipeline:
    """Build the whole logs pipeline (env vars, ``OTEL_EXT_CONFIG_FILE``, then ``overrides``),
    install the logging handler on the root logger and return its handle.

    Calling it again returns the pipeline already running (a warning says so if overrides differ).
    Configuration errors raise :class:`~otel_ext.auto.settings.ConfigError` naming the variable or
    file, before anything is started.
    """
    global _CURRENT
    with _CURRENT_LOCK:
        if _CURRENT is not None and not _CURRENT.closed:
            if overrides:
                _logger.warning("otel_ext.configure() was already called; keeping the running pipeline")
            return _CURRENT
        from otel_ext.export import FailoverLogExporter

        settings = load_settings(**overrides)
        parts = build_parts(settings)
        exporter = FailoverLogExporter(settings=settings)
        provider = LoggerProvider(resource=Resource.create())
        if parts.detection is not None:
            parts.detection.bind(provider)
        for processor in parts.inline_processors:
            provider.add_log_record_processor(processor)
        provider.add_log_record_processor(parts.export_processor(exporter))
        if isinstance(get_logger_provider(), LoggerProvider):
            _logger.info("otel-ext: a global LoggerProvider is already set; using our own for the logging handler")
        else:
            set_logger_provider(provider)
        handler = LoggingHandler(logger_provider=provider)
        logging.getLogger().addHandler(handler)
        _CURRENT = Pipeline(provider, [exporter], handler, parts)
        exit_flush.install(lambda: provider.force_flush(int(settings.shutdown_timeout * 1000)) and exporter.force_flush(
            int(settings.shutdown_timeout * 1000)))
        return _CURRENT
