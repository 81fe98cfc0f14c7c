"""Test doubles shipped with the package (like httpx's ``MockTransport``): an in-memory
:class:`MemoryBackend` whose answers are scripted, so policies, lanes and the exporter can be tested
fast and without any server. It is a real :class:`~otel_ext.backends.base.Backend`, not a mock: the
sender cannot tell it from a network backend.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from otel_ext.backends.base import Backend
from otel_ext.backends.outcome import Outcome

__all__ = ["MemoryBackend", "payload_attribute"]


class MemoryBackend(Backend):
    """Keeps every accepted payload in memory.

    ``answer`` is the default outcome of a ``send`` (``Outcome.ok()`` when ``None``); ``script``
    queues outcomes for the next sends (first in, first out) before the default applies again;
    ``delay`` (seconds) and ``hook`` (called before each send) let a test hold a request in flight.
    Probes follow ``answer`` too, but carry no data and are not stored.
    """

    def __init__(self, name: str = "memory", answer: Outcome | None = None,
                 script: Iterable[Outcome] = (), delay: float = 0.0,
                 hook: Callable[[bytes, int], None] | None = None) -> None:
        self.name = name
        self.answer = answer
        self.script: deque[Outcome] = deque(script)
        self.delay = delay
        self.hook = hook
        self.payloads: list[bytes] = []
        self.attempts = 0
        self.probes = 0
        self.closed = False
        self._lock = threading.Lock()

    def send(self, payload: bytes, records: int) -> Outcome:
        if self.hook is not None:
            self.hook(payload, records)
        if self.delay:
            threading.Event().wait(self.delay)
        with self._lock:
            if not payload and not records:
                self.probes += 1
            else:
                self.attempts += 1
            outcome = self.script.popleft() if self.script else (self.answer or Outcome.ok())
            if outcome.delivered and payload:
                self.payloads.append(payload)
            return outcome

    def close(self) -> None:
        self.closed = True

    @property
    def records(self) -> int:
        """Log records accepted so far (decoded from the stored OTLP payloads)."""
        with self._lock:
            payloads = list(self.payloads)
        total = 0
        for payload in payloads:
            request = ExportLogsServiceRequest.FromString(payload)
            total += sum(len(s.log_records) for r in request.resource_logs for s in r.scope_logs)
        return total

    def values(self, key: str) -> Counter[str]:
        """How many times each value of attribute ``key`` was accepted (duplicates count twice)."""
        with self._lock:
            payloads = list(self.payloads)
        seen: Counter[str] = Counter()
        for payload in payloads:
            seen.update(payload_attribute(payload, key))
        return seen


def payload_attribute(payload: bytes, key: str) -> list[str]:
    """The values of attribute ``key`` of every log record in an OTLP logs payload."""
    out: list[str] = []
    request = ExportLogsServiceRequest.FromString(payload)
    for resource in request.resource_logs:
        for scope in resource.scope_logs:
            for record in scope.log_records:
                for kv in record.attributes:
                    if kv.key == key:
                        value = kv.value
                        out.append(str(value.int_value) if value.HasField("int_value") else value.string_value)
    return out
