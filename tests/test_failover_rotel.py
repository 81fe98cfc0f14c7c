"""FailoverLogExporter against real rotel receivers: counts and uniqueness on the wire, never speed.

Scenarios from the failover issue: primary down from the start, primary killed -9 mid-stream, all
backends down for a while, replicate with one backend down, slow/blackholed backend, throttling and
permanent rejection (through an HTTP fault proxy).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from exporter_harness import make_app
from faults import HttpFaultProxy, TcpProxy
from peers import collect, wait_until

pytestmark = pytest.mark.peers


def assert_exactly_once(expected: int, *rxs: Any) -> list[str]:
    """Every record arrived (waiting for the receivers' output to settle); returns all uids seen."""
    uids = collect(expected, *rxs)
    assert len(set(uids)) == expected, f"{len(set(uids))} unique of {expected}"
    return uids


def test_primary_down_from_start_everything_reaches_secondary(receivers: Any, tmp_path: Path) -> None:
    primary = receivers("primary", start=False)
    secondary = receivers("secondary")
    app = make_app([primary.grpc_url, secondary.grpc_url], tmp_path / "q")
    app.emit(3000)
    assert app.deliver()
    app.close()
    assert primary.count() == 0
    assert_exactly_once(3000, secondary)
    assert len(secondary.uids()) == 3000


def test_primary_killed_mid_stream_loses_nothing(receivers: Any, tmp_path: Path) -> None:
    primary = receivers("primary")
    secondary = receivers("secondary")
    app = make_app([primary.grpc_url, secondary.http_url], tmp_path / "q")
    stop = threading.Event()

    def produce() -> None:
        while not stop.is_set() and app.emitted < 20_000:
            app.emit(50)
            time.sleep(0.005)

    producer = threading.Thread(target=produce)
    producer.start()
    assert wait_until(lambda: primary.count() > 2000, 30)
    primary.kill()  # SIGKILL
    assert wait_until(lambda: secondary.count() > 1000, 30)
    stop.set()
    producer.join()
    assert app.deliver()
    app.close()
    every = assert_exactly_once(app.emitted, primary, secondary)  # 0 lost
    assert len(every) - app.emitted <= 10_000  # duplicates only from the one request in flight at the kill
    assert app.counters.snapshot()["failovers"]


def test_all_backends_down_then_recovered_loses_nothing(receivers: Any, tmp_path: Path) -> None:
    a = receivers("a", start=False)
    b = receivers("b", start=False)
    app = make_app([a.grpc_url, b.http_url], tmp_path / "q")
    worst = 0.0
    for _ in range(40):
        t0 = time.perf_counter()
        app.emit(100)
        worst = max(worst, time.perf_counter() - t0)
        time.sleep(0.01)
    app.flush_to_queue()
    assert app.exporter.queue.pending_records == 4000  # all durable, nothing delivered
    assert worst < 2.0  # generous safety bound: emitting never waits on the dead network
    b.start()
    assert app.deliver(30)
    app.close()
    assert_exactly_once(4000, a, b)


def test_replicate_with_one_backend_down_catches_up_without_resending(receivers: Any, tmp_path: Path) -> None:
    a = receivers("a")
    b = receivers("b", start=False)
    app = make_app([a.grpc_url, b.grpc_url], tmp_path / "q", policy="replicate")
    app.emit(2000)
    app.flush_to_queue()
    assert wait_until(lambda: a.count() == 2000, 20)
    assert app.exporter.queue.pending_records == 2000  # kept for b
    b.start()
    app.emit(1000)
    assert app.deliver(30)
    app.close()
    a_uids = assert_exactly_once(3000, a)
    assert len(a_uids) == 3000  # no re-sends to the healthy backend
    assert_exactly_once(3000, b)
    assert len(b.uids()) == 3000


def test_round_robin_alternates_and_delivers_once(receivers: Any, tmp_path: Path) -> None:
    a = receivers("a")
    b = receivers("b")
    app = make_app([a.grpc_url, b.grpc_url], tmp_path / "q", policy="round_robin")
    for _ in range(20):
        app.emit(100)
        app.flush_to_queue()
        time.sleep(0.02)
    assert app.deliver()
    app.close()
    assert len(assert_exactly_once(2000, a, b)) == 2000
    assert a.count() > 0 and b.count() > 0


def test_blackholed_primary_times_out_and_fails_over(receivers: Any, tmp_path: Path) -> None:
    primary = receivers("primary")
    secondary = receivers("secondary")
    proxy = TcpProxy(primary.grpc_port)
    try:
        app = make_app([f"otlp+grpc://127.0.0.1:{proxy.port}?name=proxied&timeout=500ms", secondary.grpc_url],
                       tmp_path / "q")
        app.emit(500)
        assert app.deliver()
        assert len(collect(500, primary)) == 500
        proxy.mode = "blackhole"
        app.emit(500)
        assert app.deliver(30)
        app.close()
        assert_exactly_once(1000, primary, secondary)
        assert secondary.count() >= 500
        attempts = app.counters.snapshot()["attempts"]
        assert attempts.get("proxied:retryable", 0) >= 1  # DEADLINE_EXCEEDED, classified retryable
    finally:
        proxy.close()


def test_primary_returns_after_recovery(receivers: Any, tmp_path: Path) -> None:
    primary = receivers("primary")
    secondary = receivers("secondary")
    app = make_app([primary.grpc_url, secondary.grpc_url], tmp_path / "q")
    primary.kill()
    app.emit(500)
    assert app.deliver()
    assert len(collect(500, secondary)) == 500
    primary.start()  # same ports; probes bring it back after consecutive successes
    assert wait_until(lambda: app.exporter.lanes[0].active_backend == primary.name + "-grpc", 20)
    app.emit(500)
    assert app.deliver()
    app.close()
    assert len(collect(500, primary)) == 500
    assert_exactly_once(1000, primary, secondary)


def test_http_429_with_retry_after_is_honoured(receivers: Any, tmp_path: Path) -> None:
    rx = receivers("rx")
    proxy = HttpFaultProxy(f"http://127.0.0.1:{rx.http_port}")
    try:
        proxy.script.extend([(429, {"Retry-After": "1"}, b"slow down")] * 2)
        app = make_app([f"otlp+http://127.0.0.1:{proxy.port}?name=throttled"], tmp_path / "q")
        app.emit(300)
        t0 = time.monotonic()
        assert app.deliver(30)
        waited = time.monotonic() - t0
        app.close()
        assert proxy.seen[:2] == [429, 429] and proxy.seen[2] == 200
        assert waited >= 1.5  # two Retry-After: 1 pauses were respected
        assert_exactly_once(300, rx)
        assert app.counters.get("attempts", "throttled:throttled") == 2
    finally:
        proxy.close()


def test_throttled_primary_fails_over_while_paused(receivers: Any, tmp_path: Path) -> None:
    a = receivers("a")
    b = receivers("b")
    proxy = HttpFaultProxy(f"http://127.0.0.1:{a.http_port}")
    try:
        proxy.script.append((503, {"Retry-After": "30"}, b"busy"))
        app = make_app([f"otlp+http://127.0.0.1:{proxy.port}?name=busy", b.grpc_url], tmp_path / "q")
        app.emit(200)
        assert app.deliver(10)  # long before the 30 s pause ends
        app.close()
        assert_exactly_once(200, b)
    finally:
        proxy.close()


def test_permanent_rejection_goes_to_dead_letter_store_and_can_be_replayed(receivers: Any, tmp_path: Path) -> None:
    rx = receivers("rx")
    proxy = HttpFaultProxy(f"http://127.0.0.1:{rx.http_port}")
    try:
        proxy.fail_body_containing = b"poison"
        app = make_app([f"otlp+http://127.0.0.1:{proxy.port}?name=strict"], tmp_path / "q")
        app.emit(100)
        app.flush_to_queue()
        logger = app.provider.get_logger("test.app")
        from opentelemetry._logs import SeverityNumber

        logger.emit(body="poison pill", severity_number=SeverityNumber.ERROR,
                    attributes={"seq": -1, "labels.event_class": "error"})
        app.flush_to_queue()
        app.emit(100)
        assert app.deliver(20)
        letters = app.exporter.queue.dead_letters()
        assert [d.records for d in letters] == [1] and "HTTP 400" in letters[0].reason
        assert letters[0].backend == "strict"
        assert_exactly_once(200, rx)
        proxy.fail_body_containing = None
        assert app.exporter.queue.requeue_dead_letters() == 1
        assert app.deliver(20)
        app.close()
        assert_exactly_once(201, rx)
    finally:
        proxy.close()


def test_stats_report_queue_backends_and_counts(receivers: Any, tmp_path: Path) -> None:
    a = receivers("a", start=False)
    b = receivers("b")
    app = make_app([a.grpc_url, b.grpc_url], tmp_path / "q")
    app.emit(100)
    assert app.deliver()
    stats = app.exporter.stats()
    app.close()
    assert stats["lanes"]["main"]["active"] == "b-grpc"
    assert stats["lanes"]["main"]["backends"]["a-grpc"]["up"] is False
    assert stats["counters"]["delivered"] == {"b-grpc": 100}
    assert stats["queue"]["records"] == 0
    assert Counter(stats["queue_counters"]["appended"]) == Counter({"": 100})
