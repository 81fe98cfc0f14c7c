"""`otel-ext report` end to end: the example service writes its records through the real pipeline
to the file backend, a real Elasticsearch 8.17 and a real OpenSearch 2.19 alike (replicate policy);
the report built from each source (records read back / search aggregations) shows the
numbers this test computes itself from the delivered records; the HTML page loads in a real headless
Chromium without console errors, its charts render as non-empty SVG, and the numbers in the page
equal the expected ones. A screenshot is kept under test-artifacts/ (OTEL_EXT_TEST_ARTIFACTS)."""

from __future__ import annotations

import json
import math
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from peers import wait_until
from service import Service, uvicorn

from examples.api_service import traffic
from otel_ext.report import OTLPJsonFileReader, write_report
from otel_ext.report.model import ANONYMOUS, UNMATCHED, Aggregator, ReportData, percentile, suggest_tiers
from otel_ext.report.records import Record
from otel_ext.report.search import search_source_from_url

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("OTEL_EXT_TEST_ARTIFACTS", ROOT / "test-artifacts"))
RETENTION = {"security": 365, "error": 90, "access": 30, "performance": 14, "application": 7}


def expected(records: list[Record]) -> dict[str, Any]:
    """The report's numbers, computed here from the raw records by the documented definitions."""
    clients: Counter[str] = Counter()
    usage: Counter[tuple[str, str]] = Counter()
    calls: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    client_errors: Counter[str] = Counter()
    durations: dict[str, list[float]] = {}
    classes: Counter[str] = Counter()
    actions: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    alerts = 0
    for r in records:
        if "labels.event_class" in r.attributes:
            classes[r.get("labels.event_class")] += 1
        if r.get("event.kind") == "alert":
            alerts += 1
            continue
        if r.get("labels.event_class") == "security":
            actions[r.get("event.action") or "(none)"] += 1
            sources[r.get("client.address") or "(unknown)"] += 1
        if r.get("http.response.status_code") is None or r.get("http.request.method") is None:
            continue
        client = r.get("tenant.id") or ANONYMOUS
        route = r.get("http.route") or UNMATCHED
        status = int(r.get("http.response.status_code"))
        clients[client] += 1
        usage[client, route] += 1
        calls[route] += 1
        errors[route] += status >= 500
        client_errors[route] += 400 <= status < 500
        if r.get("http.server.request.duration") is not None:
            durations.setdefault(route, []).append(float(r.get("http.server.request.duration")))
    p = {route: {q: percentile(sorted(v), float(q[1:])) for q in ("p50", "p95", "p99")} for route, v in durations.items()}
    return {"durations": {route: sorted(v) for route, v in durations.items()}, "clients": clients, "usage": usage, "calls": calls, "errors": errors, "client_errors": client_errors,
            "latency": p, "classes": classes, "actions": actions, "sources": sources, "alerts": alerts,
            "records": len(records)}


def assert_matches(data: ReportData, want: dict[str, Any], exact_percentiles: bool) -> None:
    assert data.records == want["records"]
    assert data.client_totals(include_anonymous=True) == dict(want["clients"])
    assert {(c, r): n for c, routes in data.usage.items() for r, n in routes.items()} == dict(want["usage"])
    assert {r: s.calls for r, s in data.routes.items()} == dict(want["calls"])
    assert {r: s.errors for r, s in data.routes.items()} == {r: n for r, n in want["errors"].items()}
    assert {r: s.client_errors for r, s in data.routes.items()} == {r: n for r, n in want["client_errors"].items()}
    assert sum(n for n, _ in data.timeline.values()) == sum(want["calls"].values())
    assert sum(e for _, e in data.timeline.values()) == sum(want["errors"].values())
    assert sum(data.usage_timeline[c][b] for c in data.usage_timeline for b in data.usage_timeline[c]) == \
        sum(want["clients"].values())
    assert data.classes == dict(want["classes"])
    assert data.security_actions == dict(want["actions"])
    assert data.security_sources == dict(want["sources"])
    assert len(data.alerts) == data.alerts_total == want["alerts"]
    for route, latency in want["latency"].items():
        for q, value in latency.items():
            got = data.routes[route].latency[q]
            assert got is not None
            if exact_percentiles:
                assert got == pytest.approx(value, rel=1e-9)
            else:  # a server's t-digest: rank conventions differ, so within one rank of the exact one
                values = want["durations"][route]
                n, frac = len(values), float(q[1:]) / 100
                low = values[max(0, math.floor(frac * (n - 1)) - 1)]
                high = values[min(n - 1, math.ceil(frac * n) + 1)]
                # (dynamic mapping stores the durations as 32-bit floats: ~1e-7 relative)
                assert low * (1 - 1e-6) <= got <= high * (1 + 1e-6), (route, q, value, got, low, high)


