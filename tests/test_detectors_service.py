"""Detectors on by default in the zero-code pipeline: replay the example service's traffic
generator (which contains a burst of failed logins against one account) and assert that exactly the
alerts implied by the delivered records fire, once each."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from peers import collect
from service import Service, uvicorn

from examples.api_service import traffic

pytestmark = pytest.mark.peers


def test_traffic_generator_replay_fires_exactly_the_expected_alerts(receivers: Any, tmp_path: Path) -> None:
    rx = receivers("rx")
    env = {"OTEL_PYTHON_DISTRO": "otel_ext", "OTEL_EXT_BACKENDS": rx.grpc_url, "OTEL_EXT_QUEUE_DIR": str(tmp_path / "q")}
    service = Service(uvicorn(), env, tmp_path)
    try:
        service.wait_ready()
        traffic.run(service.url, 300, seed=5)
        stats = service.post_json("/_otel_ext/flush")
    finally:
        assert service.stop() in (0, -15), service.output()
    total = sum(sum(e["queue_counters"].get("appended", {}).values()) for e in stats["exporters"])
    assert len(set(collect(total, rx))) == total
    records = rx.records()
    events = [r for r in records if r.get("event.kind") != "alert"]
    alerts = Counter((r["rule.id"], r["labels.alert_key"]) for r in records if r.get("event.kind") == "alert")
    failures_by_user = Counter(r["user.id"] for r in events if r.get("event.action") == "authn_login_fail"
                               and "user.id" in r)
    # the app's own "Failed login ..." warning carries no user/client: detectors key on the access records
    failures_by_source = Counter(r["client.address"] for r in events if r.get("event.action") == "authn_login_fail"
                                 and "client.address" in r)
    users_by_source: dict[str, set[str]] = {}
    for r in events:
        if r.get("event.action") == "authn_login_fail" and "user.id" in r and "client.address" in r:
            users_by_source.setdefault(r["client.address"], set()).add(r["user.id"])
    denied_by_source = Counter(r["client.address"] for r in events
                               if r.get("http.response.status_code") in ("403", "404") and "client.address" in r)
    expected = Counter()
    expected.update({("brute_force_account", u): 1 for u, n in failures_by_user.items() if n >= 10})
    expected.update({("brute_force_source", s): 1 for s, n in failures_by_source.items() if n >= 30})
    expected.update({("password_spraying", s): 1 for s, users in users_by_source.items() if len(users) >= 10})
    expected.update({("fuzzing_404_403", s): 1 for s, n in denied_by_source.items() if n >= 20})
    assert failures_by_user["admin"] >= 12  # the generator's credential-stuffing burst
    assert ("brute_force_account", "admin") in expected
    security_alerts = Counter({k: v for k, v in alerts.items() if k[0] != "error_spike" and k[0] != "latency_slo"})
    assert security_alerts == expected
    assert all(v == 1 for v in alerts.values())  # de-duplicated: one alert per key
    assert stats["alerts"]  # counted by the pipeline too
