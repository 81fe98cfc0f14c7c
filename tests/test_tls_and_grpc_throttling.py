"""TLS is verified by default (CA file, mutual TLS) for OTLP gRPC and HTTP, through a real TLS
terminator on loopback; gRPC RESOURCE_EXHAUSTED with RetryInfo pauses the backend for the
server-given delay; UNAUTHENTICATED is an auth failure that keeps the data."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from exporter_harness import make_app
from faults import GrpcFaultProxy, TlsProxy
from peers import collect

pytestmark = pytest.mark.peers


def test_grpcs_with_ca_file_delivers(receivers: Any, tmp_path: Path, pki: dict[str, str]) -> None:
    rx = receivers("rx")
    proxy = TlsProxy(rx.grpc_port, pki["server.pem"], pki["server.key"])
    try:
        app = make_app([f"otlp+grpcs://127.0.0.1:{proxy.port}?name=tls&ca_file={pki['ca.pem']}"], tmp_path / "q")
        app.emit(300)
        assert app.deliver(20)
        app.close()
        assert len(set(collect(300, rx))) == 300
    finally:
        proxy.close()


def test_untrusted_server_certificate_is_refused_and_data_kept(receivers: Any, tmp_path: Path,
                                                                pki: dict[str, str]) -> None:
    rx = receivers("rx")
    proxy = TlsProxy(rx.grpc_port, pki["server.pem"], pki["server.key"])
    try:
        app = make_app([f"otlp+grpcs://127.0.0.1:{proxy.port}?name=tls&timeout=1s"], tmp_path / "q",
                       shutdown_timeout=0.2)
        app.emit(100)
        assert not app.deliver(3)  # verification is on by default: nothing goes to an unknown server
        assert app.exporter.queue.pending_records == 100
        app.close()
        assert rx.count() == 0
        assert proxy.handshakes_failed >= 1  # refused during the TLS handshake, by our client
    finally:
        proxy.close()


def test_https_with_mutual_tls(receivers: Any, tmp_path: Path, pki: dict[str, str]) -> None:
    rx = receivers("rx")
    proxy = TlsProxy(rx.http_port, pki["server.pem"], pki["server.key"], client_ca=pki["ca.pem"])
    try:
        base = f"otlp+https://127.0.0.1:{proxy.port}?ca_file={pki['ca.pem']}&timeout=1s"
        without = make_app([base + "&name=nocert"], tmp_path / "q1", shutdown_timeout=0.2)
        without.emit(50)
        assert not without.deliver(2)
        without.close()
        assert proxy.handshakes_failed >= 1
        app = make_app([base + f"&name=mtls&cert_file={pki['client.pem']}&key_file={pki['client.key']}"],
                       tmp_path / "q2")
        app.emit(200)
        assert app.deliver(20)
        app.close()
        assert len(set(collect(200, rx))) == 200
    finally:
        proxy.close()


def test_grpc_resource_exhausted_with_retry_info_pauses_for_the_given_delay(receivers: Any, tmp_path: Path) -> None:
    rx = receivers("rx")
    proxy = GrpcFaultProxy(rx.grpc_port)
    try:
        proxy.script.append((grpc.StatusCode.RESOURCE_EXHAUSTED, 1.5))
        app = make_app([f"otlp+grpc://127.0.0.1:{proxy.port}?name=limited"], tmp_path / "q")
        t0 = time.monotonic()
        app.emit(200)
        assert app.deliver(20)
        waited = time.monotonic() - t0
        app.close()
        assert proxy.seen[0] == "RESOURCE_EXHAUSTED" and "OK" in proxy.seen
        assert waited >= 1.4
        assert app.counters.get("attempts", "limited:throttled") == 1
        assert len(set(collect(200, rx))) == 200
    finally:
        proxy.close()


def test_grpc_unauthenticated_fails_over_and_keeps_data(receivers: Any, tmp_path: Path) -> None:
    rx = receivers("rx")
    backup = receivers("backup")
    proxy = GrpcFaultProxy(rx.grpc_port)
    try:
        proxy.script.extend([(grpc.StatusCode.UNAUTHENTICATED, None)] * 100)
        app = make_app([f"otlp+grpc://127.0.0.1:{proxy.port}?name=auth", backup.grpc_url], tmp_path / "q")
        app.emit(100)
        assert app.deliver(20)
        stats = app.exporter.stats()
        app.close()
        assert len(set(collect(100, backup))) == 100
        assert stats["lanes"]["main"]["backends"]["auth"]["up"] is False
        assert app.counters.get("attempts", "auth:auth") >= 1
    finally:
        proxy.close()


def test_grpc_invalid_argument_is_dead_lettered(receivers: Any, tmp_path: Path) -> None:
    rx = receivers("rx")
    proxy = GrpcFaultProxy(rx.grpc_port)
    try:
        proxy.script.append((grpc.StatusCode.INVALID_ARGUMENT, None))
        app = make_app([f"otlp+grpc://127.0.0.1:{proxy.port}?name=strict"], tmp_path / "q")
        app.emit(100)
        app.flush_to_queue()
        assert app.deliver(20)
        letters = app.exporter.queue.dead_letters()
        app.close()
        assert sum(d.records for d in letters) == 100 and "INVALID_ARGUMENT" in letters[0].reason
    finally:
        proxy.close()


def test_partial_success_is_counted_and_not_resent(receivers: Any, tmp_path: Path) -> None:
    rx = receivers("rx")
    proxy = GrpcFaultProxy(rx.grpc_port)
    try:
        proxy.partial.append(2)
        app = make_app([f"otlp+grpc://127.0.0.1:{proxy.port}?name=picky"], tmp_path / "q")
        app.emit(100)
        assert app.deliver(20)
        app.close()
        assert proxy.seen == ["PARTIAL"]  # accepted: one request, no re-send
        assert app.counters.get("partially_rejected", "picky") == 2
        assert app.counters.get("attempts", "picky:partial") == 1
    finally:
        proxy.close()


def test_headers_from_env_reach_the_receiver(receivers: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rx = receivers("rx")
    proxy = GrpcFaultProxy(rx.grpc_port)
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=acme,authorization=Bearer%20s3cr3t")
        app = make_app([f"otlp+grpc://127.0.0.1:{proxy.port}?name=hdr"], tmp_path / "q")
        app.emit(10)
        assert app.deliver(20)
        app.close()
        assert proxy.metadata[0]["x-tenant"] == "acme"
        assert proxy.metadata[0]["authorization"] == "Bearer s3cr3t"
    finally:
        proxy.close()


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_gzip_compression_is_accepted_by_a_real_receiver(receivers: Any, tmp_path: Path, transport: str) -> None:
    rx = receivers("rx")
    url = (rx.grpc_url if transport == "grpc" else rx.http_url) + "&compression=gzip"
    app = make_app([url], tmp_path / "q")
    app.emit(500)
    assert app.deliver(20)
    app.close()
    assert len(set(collect(500, rx))) == 500


def test_shutdown_is_bounded_and_leaves_undelivered_records_on_disk(receivers: Any, tmp_path: Path) -> None:
    rx = receivers("rx", start=False)
    app = make_app([rx.grpc_url], tmp_path / "q", shutdown_timeout=0.5)
    app.emit(1000)
    app.flush_to_queue()
    t0 = time.monotonic()
    app.close()
    assert time.monotonic() - t0 < 10  # generous safety bound around the 0.5 s budget
    from exporter_harness import queued_records

    assert queued_records(tmp_path / "q") == 1000
