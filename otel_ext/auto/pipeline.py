"""Building the whole logs pipeline from settings — shared by ``otel_ext.configure()`` and the
zero-code configurator — and the :class:`Pipeline` handle."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry._logs import get_logger_provider, set_logger_provider
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor
from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.resources import Resource

from otel_ext.auto import exit as exit_flush
from otel_ext.classify import CLASSIFIER_COUNTERS, EventClassifierProcessor, RuleFileError
from otel_ext.classify.loader import read_rule_document
from otel_ext.deferred import DeferredProcessingExporter
from otel_ext.detect.engine import DETECT_COUNTERS, DetectionEngine, DetectorProcessor, engine_from_env
from otel_ext.export.encoding import ENCODE_COUNTERS, new_uid
from otel_ext.export.firsthop import FIRST_HOP_COUNTERS, FirstHopProcessor
from otel_ext.handler import HANDLER_COUNTERS, OtelExtLoggingHandler
from otel_ext.queue.ownership import prepare_dir
from otel_ext.redact import REDACTION_COUNTERS, RedactionProcessor
from otel_ext.settings import ConfigError, Settings, env_value, load_settings, on_config_error
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
    first_hops: list[FirstHopProcessor] = field(default_factory=list)
    usage: UsageMetricsProcessor | None = None
    # the SDK's batch settings, read (and checked) with the rest before anything starts
    schedule_delay_ms: float = 100.0
    max_export_batch_size: int = 512

    @property
    def inline_processors(self) -> list[LogRecordProcessor]:
        # usage metrics first, in both modes: they read the raw tenant id (hashed) before redaction
        usage: list[LogRecordProcessor] = [self.usage] if self.usage is not None else []
        if self.settings.processing != "inline":
            return usage
        detect = [DetectorProcessor(self.detection)] if self.detection is not None else []
        return [*usage, self.classifier, self.redaction, *detect]

    def export_processor(self, exporter: LogRecordExporter, *args: Any, **kwargs: Any) -> LogRecordProcessor:
        """Wrap one exporter: our first hop (buffer sized by ``buffer_size``, spilling to the queue
        directory under ``overload``) plus our stages."""
        settings = self.settings
        # records reach the durable queue within ~100 ms unless OTEL_BLRP_SCHEDULE_DELAY says otherwise
        spill_dir = prepare_dir(getattr(exporter, "queue_dir", None) or settings.effective_queue_dir,
                                allow_insecure=settings.queue_insecure_dir)
        deferred = settings.processing == "deferred"
        target: LogRecordExporter = exporter
        prepare = None
        if deferred:
            target = DeferredProcessingExporter(exporter, self.classifier, self.redaction, self.volume,
                                                detection=self.detection)
            prepare = target.prepare  # spilled records are classified and redacted before the disk
        first_hop = FirstHopProcessor(target, spill_dir, max_queue_size=settings.buffer_size,
                                      max_export_batch_size=self.max_export_batch_size,
                                      schedule_delay_millis=self.schedule_delay_ms, overload=settings.overload,
                                      spill_max_bytes=settings.queue_max_bytes,
                                      classify=self.classifier.classify_record if deferred else None,
                                      assign_uid=new_uid, prepare=prepare)
        if isinstance(target, DeferredProcessingExporter):
            target.pause = first_hop.pause
        self.first_hops.append(first_hop)
        return first_hop if deferred else VolumeGate(first_hop, self.volume)


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
    try:
        redaction = RedactionProcessor()
        batch = {"schedule_delay_ms": env_value("OTEL_BLRP_SCHEDULE_DELAY"),
                 "max_export_batch_size": env_value("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE")}
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return Parts(settings, classifier, redaction, volume, detection, usage=usage, **batch)


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
            "handler": HANDLER_COUNTERS.snapshot(),
            "volume_dropped": VOLUME_COUNTERS.snapshot().get("dropped", {}),
            "alerts": DETECT_COUNTERS.snapshot().get("alerts", {}),
            "detector_evicted_keys": DETECT_COUNTERS.snapshot().get("evicted_keys", {}),
            "first_hop": {"dropped": FIRST_HOP_COUNTERS.snapshot().get("dropped", {}),
                          "spilled": FIRST_HOP_COUNTERS.get("spilled"),
                          "spilled_by_worker": FIRST_HOP_COUNTERS.get("spilled_by_worker"),
                          "processors": [hop.stats() for hop in self.parts.first_hops]},
            "encoding": ENCODE_COUNTERS.snapshot(),
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
        """Flush what is buffered, then shut down. Records produced by that flush (detector
        alerts computed from the last batch) are flushed too, before the provider closes."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
        if self.handler is not None:
            logging.getLogger().removeHandler(self.handler)
        budget = int(self.parts.settings.shutdown_timeout * 1000)
        for _ in range(3):  # a flush may emit alerts; the next one makes them durable
            before = DETECT_COUNTERS.get("alerts")
            self.provider.force_flush(budget)
            if DETECT_COUNTERS.get("alerts") == before:
                break
        self.provider.shutdown()


def _inert_parts() -> tuple[EventClassifierProcessor, RedactionProcessor, VolumePolicy]:
    return EventClassifierProcessor(), RedactionProcessor(), VolumePolicy.parse(None, None)


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
    Configuration errors raise one :class:`~otel_ext.settings.ConfigError` naming the variable
    or file, before anything is started; with ``OTEL_EXT_ON_CONFIG_ERROR=continue`` (or
    ``on_config_error="continue"``) one line goes to stderr instead and the returned pipeline does
    nothing.
    """
    global _CURRENT
    with _CURRENT_LOCK:
        if _CURRENT is not None and not _CURRENT.closed:
            if overrides:
                _logger.warning("otel_ext.configure() was already called; keeping the running pipeline")
            return _CURRENT
        from otel_ext.export import FailoverLogExporter
        from otel_ext.selflog import install as install_selflog

        install_selflog()
        try:
            settings = load_settings(**overrides)
            parts = build_parts(settings)
            exporter = FailoverLogExporter(settings=settings)
        except (ConfigError, ValueError) as exc:
            if on_config_error(overrides.get("on_config_error")) == "continue":
                print(f"otel-ext: configuration error: {exc}; continuing without otel-ext", file=sys.stderr,
                      flush=True)
                return Pipeline(LoggerProvider(), [], None, Parts(Settings(), *_inert_parts()), closed=False)
            raise ConfigError(str(exc)) from None
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
        handler = OtelExtLoggingHandler(logger_provider=provider)
        logging.getLogger().addHandler(handler)
        _CURRENT = Pipeline(provider, [exporter], handler, parts)
        exit_flush.install(lambda: provider.force_flush(int(settings.shutdown_timeout * 1000)) and exporter.force_flush(
            int(settings.shutdown_timeout * 1000)))
        return _CURRENT
