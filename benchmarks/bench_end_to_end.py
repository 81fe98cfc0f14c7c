"""Benchmark: end to end, stock OpenTelemetry vs otel-ext, counted at a real receiver.

stdlib logging (realistic API mix with tracebacks on 5xx) -> handler -> ... -> one real rotel
OTLP receiver (``--debug-log-verbosity basic``: it prints how many records each request carried,
which is what "delivered" sums). Every variant runs in a fresh process:

- ``stock``: contrib LoggingHandler + BatchLogRecordProcessor + OTLPLogExporter (gRPC)
- ``deferred``: ``otel_ext.configure()`` defaults (classify, redact, detectors on the worker, durable
  queue, OTLP gRPC)
- ``inline``: the same with ``OTEL_EXT_PROCESSING=inline``
- ``no-detectors``: deferred with ``OTEL_EXT_DETECTORS=off``
- ``file``: deferred with no backend configured (the embedded file backend; "delivered" counts the
  records in its OTLP/JSON files)

For each: full speed and paced (``--rates``), SDK/otel-ext default buffers and large (65,536)
buffers. Prints sent / delivered / deliberately dropped (otel-ext's own counters; stock has none:
its losses are silent), CPU µs per record (process CPU from the first emit until everything was
delivered), its ratio to stock in the same run and mode, app-thread emit p50/p99 and peak RSS.
Each run's progress line also shows emit p90/p99.9, how many emits took over 1 ms, and how many
records were spilled (and how many of those by the worker relieving a buffer past 3/4 full).

With ``--rounds N`` the emit p99 ratio to stock is also printed round by round (it swings with the
box's load: read its median over rounds). ``--baseline DIR`` runs every otel-ext variant a second
time from another checkout (``VARIANT@before``) in the same interleaved rounds: before/after in
one run.

    python benchmarks/bench_end_to_end.py                 # 20k records, a few minutes on 2 cores
    python benchmarks/bench_end_to_end.py --records 60000 --rates 5000,10000,20000
    python benchmarks/bench_end_to_end.py --rounds 3 --variants stock,deferred,file --baseline ../main
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LARGE = 65_536
VARIANTS = ("stock", "deferred", "inline", "no-detectors", "file")
_COUNT = re.compile(r"logs\S*=\S*?(\d+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


# --- child: one variant, one mode, one fresh process -----------------------------------------------

def child(variant: str, records: int, rate: int, buffer: str, endpoint: str) -> dict[str, Any]:
    import logging

    sys.path.insert(0, str(HERE))
    from _mix import make_events

    source = os.environ.get("OTEL_EXT_E2E_SOURCE")
    if source:  # measure another checkout (e.g. before/after): bypass the editable install's finder
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]
        sys.path.insert(0, source)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    pipeline: Any = None
    provider: Any = None
    if variant == "stock":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.instrumentation.logging.handler import LoggingHandler
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

        provider = LoggerProvider()
        kwargs = {"max_queue_size": LARGE} if buffer == "large" else {}
        provider.add_log_record_processor(
            BatchLogRecordProcessor(OTLPLogExporter(endpoint=endpoint, insecure=True), **kwargs))
        root.addHandler(LoggingHandler(logger_provider=provider))
    else:
        import otel_ext

        assert not source or otel_ext.__file__.startswith(source), otel_ext.__file__
        pipeline = otel_ext.configure(**({"buffer_size": LARGE} if buffer == "large" else {}))
    events = make_events(exceptions=True)
    clock = time.perf_counter
    lat: list[float] = []
    append = lat.append
    threads0 = thread_cpu()
    cpu0 = time.process_time()
    start = clock()
    for i in range(records):
        if rate and i % 50 == 0:
            due = start + i / rate
            now = clock()
            if due > now:
                time.sleep(due - now)
        t0 = clock()
        events[i % len(events)]()
        append(clock() - t0)
    emit_s = clock() - start
    if pipeline is not None:
        pipeline.force_flush(300_000)
    else:
        provider.force_flush(300_000)
    cpu = time.process_time() - cpu0
    threads1 = thread_cpu()
    total_s = clock() - start
    by_thread = {name: (threads1[name] - threads0.get(name, 0.0)) / records * 1e6 for name in threads1}
    dropped: dict[str, int] = {}
    if pipeline is not None:
        st = pipeline.stats()
        first_hop = st.get("first_hop", {})  # absent before issue 11: lets the script measure "before"
        for label, n in first_hop.get("dropped", {}).items():
            dropped[f"first_hop:{label}"] = n
        for label, n in st.get("volume_dropped", {}).items():
            dropped[f"volume:{label}"] = n
        for label, n in st.get("encoding", {}).get("set_aside", {}).items():
            dropped[f"encode:{label}"] = n
        for exp in st["exporters"]:
            for label, n in exp.get("queue_counters", {}).get("dropped", {}).items():
                dropped[f"queue:{label}"] = n
            for label, n in exp.get("counters", {}).get("export_failed", {}).items():
                dropped[f"export_failed:{label}"] = n
        spilled = first_hop.get("spilled", 0)
        by_worker = first_hop.get("spilled_by_worker", 0)
        alerts = sum(st.get("alerts", {}).values())
        pipeline.shutdown()
    else:
        spilled = alerts = by_worker = 0
        provider.shutdown()
    root.handlers[:] = []
    lat.sort()
    return {
        "sent": records, "cpu_us": cpu / records * 1e6, "emit_s": emit_s, "total_s": total_s,
        "p50_us": lat[len(lat) // 2] * 1e6, "p99_us": lat[int(len(lat) * 0.99)] * 1e6,
        "p90_us": lat[int(len(lat) * 0.9)] * 1e6, "p999_us": lat[int(len(lat) * 0.999)] * 1e6,
        "over_1ms": sum(1 for x in lat if x > 0.001),
        "rss_mb": peak_rss_mb(), "dropped": dropped, "spilled": spilled, "spilled_by_worker": by_worker,
        "alerts": alerts, "threads_us": by_thread,
    }


def thread_cpu() -> dict[str, float]:
    """CPU seconds per live thread role (app / first hop / lanes / other), from /proc (Linux)."""
    import threading

    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for thread in threading.enumerate():
        try:
            fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        name = thread.name
        role = ("app" if thread is threading.main_thread() else "worker" if "FirstHop" in name or "BatchLog" in name
                or "Batch" in name else "lanes" if name.startswith("otel-ext-lane") else "other")
        out[role] = out.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM; ``ru_maxrss`` would carry the parent's peak across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- parent ----------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rotel_binary() -> str:
    import rotel

    return str(Path(rotel.__file__).resolve().parent / "rotel-agent")


def received(out: Path) -> int:
    if not out.exists():
        return 0
    text = _ANSI.sub("", out.read_text(errors="replace"))
    return sum(int(m) for m in re.findall(r"Received logs\..*?\blogs=(\d+)", text))


def file_records(directory: Path) -> int:
    total = 0
    for path in directory.rglob("*.jsonl"):
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                doc = json.loads(line)
                total += sum(len(sl.get("logRecords", [])) for rl in doc.get("resourceLogs", [])
                             for sl in rl.get("scopeLogs", []))
    return total


def settle(count: Any, timeout: float = 60.0) -> int:
    """The count once it stopped moving for 1 s."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = count()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > 1.0:
            break
        time.sleep(0.2)
    return int(last)


