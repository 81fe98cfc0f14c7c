"""Configuration is read from OTEL_EXT_* / OTEL_EXPORTER_OTLP_* env vars and a YAML file; every
mistake stops with one clear message naming the variable or file."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest

from otel_ext.backends import BackendConfigError, FileBackend, OTLPGrpcBackend, OTLPHttpBackend, backend_from_url
from otel_ext.settings import ConfigError, load_settings


def test_backend_urls_map_to_backends() -> None:
    grpc = backend_from_url("otlp+grpc://127.0.0.1:4317", env={})
    assert isinstance(grpc, OTLPGrpcBackend) and grpc.config.insecure and grpc.config.endpoint == "127.0.0.1:4317"
    grpcs = backend_from_url("otlp+grpcs://collector.example:4317?timeout=500ms&compression=gzip", env={})
    assert isinstance(grpcs, OTLPGrpcBackend) and not grpcs.config.insecure
    assert grpcs.config.timeout == 0.5 and grpcs.config.compression == "gzip"
    http = backend_from_url("otlp+http://[::1]:4318", env={"OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=acme,api-key=s%3Dcret"})
    assert isinstance(http, OTLPHttpBackend) and http.config.url == "http://[::1]:4318/v1/logs"
    assert http.config.headers == {"x-tenant": "acme", "api-key": "s=cret"}
    assert "s=cret" not in http.describe()
    file = backend_from_url("file:///var/tmp/otel-ext-logs", env={})
    assert isinstance(file, FileBackend) and str(file.directory) == "/var/tmp/otel-ext-logs"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mq://broker:9092", "unsupported backend scheme 'mq' .*registered: otlp\\+grpc, .*kafka"),
        ("otlp+grpc://h:4317?mapping=ecs",
         r"otlp\+grpc backend: unknown parameter\(s\) mapping \(allowed: ca_file, cert_file, compression, key_file, name, timeout\)"),
        ("file:///tmp/x?routing=class", r"unknown parameter\(s\) routing \(allowed: fsync, insecure_dir, max_bytes, max_files, name, timeout\)"),
        ("elasticsearch+http://es:9200?max_files=3", r"allowed: ca_file, compression, mapping, max_bytes, max_docs, name, namespace, routing, timeout"),
        ("file:///tmp/x?max_bytes=lots", "max_bytes must be an integer"),
        ("otlp+grpc://collector", "needs host:port"),
        ("otlp+http://user:pw@collector:4318", "credentials in a backend URL are not allowed"),
        ("otlp+grpc://c:4317?timeout=soon", "is not a duration"),
        ("otlp+grpc://c:4317?compression=zstd", "compression must be gzip or none"),
        ("otlp+grpc://c:4317?colour=red", "unknown parameter"),
        ("otlp+grpcs://c:4317?ca_file=/nonexistent/ca.pem", "is not readable"),
        ("file://relative/path", "absolute path"),
        ("elasticsearch+https://es:9200?compression=br", "compression must be gzip or none"),
        ("elasticsearch+https://es:9200?routing=random", "routing must be class or generic"),
        ("opensearch+https://os:9200?mapping=flat", "mapping must be one of"),
        ("elasticsearch+https://?name=cloud", "needs host:port"),
    ],
)
def test_bad_backend_urls_name_the_variable(url: str, problem: str) -> None:
    with pytest.raises(BackendConfigError, match=problem) as info:
        backend_from_url(url, env={})
    assert str(info.value).startswith("OTEL_EXT_BACKENDS")
    assert "pw" not in str(info.value)


def test_settings_env_wins_over_file_and_overrides_win_over_env(tmp_path: Path) -> None:
    config = tmp_path / "otel-ext.yaml"
    config.write_text("backends: [otlp+grpc://a:4317, otlp+http://b:4318]\nfailover_policy: replicate\n"
                      "queue_max_bytes: 1000\n")
    env = {"OTEL_EXT_CONFIG_FILE": str(config), "OTEL_EXT_FAILOVER_POLICY": "round_robin"}
    settings = load_settings(env)
    assert settings.backends == ("otlp+grpc://a:4317", "otlp+http://b:4318")
    assert settings.failover_policy == "round_robin" and settings.queue_max_bytes == 1000
    assert load_settings(env, failover_policy="priority").failover_policy == "priority"


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"OTEL_EXT_FAILOVER_POLICY": "random"}, "OTEL_EXT_FAILOVER_POLICY: unknown value 'random'"),
        ({"OTEL_EXT_QUEUE_MAX_BYTES": "lots"}, "OTEL_EXT_QUEUE_MAX_BYTES: expected a positive int"),
        ({"OTEL_EXT_QUEUE_MAX_BYTES": "-5"}, "OTEL_EXT_QUEUE_MAX_BYTES: expected a positive int"),
        ({"OTEL_EXT_QUEUE_FSYNC": "sometimes"}, "OTEL_EXT_QUEUE_FSYNC"),
        ({"OTEL_EXT_CONFIG_FILE": "/nonexistent/otel-ext.yaml"}, "OTEL_EXT_CONFIG_FILE: cannot read"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_settings(env)


def test_unknown_config_file_key_is_named(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("backend: otlp+grpc://a:4317\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['backend'\]") as info:
        load_settings({"OTEL_EXT_CONFIG_FILE": str(config)})
    assert str(config) in str(info.value)


def test_failover_entry_point_builds_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (ep,) = entry_points(group="opentelemetry_logs_exporter", name="failover")
    exporter_class = ep.load()
    monkeypatch.setenv("OTEL_EXT_BACKENDS", f"file://{tmp_path / 'out'}")
    monkeypatch.setenv("OTEL_EXT_QUEUE_DIR", str(tmp_path / "queue"))
    exporter = exporter_class()
    try:
        assert [b.name for b in exporter.backends] == [f"file://{tmp_path / 'out'}"]
        assert exporter.queue_dir == tmp_path / "queue"
    finally:
        exporter.shutdown()


def test_no_backend_configured_uses_the_embedded_file_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("OTEL_EXT_BACKENDS", raising=False)
    settings = load_settings({"XDG_STATE_HOME": str(tmp_path / "state")})
    assert settings.effective_backends == (f"file://{tmp_path / 'state' / 'otel-ext' / 'logs'}",)
    assert settings.effective_queue_dir == tmp_path / "state" / "otel-ext" / "queue"
