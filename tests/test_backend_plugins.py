"""Backends as plug-ins: the entry-point registry, per-scheme query keys, URL list splitting."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from otel_ext.backends import BackendConfigError, backend_from_url, schemes, split_backend_urls
from otel_ext.backends.urls import load_plugin
from otel_ext.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]


def test_every_builtin_scheme_is_registered_through_the_installed_entry_points() -> None:
    from importlib.metadata import entry_points

    installed = {ep.name for ep in entry_points(group="otel_ext.backends")}
    assert {"otlp+grpc", "otlp+grpcs", "otlp+http", "otlp+https", "file", "elasticsearch+http",
            "elasticsearch+https", "opensearch+http", "opensearch+https", "kafka", "kafkas", "s3"} <= installed
    for scheme in installed:
        plugin = load_plugin(scheme)
        assert scheme in plugin.schemes
        assert "name" not in plugin.query_keys  # common keys come from the registry


def test_a_third_party_backend_plugs_in_through_an_entry_point_without_touching_our_code(tmp_path: Path) -> None:
    """A separately 'installed' distribution (a dist-info on sys.path) declares mq:// in the group."""
    (tmp_path / "demo_mq.py").write_text(textwrap.dedent("""
        from otel_ext.backends import Backend, BackendPlugin, Outcome

        class MQBackend(Backend):
            def __init__(self, host, queue):
                self.name = f"mq://{host}/{queue}"
                self.sent = []
            def send(self, payload, records):
                self.sent.append(records)
                return Outcome.ok()

        def from_url(u):
            host, port = u.host_port(example="mq:5672")
            return MQBackend(f"{host}:{port}", u.query.get("queue", "logs"))

        PLUGIN = BackendPlugin("mq", ("mq",), frozenset({"queue"}), from_url)
    """))
    dist = tmp_path / "demo_mq-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-mq\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[otel_ext.backends]\nmq = demo_mq:PLUGIN\n")
    code = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(tmp_path)!r})
        from otel_ext.backends import backend_from_url, schemes, BackendConfigError
        b = backend_from_url("mq://broker:5672?queue=audit&name=mq1", env={{}})
        print(type(b).__name__, b.name, "mq" in schemes())
        try:
            backend_from_url("mq://broker:5672?mapping=ecs", env={{}})
        except BackendConfigError as exc:
            print(exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.strip().splitlines()
    assert first == "MQBackend mq://broker:5672/audit True"
    assert second == "OTEL_EXT_BACKENDS: mq backend: unknown parameter(s) mapping (allowed: name, queue, timeout)"


def test_a_plugin_cannot_take_over_a_builtin_scheme(tmp_path: Path) -> None:
    (tmp_path / "evil.py").write_text("PLUGIN = None\n")
    dist = tmp_path / "evil-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[otel_ext.backends]\nkafka = evil:PLUGIN\n")
    code = (f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
            "from otel_ext.backends import backend_from_url\n"
            "print(type(backend_from_url('kafka://127.0.0.1:9/t', env={})).__name__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "KafkaBackend"
    assert "entry point kafka=evil:PLUGIN ignored" in out.stderr


def test_registered_schemes_are_listed_without_importing_backends() -> None:
    code = ("import sys\nfrom otel_ext.backends.urls import schemes\nprint(len(schemes()))\n"
            "print(any(m in sys.modules for m in ('confluent_kafka', 'boto3', 'otel_ext.backends.kafka')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    count, imported = out.stdout.split()
    assert int(count) >= 12 and imported == "False"
    assert set(schemes()) >= {"kafka", "s3", "file"}


@pytest.mark.parametrize(
    ("text", "urls"),
    [
        ("kafka://b1:9092,b2:9092/logs,otlp+grpc://c:4317",
         ("kafka://b1:9092,b2:9092/logs", "otlp+grpc://c:4317")),
        ("elasticsearch+https://es:9200, s3://archive/app?region=eu-west-1",
         ("elasticsearch+https://es:9200", "s3://archive/app?region=eu-west-1")),
        ("otlp+grpc://a:4317,,otlp+http://b:4318", ("otlp+grpc://a:4317", "otlp+http://b:4318")),
        ("kafka://b1:9092, b2:9092 ,b3:9092/t", ("kafka://b1:9092,b2:9092,b3:9092/t",)),
    ],
)
def test_backend_list_keeps_commas_inside_a_kafka_url(text: str, urls: tuple[str, ...]) -> None:
    assert split_backend_urls(text) == urls
    assert load_settings({"OTEL_EXT_BACKENDS": text}).backends == urls


def test_elasticsearch_setup_refuses_other_backends_by_plugin_not_by_class() -> None:
    from otel_ext.cli import main

    assert main(["elasticsearch", "setup", "--backend", "otlp+grpc://127.0.0.1:4317"]) == 2
    with pytest.raises(BackendConfigError, match="is a otlp_grpc backend; expected elasticsearch"):
        backend_from_url("otlp+grpc://127.0.0.1:4317", plugins=("elasticsearch",))


@pytest.mark.parametrize(("url", "reason"), [
    ("otlp+grpc://[::1:4317", "Invalid IPv6 URL"),
    ("otlp+http://127.0.0.1:99999", "Port out of range"),
    ("elasticsearch+https://elastic:S3cret-Pw@[::1:9200", "Invalid IPv6 URL"),
])
def test_a_malformed_url_is_one_config_error_naming_the_variable_and_never_the_credentials(url: str,
                                                                                           reason: str) -> None:
    with pytest.raises(BackendConfigError) as caught:
        backend_from_url(url)
    message = str(caught.value)
    assert message.startswith("OTEL_EXT_BACKENDS: ") and reason in message
    assert "S3cret-Pw" not in message and "\n" not in message


def test_a_broker_list_is_not_taken_for_a_bad_port() -> None:
    backend = backend_from_url("kafka://127.0.0.1:9092,127.0.0.1:9093/logs")
    try:
        assert "127.0.0.1:9092,127.0.0.1:9093" in backend.describe()
    finally:
        backend.close()