def run_one(variant: str, records: int, rate: int, buffer: str, workdir: Path,
            baseline: str | None = None) -> dict[str, Any]:
    """One fresh child process; ``variant@before`` measures the ``baseline`` checkout instead."""
    variant, _, tag = variant.partition("@")
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    port = free_port()
    out = run_dir / "rotel.out"
    rx = subprocess.Popen(
        [rotel_binary(), "start", "--otlp-grpc-endpoint", f"127.0.0.1:{port}", "--otlp-http-endpoint",
         f"127.0.0.1:{free_port()}", "--exporter", "blackhole", "--debug-log", "logs", "--debug-log-verbosity",
         "basic", "--logs-batch-timeout", "50ms"],
        stdout=out.open("wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("OTEL_EXT_", "OTEL_BLRP_")) or k == "OTEL_EXT_E2E_SOURCE"}
        if tag == "before" and baseline:
            env["OTEL_EXT_E2E_SOURCE"] = baseline
        env.update({"XDG_STATE_HOME": str(run_dir / "state"), "OTEL_EXT_QUEUE_DIR": str(run_dir / "queue"),
                    "OTEL_EXT_ON_CONFIG_ERROR": "exit"})
        if variant != "file":
            env["OTEL_EXT_BACKENDS"] = f"otlp+grpc://127.0.0.1:{port}"
        if variant == "inline":
            env["OTEL_EXT_PROCESSING"] = "inline"
        if variant == "no-detectors":
            env["OTEL_EXT_DETECTORS"] = "off"
        proc = subprocess.run(
            [sys.executable, __file__, "--child", variant, "--records", str(records), "--rate", str(rate),
             "--buffer", buffer, "--endpoint", f"127.0.0.1:{port}"],
            env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"{variant} failed:\n{proc.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        if variant == "file":
            result["delivered"] = file_records(run_dir / "state")
        else:
            result["delivered"] = settle(lambda: received(out))
        result["delivered"] -= result["alerts"]  # detector alerts are records too; count the app's only
        result["stderr_lines"] = len(proc.stderr.splitlines())
        return result
    finally:
        rx.terminate()
        try:
            rx.wait(10)
        except subprocess.TimeoutExpired:
            rx.kill()
        shutil.rmtree(run_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--full", action="store_true", help="60,000 records, rates 5k/10k/20k, 3 rounds")
    parser.add_argument("--rates", default="10000", help="paced rates in records/s, comma-separated (0: none)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--buffers", default="default,large")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--source", help="directory holding the otel_ext package to measure (default: installed)")
    parser.add_argument("--baseline", help="another checkout (e.g. main before a change): each otel-ext variant "
                        "also runs from it as VARIANT@before, interleaved in the same rounds")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--buffer", default="default", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.records, args.rate, args.buffer, args.endpoint)))
        return
    if args.source:
        os.environ["OTEL_EXT_E2E_SOURCE"] = str(Path(args.source).resolve())
    if args.full:
        args.records, args.rates, args.rounds = 60_000, "5000,10000,20000", 3
    variants = [v for v in args.variants.split(",") if v]
    baseline = str(Path(args.baseline).resolve()) if args.baseline else None
    if baseline:
        variants = [w for v in variants for w in ((v,) if v == "stock" else (f"{v}@before", v))]
    rates = [int(r) for r in args.rates.split(",") if r.strip() and int(r) > 0]
    modes = [(0, b) for b in args.buffers.split(",") if b] + [(r, "default") for r in rates]
    results: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="otel-ext-e2e-") as tmp:
        for _ in range(args.rounds):  # interleaved: drift on the shared box hits every variant alike
            for rate, buffer in modes:
                for variant in variants:
                    res = run_one(variant, args.records, rate, buffer, Path(tmp), baseline)
                    results.setdefault((variant, rate, buffer), []).append(res)
                    print(f"  .. {variant:20} {'paced ' + str(rate) if rate else 'full speed':12} {buffer:7} "
                          f"delivered {res['delivered']:>6} cpu {res['cpu_us']:.1f} us/rec emit p50/p90/p99/p99.9 "
                          f"{res['p50_us']:.0f}/{res['p90_us']:.0f}/{res['p99_us']:.0f}/{res['p999_us']:.0f} us, "
                          f"{res['over_1ms']} emits > 1 ms, spilled {res['spilled']} "
                          f"({res['spilled_by_worker']} by the worker)", file=sys.stderr)

    def med(key: tuple[str, int, str], field: str) -> float:
        return statistics.median(r[field] for r in results[key])

    print(f"\n{args.records:,} records per run, {args.rounds} round(s), medians; ratio = CPU per record / stock's "
          "in the same mode and run; delivered = app records counted at the receiver (detector alerts excluded)")
    header = (f"{'variant':20} {'mode':14} {'buffer':7} {'sent':>7} {'delivered':>9} {'dropped':>8} {'spilled':>8} "
              f"{'CPU us/rec':>10} {'ratio':>6} {'emit p50':>9} {'emit p99':>9} {'p99 ratio':>9} {'RSS MB':>7}")
    print(header)
    print("-" * len(header))
    for rate, buffer in modes:
        anchor = ("stock", rate, buffer)
        for variant in variants:
            key = (variant, rate, buffer)
            runs = results[key]
            dropped = statistics.median(sum(r["dropped"].values()) for r in runs)
            ratio = med(key, "cpu_us") / med(anchor, "cpu_us") if anchor in results else float("nan")
            p99_ratio = med(key, "p99_us") / med(anchor, "p99_us") if anchor in results else float("nan")
            mode = f"paced {rate}/s" if rate else "full speed"
            drop_text = "silent" if variant == "stock" else f"{dropped:.0f}"
            print(f"{variant:20} {mode:14} {buffer:7} {runs[0]['sent']:>7} {med(key, 'delivered'):>9.0f} "
                  f"{drop_text:>8} {med(key, 'spilled'):>8.0f} {med(key, 'cpu_us'):>10.1f} {ratio:>6.2f} "
                  f"{med(key, 'p50_us'):>9.1f} {med(key, 'p99_us'):>9.1f} {p99_ratio:>9.2f} {med(key, 'rss_mb'):>7.0f}")
    if args.rounds > 1:  # emit p99 swings with the box's load: show it round by round, against the same round's stock
        print("\nemit p99 / stock's emit p99 of the same round and mode, per round (min / median / max):")
        for rate, buffer in modes:
            anchor = results.get(("stock", rate, buffer))
            if not anchor:
                continue
            mode = f"paced {rate}/s" if rate else "full speed"
            for variant in variants:
                if variant == "stock":
                    continue
                ratios = sorted(r["p99_us"] / a["p99_us"] for r, a in zip(results[(variant, rate, buffer)], anchor,
                                                                        strict=False))
                print(f"  {variant:20} {mode:14} {buffer:7} {ratios[0]:5.2f} / {statistics.median(ratios):5.2f} / "
                      f"{ratios[-1]:5.2f}   ({', '.join(f'{x:.2f}' for x in ratios)})")
    if args.rounds > 1:  # the box's load moves every run: ratios within one round are steadier than medians
        print("\nCPU ratios within each round (median over rounds; single rounds in brackets):")
        for rate, buffer in modes:
            anchor = results.get(("stock", rate, buffer))
            mode = f"paced {rate}/s" if rate else "full speed"
            for variant in variants:
                if variant == "stock" or variant.endswith("@before") or not anchor:
                    continue
                runs = results[(variant, rate, buffer)]
                to_stock = [r["cpu_us"] / a["cpu_us"] for r, a in zip(runs, anchor, strict=False)]
                line = (f"  {variant:20} {mode:14} {buffer:7} vs stock {statistics.median(to_stock):5.2f} "
                        f"({', '.join(f'{x:.2f}' for x in to_stock)})")
                before = results.get((f"{variant}@before", rate, buffer))
                if before:
                    paired = [r["cpu_us"] / b["cpu_us"] for r, b in zip(runs, before, strict=False)]
                    line += (f"; after/before {statistics.median(paired):5.2f} "
                             f"({', '.join(f'{x:.2f}' for x in paired)})")
                print(line)
    print("\nCPU µs per record by thread (medians; 'native' = threads Python does not know, e.g. gRPC's):")
    roles = ("app", "worker", "lanes", "other", "native")
    print(f"  {'variant':20} {'mode':14} {'buffer':7}" + "".join(f"{r:>8}" for r in roles))
    for rate, buffer in modes:
        for variant in variants:
            runs = results[(variant, rate, buffer)]
            split = {r: statistics.median(x.get("threads_us", {}).get(r, 0.0) for x in runs) for r in roles[:-1]}
            split["native"] = statistics.median(
                x["cpu_us"] - sum(x.get("threads_us", {}).values()) for x in runs)
            mode = f"paced {rate}/s" if rate else "full speed"
            print(f"  {variant:20} {mode:14} {buffer:7}" + "".join(f"{split[r]:>8.1f}" for r in roles))
    details = {f"{k[0]}/{k[1]}/{k[2]}": r[-1]["dropped"] for k, r in results.items() if r[-1]["dropped"]}
    if details:
        print("\ndeliberately dropped, by counter (last round):")
        for name, dropped in details.items():
            print(f"  {name}: {dropped}")


if __name__ == "__main__":
    main()
