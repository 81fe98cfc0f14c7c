"""Detectors: replays of realistic event streams under a controlled clock (each record carries its
own timestamp), asserting exactly which alerts fire and which do not; bounded memory under a
cardinality attack; alerts travel the pipeline as records; the webhook against a real HTTP server."""

from __future__ import annotations

import gc
import json
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from otel_ext.classify import EventClassifierProcessor
from otel_ext.detect import DetectionEngine, DetectorConfig, DetectorProcessor, WebhookSink
from otel_ext.telemetry import Counters

T0 = 1_800_000_000 * 10**9  # a fixed epoch: the detectors' clock is the records' own timestamps
S = 10**9


class Replay:
    """A real provider: classifier -> detector -> in-memory exporter; alerts re-enter the provider."""

    def __init__(self, config: DetectorConfig | None = None, webhook: WebhookSink | None = None) -> None:
        self.provider = LoggerProvider()
        self.exporter = InMemoryLogRecordExporter()
        self.counters = Counters("d")
        self.engine = DetectionEngine(config, self.provider, webhook, counters=self.counters)
        self.provider.add_log_record_processor(EventClassifierProcessor(counters=Counters("c")))
        self.provider.add_log_record_processor(DetectorProcessor(self.engine))
        self.provider.add_log_record_processor(SimpleLogRecordProcessor(self.exporter))
        self.logger = self.provider.get_logger("shop.api")

    def request(self, at_s: float, status: int, route: str = "/api/orders", method: str = "GET",
                client: str = "198.51.100.7", user: str | None = None, duration_s: float = 0.02) -> None:
        attrs: dict[str, Any] = {"http.request.method": method, "http.route": route, "url.path": route,
                                 "http.response.status_code": status, "client.address": client,
                                 "http.server.request.duration": duration_s}
        if user:
            attrs["user.id"] = user
        self.logger.emit(LogRecord(timestamp=T0 + int(at_s * S), severity_number=SeverityNumber.INFO,
                                   body="request", attributes=attrs))

    def login(self, at_s: float, ok: bool, user: str, client: str = "198.51.100.7") -> None:
        self.request(at_s, 200 if ok else 401, "/api/login", "POST", client, user)

    def alerts(self) -> list[dict[str, Any]]:
        return [dict(r.log_record.attributes or {}) for r in self.exporter.get_finished_logs()
                if (r.log_record.attributes or {}).get("event.kind") == "alert"]

    def fired(self) -> Counter[tuple[str, str]]:
        return Counter((a["rule.id"], a["labels.alert_key"]) for a in self.alerts())


def test_brute_force_per_account_fires_once_per_window_and_re_arms() -> None:
    r = Replay()
    for i in range(9):
        r.login(i * 30, False, "alice")
    assert r.alerts() == []  # 9 failures in 4.5 min: below the threshold of 10
    r.login(280, False, "alice")
    for i in range(15):  # the attack goes on inside the same 10 min window: no second alert
        r.login(300 + i * 10, False, "alice")
    assert r.fired() == Counter({("brute_force_account", "alice"): 1})
    alert = r.alerts()[0]
    assert alert["event.action"] == "authn_login_fail_max" and alert["user.id"] == "alice"
    assert alert["labels.alert_count"] == "10" and alert["labels.alert_window_s"] == "600"  # ECS: keyword strings
    assert alert["otel_ext.alert.count"] == 10 and alert["otel_ext.alert.window_s"] == 600
    assert alert["labels.event_class"] == "security" and tuple(alert["event.category"]) == ("authentication",)
    sev = [x.log_record.severity_text for x in r.exporter.get_finished_logs() if x.log_record.event_name ==
           "authn_login_fail_max"]
    assert sev == ["WARN"]
    for i in range(10):  # after the quiet window, a continuing attack alerts again
        r.login(900 + i * 5, False, "alice")
    assert r.fired()[("brute_force_account", "alice")] == 2


def test_failures_spread_beyond_the_window_do_not_fire() -> None:
    r = Replay()
    for i in range(30):
        r.login(i * 70, False, "bob")  # one failure every 70 s: never 10 within 600 s
    assert r.fired()[("brute_force_account", "bob")] == 0


