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
from collections.abc import Iterable, Mapping

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


def publish(counters: Counters, label_key: Mapping[str, str], unit: str = "{record}") -> None:
    """Register one observable counter per known counter name on the global meter.

    ``label_key`` maps a counter name to the attribute name its label is reported under
    (e.g. ``{"classified": "event_class"}``). Safe to call when no MeterProvider is configured.
    """
    meter = metrics.get_meter("otel_ext")

    def make_callback(name: str, key: str) -> object:
        def callback(_options: CallbackOptions) -> Iterable[Observation]:
            values = counters.snapshot().get(name, {})
            return [Observation(v, {key: label} if label else {}) for label, v in values.items()]

        return callback

    for name, key in label_key.items():
        meter.create_observable_counter(
            f"otel_ext.{counters.prefix}.{name}",
            callbacks=[make_callback(name, key)],  # type: ignore[list-item]
            unit=unit,
        )