@pytest.fixture(scope="module")
def delivered(es_server: Any, search_server: Any,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[Record], dict[str, str], str]]:
    """The example service's traffic, delivered alike (replicate policy) to the file backend, a real
    Elasticsearch 8.17 and a real OpenSearch 2.19."""
    tmp = tmp_path_factory.mktemp("report")
    namespace = "rpt" + uuid.uuid4().hex[:8]
    servers = {"elasticsearch": es_server, "opensearch": search_server}
    urls = {flavour: f"{flavour}+http://127.0.0.1:{server.port}?name={flavour}&namespace={namespace}"
            for flavour, server in servers.items()}
    env = {"OTEL_PYTHON_DISTRO": "otel_ext", "OTEL_EXT_BACKENDS": ",".join([f"file://{tmp / 'logs'}", *urls.values()]),
           "OTEL_EXT_FAILOVER_POLICY": "replicate", "OTEL_EXT_QUEUE_DIR": str(tmp / "q"),
           "OTEL_SERVICE_NAME": "shop-api", "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}
    service = Service(uvicorn(), env, tmp)
    try:
        service.wait_ready()
        traffic.run(service.url, 160, seed=8)
        for _ in range(6):  # every backend acknowledged everything (a loaded machine may need more than one try)
            flushed = service.post_json("/_otel_ext/flush")
            if flushed.get("flushed") and all(e["queue"]["records"] == 0 for e in flushed["exporters"]):
                break
    finally:
        assert service.stop() in (0, -15), service.output()
    records = list(OTLPJsonFileReader(tmp / "logs").records())
    http = urllib3.PoolManager()
    index = f"logs-*-{namespace}"

    def count(server: Any) -> int:
        http.request("POST", f"{server.url}/{index}/_refresh")
        resp = http.request("GET", f"{server.url}/{index}/_count")
        return int(json.loads(resp.data).get("count", 0)) if resp.status == 200 else 0

    for server in servers.values():
        assert wait_until(lambda s=server: count(s) >= len(records), 120), (count(server), len(records))
        assert count(server) == len(records)
    yield records, urls, index
    for server in servers.values():
        http.request("DELETE", f"{server.url}/{index}")


pytestmark = pytest.mark.peers


@pytest.mark.parametrize("flavour", ["elasticsearch", "opensearch"])
def test_report_numbers_equal_the_data_from_files_and_from_search_aggregations(
        delivered: tuple[list[Record], dict[str, str], str], flavour: str) -> None:
    records, urls, index = delivered
    want = expected(records)
    assert len(want["clients"]) >= 6 and want["alerts"] >= 1 and want["actions"]  # the traffic has it all
    from_files = Aggregator("tenant.id", "file", RETENTION).build(records)
    assert_matches(from_files, want, exact_percentiles=True)
    from_search = search_source_from_url(urls[flavour], index=index, retention_days=RETENTION).build()
    assert_matches(from_search, want, exact_percentiles=False)
    assert from_search.timeline == from_files.timeline  # same epoch-aligned buckets
    assert from_search.usage_timeline == from_files.usage_timeline
    assert set(from_search.class_bytes) <= set(want["classes"]) and from_search.class_bytes
    # the pricing suggestion: every named client lands in exactly one tier, the heaviest in the top one
    tiers = suggest_tiers({c: from_files.monthly(n) for c, n in from_files.client_totals().items()})
    assert sorted(c for t in tiers for c in t.clients) == sorted(from_files.client_totals())
    assert tiers[-1].clients[0] == max(from_files.client_totals().items(), key=lambda kv: kv[1])[0] == "acme"


def page_numbers(browser: Any) -> dict[str, str]:
    cells = browser.evaluate("Array.from(document.querySelectorAll('[data-k]')).map(e => [e.dataset.k, e.textContent])")
    return dict(cells)


def chart_state(browser: Any) -> dict[str, Any]:
    return browser.evaluate("""Object.fromEntries(Array.from(document.querySelectorAll('.chart')).map(d => {
        const svg = d.querySelector('svg.main-svg'); const r = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
        const marks = d.querySelectorAll('.point, .bars path, .heatmaplayer image, .scatterlayer path, .trace').length;
        return [d.id, {w: r.width, h: r.height, marks: marks}]; }))""")


@pytest.mark.parametrize("source", ["file", "search"])
def test_report_renders_in_headless_chromium_with_the_right_numbers(
        delivered: tuple[list[Record], dict[str, str], str], tmp_path: Path, source: str) -> None:
    from browser import Browser

    records, urls, index = delivered
    want = expected(records)
    if source == "file":
        data = Aggregator("tenant.id", "file backend", RETENTION).build(records)
    else:
        data = search_source_from_url(urls["elasticsearch"], index=index, retention_days=RETENTION).build()
    page = write_report(data, tmp_path / "report.html")
    assert b"http://" not in page.read_bytes().split(b"<body>")[1].replace(b"http://www.w3.org", b"")  # offline
    browser = Browser()
    try:
        browser.open(page.as_uri())
        assert wait_until(lambda: len(chart_state(browser)) >= 7 and all(
            c["marks"] > 0 for c in chart_state(browser).values()), 30), chart_state(browser)
        charts = chart_state(browser)
        assert all(c["w"] > 100 and c["h"] > 100 for c in charts.values()), charts
        assert browser.errors() == []
        shown = page_numbers(browser)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = browser.screenshot(ARTIFACTS / f"report-{source}.png")
        assert shot.stat().st_size > 20_000
    finally:
        browser.close()
    assert shown["records"] == str(want["records"])
    for client, n in want["clients"].items():
        assert shown[f"client.calls|{client}"] == str(n)
    for route, n in want["calls"].items():
        assert shown[f"route.calls|{route}"] == str(n)
        assert shown[f"route.errors|{route}"] == str(want["errors"][route])
        assert shown[f"route.4xx|{route}"] == str(want["client_errors"][route])
        if source == "file":
            for q in ("p50", "p95", "p99"):
                assert shown[f"route.{q}|{route}"] == f"{want['latency'][route][q] * 1000:.1f}"
    for action, n in want["actions"].items():
        assert shown[f"security.action|{action}"] == str(n)
    for event_class, n in want["classes"].items():
        assert shown[f"class.records|{event_class}"] == str(n)
    assert shown["alerts"] == str(want["alerts"])
    tiers = suggest_tiers({c: data.monthly(n) for c, n in data.client_totals().items()})
    assert sum(int(shown[f"tier.clients|{t.name}"]) for t in tiers) == len(want["clients"]) - (ANONYMOUS in want["clients"])


def test_hostile_client_ids_and_routes_stay_text(tmp_path: Path) -> None:
    from browser import Browser

    evil = "</script><script>window.pwned=1</script><img src=x onerror=window.pwned=2>"
    records = [Record(1_795_000_000_000_000_000 + i * 10**9, 9, "x", {
        "http.request.method": "GET", "http.response.status_code": 200 if i % 2 else 503, "http.route": evil,
        "tenant.id": evil, "http.server.request.duration": 0.01, "labels.event_class": "security",
        "event.action": evil, "client.address": evil}) for i in range(6)]
    page = write_report(Aggregator("tenant.id", evil).build(records), tmp_path / "evil.html")
    browser = Browser()
    try:
        browser.open(page.as_uri())
        assert wait_until(lambda: len(chart_state(browser)) >= 7, 30)
        assert browser.evaluate("window.pwned === undefined")
        assert browser.errors() == []
        assert browser.evaluate(f"document.body.textContent.includes({json.dumps(evil)})")
        assert page_numbers(browser)[f"client.calls|{evil}"] == "6"
    finally:
        browser.close()


def test_plotly_markup_in_data_is_shown_as_text_not_rendered_as_a_link(tmp_path: Path) -> None:
    from browser import Browser

    phish = '<a href="https://evil.example/login">Sign in again</a><span style="font-size:80px">&amp;</span>'
    records = [Record(1_795_000_000_000_000_000 + i * 10**9, 9, "x", {
        "http.request.method": "GET", "http.response.status_code": 200 if i % 2 else 503, "http.route": phish,
        "tenant.id": phish, "http.server.request.duration": 0.01, "labels.event_class": "security",
        "event.action": phish, "client.address": phish}) for i in range(6)]
    page = write_report(Aggregator("tenant.id", "hostile").build(records), tmp_path / "phish.html")
    browser = Browser()
    try:
        browser.open(page.as_uri())
        assert wait_until(lambda: len(chart_state(browser)) >= 7 and all(
            c["marks"] > 0 for c in chart_state(browser).values()), 30)
        assert browser.evaluate("document.querySelectorAll('.chart a').length") == 0
        assert browser.evaluate("Array.from(document.querySelectorAll('.chart text')).some("
                                "t => t.textContent.includes('<a href=\"https://evil.example/login\">'))")
        assert browser.errors() == []
    finally:
        browser.close()