def test_brute_force_per_source_and_password_spraying() -> None:
    r = Replay()
    for i in range(30):  # 30 failures from one source against 30 accounts within 5 min
        r.login(i * 5, False, f"user{i}", client="203.0.113.66")
    fired = r.fired()
    assert fired[("brute_force_source", "203.0.113.66")] == 1
    assert fired[("password_spraying", "203.0.113.66")] == 1  # de-duplicated: 30 accounts, one alert
    assert not any(rule == "brute_force_account" for rule, _ in fired)  # one failure per account


def test_success_after_failures_flags_possible_compromise() -> None:
    r = Replay()
    for i in range(3):
        r.login(i * 20, False, "carol", client="203.0.113.9")
    r.login(90, True, "carol", client="203.0.113.9")
    r.login(10, False, "dave")
    r.login(20, False, "dave")
    r.login(30, True, "dave")  # only 2 failures
    for i in range(3):
        r.login(i, False, "erin")
    r.login(2000, True, "erin")  # failures long ago
    assert r.fired() == Counter({("success_after_failures", "carol"): 1})
    alert = r.alerts()[0]
    assert alert["event.action"] == "authn_login_successafterfail" and alert["client.address"] == "203.0.113.9"


def test_fuzzing_404_403_per_source() -> None:
    r = Replay()
    for i in range(25):
        r.request(i * 2, 404 if i % 3 else 403, f"/api/{i}", client="192.0.2.50")
    for i in range(19):
        r.request(i * 3, 404, f"/x/{i}", client="192.0.2.51")  # 19 < 20
    for i in range(40):
        r.request(i * 10, 404, f"/y/{i}", client="192.0.2.52")  # 40 but spread over 400 s
    assert r.fired() == Counter({("fuzzing_404_403", "192.0.2.50"): 1})
    assert r.alerts()[0]["event.action"] == "malicious_excess_404"


def test_error_spike_against_the_routes_baseline() -> None:
    r = Replay()
    for minute in range(10):  # steady state: 2 errors a minute on /api/cart, 12 on /api/busy
        for i in range(2):
            r.request(minute * 60 + i * 20, 500, "/api/cart", "POST")
        for i in range(12):
            r.request(minute * 60 + i * 4, 503, "/api/busy")
    assert r.fired() == Counter({("error_spike", "/api/busy"): 1})  # first minute: no baseline yet
    for i in range(12):  # a spike on /api/cart; /api/busy stays at its (high) baseline
        r.request(600 + i * 3, 500, "/api/cart", "POST")
        r.request(600 + i * 3, 503, "/api/busy")
    fired = r.fired()
    assert fired[("error_spike", "/api/cart")] == 1
    assert fired[("error_spike", "/api/busy")] == 1
    spike = next(a for a in r.alerts() if a["labels.alert_key"] == "/api/cart")
    assert spike["labels.event_class"] == "error" and spike["http.route"] == "/api/cart"


def test_latency_slo_breach_per_route() -> None:
    r = Replay()
    for i in range(60):
        r.request(i * 2, 200, "/api/reports", duration_s=1.5 if i % 10 < 3 else 0.2)  # 30% slow: p95 1.5 s
        r.request(i * 2, 200, "/api/orders", duration_s=1.5 if i % 50 == 0 else 0.05)  # 2% slow: p95 fine
    assert r.fired() == Counter({("latency_slo", "/api/reports"): 1})
    assert r.alerts()[0]["labels.event_class"] == "performance"


def test_normal_traffic_raises_no_alert() -> None:
    r = Replay()
    users = [f"user{i}" for i in range(40)]
    for second in range(0, 3600, 3):  # an hour of ordinary traffic
        client = f"198.51.100.{second % 50}"
        r.request(second, 200, "/api/orders", client=client, duration_s=0.05 + (second % 7) / 100)
        if second % 30 == 0:
            user = users[second % 40]
            if second % 300 == 0:
                r.login(second, False, user, client)  # an occasional typo
            r.login(second + 1, True, user, client)
        if second % 120 == 0:
            r.request(second, 404, "/favicon.ico", client=client)
        if second % 600 == 0:
            r.request(second, 500, "/api/cart", "POST", client=client)
    assert r.alerts() == []


