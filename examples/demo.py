"""The whole promise in one run: the example API service under ``opentelemetry-instrument`` with
otel-ext, failing over between two local OTLP receivers (real rotel processes) while the primary is
killed halfway through the traffic; then a summary: events per class, records delivered per
backend, failovers, queue depth and lost records, counted at the receivers. It ends by writing the
``otel-ext report`` HTML page (usage per tenant with a pricing-tier suggestion, errors and latency,
security events, volume per class) and printing its path; the work directory is kept.

    python examples/demo.py                 # two receivers, primary killed halfway
    python examples/demo.py --no-backends   # nothing configured: the embedded file default
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))
from examples.api_service import traffic  # noqa: E402
from otel_ext.report import OTLPJsonFileReader, Record, write_report  # noqa: E402
from otel_ext.report.model import Aggregator, suggest_tiers  # noqa: E402


class ReceiversReader:
    """A report RecordReader over what the demo's receivers accepted, each record once (by uid)."""

    def __init__(self, *receivers: Receiver) -> None:
        self.receivers = receivers

    def records(self) -> Iterator[Record]:
        seen: set[object] = set()
        for receiver in self.receivers:
            for record in receiver.parsed():
                uid = record.get("log.record.uid")
                if uid not in seen:
                    seen.add(uid)
                    yield record

    def describe(self) -> str:
        return "the demo's OTLP receivers (" + ", ".join(r.name for r in self.receivers) + ")"


def write_demo_report(reader: ReceiversReader | OTLPJsonFileReader, workdir: Path) -> Path:
    data = Aggregator("tenant.id", reader.describe(), {"security": 365, "error": 90, "access": 30,
                                                      "performance": 14, "application": 7}).build(reader.records())
    path = write_report(data, workdir / "otel-ext-report.html", title="shop-api usage report (demo)")
    tiers = suggest_tiers({c: data.monthly(n) for c, n in data.client_totals().items()})
    print(f"{'pricing tiers (tenants)':28} " + ", ".join(f"{t.name} {len(t.clients)}" for t in tiers))
    print(f"{'report':28} {path}")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


class Receiver:
    """A rotel OTLP receiver that prints every record it accepts to its own file."""

    def __init__(self, name: str, workdir: Path) -> None:
        import rotel

        self.name = name
        self.grpc, self.http = free_port(), free_port()
        self.out = workdir / f"{name}.out"
        agent = Path(rotel.__file__).resolve().parent / "rotel-agent"
        self.proc = subprocess.Popen(
            [str(agent), "start", "--otlp-grpc-endpoint", f"127.0.0.1:{self.grpc}", "--otlp-http-endpoint",
             f"127.0.0.1:{self.http}", "--exporter", "blackhole", "--debug-log", "logs", "--debug-log-verbosity",
             "detailed", "--logs-batch-timeout", "20ms", "--pid-file", str(workdir / f"{name}.pid"),
             "--log-file", str(workdir / f"{name}.log")],
            stdout=self.out.open("wb"), stderr=subprocess.STDOUT)
        if not (wait_port(self.grpc) and wait_port(self.http)):
            raise SystemExit(f"receiver {name} did not start")

    def parsed(self) -> Iterator[Record]:
        """Every record this receiver printed, as a report Record (rotel's debug output is the only
        copy the demo keeps of what reached an OTLP receiver)."""
        text = self.out.read_text(errors="replace")
        for chunk in text.split("LogRecord #")[1:]:
            attrs: dict[str, object] = {}
            for key, kind, value in re.findall(r"-> ([\w.@-]+): (Str|Int|Double|Bool)\((.*?)\)\n", chunk):
                attrs[key] = (int(value) if kind == "Int" else float(value) if kind == "Double"
                              else value == "true" if kind == "Bool" else value)
            stamp = re.search(r"\nTimestamp: (\d+)", chunk)
            observed = re.search(r"ObservedTimestamp: (\d+)", chunk)
            t_ns = int(stamp.group(1)) if stamp and stamp.group(1) != "0" else int(observed.group(1) if observed else 0)
            body = re.search(r"\nBody: Str\((.*?)\)\n", chunk)
            yield Record(t_ns, 0, body.group(1) if body else "", attrs)

    def records(self) -> tuple[list[str], Counter[str]]:
        text = self.out.read_text(errors="replace")
        uids = re.findall(r"-> log\.record\.uid: Str\(([0-9a-f]+)\)", text)
        classes = Counter(re.findall(r"-> labels\.event_class: Str\((\w+)\)", text))
        return uids, classes

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_service(env: dict[str, str], workdir: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    log = workdir / "service.log"
    full_env = {**{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}, **env,
                "PYTHONPATH": str(ROOT), "OTEL_SERVICE_NAME": "shop-api", "OTEL_PYTHON_DISTRO": "otel_ext"}
    proc = subprocess.Popen([str(BIN / "opentelemetry-instrument"), str(BIN / "uvicorn"),
                             "examples.api_service.app:app", "--host", "127.0.0.1", "--port", str(port),
                             "--no-access-log"], cwd=ROOT, env=full_env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)
    if not wait_port(port):
        raise SystemExit(f"the service did not start:\n{log.read_text()}")
    return proc, f"http://127.0.0.1:{port}", log


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)


