"""``otel-ext elasticsearch setup`` against the real servers: idempotent, says what it did (and what
it could not do on this distribution), and makes the class streams data streams."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import urllib3
from exporter_harness import make_app

pytestmark = pytest.mark.peers


def run_setup(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "otel_ext.cli", "elasticsearch", "setup", "--backend", url, *extra],
                          capture_output=True, text=True, timeout=120)


def test_opensearch_setup_is_idempotent_and_creates_data_streams(search_server: Any, tmp_path: Path) -> None:
    http = urllib3.PoolManager()
    http.request("DELETE", f"{search_server.url}/_data_stream/logs-*")
    http.request("DELETE", f"{search_server.url}/_index_template/otel-ext-*")
    url = f"opensearch+http://127.0.0.1:{search_server.port}"
    first = run_setup(url, "--retention", "security=400d")
    assert "index template otel-ext-logs-security: created (logs-security-*, logs-security.otel-* as data streams)" \
        in first.stdout, first.stdout + first.stderr
    # the integ-test distribution carries no ISM plugin: said plainly, exit code 1
    assert "retention: NOT APPLIED" in first.stdout and first.returncode == 1
    second = run_setup(url, "--retention", "security=400d")
    assert second.stdout.count(": unchanged") == 5 and "created" not in second.stdout
    try:
        app = make_app([f"{url}?name=os"], tmp_path / "q")
        app.emit(10, event_class="security")
        assert app.deliver(60)
        app.close()
        stream = http.request("GET", f"{search_server.url}/_data_stream/logs-security-default").json()
        assert stream["data_streams"][0]["name"] == "logs-security-default"
        assert stream["data_streams"][0]["template"] == "otel-ext-logs-security"
    finally:
        http.request("DELETE", f"{search_server.url}/_data_stream/logs-*")
        http.request("DELETE", f"{search_server.url}/_index_template/otel-ext-*")


@pytest.mark.parametrize("server", ["es_server", "es9_server"])
def test_elasticsearch_setup_installs_lifecycle_templates_and_data_streams(server: str, request: pytest.FixtureRequest,
                                                                           tmp_path: Path) -> None:
    es_server = request.getfixturevalue(server)  # Elasticsearch 8.17 and 9.2
    http = urllib3.PoolManager()
    http.request("DELETE", f"{es_server.url}/_index_template/otel-ext-*")
    url = f"elasticsearch+http://127.0.0.1:{es_server.port}"
    first = run_setup(url)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "retention security: 365d (data stream lifecycle in otel-ext-logs-security)" in first.stdout
    assert "retention application: 7d" in first.stdout
    assert run_setup(url).stdout.count(": unchanged") == 5
    template = http.request("GET", f"{es_server.url}/_index_template/otel-ext-logs-error").json()
    body = template["index_templates"][0]["index_template"]
    assert body["template"]["lifecycle"]["data_retention"] == "90d" and "data_stream" in body
    try:
        app = make_app([f"{url}?name=es&namespace=setuptest"], tmp_path / "q")
        app.emit(5, event_class="error")
        assert app.deliver(60)
        app.close()
        indices = http.request("GET", f"{es_server.url}/_cat/indices?h=index&expand_wildcards=all").data.decode()
        assert ".ds-logs-error-setuptest-" in indices  # a real data stream backs logs-error-setuptest
    finally:  # this build cannot delete data streams: keep later tests' indices plain
        http.request("DELETE", f"{es_server.url}/_index_template/otel-ext-*")


def test_bad_retention_is_a_clear_error(search_server: Any) -> None:
    out = run_setup(f"opensearch+http://127.0.0.1:{search_server.port}", "--retention", "security=forever")
    assert out.returncode == 2 and "--retention: expected class=<days>d" in out.stderr
