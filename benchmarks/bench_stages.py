"""Benchmark: the deferred worker's cost per record, stage by stage, on the realistic API mix.

Builds the processors as ``configure()`` does (``build_parts``), makes N records of the mix through
our logging handler, then times each stage over them on one thread (thread CPU): usage metrics (on
the app thread in the pipeline; no MeterProvider here), classification, redaction, detectors,
OTLP encoding, and the file backend's OTLP/JSON writer (on the lane thread in the pipeline) over the
encoded payloads, and ``app_emit``: the app thread's log call (stdlib logging, our handler, the SDK
Logger, into a list). ``total`` is the worker's stages. Each measurement runs in a fresh process;
with ``--baseline DIR`` the same is measured from another checkout in interleaved rounds and the
ratio after/before is printed.

    python benchmarks/bench_stages.py [--records 20000] [--rounds 3] [--baseline ../main]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
STAGES = ("usage", "classify", "redact", "detect", "encode", "otlp_json", "app_emit")
NOT_WORKER = ("otlp_json", "app_emit")  # the file lane's writer; the app thread's log call


def child(records: int, source: str | None) -> dict[str, float]:
    import gc
    import logging
    import time

    if source:  # measure another checkout: bypass the editable install's finder
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]
        sys.path.insert(0, source)
    sys.path.insert(0, str(HERE))
    from _mix import make_events
    from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor

    from otel_ext.auto.pipeline import build_parts
    from otel_ext.auto.settings import load_settings
    from otel_ext.backends.otlp_json import to_otlp_json
    from otel_ext.export.encoding import encode_batch
    from otel_ext.handler import OtelExtLoggingHandler

    class Collect(LogRecordProcessor):
        def __init__(self) -> None:
            self.items: list[Any] = []

        def on_emit(self, log_record: Any) -> None:
            self.items.append(log_record)

        def shutdown(self) -> None:
            pass

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    provider = LoggerProvider()
    collect = Collect()
    provider.add_log_record_processor(collect)
    root = logging.getLogger()
    root.handlers[:] = [OtelExtLoggingHandler(logger_provider=provider)]
    root.setLevel(logging.INFO)
    events = make_events(exceptions=True)
    for i in range(min(records, 2000)):  # warm-up (caches, the SDK's logger cache)
        events[i % len(events)]()
    collect.items.clear()
    e0 = time.thread_time()
    for i in range(records):
        events[i % len(events)]()
    e1 = time.thread_time()
    root.handlers[:] = []
    items = collect.items
    parts = build_parts(load_settings())
    gc.collect()
    clock = time.thread_time
    spent: dict[str, float] = {}
    t0 = clock()
    if parts.usage is not None:
        for item in items:
            parts.usage.on_emit(item)
    t1 = clock()
    for item in items:
        scope = item.instrumentation_scope
        parts.classifier.classify_record(item.log_record, scope.name if scope is not None else "")
    t2 = clock()
    for item in items:
        parts.redaction.redact_record(item.log_record)
    t3 = clock()
    if parts.detection is not None:
        for item in items:
            parts.detection.observe(item.log_record)
    t4 = clock()
    payloads = []
    for start in range(0, len(items), 512):
        payloads.extend(entry.payload for entry in encode_batch(items[start:start + 512]))
    t5 = clock()
    for payload in payloads:
        to_otlp_json(payload)
    t6 = clock()
    for name, (a, b) in zip(STAGES[:-1], [(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5), (t5, t6)], strict=True):
        spent[name] = (b - a) / len(items) * 1e6
    spent["app_emit"] = (e1 - e0) / records * 1e6  # stdlib logging -> our handler -> SDK Logger -> a list
    return spent


def run(records: int, source: str | None) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_EXT_")}
    with tempfile.TemporaryDirectory(prefix="otel-ext-stages-") as tmp:
        env["XDG_STATE_HOME"] = tmp
        args = [sys.executable, __file__, "--child", "--records", str(records)]
        if source:
            args += ["--source", source]
        out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600, check=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", help="another checkout to measure in the same rounds (before)")
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.records, args.source)))
        return
    sides = {"after": None} if not args.baseline else {"before": str(Path(args.baseline).resolve()), "after": None}
    results: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    for _ in range(args.rounds):  # interleaved: drift on the shared box hits both alike
        for side, source in sides.items():
            results[side].append(run(args.records, source))
    print(f"{args.records:,} records, {args.rounds} round(s), medians; µs of thread CPU per record")
    print(f"{'stage':10}" + "".join(f"{side:>10}" for side in sides) + ("     ratio" if args.baseline else ""))
    for stage in (*STAGES, "total"):
        values = {side: statistics.median(r[stage] if stage != "total" else  # the worker's: gRPC needs no JSON
                                          sum(v for k, v in r.items() if k not in NOT_WORKER) for r in runs)
                  for side, runs in results.items()}
        line = f"{stage:10}" + "".join(f"{values[side]:>10.2f}" for side in sides)
        if args.baseline:
            line += f"{values['after'] / values['before']:>10.2f}" if values["before"] else "         -"
        print(line)


if __name__ == "__main__":
    main()
