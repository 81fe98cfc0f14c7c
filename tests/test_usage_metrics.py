"""Usage metrics from access records (otel_ext/usage.py): counts and duration histograms per client,
route, method and status class on a real SDK MeterProvider; tenant ids exported hashed; bounded
cardinality with the tail folded into "other" and counted; never raises. End to end: the example
service under opentelemetry-instrument exports them through its normal OTLP metrics pipeline to a
real rotel receiver, and collector_configs/usage.yaml on the real collector build counts the same
numbers from the same delivered records."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.json_format import ParseDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from peers import free_port, port_open, rotel_binary, wait_until
from service import Service, uvicorn

from examples.api_service import traffic
from otel_ext.report.records import OTLPJsonFileReader, Record
from otel_ext.telemetry import Counters
from otel_ext.usage import DURATION, REQUESTS, UsageMetricsProcessor, hash_client, status_class

ROOT = Path(__file__).resolve().parents[1]
Key = tuple[str, str, str, str]


def points(reader: InMemoryMetricReader, name: str) -> dict[Key, Any]:
    out: dict[Key, Any] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    for p in metric.data.data_points:
                        a = p.attributes
                        key = (a["usage.client"], a["http.route"], a["http.request.method"], a["usage.status_class"])
                        out[key] = getattr(p, "value", None) if name == REQUESTS else (p.count, p.sum)
    return out


def access(client: str = "10.0.0.1", route: str = "/api/orders", status: int = 200, method: str = "GET",
           **extra: Any) -> dict[str, Any]:
    return {"http.request.method": method, "http.route": route, "http.response.status_code": status,
            "client.address": client, "http.server.request.duration": 0.02, **extra}


def test_counts_and_durations_per_client_route_method_status_class() -> None:
    reader = InMemoryMetricReader()
    usage = UsageMetricsProcessor(meter_provider=MeterProvider([reader]), counters=Counters("t"))
    for status in (200, 201, 404, 503):
        assert usage.record(access(status=status))
    assert usage.record(access(client="10.0.0.2", route="/api/login", method="POST", status=401,
                               **{"http.server.request.duration": 1.5}))
    assert points(reader, REQUESTS) == {("10.0.0.1", "/api/orders", "GET", "2xx"): 2,
                                        ("10.0.0.1", "/api/orders", "GET", "4xx"): 1,
                                        ("10.0.0.1", "/api/orders", "GET", "5xx"): 1,
                                        ("10.0.0.2", "/api/login", "POST", "4xx"): 1}
    assert points(reader, DURATION)[("10.0.0.2", "/api/login", "POST", "4xx")] == (1, 1.5)


class _Item:
    """The shape on_emit reads: ``item.log_record.attributes``."""

    def __init__(self, attrs: dict[str, Any]) -> None:
        self.log_record = type("R", (), {"attributes": attrs})()


def test_without_a_meter_provider_records_are_not_looked_at_until_one_is_set() -> None:
    """The API's proxy instruments drop every measurement until a MeterProvider is set: the
    processor skips records until then (cost ~0), and counts from the first record after."""
    script = """
import sys
from opentelemetry import metrics
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from otel_ext.telemetry import Counters
from otel_ext.usage import REQUESTS, UsageMetricsProcessor
sys.path.insert(0, sys.argv[1])
from test_usage_metrics import _Item, access, points

noop = UsageMetricsProcessor(meter_provider=NoOpMeterProvider(), counters=Counters("n"))
noop.on_emit(_Item(access()))
usage = UsageMetricsProcessor(counters=Counters("u"))  # the global provider: the API's proxy
for _ in range(3):
    usage.on_emit(_Item(access()))
before = (usage.live, usage.counters.get("recorded"), noop.live, noop.counters.get("recorded"))
reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider([reader]))
for _ in range(2):
    usage.on_emit(_Item(access()))
