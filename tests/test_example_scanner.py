"""The example service under zero-code wiring, swept by the traffic generator's vulnerability scanner:
counted at a real receiver, every scanner request arrives labelled ``security`` with an OWASP
``malicious_*`` action (the query string is where most of the payloads are, so the example's access
middleware must log ``url.query``), and none of the ordinary traffic is labelled an attack."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from peers import collect
from service import Service, uvicorn

from examples.api_service import traffic

pytestmark = pytest.mark.peers


def test_scanner_sweep_is_labelled_security_and_ordinary_traffic_is_not(receivers: Any, tmp_path: Path) -> None:
    rx = receivers("rx")
    env = {"OTEL_PYTHON_DISTRO": "otel_ext", "OTEL_EXT_BACKENDS": rx.grpc_url,
           "OTEL_EXT_QUEUE_DIR": str(tmp_path / "q"), "OTEL_SERVICE_NAME": "shop-api"}
    service = Service(uvicorn(), env, tmp_path)
    try:
        service.wait_ready()
        traffic.run(service.url, 120, seed=11, scanner=True)
        stats = service.post_json("/_otel_ext/flush")
        assert stats.get("flushed") is True, stats
    finally:
        assert service.stop() in (0, -15), service.output()
    total = sum(sum(e["queue_counters"].get("appended", {}).values()) for e in stats["exporters"])
    assert len(set(collect(total, rx))) == total
    events = [r for r in rx.records() if r.get("event.kind") != "alert"]
    # the example's own access records (the middleware's): one per request, with the request's attributes
    access = [r for r in events if "url.path" in r and "http.request.method" in r]
    sweep = [r for r in access if r.get("client.address") == traffic.SCANNER_SOURCE]
    ordinary = [r for r in access if r.get("client.address") != traffic.SCANNER_SOURCE]
    assert len(sweep) == len(traffic.SCANNER_PROBES)
    assert any("url.query" in r for r in sweep)
    missed = [(r["url.path"], r.get("url.query"), r.get("event.action")) for r in sweep
              if r.get("labels.event_class") != "security" or not str(r.get("event.action", "")).startswith("malicious_")]
    assert not missed, missed
    assert len(ordinary) >= 120
    flagged = [(r["url.path"], r.get("event.action")) for r in ordinary
               if str(r.get("event.action", "")).startswith("malicious_")]
    assert not flagged, flagged
    actions = Counter(str(r["event.action"]) for r in sweep)
    assert len(actions) >= 4, actions  # injection, traversal, XSS, probes, attack tool: not one bucket
