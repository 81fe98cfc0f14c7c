"""An app-like logs pipeline around FailoverLogExporter for integration tests: records carry a
sequence number, and delivery is counted by ``log.record.uid`` at real receivers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

from otel_ext.export import FailoverLogExporter
from otel_ext.queue.store import PersistentQueue
from otel_ext.telemetry import Counters


@dataclass
class App:
    exporter: FailoverLogExporter
    provider: LoggerProvider
    emitted: int = 0
    counters: Counters = field(default_factory=lambda: Counters("e"))

    def emit(self, n: int, event_class: str = "access") -> None:
        logger = self.provider.get_logger("test.app")
        for _ in range(n):
            logger.emit(body=f"record {self.emitted}", severity_number=SeverityNumber.INFO,
                        attributes={"seq": self.emitted, "labels.event_class": event_class})
            self.emitted += 1

    def flush_to_queue(self) -> None:
        """Everything emitted so far is committed to the on-disk queue."""
        assert self.provider.force_flush(10_000)

    def deliver(self, timeout: float = 30.0) -> bool:
        self.flush_to_queue()
        return self.exporter.force_flush(int(timeout * 1000))

    def close(self) -> None:
        self.provider.shutdown()


def make_app(backends: list[Any], queue_dir: Path, **kwargs: Any) -> App:
    counters = Counters("e")
    exporter = FailoverLogExporter(backends, queue_dir=queue_dir, counters=counters,
                                   queue_counters=Counters("q"), **kwargs)
    provider = LoggerProvider()
    # the SDK's in-memory buffer must hold a test burst (its default 2,048 drops the rest)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter, schedule_delay_millis=20,
                                                              max_export_batch_size=200, max_queue_size=100_000))
    return App(exporter, provider, counters=counters)


def queued_records(queue_dir: Path) -> int:
    total = 0
    for db in queue_dir.glob("q-*.db"):
        q = PersistentQueue(db)
        total += q.stats().records
        q.close()
    return total
