"""collector_configs/: the shipped files are exactly `otel-ext collector-config`'s output, validate on
the real collector, and do their job there: the gateway fails over OTLP primary -> Elasticsearch ->
OTLP secondary with 0 loss and returns after recovery; the agent classifies tailed JSON lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
import urllib3
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from peers import collect, free_port, port_open, wait_until

from otel_ext.classify import build_ruleset
from otel_ext.collector import render_configs

pytestmark = pytest.mark.peers
ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "collector_configs"


def test_shipped_configs_are_the_generators_output() -> None:
    files, unsupported = render_configs(build_ruleset(use_env=False))
    assert unsupported == []
    for name, text in files.items():
        assert (SHIPPED / name).read_text() == text, f"{name} is stale: run `otel-ext collector-config`"


def test_rules_ottl_cannot_express_are_reported(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - id: listvalue\n    when: {attributes.tags: {equals: [a, b]}}\n    class: security\n")
    out = subprocess.run([sys.executable, "-m", "otel_ext.cli", "collector-config", "--rules", str(rules), "--out",
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "NOT RENDERED" in out.stderr and "listvalue" in out.stderr
    assert "# NOT RENDERED: rule 'listvalue'" in (tmp_path / "out" / "classify.yaml").read_text()


def test_regexes_ottl_cannot_run_are_rule_errors_in_process_too(tmp_path: Path) -> None:
    # rule regexes are RE2 in-process as in OTTL: a lookahead is refused at load, not silently dropped
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - id: lookahead\n    when: {body: {matches: 'token(?=[0-9])'}}\n    class: security\n")
    out = subprocess.run([sys.executable, "-m", "otel_ext.cli", "collector-config", "--rules", str(rules), "--out",
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "lookahead" in out.stderr and "RE2" in out.stderr and "Traceback" not in out.stderr


ENV = {"OTEL_EXT_PRIMARY_ENDPOINT": "127.0.0.1:1", "OTEL_EXT_SECONDARY_ENDPOINT": "127.0.0.1:2",
       "OTEL_EXT_ES_ENDPOINT": "http://127.0.0.1:3", "OTEL_EXT_GATEWAY_ENDPOINT": "127.0.0.1:4",
       "OTEL_EXT_FILELOG_INCLUDE": "/nonexistent/*.log"}


@pytest.mark.parametrize("name", ["gateway-failover.yaml", "agent-filelog.yaml"])
def test_shipped_configs_validate(otelcol: Path, tmp_path: Path, name: str) -> None:
    env = {**os.environ, **ENV, "OTEL_EXT_STORAGE_DIR": str(tmp_path)}
    out = subprocess.run([str(otelcol), "validate", "--config", str(SHIPPED / name), "--config",
                          str(SHIPPED / "classify.yaml")], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_classify_yaml_validates_alone_with_one_pipeline_line(otelcol: Path, tmp_path: Path) -> None:
    user = tmp_path / "user.yaml"
    user.write_text("receivers: {otlp: {protocols: {grpc: {endpoint: 127.0.0.1:0}}}}\nexporters: {debug: {}}\n"
                    "service:\n  telemetry: {metrics: {level: none}}\n  pipelines:\n    logs: {receivers: [otlp], "
                    "processors: [transform/otel_ext_classify], exporters: [debug]}\n")
    out = subprocess.run([str(otelcol), "validate", "--config", str(user), "--config", str(SHIPPED / "classify.yaml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def send(port: int, first: int, count: int) -> None:
    request = ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()
    scope.scope.name = "shop.api"
    for i in range(first, first + count):
        rec = scope.log_records.add()
        rec.time_unix_nano = time.time_ns()
        rec.body.string_value = f"GET /api/orders {i}"
        for key, value in (("http.route", "/api/orders"), ("log.record.uid", f"gw-{i:06d}"),
                           ("data_stream.namespace", "gateway")):
            kv = rec.attributes.add()
            kv.key, kv.value.string_value = key, value
        kv = rec.attributes.add()
        kv.key, kv.value.int_value = "http.response.status_code", 200
    export = grpc.insecure_channel(f"127.0.0.1:{port}").unary_unary(
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export", request_serializer=None, response_deserializer=None)
    export(request.SerializeToString(), timeout=10)


def es_uids(url: str) -> list[str]:
    http = urllib3.PoolManager()
    http.request("POST", f"{url}/logs-generic.otel-gateway/_refresh")
    resp = http.request("POST", f"{url}/logs-generic.otel-gateway/_search", body=json.dumps({"size": 10000}).encode(),
                        headers={"Content-Type": "application/json"})
    if resp.status != 200:
        return []
    return [h["_source"]["attributes"]["log.record.uid"] for h in resp.json()["hits"]["hits"]]


def test_gateway_fails_over_with_zero_loss_and_returns(otelcol: Path, receivers: Any, es_server: Any,
                                                       tmp_path: Path) -> None:
    http = urllib3.PoolManager()
    # what the default Elasticsearch distribution ships (a logs-*-* data stream template; the integ-test
    # build lacks it), narrowed to this test's stream: this build cannot delete data streams afterwards
    http.request("PUT", f"{es_server.url}/_index_template/test-gateway-logs", body=json.dumps(
        {"index_patterns": ["logs-generic.otel-gateway"], "data_stream": {}, "priority": 50}).encode(),
        headers={"Content-Type": "application/json"})
    primary = receivers("primary")
    secondary = receivers("secondary")
    grpc_port = free_port()
    env = {**os.environ, "OTEL_EXT_PRIMARY_ENDPOINT": f"127.0.0.1:{primary.grpc_port}",
           "OTEL_EXT_SECONDARY_ENDPOINT": f"127.0.0.1:{secondary.grpc_port}", "OTEL_EXT_ES_ENDPOINT": es_server.url,
           "OTEL_EXT_OTLP_INSECURE": "true", "OTEL_EXT_STORAGE_DIR": str(tmp_path / "storage"),
           "OTEL_EXT_GRPC_ENDPOINT": f"127.0.0.1:{grpc_port}", "OTEL_EXT_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
           "OTEL_EXT_HEALTH_ENDPOINT": f"127.0.0.1:{free_port()}", "OTEL_EXT_FAILOVER_RETRY_INTERVAL": "1s",
           "OTEL_EXT_SPOOL_ENDPOINT": f"127.0.0.1:{free_port()}"}
    # routed to logs-generic.otel-gateway (data_stream.namespace is honoured by the exporter)
    log = (tmp_path / "collector.log").open("wb")
    proc = subprocess.Popen([str(otelcol), "--config", str(SHIPPED / "gateway-failover.yaml"), "--config",
                             str(SHIPPED / "classify.yaml")], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: port_open(grpc_port), 30), (tmp_path / "collector.log").read_text()
        send(grpc_port, 0, 200)
        assert len(set(collect(200, primary))) == 200
        primary.kill()
        for batch in range(4):
            send(grpc_port, 200 + batch * 50, 50)
            time.sleep(0.2)
        assert wait_until(lambda: len(set(es_uids(es_server.url))) >= 200, 60), \
            (tmp_path / "collector.log").read_text()[-3000:]
        primary.start()  # recovery: the connector tries the higher level again every second
        deadline = time.monotonic() + 60
        sent = 400
        while time.monotonic() < deadline and len(set(primary.uids())) <= 200:
            send(grpc_port, sent, 10)
            sent += 10
            time.sleep(0.5)
        assert len(set(primary.uids())) > 200  # traffic is back on the primary
        wait_until(lambda: len(set(primary.uids()) | set(es_uids(es_server.url)) | set(secondary.uids())) >= sent, 30)
    finally:
        proc.terminate()
        proc.wait(30)
        http.request("DELETE", f"{es_server.url}/_index_template/test-gateway-logs")
    delivered = set(primary.uids()) | set(es_uids(es_server.url)) | set(secondary.uids())
    assert delivered == {f"gw-{i:06d}" for i in range(sent)}  # 0 lost
    labels = collect(200, primary)
    assert labels and "labels.event_class: Str(access)" in primary.output()  # classified on the way


def test_agent_tails_json_lines_and_classifies_them(otelcol: Path, receivers: Any, tmp_path: Path) -> None:
    rx = receivers("rx")
    logs = tmp_path / "app"
    logs.mkdir()
    lines = [{"message": "POST /api/login 401", "level": "info", "http.route": "/api/login",
              "http.request.method": "POST", "http.response.status_code": 401, "log.record.uid": "agent-1"},
             {"msg": "Failed login for user bob", "level": "warn", "log.record.uid": "agent-2"},
             {"message": "cache warmed", "level": "info", "log.record.uid": "agent-3"}]
    (logs / "service.log").write_text("".join(json.dumps(line) + "\n" for line in lines))
    env = {**os.environ, "OTEL_EXT_GATEWAY_ENDPOINT": f"127.0.0.1:{rx.grpc_port}", "OTEL_EXT_OTLP_INSECURE": "true",
           "OTEL_EXT_FILELOG_INCLUDE": str(logs / "*.log"), "OTEL_EXT_FILELOG_START_AT": "beginning",
           "OTEL_EXT_STORAGE_DIR": str(tmp_path / "storage")}
    proc = subprocess.Popen([str(otelcol), "--config", str(SHIPPED / "agent-filelog.yaml"), "--config",
                             str(SHIPPED / "classify.yaml")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        uids = collect(3, rx, timeout=30)
    finally:
        proc.terminate()
        proc.wait(30)
    assert sorted(set(uids)) == ["agent-1", "agent-2", "agent-3"]
    by_uid = {r["log.record.uid"]: r for r in rx.records()}
    assert by_uid["agent-1"]["event.action"] == "authn_login_fail"
    assert by_uid["agent-2"]["event.action"] == "authn_login_fail" and by_uid["agent-2"]["labels.event_class"] == "security"
    assert by_uid["agent-3"]["labels.event_class"] == "application"


def test_gateway_queue_survives_a_restart_while_every_backend_is_down(otelcol: Path, receivers: Any,
                                                                        tmp_path: Path) -> None:
    primary = receivers("primary", start=False)
    secondary = receivers("secondary", start=False)
    grpc_port = free_port()
    env = {**os.environ, "OTEL_EXT_PRIMARY_ENDPOINT": f"127.0.0.1:{primary.grpc_port}",
           "OTEL_EXT_SECONDARY_ENDPOINT": f"127.0.0.1:{secondary.grpc_port}",
           "OTEL_EXT_ES_ENDPOINT": f"http://127.0.0.1:{free_port()}", "OTEL_EXT_OTLP_INSECURE": "true",
           "OTEL_EXT_STORAGE_DIR": str(tmp_path / "storage"), "OTEL_EXT_GRPC_ENDPOINT": f"127.0.0.1:{grpc_port}",
           "OTEL_EXT_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}", "OTEL_EXT_HEALTH_ENDPOINT": f"127.0.0.1:{free_port()}",
           "OTEL_EXT_FAILOVER_RETRY_INTERVAL": "1s", "OTEL_EXT_SPOOL_ENDPOINT": f"127.0.0.1:{free_port()}"}

    def start() -> subprocess.Popen[bytes]:
        log = (tmp_path / f"collector-{time.monotonic_ns()}.log").open("wb")
        proc = subprocess.Popen([str(otelcol), "--config", str(SHIPPED / "gateway-failover.yaml"), "--config",
                                 str(SHIPPED / "classify.yaml")], env=env, stdout=log, stderr=subprocess.STDOUT)
        assert wait_until(lambda: port_open(grpc_port), 30)
        return proc

    proc = start()
    try:
        send(grpc_port, 0, 300)  # every level is down: the spool keeps it on disk
        time.sleep(2)
    finally:
        proc.terminate()
        proc.wait(30)
    secondary.start()
    proc = start()  # a new collector process finds the queue in file_storage
    try:
        uids = collect(300, secondary, timeout=60)
    finally:
        proc.terminate()
        proc.wait(30)
    assert set(uids) == {f"gw-{i:06d}" for i in range(300)}


def test_classify_yaml_declares_that_request_headers_are_inspected_in_process_only() -> None:
    """Header-attribute inspection has no OTTL form: the shipped file must say so, not differ silently."""
    text = (Path(__file__).resolve().parents[1] / "collector_configs" / "classify.yaml").read_text()
    assert "NOT RENDERED (in-process only)" in text and "http.request.header." in text
