"""otel-ext: OpenTelemetry extensions for API services.

Public API: the log processors (classification, redaction), the per-class volume dial, the
deferred-processing exporter and the failover exporter. See docs/architecture.md for the full contract.

Names are imported on first use, so importing one layer (``otel_ext.export``, ``otel_ext.settings``)
does not pull in the layers above it (``otel_ext.auto``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from otel_ext.auto.pipeline import Pipeline, configure, current_pipeline
    from otel_ext.classify import EventClassifierProcessor, RuleFileError
    from otel_ext.deferred import DeferredProcessingExporter
    from otel_ext.export import FailoverLogExporter
    from otel_ext.redact import RedactionProcessor
    from otel_ext.settings import ConfigError
    from otel_ext.volume import VolumeGate, VolumePolicy

_WHERE = {
    "ConfigError": "otel_ext.settings",
    "DeferredProcessingExporter": "otel_ext.deferred",
    "EventClassifierProcessor": "otel_ext.classify",
    "FailoverLogExporter": "otel_ext.export",
    "Pipeline": "otel_ext.auto.pipeline",
    "RedactionProcessor": "otel_ext.redact",
    "RuleFileError": "otel_ext.classify",
    "VolumeGate": "otel_ext.volume",
    "VolumePolicy": "otel_ext.volume",
    "configure": "otel_ext.auto.pipeline",
    "current_pipeline": "otel_ext.auto.pipeline",
}

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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'otel_ext' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