def test_cardinality_attack_keeps_memory_bounded() -> None:
    config = DetectorConfig(max_keys=1_000)
    counters = Counters("d")
    engine = DetectionEngine(config, LoggerProvider(), counters=counters)
    gc.collect()
    tracemalloc.start()
    try:
        for i in range(100_000):  # every record from a new source, for a new user, on a new route
            record = LogRecord(timestamp=T0 + i * 1000, body="x", attributes={
                "labels.event_class": "security", "event.action": "authn_login_fail",
                "http.response.status_code": 404, "http.route": f"/r/{i}", "client.address": f"10.{i % 250}.{i // 250}.1",
                "user.id": f"u{i}", "event.duration": 5_000_000})
            engine.observe(record)
        size = engine.state_size()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size <= 1_000 * len(engine.detectors)
    evicted = counters.snapshot()["evicted_keys"]
    assert evicted["brute_force_account"] == 99_000 and evicted["fuzzing_404_403"] == 99_000
    assert peak < 40 * 1024 * 1024  # generous bound: state is capped, not proportional to 100k keys


@pytest.mark.parametrize(
    ("env", "problem"),
    [("brute_force_account=maybe", "must be on or off"), ("nosuch=off", "unknown detector 'nosuch'"),
     ("error_spike.factor=big", "must be a number"), ("latency_slo.p99=3", "unknown parameter"),
     ("fuzzing_404_403.threshold=-1", "must be a positive number"), ("brute_force_account", "expected name=")],
)
def test_bad_detector_settings_are_clear_errors(env: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        DetectorConfig.parse(None, env)


def test_detectors_tuned_and_switched_off_by_env_and_yaml() -> None:
    config = DetectorConfig.parse({"brute_force_account": {"threshold": 3}, "latency_slo": False, "max_keys": 50},
                                  "fuzzing_404_403=off,error_spike.min_errors=4")
    assert "latency_slo" not in config.enabled and "fuzzing_404_403" not in config.enabled
    assert config.max_keys == 50
    r = Replay(config)
    for i in range(3):
        r.login(i, False, "zoe")
    for i in range(4):
        r.request(i, 500, "/api/pay")
    assert r.fired() == Counter({("brute_force_account", "zoe"): 1, ("error_spike", "/api/pay"): 1})
    assert DetectorConfig.parse(None, "off").enabled == ()


class Hook:
    """A real local HTTP server standing in for a Slack-compatible incoming webhook."""

    def __init__(self, script: list[tuple[int, float]] | None = None) -> None:
        self.received: list[dict[str, Any]] = []
        self.script = list(script or [])
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, delay = hook.script.pop(0) if hook.script else (200, 0.0)
                time.sleep(delay)
                if status == 200:
                    hook.received.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/XXXX"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook()
    yield server
    server.close()


def wait_for(predicate: Any, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.02)
    return bool(predicate())


def test_webhook_posts_slack_compatible_json_with_rate_limit(hook: Hook) -> None:
    counters = Counters("w")
    sink = WebhookSink(hook.url, max_per_minute=2, counters=counters, service="shop-api")
    r = Replay(webhook=sink)
    for n, user in enumerate(("u1", "u2", "u3", "u4")):
        for i in range(10):
            r.login(i, False, user, client=f"198.51.100.{n}")
    assert wait_for(lambda: counters.get("webhook", "sent") == 2 and counters.get("webhook", "rate_limited") == 2)
    sink.close()
    assert len(hook.received) == 2
    text = hook.received[0]["text"]
    assert text.startswith("[otel-ext] WARN Brute force against one account (shop-api)") and "authn_login_fail_max" in text
    assert len(r.alerts()) == 4  # every alert is still a record; only notifications are rate limited


def test_webhook_retries_then_gives_up_without_touching_logging() -> None:
    server = Hook(script=[(503, 0.0), (503, 0.0), (200, 0.0), (500, 0.0), (500, 0.0), (500, 0.0)])
    try:
        counters = Counters("w")
        sink = WebhookSink(server.url, retries=2, counters=counters)
        r = Replay(webhook=sink)
        for i in range(10):
            r.login(i, False, "a")
        assert wait_for(lambda: counters.get("webhook", "sent") == 1, 15)
        t0 = time.perf_counter()
        for i in range(10):
            r.login(i, False, "b")  # this notification fails three times
        assert time.perf_counter() - t0 < 1.0  # the logging path never waits for the webhook
        assert wait_for(lambda: counters.get("webhook", "failed") == 1, 20)
        sink.close()
        assert len(r.alerts()) == 2
    finally:
        server.close()


def test_webhook_timeout_is_bounded() -> None:
    server = Hook(script=[(200, 3.0)] * 3)
    try:
        counters = Counters("w")
        sink = WebhookSink(server.url, timeout=0.3, retries=0, counters=counters)
        r = Replay(webhook=sink)
        for i in range(10):
            r.login(i, False, "slow")
        assert wait_for(lambda: counters.get("webhook", "failed") == 1, 10)
        sink.close()
    finally:
        server.close()


def attack(r: Replay, at_s: float, client: str, query: str, agent: str = "Mozilla/5.0", status: int = 404) -> None:
    r.logger.emit(LogRecord(timestamp=T0 + int(at_s * S), severity_number=SeverityNumber.INFO, body="request",
                            attributes={"http.request.method": "GET", "url.path": "/search", "url.query": query,
                                        "http.response.status_code": status, "client.address": client,
                                        "user_agent.original": agent}))


def test_attack_source_fires_on_malicious_events_from_one_client() -> None:
    r = Replay()
    for i in range(9):  # below the threshold of 10 within 60 s
        attack(r, i, "203.0.113.5", "q=1%27%20or%201=1--")
    for i in range(9):  # another source: counted on its own
        attack(r, i, "203.0.113.6", "q=%3Cscript%3Ealert(1)%3C/script%3E")
    for i in range(30):  # clean traffic from the first source does not count
        r.request(10 + i * 0.1, 200, client="203.0.113.5")
    assert ("attack_source", "203.0.113.5") not in r.fired()
    attack(r, 20, "203.0.113.5", "f=../../etc/passwd")
    assert r.fired()[("attack_source", "203.0.113.5")] == 1
    assert ("attack_source", "203.0.113.6") not in r.fired()
    alert = next(a for a in r.alerts() if a["rule.id"] == "attack_source")
    assert alert["event.action"] == "malicious_attack_tool"
    assert tuple(alert["event.category"]) == ("intrusion_detection", "web")
    assert alert["source.ip"] == "203.0.113.5"
    assert all(isinstance(v, str) for k, v in alert.items() if k.startswith("labels."))


def test_scanner_user_agent_burst_is_one_alert_per_source_and_agent() -> None:
    r = Replay()
    for i in range(4):
        attack(r, i, "203.0.113.9", "page=1", agent="sqlmap/1.7.2#stable")
    assert not any(rule == "scanner_user_agent" for rule, _ in r.fired())
    for i in range(10):
        attack(r, 5 + i, "203.0.113.9", "page=2", agent="sqlmap/1.7.2#stable")
        r.request(5 + i, 200, client="203.0.113.9")  # same source, ordinary agent: no effect
    fired = [key for rule, key in r.fired() if rule == "scanner_user_agent"]
    assert fired == ["203.0.113.9 sqlmap/1.7.2#stable"]
    alert = next(a for a in r.alerts() if a["rule.id"] == "scanner_user_agent")
    assert alert["source.ip"] == "203.0.113.9" and alert["user_agent.original"] == "sqlmap/1.7.2#stable"


def test_alert_extras_live_under_a_namespace() -> None:
    r = Replay(DetectorConfig.parse({"latency_slo": {"min_samples": 5}}))
    for i in range(10):
        r.request(i, 200, "/api/slow", duration_s=2.0)
    alert = next(a for a in r.alerts() if a["rule.id"] == "latency_slo")
    assert "samples" not in alert and alert["otel_ext.alert.samples"] >= 5
    assert all(isinstance(v, str) for k, v in alert.items() if k.startswith("labels."))
