"""Shared fixtures: a real SDK logs pipeline (LoggerProvider + contrib LoggingHandler) whose output
is collected by the SDK's in-memory exporter."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor


@dataclass
class Pipeline:
    provider: LoggerProvider
    exporter: InMemoryLogRecordExporter
    handler: LoggingHandler
    loggers: list[logging.Logger] = field(default_factory=list)

    def logger(self, name: str) -> logging.Logger:
        log = logging.getLogger(name)
        if self.handler not in log.handlers:
            log.addHandler(self.handler)
        log.setLevel(logging.DEBUG)
        log.propagate = False
        self.loggers.append(log)
        return log

    def records(self) -> list[ReadableLogRecord]:
        return list(self.exporter.get_finished_logs())

    def last(self) -> ReadableLogRecord:
        records = self.records()
        assert records, "nothing was exported"
        return records[-1]

    def attrs(self) -> dict[str, Any]:
        return dict(self.last().log_record.attributes or {})


def build_pipeline(*processors: LogRecordProcessor, wrap: Any = None) -> Pipeline:
    provider = LoggerProvider()
    exporter = InMemoryLogRecordExporter()
    for proc in processors:
        provider.add_log_record_processor(proc)
    export_processor: LogRecordProcessor = SimpleLogRecordProcessor(exporter)
    provider.add_log_record_processor(wrap(export_processor) if wrap else export_processor)
    return Pipeline(provider, exporter, LoggingHandler(logger_provider=provider))


@pytest.fixture
def make_pipeline() -> Iterator[Any]:
    built: list[Pipeline] = []

    def factory(*processors: LogRecordProcessor, wrap: Any = None) -> Pipeline:
        pipe = build_pipeline(*processors, wrap=wrap)
        built.append(pipe)
        return pipe

    yield factory
    for pipe in built:
        for log in pipe.loggers:
            log.removeHandler(pipe.handler)
        pipe.provider.shutdown()


@pytest.fixture
def receivers(tmp_path: Any) -> Iterator[Any]:
    """A factory of real rotel receivers, all killed at the end of the test."""
    from peers import Rotel

    started: list[Any] = []

    def factory(name: str, start: bool = True) -> Any:
        rx = Rotel(tmp_path, name)
        started.append(rx)
        return rx.start() if start else rx

    yield factory
    for rx in started:
        rx.kill()


@pytest.fixture(scope="session")
def search_server() -> Iterator[Any]:
    """One real OpenSearch 2.19.4 process for the whole session (see tests/search_server.py)."""
    from search_server import SearchServer

    server = SearchServer("opensearch").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def secure_search_server() -> Iterator[Any]:
    """A second OpenSearch 2.19.4 with its security plugin on: HTTPS (demo certificates) and users."""
    from search_server import SearchServer

    server = SearchServer("opensearch", secure=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def es_server() -> Iterator[Any]:
    """One real Elasticsearch 8.17.0 process for the whole session (see tests/search_server.py)."""
    from search_server import SearchServer

    server = SearchServer("elasticsearch").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def es9_server() -> Iterator[Any]:
    """Elasticsearch 9.2.0 (Java 21+), for what must hold on both majors."""
    from search_server import SearchServer

    server = SearchServer("elasticsearch", version="9.2.0").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def otelcol() -> Path:
    """The collector binary built from collector_configs/builder-config.yaml (cached)."""
    from collector import ensure_collector

    return ensure_collector()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    d = tmp_path_factory.mktemp("pki")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=otel-ext test CA",
        "-keyout", "ca.key", "-out", "ca.pem")
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, extra in (("server", ["-extfile", "san.cnf"]), ("client", [])):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-out", f"{name}.pem", *extra)
    return {k: str(d / f"{k}") for k in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}
