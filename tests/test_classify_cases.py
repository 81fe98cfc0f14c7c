"""Labelled classification cases, each run through a real SDK pipeline (stdlib logging ->
LoggingHandler -> EventClassifierProcessor -> in-memory exporter)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from otel_ext.classify import EventClassifierProcessor, build_ruleset
from otel_ext.classify.fields import FieldSettings
from otel_ext.telemetry import Counters


def http(status: Any, route: str = "/api/orders", method: str = "GET", **extra: Any) -> dict[str, Any]:
    attrs = {"http.request.method": method, "http.route": route, "http.response.status_code": status}
    attrs.update(extra)
    return attrs


@dataclass
class Case:
    name: str
    message: str = "request completed"
    extra: dict[str, Any] = field(default_factory=dict)
    logger: str = "shop.api"
    level: str = "info"
    want_class: str = "application"
    want_tags: tuple[str, ...] | None = None
    want_action: str | None = None
    want_outcome: str | None = None
    want_category: tuple[str, ...] | None = None
    want_type: tuple[str, ...] | None = None
    want_severity: str | None = None
    want_attrs: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case("login 401 is a failed login", extra=http(401, "/api/login", "POST", **{"user.id": "bob"}),
         want_class="security", want_tags=("security", "access"), want_action="authn_login_fail",
         want_outcome="failure", want_category=("authentication", "web"), want_type=("start", "access"),
         want_severity="WARN"),
    Case("login 200 POST is a successful login", extra=http(200, "/login", "POST"), want_class="security",
         want_action="authn_login_success", want_outcome="success", want_severity="INFO"),
    Case("oauth token endpoint 401", extra=http(401, "/oauth/token", "POST"), want_class="security",
         want_action="authn_login_fail"),
    Case("sign-in route with trailing slash", extra=http(401, "/auth/sign-in/", "POST"), want_class="security",
         want_action="authn_login_fail"),
    Case("GET on login page is not a login success", extra=http(200, "/login", "GET"), want_class="access",
         want_action=None, want_outcome="success"),
    Case("401 elsewhere is unauthenticated access", extra=http(401, "/api/orders"), want_class="security",
         want_action="authz_fail", want_category=("authentication", "web"), want_type=("info", "access")),
    Case("403 is authz_fail", extra=http(403, "/api/admin/users"), want_class="security", want_action="authz_fail",
         want_category=("iam", "web"), want_severity="WARN"),
    Case("429 is a rate-limit event", extra=http(429), want_class="security",
         want_action="excess_rate_limit_exceeded", want_category=("intrusion_detection", "web"),
         want_type=("denied", "access")),
    Case("400 is input validation", extra=http(400, "/api/orders", "POST"), want_class="security",
         want_action="input_validation_fail"),
    Case("422 is input validation", extra=http(422, "/api/orders", "POST"), want_class="security",
         want_action="input_validation_fail"),
    Case("500 is an error raised to ERROR", extra=http(500, "/api/cart", "POST"), want_class="error",
         want_tags=("error", "access"), want_outcome="failure", want_type=("error", "access"),
         want_severity="ERROR"),
    Case("503 is an error", extra=http(503), want_class="error"),
    Case("500 on the login route is an error, not a login", extra=http(500, "/api/login", "POST"),
         want_class="error", want_action=None, want_tags=("error", "access")),
    Case("200 is plain access", extra=http(200), want_class="access", want_tags=("access",),
         want_outcome="success", want_category=("web",), want_type=("access",), want_severity="INFO"),
    Case("302 is access success", extra=http(302), want_class="access", want_outcome="success"),
    Case("404 is access failure", extra=http(404, "/api/nope"), want_class="access", want_outcome="failure"),
    Case("slow request by semconv duration", extra=http(200, **{"http.server.request.duration": 2.5}),
         want_class="performance", want_tags=("performance", "access"),
         want_attrs={"event.duration": 2_500_000_000}),
    Case("slow request by duration_ms", extra=http(200, duration_ms=1500), want_class="performance",
         want_attrs={"event.duration": 1_500_000_000}),
    Case("900 ms is not slow", extra=http(200, duration_ms=900), want_class="access",
         want_attrs={"event.duration": 900_000_000}),
    Case("exactly the threshold counts as slow", extra=http(200, duration_ms=1000), want_class="performance"),
    Case("slow and unauthorised: security first, all tags", extra=http(401, "/api/orders", duration_ms=3000),
         want_class="security", want_tags=("security", "performance", "access"), want_action="authz_fail"),
    Case("status given as a string", extra=http("403"), want_class="security", want_action="authz_fail"),
    Case("uvicorn access line", logger="uvicorn.access",
         message='10.1.2.3:51234 - "GET /api/items?page=2 HTTP/1.1" 200', want_class="access",
         want_attrs={"http.request.method": "GET", "url.path": "/api/items", "http.response.status_code": 200,
                     "client.address": "10.1.2.3"}),
    Case("uvicorn access line: failed login", logger="uvicorn.access",
         message='10.1.2.3:51234 - "POST /api/login HTTP/1.1" 401', want_class="security",
         want_action="authn_login_fail"),
    Case("uvicorn access line over IPv6", logger="uvicorn.access",
         message='[::1]:5000 - "GET /health HTTP/1.1" 200', want_class="access",
         want_attrs={"client.address": "::1"}),
    Case("gunicorn access line 500", logger="gunicorn.access",
         message='10.0.0.9 - - [25/Nov/2026:10:00:00 +0000] "POST /api/cart HTTP/1.1" 500 12 "-" "curl/8.5"',
         want_class="error", want_attrs={"http.response.status_code": 500, "client.address": "10.0.0.9"}),
    Case("werkzeug access line 404", logger="werkzeug",
         message='127.0.0.1 - - [25/Nov/2026 10:00:00] "GET /missing HTTP/1.1" 404 -', want_class="access",
         want_outcome="failure"),
    Case("django dev server 403", logger="django.server", message='"GET /admin/ HTTP/1.1" 403 0',
         want_class="security", want_action="authz_fail"),
    Case("access-looking line from a non-access logger is not parsed", logger="shop.api",
         message='"GET /x HTTP/1.1" 500', want_class="application"),
    Case("django.request 500 with status_code extra", logger="django.request", level="error",
         message="Internal Server Error: /api/cart", extra={"status_code": 500}, want_class="error"),
    Case("django.security logger", logger="django.security.DisallowedHost", level="error",
         message="Invalid HTTP_HOST header: 'evil.example'.", want_class="security"),
    Case("flask_login logger", logger="flask_login", message="user loaded", want_class="security"),
    Case("failed login phrase in the body", message="Failed login for user bob from 10.0.0.1",
         want_class="security", want_action="authn_login_fail", want_severity="WARN"),
    Case("invalid password phrase", message="invalid password for account 42", want_class="security",
         want_action="authn_login_fail"),
    Case("successful login phrase", message="User bob logged in successfully", want_class="security",
         want_action="authn_login_success"),
    Case("permission denied phrase", message="Permission denied for resource /reports/7", want_class="security",
         want_action="authz_fail"),
    Case("rate limit phrase", message="Rate limit exceeded for api key k-17", want_class="security",
         want_action="excess_rate_limit_exceeded"),
    Case("attack phrase", message="Possible SQL injection in parameter q", want_class="security"),
    Case("slow query phrase", message="slow query took 2300 ms", want_class="performance"),
    Case("explicit OWASP action with parameters", message="login rejected",
         extra={"event.action": "authn_login_fail:joebob1"}, want_class="security", want_action="authn_login_fail",
         want_category=("authentication",)),
    Case("explicit user_created", message="user created", extra={"event.action": "user_created"},
         want_class="security", want_action="user_created", want_category=("iam",), want_type=("creation", "user"),
         want_severity="WARN"),
    Case("explicit sys_crash is an error", message="worker died", extra={"event.action": "sys_crash"},
         want_class="error", want_action="sys_crash"),
    Case("explicit upload_complete stays application", message="upload done",
         extra={"event.action": "upload_complete"}, want_class="application", want_action="upload_complete"),
    Case("explicit malicious_attack_tool raises to FATAL", message="sqlmap detected",
         extra={"event.action": "malicious_attack_tool"}, want_class="security", want_severity="FATAL",
         want_action="malicious_attack_tool"),
    Case("unknown explicit action is kept as given", message="custom", extra={"event.action": "billing_retry"},
         want_class="application", want_action="billing_retry"),
    Case("logged exception is an error", level="exception", message="boom", want_class="error",
         want_type=(), want_outcome="failure"),  # ECS: `error` needs a category (web, database); none here
    Case("django.security exception keeps only types its category allows", logger="django.security.csrf",
         level="exception", message="CSRF verification failed", want_class="security",
         want_category=("intrusion_detection",), want_type=("info", "denied")),
    Case("ERROR level is an error", level="error", message="database unreachable", want_class="error"),
    Case("INFO message is application", message="cache warmed in 12 ms", want_class="application",
         want_tags=("application",), want_action=None),
    Case("WARNING message is application", level="warning", message="disk at 80%", want_class="application",
         want_severity="WARN"),
    Case("CRITICAL is never lowered by a WARN rule", level="critical", extra=http(403),
         want_class="security", want_severity="FATAL", want_action="authz_fail"),
    Case("DEBUG 429 is raised to WARN", level="debug", extra=http(429), want_class="security",
         want_severity="WARN", want_action="excess_rate_limit_exceeded"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_builtin_rules_label_api_events(make_pipeline: Any, case: Case) -> None:
    pipe = make_pipeline(EventClassifierProcessor(counters=Counters("t")))
    log = pipe.logger(case.logger)
    if case.level == "exception":
        try:
            raise ValueError("bad")
        except ValueError:
            log.exception(case.message, extra=case.extra)
    else:
        getattr(log, case.level)(case.message, extra=case.extra)
    record = pipe.last().log_record
    attrs = dict(record.attributes or {})
    assert attrs["labels.event_class"] == case.want_class
    assert attrs["event.kind"] == "event"
    if case.want_tags is not None:
        assert tuple(attrs["tags"]) == case.want_tags
    assert attrs["tags"][0] == case.want_class
    assert attrs.get("event.action") == case.want_action
    if case.want_action:
        assert record.event_name == case.want_action
    if case.want_outcome is not None:
        assert attrs["event.outcome"] == case.want_outcome
    if case.want_category is not None:
        assert tuple(attrs["event.category"]) == case.want_category
    if case.want_type is not None:
        assert tuple(attrs.get("event.type", ())) == case.want_type
    if case.want_severity is not None:
        assert record.severity_text == case.want_severity
    for key, value in case.want_attrs.items():
        assert attrs[key] == value, key


def test_there_are_at_least_forty_labelled_cases() -> None:
    assert len(CASES) >= 40


def test_per_route_slow_threshold_overrides_default(make_pipeline: Any) -> None:
    ruleset = build_ruleset(settings=FieldSettings(slow_request_ms=1000, slow_routes={"/api/reports/*": 5000}))
    pipe = make_pipeline(EventClassifierProcessor(ruleset, counters=Counters("t")))
    log = pipe.logger("shop.api")
    log.info("r", extra=http(200, "/api/reports/{id}", duration_ms=3000))
    log.info("r", extra=http(200, "/api/reports/{id}", duration_ms=6000))
    log.info("r", extra=http(200, "/api/orders", duration_ms=3000))
    classes = [r.log_record.attributes["labels.event_class"] for r in pipe.records()]  # type: ignore[index]
    assert classes == ["access", "performance", "performance"]


def test_existing_event_name_is_not_overwritten(make_pipeline: Any) -> None:
    pipe = make_pipeline(EventClassifierProcessor(counters=Counters("t")))
    pipe.logger("shop.api").info("x", extra={**http(403), "otel.event.name": "shop.admin.denied"})
    record = pipe.last().log_record
    assert record.event_name == "shop.admin.denied"
    assert record.attributes["event.action"] == "authz_fail"  # type: ignore[index]


def test_already_labelled_record_is_left_alone(make_pipeline: Any) -> None:
    pipe = make_pipeline(EventClassifierProcessor(counters=Counters("t")))
    pipe.logger("shop.api").info("x", extra={**http(500), "labels.event_class": "security"})
    attrs = pipe.attrs()
    assert attrs["labels.event_class"] == "security"
    assert "tags" not in attrs


def test_every_emitted_label_is_ecs_valid(make_pipeline: Any) -> None:
    from otel_ext.classify.vocabulary import ECS_CATEGORY_TYPES, ECS_KINDS, ECS_OUTCOMES

    pipe = make_pipeline(EventClassifierProcessor(counters=Counters("t")))
    for case in CASES:
        getattr(pipe.logger(case.logger), "error" if case.level == "exception" else case.level)(
            case.message, extra=case.extra
        )
    for item in pipe.records():
        attrs = item.log_record.attributes or {}
        assert attrs["event.kind"] in ECS_KINDS
        assert attrs.get("event.outcome", "unknown") in ECS_OUTCOMES
        cats = tuple(attrs.get("event.category", ()))
        for typ in attrs.get("event.type", ()):  # every type expected for one of the categories
            assert any(typ in ECS_CATEGORY_TYPES[c] for c in cats), (cats, typ)


def test_access_lines_are_parsed_behind_a_formatter_prefix(make_pipeline: Any) -> None:
    import logging

    pipe = make_pipeline(EventClassifierProcessor(counters=Counters("t")))
    pipe.handler.setFormatter(logging.Formatter(logging.BASIC_FORMAT))  # what logging.basicConfig() does
    pipe.logger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "198.51.100.4:53123", "POST", "/api/login", "1.1", 401)
    attrs = pipe.attrs()
    assert pipe.last().log_record.body.startswith("INFO:uvicorn.access:")  # type: ignore[union-attr]
    assert attrs["event.action"] == "authn_login_fail"
    assert attrs["client.address"] == "198.51.100.4"
