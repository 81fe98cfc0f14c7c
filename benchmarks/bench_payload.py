"""Payload inspection cost per record, on the realistic and the scanner-heavy mix, in the same run
as two anchors: the classifier without the payload rules, and the classifier with them.

    python benchmarks/bench_payload.py [--rounds 7]

Records are produced once through a real SDK pipeline (stdlib logging -> LoggingHandler), then
classified again and again from copies; each figure is the process CPU time, minimum over rounds
(the least disturbed by other processes), variants interleaved. ``inspect`` is payload inspection alone
(``PayloadInspector.inspect_maps`` on every record's attributes, with its memo warm).
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _mix import make_events, make_scanner_events

from otel_ext.classify import EventClassifierProcessor, build_ruleset
from otel_ext.classify.builtin import builtin_rules
from otel_ext.classify.fields import FieldSettings, RecordFields
from otel_ext.classify.payload import PayloadInspector
from otel_ext.telemetry import Counters


def records(make: Callable[[], list[Callable[[], None]]]) -> list[tuple[Any, str]]:
    provider = LoggerProvider()
    memory = InMemoryLogRecordExporter()
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    root = logging.getLogger()
    root.handlers[:] = [LoggingHandler(logger_provider=provider)]
    root.setLevel(logging.INFO)
    for event in make():
        event()
    root.handlers[:] = []
    return [(r.log_record, r.instrumentation_scope.name) for r in memory.get_finished_logs()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    off = [{"id": r["id"], "enabled": False} for r in builtin_rules() if r["id"].startswith("attack.")]
    print(f"CPU time, min over {args.rounds} rounds, us/record (same run; ratio = with / without payload rules)")
    for name, make in (("realistic", make_events), ("scanner", make_scanner_events)):
        measure(name, records(make), off, args.rounds)


def measure(name: str, recs: list[tuple[Any, str]], off: list[dict[str, Any]], rounds: int) -> None:
    plain = [(dict(r.attributes or {}), r.body, r.severity_number, s) for r, s in recs]
    template = recs[0][0]

    def classify(processor: EventClassifierProcessor) -> Callable[[], None]:
        def run() -> None:
            for attrs, body, severity, scope in plain:
                record = copy.copy(template)
                record.attributes, record.body, record.severity_number = dict(attrs), body, severity
                record.event_name = None
                processor.classify_record(record, scope)
        return run

    def copies() -> None:  # the record copying every classify variant does: subtracted
        for attrs, _, _, _ in plain:
            copy.copy(template).attributes = dict(attrs)

    inspector = PayloadInspector()
    fields = [RecordFields(attrs, body, 9, scope, FieldSettings()) for attrs, body, _, scope in plain]

    def inspect() -> None:
        for f in fields:
            inspector.inspect_maps(f._attrs, f.parsed)

    without_rules = build_ruleset(rules=off, use_env=False)
    variants = {
        "copy": copies,
        "without": classify(EventClassifierProcessor(without_rules, counters=Counters("b"))),
        "with": classify(EventClassifierProcessor(build_ruleset(use_env=False), counters=Counters("b"))),
        "inspect": inspect,
    }
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(rounds):
        for key, run in variants.items():
            start = time.process_time()  # CPU time of this process: other processes' load matters less
            run()
            best[key] = min(best[key], (time.process_time() - start) / len(plain) * 1e6)
    without, with_ = best["without"] - best["copy"], best["with"] - best["copy"]
    print(f"{name:10} classify without payload rules {without:6.2f}  with {with_:6.2f}  "
          f"added {with_ - without:5.2f} (ratio {with_ / without:.2f})  inspection alone {best['inspect']:5.2f}")


if __name__ == "__main__":
    main()
