"""Zero-code wiring: the example service under ``opentelemetry-instrument`` (and in-code
``otel_ext.configure()``) delivers every record of a realistic traffic mix to real OTLP receivers,
classified and with no secrets; configuration errors stop start-up with one clear line."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from peers import collect
from service import Service, uvicorn

from examples.api_service import traffic

pytestmark = pytest.mark.peers
SECRETS = ["wonderland", "builder", "correct-horse-battery-staple"]


def zero_code_env(tmp_path: Path, backends: str, **extra: str) -> dict[str, str]:
    return {"OTEL_PYTHON_DISTRO": "otel_ext", "OTEL_EXT_BACKENDS": backends, "OTEL_EXT_QUEUE_DIR": str(tmp_path / "q"),
            "OTEL_SERVICE_NAME": "shop-api", **extra}


def run_traffic_and_flush(service: Service, requests: int) -> dict[str, Any]:
    service.wait_ready()
    traffic.run(service.url, requests, seed=7)
    stats = service.post_json("/_otel_ext/flush")
    assert stats.get("flushed") is True, stats
    return stats


def appended(stats: dict[str, Any]) -> int:
    return sum(sum(e["queue_counters"].get("appended", {}).values()) for e in stats["exporters"])


def test_distro_env_only_delivers_every_record_classified_and_redacted(receivers: Any, tmp_path: Path) -> None:
    primary = receivers("primary")
    secondary = receivers("secondary")
    # opentelemetry-distro is installed too: OTEL_PYTHON_DISTRO=otel_ext is the one variable that picks ours
    service = Service(uvicorn(), zero_code_env(tmp_path, f"{primary.grpc_url},{secondary.http_url}"), tmp_path)
    try:
        stats = run_traffic_and_flush(service, 150)
    finally:
        assert service.stop() in (0, -15), service.output()
    total = appended(stats)
    assert total > 150
    uids = collect(total, primary)
    assert len(set(uids)) == total and secondary.count() == 0
    classes = Counter(primary.attribute_values("labels.event_class"))
    assert set(classes) == {"security", "error", "performance", "access", "application"}, classes
    actions = Counter(primary.attribute_values("event.action"))
    assert actions["authn_login_fail"] >= 12 and actions["authz_fail"] >= 1
    assert actions["excess_rate_limit_exceeded"] >= 1 and actions["input_validation_fail"] >= 1
    assert actions["authn_login_success"] >= 1
    output = primary.output()
    assert "service.name: Str(shop-api)" in output
    for secret in SECRETS:
        assert secret not in output
    assert "[HASH:" in output  # session ids are correlatable, not readable
    assert stats["processing"] == "deferred"


def test_in_code_configure_does_the_same(receivers: Any, tmp_path: Path) -> None:
    rx = receivers("rx")
    env = {"OTEL_EXT_IN_CODE": "1", "OTEL_EXT_BACKENDS": rx.grpc_url, "OTEL_EXT_QUEUE_DIR": str(tmp_path / "q"),
           "OTEL_EXT_PROCESSING": "inline"}
    service = Service(uvicorn(), env, tmp_path, instrument=False)
    try:
        stats = run_traffic_and_flush(service, 80)
    finally:
        assert service.stop() in (0, -15), service.output()
    total = appended(stats)
    assert len(set(collect(total, rx))) == total
    assert stats["processing"] == "inline"
    assert set(rx.attribute_values("labels.event_class")) >= {"security", "access", "error"}
    for secret in SECRETS:
        assert secret not in rx.output()


def test_primary_killed_under_zero_code_loses_nothing(receivers: Any, tmp_path: Path) -> None:
    primary = receivers("primary")
    secondary = receivers("secondary")
    service = Service(uvicorn(), zero_code_env(tmp_path, f"{primary.grpc_url},{secondary.grpc_url}"), tmp_path)
    try:
        service.wait_ready()
        traffic.run(service.url, 60, seed=1, burst=False)
        primary.kill()
        traffic.run(service.url, 60, seed=2, burst=False)
        stats = service.post_json("/_otel_ext/flush")
    finally:
        assert service.stop() in (0, -15), service.output()
    total = appended(stats)
    uids = collect(total, primary, secondary)
    assert len(set(uids)) == total
    assert secondary.count() > 0


def test_no_backend_configured_uses_the_embedded_file_default(tmp_path: Path) -> None:
    env = {"OTEL_PYTHON_DISTRO": "otel_ext", "XDG_STATE_HOME": str(tmp_path / "state")}
    service = Service(uvicorn(), env, tmp_path)
    try:
        stats = run_traffic_and_flush(service, 30)
    finally:
        assert service.stop() in (0, -15), service.output()
    lines = (tmp_path / "state" / "otel-ext" / "logs" / "logs.jsonl").read_text().splitlines()
    records = [r for line in lines for rl in json.loads(line)["resourceLogs"] for sl in rl["scopeLogs"]
               for r in sl["logRecords"]]
    assert len(records) == appended(stats) > 30


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_EXT_BACKENDS": "mq://broker:9092"}, "OTEL_EXT_BACKENDS: unsupported backend"),
        ({"OTEL_EXT_BACKENDS": "kafka://broker:9092"}, "kafka backend needs brokers and a topic"),
        ({"OTEL_EXT_FAILOVER_POLICY": "random"}, "OTEL_EXT_FAILOVER_POLICY: unknown value"),
        ({"OTEL_EXT_RULES_FILE": "/nonexistent/rules.yaml"}, "/nonexistent/rules.yaml: cannot read rule file"),
        ({"OTEL_EXT_SAMPLE": "access=3"}, "between 0 and 1"),
        ({"OTEL_EXT_BACKENDS": "otlp+grpcs://c:4317?ca_file=/nonexistent/ca.pem"}, "is not readable"),
    ],
)
def test_configuration_errors_stop_start_up_with_one_clear_line(tmp_path: Path, env: dict[str, str],
                                                                 message: str) -> None:
    service = Service(uvicorn(), {"OTEL_PYTHON_DISTRO": "otel_ext", "OTEL_EXT_QUEUE_DIR": str(tmp_path / "q"),
                                  **env}, tmp_path)
    assert service.proc.wait(60) == 2
    out = service.output()
    errors = [line for line in out.splitlines() if line.startswith("otel-ext: configuration error:")]
    assert len(errors) == 1 and message in errors[0], out
    assert "Traceback" not in out


def test_traces_keep_working_as_the_user_configured_them(receivers: Any, tmp_path: Path) -> None:
    logs_rx = receivers("logs")
    traces_rx = receivers("traces")
    env = zero_code_env(tmp_path, logs_rx.grpc_url, OTEL_TRACES_EXPORTER="otlp",
                        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"http://127.0.0.1:{traces_rx.grpc_port}",
                        OTEL_EXPORTER_OTLP_TRACES_INSECURE="true")
    service = Service(uvicorn(), env, tmp_path)
    try:
        stats = run_traffic_and_flush(service, 20)
    finally:
        assert service.stop() in (0, -15), service.output()
    assert len(set(collect(appended(stats), logs_rx))) == appended(stats)
    from peers import wait_until

    assert wait_until(lambda: "Span #" in traces_rx.output() or "ScopeSpans" in traces_rx.output(), 15), \
        traces_rx.output()[-2000:]
    assert "http.route" in traces_rx.output() or "GET /api" in traces_rx.output()
    assert "trace_id" in logs_rx.output().lower() or "Trace ID" in logs_rx.output()
