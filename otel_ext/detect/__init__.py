"""Sliding-window detectors that emit alert records (brute force, password spraying, success after
failures, 404/403 fuzzing, 5xx spikes, latency SLO breaches) and an optional webhook sink."""

from otel_ext.detect.detectors import DETECTORS, Alert, Event
from otel_ext.detect.engine import DETECT_COUNTERS, DetectionEngine, DetectorConfig, DetectorProcessor
from otel_ext.detect.webhook import WEBHOOK_COUNTERS, WebhookSink

__all__ = [
    "DETECTORS",
    "DETECT_COUNTERS",
    "WEBHOOK_COUNTERS",
    "Alert",
    "DetectionEngine",
    "DetectorConfig",
    "DetectorProcessor",
    "Event",
    "WebhookSink",
]
