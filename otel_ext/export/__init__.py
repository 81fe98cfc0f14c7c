"""FailoverLogExporter, policies, health/circuit breaking, OTLP encoding, delivery lanes."""

from otel_ext.export.exporter import FailoverLogExporter

__all__ = ["FailoverLogExporter"]