print(before, usage.live, usage.counters.get("recorded"), sum(points(reader, REQUESTS).values()))
"""
    out = subprocess.run([os.environ.get("PYTHON", sys.executable), "-c", script, str(ROOT / "tests")],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["(False,", "0,", "False,", "0)", "True", "2", "2"]


def test_tenant_ids_are_exported_hashed_never_raw() -> None:
    reader = InMemoryMetricReader()
    usage = UsageMetricsProcessor(meter_provider=MeterProvider([reader]), client_attribute="tenant.id",
                                  counters=Counters("t"))
    usage.record(access(**{"tenant.id": "ak-live-SECRET-0001"}))
    usage.record(access())  # no tenant id: "unknown", not the address
    clients = {k[0] for k in points(reader, REQUESTS)}
    assert clients == {hash_client("ak-live-SECRET-0001"), "unknown"}
    assert not any("SECRET" in c for c in clients)
    assert re.fullmatch(r"sha256:[0-9a-f]{16}", hash_client("x"))


def test_cardinality_is_bounded_top_n_per_window_and_the_tail_is_counted() -> None:
    now = [0.0]
    reader = InMemoryMetricReader()
    counters = Counters("t")
    usage = UsageMetricsProcessor(meter_provider=MeterProvider([reader]), top_n=3, max_routes=2, window_s=60,
                                  clock=lambda: now[0], counters=counters)
    # window 1: five clients; the first three seen keep their labels, the others fold into "other"
    for client, n in (("a", 1), ("b", 1), ("c", 1), ("d", 10), ("e", 20)):
        for _ in range(n):
            usage.record(access(client=client))
    got = points(reader, REQUESTS)
    assert {k[0] for k in got} == {"a", "b", "c", "other"}
    assert got[("other", "/api/orders", "GET", "2xx")] == 30
    assert counters.get("folded", "client") == 30
    # window 2: the top 3 of window 1 (e, d, then a by name) are admitted; b is folded now
    now[0] = 61.0
    for client in ("e", "d", "a", "b"):
        usage.record(access(client=client))
    got = points(reader, REQUESTS)
    assert got[("e", "/api/orders", "GET", "2xx")] == 1 and got[("d", "/api/orders", "GET", "2xx")] == 1
    assert got[("other", "/api/orders", "GET", "2xx")] == 31
    # routes are capped too; a raw path never becomes a label
    for i in range(5):
        usage.record(access(client="e", route=f"/r/{i}"))
    assert len({k[1] for k in points(reader, REQUESTS)} - {"other"}) <= 2
    assert counters.get("recorded") == 42
    assert sum(points(reader, REQUESTS).values()) == 42  # nothing lost by folding


def test_non_access_and_hostile_records_are_skipped_without_raising() -> None:
    reader = InMemoryMetricReader()
    counters = Counters("t")
    usage = UsageMetricsProcessor(meter_provider=MeterProvider([reader]), counters=counters)
    assert not usage.record({"message": "app started"})
    assert not usage.record({"http.response.status_code": True, "http.request.method": "GET"})
    assert not usage.record({"http.response.status_code": 200, "http.request.method": 7})
    assert not usage.record(access(**{"event.kind": "alert"}))  # a detector's alert is not a request
    assert usage.record({"http.response.status_code": "404", "http.request.method": "BREW", "http.route": "",
                         "client.address": "", "http.server.request.duration": "slow"})
    assert points(reader, REQUESTS) == {("unknown", "unmatched", "_OTHER", "4xx"): 1}
    assert points(reader, DURATION) == {}  # a non-numeric duration is not recorded
    assert status_class(99) == "other" and status_class(599) == "5xx"

    class Broken:
        @property
        def log_record(self) -> Any:
            raise RuntimeError("boom")

    usage.on_emit(Broken())  # type: ignore[arg-type]
    assert counters.get("failed") == 1


# --- end to end: the example service -> real OTLP receiver; the same records -> the real collector ---

def parse_rotel_metrics(text: str) -> dict[str, dict[Key, Any]]:
    """Last value per data point of each metric printed by rotel (cumulative: the last is the total)."""
    out: dict[str, dict[Key, Any]] = {}
    for metric in text.split("Metric #")[1:]:
        name = re.search(r"-> Name: (\S+)", metric)
        if not name or name.group(1) not in (REQUESTS, DURATION):
            continue
        for chunk in re.split(r"(?:Number|Histogram)DataPoints #\d+", metric)[1:]:
            chunk = chunk.split("Exemplar")[0]
            attrs = dict(re.findall(r"-> ([\w.]+): Str\((.*?)\)\n", chunk))
            key = (attrs["usage.client"], attrs["http.route"], attrs["http.request.method"], attrs["usage.status_class"])
            value = re.search(r"\nValue: (\d+)", chunk) or re.search(r"\nCount: (\d+)", chunk)
            assert value is not None, chunk
            out.setdefault(name.group(1), {})[key] = int(value.group(1))
    return out


def expected_from_records(records: list[Record]) -> tuple[Counter[Key], Counter[Key]]:
    counts: Counter[Key] = Counter()
    timed: Counter[Key] = Counter()
    for r in records:
        code, method = r.get("http.response.status_code"), r.get("http.request.method")
        if code is None or method is None:
            continue
        tenant = r.get("tenant.id")
        key = (hash_client(tenant) if tenant else "unknown", r.get("http.route") or "unmatched", method,
               status_class(int(code)))
        counts[key] += 1
        if r.get("http.server.request.duration") is not None:
            timed[key] += 1
    return counts, timed


@pytest.fixture(scope="module")
def service_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The example service under opentelemetry-instrument: logs to the file backend, metrics (OTLP
    gRPC, the SDK's own metrics pipeline) to a real rotel receiver that prints what it accepts."""
    tmp = tmp_path_factory.mktemp("usage")
    grpc_port, http_port = free_port(), free_port()
    out = tmp / "rotel.out"
    rotel = subprocess.Popen([rotel_binary(), "start", "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}", "--otlp-http-endpoint",
                              f"127.0.0.1:{http_port}", "--exporter", "blackhole", "--debug-log", "metrics",
                              "--debug-log-verbosity", "detailed", "--metrics-batch-timeout", "20ms",
                              "--pid-file", str(tmp / "rotel.pid"), "--log-file", str(tmp / "rotel.log")],
                             stdout=out.open("wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: port_open(grpc_port), 15)
        env = {"OTEL_PYTHON_DISTRO": "otel_ext", "OTEL_EXT_BACKENDS": f"file://{tmp / 'logs'}",
               "OTEL_EXT_QUEUE_DIR": str(tmp / "q"), "OTEL_SERVICE_NAME": "shop-api", "OTEL_TRACES_EXPORTER": "none",
               "OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc",
               "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"http://127.0.0.1:{grpc_port}",
               "OTEL_EXPORTER_OTLP_METRICS_INSECURE": "true", "OTEL_METRIC_EXPORT_INTERVAL": "1000",
               "OTEL_EXT_USAGE_CLIENT_ATTRIBUTE": "tenant.id"}
        service = Service(uvicorn(), env, tmp)
        try:
            service.wait_ready()
            traffic.run(service.url, 120, seed=21)
        finally:
            assert service.stop() in (0, -15), service.output()  # shutdown exports the last metrics
        wait_until(lambda: "otel_ext.usage.requests" in out.read_text(errors="replace"), 10)
        yield tmp, out.read_text(errors="replace")
    finally:
        rotel.terminate()
        rotel.wait(10)


@pytest.mark.peers
def test_service_usage_metrics_reach_a_real_otlp_receiver(service_run: tuple[Path, str]) -> None:
    tmp, printed = service_run
    records = list(OTLPJsonFileReader(tmp / "logs").records())
    counts, timed = expected_from_records(records)
    assert sum(counts.values()) >= 120
    assert len({k[0] for k in counts}) >= 5  # several tenants, plus "unknown" for the attacker
    got = parse_rotel_metrics(printed)
    assert got["otel_ext.usage.requests"] == dict(counts)
    assert got["otel_ext.usage.request.duration"] == dict(timed)
    for name in ("acme", "globex", "ak-acme-7f3c"):
        assert f"({name})" not in printed  # neither tenant names nor keys leave raw


@pytest.mark.peers
def test_collector_usage_config_counts_the_same_numbers(service_run: tuple[Path, str], otelcol: Path,
                                                        tmp_path: Path) -> None:
    tmp, _ = service_run
    records = list(OTLPJsonFileReader(tmp / "logs").records())
    counts, timed = expected_from_records(records)
    port = free_port()
    sink = tmp_path / "metrics.jsonl"
    test_cfg = tmp_path / "test.yaml"
    test_cfg.write_text(
        f"exporters:\n  file/usage:\n    path: {sink}\n    flush_interval: 100ms\n"
        "service:\n  telemetry: {metrics: {level: none}}\n"
        "  pipelines:\n    metrics/usage: {receivers: [signaltometrics/otel_ext_usage], exporters: [file/usage]}\n")
    env = {**os.environ, "OTEL_EXT_USAGE_GRPC_ENDPOINT": f"127.0.0.1:{port}", "OTEL_EXT_USAGE_CLIENT_ATTRIBUTE": "tenant.id"}
    usage_yaml = ROOT / "collector_configs" / "usage.yaml"
    check = subprocess.run([str(otelcol), "validate", "--config", str(usage_yaml), "--config", str(test_cfg)],
                           env=env, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    log = tmp_path / "collector.log"
    proc = subprocess.Popen([str(otelcol), "--config", str(usage_yaml), "--config", str(test_cfg)], env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: port_open(port), 30), log.read_text()
        export = grpc.insecure_channel(f"127.0.0.1:{port}").unary_unary(
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export", request_serializer=None,
            response_deserializer=None)
        for line in (tmp / "logs" / "logs.jsonl").read_text().splitlines():  # the delivered records, as sent
            doc = json.loads(line)
            for rl in doc["resourceLogs"]:  # OTLP/JSON ids are hex, protobuf JSON wants base64
                for sl in rl["scopeLogs"]:
                    for rec in sl["logRecords"]:
                        for key in ("traceId", "spanId"):
                            if key in rec:
                                rec[key] = base64.b64encode(bytes.fromhex(rec[key])).decode()
            export(ParseDict(doc, ExportLogsServiceRequest()).SerializeToString(), timeout=10)

        def summed() -> dict[str, Counter[Key]]:
            out: dict[str, Counter[Key]] = {}
            text = sink.read_text() if sink.exists() else ""
            for line in text.splitlines():
                try:
                    doc = json.loads(line)
                except ValueError:  # the exporter is still writing this line
                    continue
                for rm in doc.get("resourceMetrics", []):
                    for sm in rm.get("scopeMetrics", []):
                        for m in sm.get("metrics", []):
                            data = m.get("sum") or m.get("histogram") or {}
                            for p in data.get("dataPoints", []):
                                a = {kv["key"]: kv["value"].get("stringValue") for kv in p.get("attributes", [])}
                                key = (a["usage.client"], a["http.route"], a["http.request.method"],
                                       a["usage.status_class"])
                                n = int(p.get("asInt") or p.get("count") or 0)
                                out.setdefault(m["name"], Counter())[key] += n
            return out

        assert wait_until(lambda: sum(summed().get("otel_ext.usage.requests", Counter()).values())
                          >= sum(counts.values()), 30), log.read_text()[-3000:]
        got = summed()
        assert got["otel_ext.usage.requests"] == counts
        assert got["otel_ext.usage.request.duration"] == timed
    finally:
        proc.terminate()
        proc.wait(20)
