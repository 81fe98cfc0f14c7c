"""otel-ext: OpenTelemetry extensions for API services.

Public API: the log processors (classification, redaction), the per-class volume dial, the
deferred-processing exporter and the failover exporter. See docs/architecture.md for the full contract.
"""

from otel_ext.auto.pipeline import Pipeline, configure, current_pipeline
from otel_ext.auto.settings import ConfigError
from otel_ext.classify import EventClassifierProcessor, RuleFileError
from otel_ext.deferred import DeferredProcessingExporter
from otel_ext.export import FailoverLogExporter
from otel_ext.redact import RedactionProcessor
from otel_ext.volume import VolumeGate, VolumePolicy

__all__ = [
    "ConfigError",
    "DeferredProcessingExporter",
    "EventClassifierProcessor",
    "FailoverLogExporter",
    "Pipeline",
    "RedactionProcessor",
    "RuleFileError",
    "VolumeGate",
    "VolumePolicy",
    "configure",
    "current_pipeline",
]
