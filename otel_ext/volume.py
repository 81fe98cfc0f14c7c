"""Per-class volume dial: minimum severity and sampling ratio, applied around the export processor.

An SDK processor cannot veto the processors after it, so :class:`VolumeGate` *wraps* the export
processor (e.g. a BatchLogRecordProcessor) and forwards only the records it keeps. Dropped records
never reach any exporter and are counted per class and reason.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord

from otel_ext._attrs import read_view
from otel_ext._pairs import split_pairs
from otel_ext.classify.rules import SEVERITY_BY_NAME
from otel_ext.classify.vocabulary import EVENT_CLASSES
from otel_ext.telemetry import Counters, register_counters

VOLUME_COUNTERS = register_counters(Counters("volume"), {"dropped": ("event_class", "reason")})
"""``dropped`` per ``<class>:<reason>`` (reason ``sampled`` or ``severity``), ``kept`` per class."""

_CLASS_ATTR = "labels.event_class"
_U64 = float(1 << 64)


@dataclass(frozen=True)
class VolumePolicy:
    """Per-class keep ratio (0..1) and minimum severity number. Unlisted classes keep everything.

    Sampling is consistent per trace: records of one trace are kept or dropped together.
    """

    sample: Mapping[str, float] = field(default_factory=dict)
    min_severity: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, ratio in self.sample.items():
            if name not in EVENT_CLASSES:
                raise ValueError(f"volume: unknown event class {name!r} (use one of {list(EVENT_CLASSES)})")
            if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio <= 1.0:
                raise ValueError(f"volume: sample ratio for {name!r} must be between 0 and 1, got {ratio!r}")
        for name, sev in self.min_severity.items():
            if name not in EVENT_CLASSES:
                raise ValueError(f"volume: unknown event class {name!r} (use one of {list(EVENT_CLASSES)})")
            if isinstance(sev, bool) or not isinstance(sev, int) or not 0 <= sev <= 24:
                raise ValueError(f"volume: min severity for {name!r} must be a severity number 0..24, got {sev!r}")

    @classmethod
    def parse(cls, sample: str | None = None, min_severity: str | None = None) -> VolumePolicy:
        """From ``"access=0.1,performance=0.5"`` and ``"application=WARN"`` style strings."""
        ratios: dict[str, float] = {}
        for name, value in _pairs(sample, "OTEL_EXT_SAMPLE"):
            try:
                ratios[name] = float(value)
            except ValueError:
                raise ValueError(f"OTEL_EXT_SAMPLE: {name}={value!r} is not a number") from None
        floors: dict[str, int] = {}
        for name, value in _pairs(min_severity, "OTEL_EXT_MIN_SEVERITY"):
            if value.upper() in SEVERITY_BY_NAME:
                floors[name] = SEVERITY_BY_NAME[value.upper()]
            elif value.isdigit():
                floors[name] = int(value)
            else:
                raise ValueError(f"OTEL_EXT_MIN_SEVERITY: {name}={value!r} is not a severity")
        return cls(ratios, floors)

    @property
    def is_noop(self) -> bool:
        return all(r >= 1.0 for r in self.sample.values()) and not any(self.min_severity.values())

    def keep(self, record: Any, counters: Counters | None = None) -> bool:
        """Decide for one API LogRecord, counting drops in ``counters``; never raises (keeps on error)."""
        try:
            event_class = read_view(record.attributes).get(_CLASS_ATTR)
            if not isinstance(event_class, str):
                event_class = "application"
            severity = record.severity_number.value if record.severity_number is not None else 0
            reason = self.decide(event_class, severity, record.trace_id or 0)
        except Exception:  # noqa: BLE001 - when in doubt, keep the record
            return True
        if reason is not None:
            (counters or VOLUME_COUNTERS).add("dropped", f"{event_class}:{reason}")
            return False
        return True

    def decide(self, event_class: str, severity: int, trace_id: int) -> str | None:
        """None to keep, else the drop reason."""
        floor = self.min_severity.get(event_class)
        if floor is not None and severity < floor:
            return "severity"
        ratio = self.sample.get(event_class)
        if ratio is not None and ratio < 1.0:
            point = (trace_id & 0xFFFFFFFFFFFFFFFF) / _U64 if trace_id else random.random()
            if point >= ratio:
                return "sampled"
        return None


def _pairs(text: str | None, what: str) -> list[tuple[str, str]]:
    return [(name.strip(), value.strip()) for name, value in split_pairs(text, f"{what}: expected class=value")]


class VolumeGate(LogRecordProcessor):
    """Wraps an export processor; forwards only the records the :class:`VolumePolicy` keeps."""

    def __init__(
        self,
        export_processor: LogRecordProcessor,
        policy: VolumePolicy | None = None,
        counters: Counters = VOLUME_COUNTERS,
    ) -> None:
        self.export_processor = export_processor
        self.policy = policy or VolumePolicy()
        self.counters = counters

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        if self.policy.keep(log_record.log_record, self.counters):
            self.export_processor.on_emit(log_record)

    def shutdown(self) -> None:
        self.export_processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.export_processor.force_flush(timeout_millis)
