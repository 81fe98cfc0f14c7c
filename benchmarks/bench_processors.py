"""Benchmark: cost of otel-ext's processors on the app's logging path.

stdlib logging -> LoggingHandler -> [our processors] -> BatchLogRecordProcessor -> discarding exporter,
on a realistic mix of API events. Times N records from the first emit until the batch processor has
exported everything (so work moved to the worker thread is counted too). Prints µs/record per
variant and the ratio against the bare pipeline measured in the same run.

    python benchmarks/bench_processors.py [--records 60000] [--rounds 3] [--strings 20000]

``--strings N`` adds the redaction part: µs per *unique* string (no memo hits) for clean log lines
and for lines holding a secret, as a ratio to the bare pipeline's emit p50 of the same run.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _mix import make_events, make_scanner_events

from otel_ext.classify import EventClassifierProcessor, build_ruleset
from otel_ext.classify.builtin import builtin_rules
from otel_ext.deferred import DeferredProcessingExporter
from otel_ext.detect import DetectionEngine, DetectorProcessor
from otel_ext.redact import RedactionProcessor, Redactor
from otel_ext.telemetry import Counters
from otel_ext.volume import VolumeGate, VolumePolicy


class Discard(LogRecordExporter):
    def __init__(self) -> None:
        self.count = 0

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        self.count += len(batch)
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


Variant = Callable[[LoggerProvider, Discard], None]


def bare(lp: LoggerProvider, exp: Discard) -> None:
    lp.add_log_record_processor(BatchLogRecordProcessor(exp, max_queue_size=100_000))


def inline(lp: LoggerProvider, exp: Discard) -> None:
    lp.add_log_record_processor(EventClassifierProcessor())
    lp.add_log_record_processor(RedactionProcessor())
    lp.add_log_record_processor(VolumeGate(BatchLogRecordProcessor(exp, max_queue_size=100_000), VolumePolicy()))


def classify_only(lp: LoggerProvider, exp: Discard) -> None:
    lp.add_log_record_processor(EventClassifierProcessor())
    lp.add_log_record_processor(BatchLogRecordProcessor(exp, max_queue_size=100_000))


def classify_no_payload(lp: LoggerProvider, exp: Discard) -> None:
    """The classifier without the payload-inspection rules (attack.*): the anchor for their cost."""
    off = [{"id": r["id"], "enabled": False} for r in builtin_rules() if r["id"].startswith("attack.")]
    lp.add_log_record_processor(EventClassifierProcessor(build_ruleset(rules=off, use_env=False)))
    lp.add_log_record_processor(BatchLogRecordProcessor(exp, max_queue_size=100_000))


def redact_only(lp: LoggerProvider, exp: Discard) -> None:
    lp.add_log_record_processor(RedactionProcessor())
    lp.add_log_record_processor(BatchLogRecordProcessor(exp, max_queue_size=100_000))


def inline_detect(lp: LoggerProvider, exp: Discard) -> None:
    lp.add_log_record_processor(EventClassifierProcessor())
    lp.add_log_record_processor(RedactionProcessor())
    lp.add_log_record_processor(DetectorProcessor(DetectionEngine(provider=lp)))
    lp.add_log_record_processor(VolumeGate(BatchLogRecordProcessor(exp, max_queue_size=100_000), VolumePolicy()))


def deferred_detect(lp: LoggerProvider, exp: Discard) -> None:
    wrapped = DeferredProcessingExporter(exp, EventClassifierProcessor(), RedactionProcessor(), VolumePolicy(),
                                         detection=DetectionEngine(provider=lp))
    lp.add_log_record_processor(BatchLogRecordProcessor(wrapped, max_queue_size=100_000))


def deferred(lp: LoggerProvider, exp: Discard) -> None:
    wrapped = DeferredProcessingExporter(exp, EventClassifierProcessor(), RedactionProcessor(), VolumePolicy())
    lp.add_log_record_processor(BatchLogRecordProcessor(wrapped, max_queue_size=100_000))


VARIANTS: dict[str, Variant] = {
    "bare": bare,
    "classify (inline)": classify_only,
    "classify, no payload rules": classify_no_payload,
    "redact (inline)": redact_only,
    "all three (inline)": inline,
    "all three (deferred to worker)": deferred,
    "all three + detectors (inline)": inline_detect,
    "all three + detectors (deferred)": deferred_detect,
}


def run(variant: Variant, n: int, mix: str = "realistic") -> tuple[float, float, float, float]:
    """(total µs/record until exported, median emit µs, p99 emit µs, process CPU µs/record) over
    ``n`` records. CPU time counts every thread (the batch worker too) and, unlike wall time, is not
    inflated by other processes competing for the cores."""
    lp = LoggerProvider()
    exp = Discard()
    variant(lp, exp)
    handler = LoggingHandler(logger_provider=lp)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    events = make_scanner_events() if mix == "scanner" else make_events()
    clock = time.perf_counter
    samples: list[float] = []
    start = clock()
    cpu_start = time.process_time()
    for i in range(n):
        t0 = clock()
        events[i % len(events)]()
        samples.append(clock() - t0)
    lp.force_flush()
    elapsed = clock() - start
    cpu = time.process_time() - cpu_start
    assert exp.count >= n, (exp.count, n)  # detectors may add alert records
    lp.shutdown()
    root.handlers[:] = []
    samples.sort()
    return elapsed / n * 1e6, samples[n // 2] * 1e6, samples[int(n * 0.99)] * 1e6, cpu / n * 1e6


def unique_strings(n: int) -> dict[str, list[str]]:
    """Log lines that never repeat (the memo cannot help): clean ones and ones holding a secret."""
    clean: list[Callable[[int], str]] = [
        lambda i: f"request completed in {i % 997} ms for tenant {i}",
        lambda i: f'10.1.{i % 255}.{i % 254 + 1}:{1024 + i} - "GET /api/items?page={i} HTTP/1.1" 200',
        lambda i: f"cache refreshed for tenant {i} in {i % 97} ms",
        lambda i: f"2026-11-26T10:00:{i % 60:02d}Z order ORD-{i} shipped to customer cus_{i:08d}",
        lambda i: f"Mozilla/5.0 (X11; Linux x86_64) build/{i}",
    ]
    dirty: list[Callable[[int], str]] = [
        lambda i: f"login failed password=hunter{i} for bob",
        lambda i: f'{{"user": "u{i}", "clientSecret": "cs-{i:012d}"}}',
        lambda i: f"upstream call with Authorization: Bearer tok{i:016d} failed",
        lambda i: f"connecting to postgres://app:pw{i}@db:5432/app",
    ]
    return {"clean": [clean[i % len(clean)](i) for i in range(n)],
            "dirty": [dirty[i % len(dirty)](i) for i in range(n)]}


def per_string(strings: list[str]) -> float:
    redactor = Redactor(counters=Counters("bench"))
    start = time.perf_counter()
    for text in strings:
        redactor.redact_text(text)
    return (time.perf_counter() - start) / len(strings) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--strings", type=int, default=0, help="also time redaction of N unique strings")
    parser.add_argument("--mix", choices=["realistic", "scanner"], default="realistic",
                        help="scanner: a third attack payloads, a tenth probes and attack-tool agents")
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float, float, float]]] = {
        name: [] for name in VARIANTS if not args.only or name in args.only
    }
    if args.strings:
        results.setdefault("bare", [])
    strings = unique_strings(args.strings) if args.strings else {}
    per_kind: dict[str, list[float]] = {kind: [] for kind in strings}
    for _ in range(args.rounds):  # interleave variants so drift hits all alike
        for name in results:
            results[name].append(run(VARIANTS[name], args.records, args.mix))
        for kind, texts in strings.items():
            per_kind[kind].append(per_string(texts))

    def med(name: str, i: int) -> float:
        return statistics.median(v[i] for v in results[name])

    print(f"mix={args.mix} records={args.records} rounds={args.rounds} (medians; ratio = variant / bare, same run)")
    print(f"{'variant':34} {'total us/rec':>12} {'ratio':>6} {'emit p50 us':>11} {'ratio':>6} {'emit p99 us':>11} "
          f"{'cpu us/rec':>10} {'ratio':>6}")
    for name in results:
        print(
            f"{name:34} {med(name, 0):12.2f} {med(name, 0) / med('bare', 0):6.3f} "
            f"{med(name, 1):11.2f} {med(name, 1) / med('bare', 1):6.3f} {med(name, 2):11.2f} "
            f"{med(name, 3):10.2f} {med(name, 3) / med('bare', 3):6.3f}"
        )
    for kind, samples in per_kind.items():
        us = statistics.median(samples)
        print(f"{'redact one unique ' + kind + ' string':34} {us:12.2f} {'':6} {'':11} "
              f"{us / med('bare', 1):6.3f}  (ratio to bare emit p50)")


if __name__ == "__main__":
    main()
