"""Self-observability: the counters every otel-ext component keeps.

Components count into a :class:`Counters` (cheap, lock-protected integers keyed by name and
label). The values are published through the OTel metrics API as observable instruments under
``otel_ext.`` when a MeterProvider is set (no-op otherwise), and read directly by ``stats()`` and
``otel-ext status``.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation


class Counters:
    """Monotonic counters ``name -> label -> int``; safe to bump from any thread."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._lock = threading.Lock()
        self._values: dict[str, dict[str, int]] = {}
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)

            def _reinit() -> None:  # a parent thread may have held the lock at fork time
                counters = ref()
                if counters is not None:
                    counters._lock = threading.Lock()

            os.register_at_fork(after_in_child=_reinit)

    def add(self, name: str, label: str = "", amount: int = 1) -> None:
        with self._lock:
            by_label = self._values.setdefault(name, {})
            by_label[label] = by_label.get(label, 0) + amount

    def get(self, name: str, label: str | None = None) -> int:
        with self._lock:
            by_label = self._values.get(name, {})
            if label is None:
                return sum(by_label.values())
            return by_label.get(label, 0)

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {name: dict(by_label) for name, by_label in self._values.items()}

    def reset(self) -> None:
        with self._lock:
            self._values.clear()


_COUNTERS: list[tuple[Counters, dict[str, tuple[str, ...]]]] = []
_GAUGES: list[tuple[str, str, Callable[[], Iterable[tuple[float, dict[str, str]]]]]] = []
_published = False
_publish_lock = threading.Lock()


def register_counters(counters: Counters, labels: Mapping[str, tuple[str, ...]]) -> Counters:
    """Declare how ``counters`` are published: counter name -> attribute names of its label parts
    (a label ``"access:sampled"`` with ``("event_class", "reason")`` becomes two attributes)."""
    _COUNTERS.append((counters, dict(labels)))
    return counters


def register_gauge(name: str, unit: str, callback: Callable[[], Iterable[tuple[float, dict[str, str]]]]) -> None:
    _GAUGES.append((name, unit, callback))


def _attributes(label: str, keys: tuple[str, ...]) -> dict[str, str]:
    if not label or not keys:
        return {}
    parts = label.split(":", len(keys) - 1) if len(keys) > 1 else [label]
    return {k: v for k, v in zip(keys, parts, strict=False) if v}


def ensure_published() -> None:
    """Create the observable instruments on the global meter once per process. Until the app sets
    a MeterProvider they are no-ops; afterwards they report the live counters."""
    global _published
    with _publish_lock:
        if _published:
            return
        _published = True
    meter = metrics.get_meter("otel_ext")
    for counters, labels in _COUNTERS:
        for name, keys in labels.items():

            def callback(_options: CallbackOptions, c: Counters = counters, n: str = name,
                         k: tuple[str, ...] = keys) -> Iterable[Observation]:
                return [Observation(v, _attributes(label, k)) for label, v in c.snapshot().get(n, {}).items()]

            meter.create_observable_counter(f"otel_ext.{counters.prefix}.{name}", callbacks=[callback])
    for gauge_name, unit, source in _GAUGES:

        def gauge(_options: CallbackOptions, src: Callable[[], Iterable[tuple[float, dict[str, str]]]] = source
                  ) -> Iterable[Observation]:
            return [Observation(v, attrs) for v, attrs in src()]

        meter.create_observable_gauge(f"otel_ext.{gauge_name}", callbacks=[gauge], unit=unit)