def run_failover(requests: int, workdir: Path) -> int:
    primary, secondary = Receiver("primary", workdir), Receiver("secondary", workdir)
    service = None
    try:
        env = {"OTEL_EXT_BACKENDS": f"otlp+grpc://127.0.0.1:{primary.grpc}?name=primary,"
                                    f"otlp+http://127.0.0.1:{secondary.http}?name=secondary",
               "OTEL_EXT_QUEUE_DIR": str(workdir / "queue"), "SHOP_STATS_FILE": str(workdir / "stats.json")}
        service, url, _ = start_service(env, workdir)
        print(f"service {url} -> primary otlp+grpc :{primary.grpc}, secondary otlp+http :{secondary.http}")
        first = traffic.run(url, requests // 2, seed=11)
        print(f"sent {sum(first.values())} requests; killing the primary receiver (kill -9) ...")
        primary.kill()
        second = traffic.run(url, requests - requests // 2, seed=12, burst=False)
        print(f"sent {sum(second.values())} more requests; statuses {dict(sorted((first + second).items()))}")
        stop(service)  # graceful: the service writes its final counters after a last flush
        service = None
        stats = json.loads((workdir / "stats.json").read_text())
        time.sleep(0.5)  # let the receivers print their last batch
        exporter = stats["exporters"][0]
        emitted = sum(exporter["queue_counters"].get("appended", {}).values())
        queued = exporter["queue"]["records"]
        dead = exporter["queue"]["dead_letter_records"]
        p_uids, p_classes = primary.records()
        s_uids, s_classes = secondary.records()
        unique = len(set(p_uids) | set(s_uids))
        lost = emitted - unique - queued - dead
        classes = p_classes + s_classes
        failovers = exporter["counters"].get("failovers", {})
        print("\n== otel-ext demo summary ==")
        print(f"{'events per class':28} " + ", ".join(f"{c} {classes[c]}" for c in
                                                     ("security", "error", "performance", "access", "application")))
        print(f"{'delivered per backend':28} primary {len(p_uids)}, secondary {len(s_uids)} "
              f"({len(p_uids) + len(s_uids) - unique} duplicates)")
        print(f"{'failovers':28} {sum(failovers.values())} {dict(failovers)}")
        print(f"{'queue depth':28} {queued} records ({dead} dead-lettered)")
        print(f"{'acknowledged to disk':28} {emitted}")
        print(f"{'delivered (unique)':28} {unique}")
        print(f"{'lost':28} {lost}")
        write_demo_report(ReceiversReader(primary, secondary), workdir)
        return 0 if lost == 0 else 1
    finally:
        if service is not None:
            stop(service)
        primary.kill()
        secondary.kill()


def run_no_backends(requests: int, workdir: Path) -> int:
    state = workdir / "state"
    service, url, _ = start_service({"XDG_STATE_HOME": str(state), "SHOP_STATS_FILE": str(workdir / "stats.json")},
                                    workdir)
    try:
        traffic.run(url, requests, seed=13)
    finally:
        stop(service)
    stats = json.loads((workdir / "stats.json").read_text())
    out = state / "otel-ext" / "logs" / "logs.jsonl"
    classes: Counter[str] = Counter()
    records = 0
    for line in out.read_text().splitlines():
        for rl in json.loads(line)["resourceLogs"]:
            for sl in rl["scopeLogs"]:
                for rec in sl["logRecords"]:
                    records += 1
                    for attr in rec.get("attributes", []):
                        if attr["key"] == "labels.event_class":
                            classes[attr["value"]["stringValue"]] += 1
    emitted = sum(stats["exporters"][0]["queue_counters"].get("appended", {}).values())
    print("\n== otel-ext demo summary (no backend configured: embedded file default) ==")
    print(f"{'written to':28} {out}")
    print(f"{'events per class':28} {dict(classes)}")
    print(f"{'acknowledged / written':28} {emitted} / {records}; lost {emitted - records}")
    write_demo_report(OTLPJsonFileReader(out.parent), workdir)
    return 0 if emitted == records else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--no-backends", action="store_true")
    parser.add_argument("--workdir", help="where to keep the logs, queue and report (default: a new temp dir, kept)")
    args = parser.parse_args()
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="otel-ext-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    code = (run_no_backends if args.no_backends else run_failover)(args.requests, workdir)
    print(f"{'kept':28} {workdir}")
    sys.exit(code)


if __name__ == "__main__":
    main()
