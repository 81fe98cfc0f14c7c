"""The built-in rule table. Each row is data in the same shape a YAML rule file uses.

Reading order does not matter: every matching rule adds its class to ``tags``; the primary class
is the highest of security > error > performance > access > application, and its first matching
rule supplies ``event.action`` and ``event.outcome``.
"""

from __future__ import annotations

from typing import Any

from otel_ext.classify.payload import FAMILIES
from otel_ext.classify.vocabulary import OTEL_EXT_VOCABULARY, OWASP_VOCABULARY

LOGIN_ROUTE = (
    r"(?i)/(log-?in|sign-?in|sign_in|authenticate|auth(/login|/token)?|oauth2?/token|token|sessions?)/?$"
)
# body phrases: case-insensitive substrings (`contains`), cheap to pre-filter
FAILED_LOGIN_PHRASES = [
    "failed login", "login failed", "login attempt failed", "failed to log in", "invalid password",
    "incorrect password", "wrong password", "invalid credentials", "bad credentials",
    "authentication failed", "authentication failure",
]
LOGIN_SUCCESS_PHRASES = ["login succeeded", "login successful", "logged in successfully", "successful login"]
ACCESS_DENIED_PHRASES = ["access denied", "permission denied", "not authorized to", "not authorised to"]
RATE_LIMIT_PHRASES = ["rate limit exceeded", "ratelimit exceeded", "rate limited", "too many requests"]
ATTACK_PHRASES = [
    "sql injection", "xss attempt", "path traversal", "csrf verification failed", "csrf token missing",
    "csrf token invalid", "csrf failure", "suspicious operation", "disallowedhost", "invalid http_host header",
]
SLOW_PHRASES = ["slow query", "slow request", "slow response", "slow call"]
SECURITY_LOGGERS = (
    r"^(django\.security(\..*)?|flask_login|flask_security|flask_limiter|slowapi|authlib(\..*)?|fastapi_users|"
    r"security|auth|audit)$"
)


def _vocabulary_rules() -> list[dict[str, Any]]:
    """One rule per OWASP vocabulary name: an app that logs ``event.action`` is honoured."""
    rules: list[dict[str, Any]] = []
    for name, ev in (*OWASP_VOCABULARY.items(), *OTEL_EXT_VOCABULARY.items()):
        spec: dict[str, Any] = {
            "id": f"{'owasp' if name in OWASP_VOCABULARY else 'otel_ext'}.{name}",
            "when": {"event_action": name},
            "class": ev.event_class,
            "category": list(ev.category),
            "type": list(ev.type),
            "outcome": ev.outcome,
            "action": name,
            "severity": ev.severity,
        }
        if not ev.category:
            del spec["category"], spec["type"]
        rules.append(spec)
    return rules


def _attack_rules() -> list[dict[str, Any]]:
    """Three rules per payload-inspection family: the server refused the request (4xx/5xx), answered
    it (1xx-3xx: the attack may have worked, so the severity is higher), or no status is known."""
    rules: list[dict[str, Any]] = []
    for family in FAMILIES.values():
        vocabulary = OWASP_VOCABULARY if family.owasp else OTEL_EXT_VOCABULARY
        level = vocabulary[family.action].severity
        base = {"class": "security", "category": ["intrusion_detection", "web"], "action": family.action}
        rules.append({
            "id": f"attack.{family.name}.refused",
            "description": f"{family.description}; the server refused it",
            "when": {"attack": family.name, "status": {"gte": 400}},
            **base, "type": ["denied"], "outcome": "failure", "severity": "WARN",
        })
        if family.refused_only:
            continue
        rules.append({
            "id": f"attack.{family.name}.answered",
            "description": f"{family.description}; the server answered it (it may have worked)",
            "when": {"attack": family.name, "status": {"lt": 400}},
            **base, "type": ["info"], "outcome": "success", "severity": "FATAL" if level == "CRITICAL" else "ERROR",
        })
        rules.append({
            "id": f"attack.{family.name}",
            "description": f"{family.description}; no response status known",
            "when": {"attack": family.name, "status": {"exists": False}},
            **base, "type": ["info"], "outcome": "unknown", "severity": "WARN",
        })
    return rules


HTTP_RULES: list[dict[str, Any]] = [
    # --- security ------------------------------------------------------------------------------
    {
        "id": "http.login.fail",
        "description": "401 on a login route",
        "when": {"status": 401, "route": {"matches": LOGIN_ROUTE}},
        "class": "security",
        "category": ["authentication"],
        "type": ["start"],
        "outcome": "failure",
        "action": "authn_login_fail",
        "severity": "WARN",
    },
    {
        "id": "http.login.success",
        "description": "2xx answer to a login POST",
        "when": {"status": {"gte": 200, "lt": 300}, "method": "POST", "route": {"matches": LOGIN_ROUTE}},
        "class": "security",
        "category": ["authentication"],
        "type": ["start"],
        "outcome": "success",
        "action": "authn_login_success",
    },
    {
        "id": "http.unauthenticated",
        "description": "401 outside login routes: a request without valid credentials",
        "when": {"status": 401, "route": {"not_matches": LOGIN_ROUTE}},
        "class": "security",
        "category": ["authentication"],
        "type": ["info"],
        "outcome": "failure",
        "action": "authz_fail",
        "severity": "WARN",
    },
    {
        "id": "http.forbidden",
        "when": {"status": 403},
        "class": "security",
        "category": ["iam"],
        "type": ["info"],
        "outcome": "failure",
        "action": "authz_fail",
        "severity": "WARN",
    },
    {
        "id": "http.rate_limited",
        "when": {"status": 429},
        "class": "security",
        "category": ["intrusion_detection"],
        "type": ["denied"],
        "outcome": "failure",
        "action": "excess_rate_limit_exceeded",
        "severity": "WARN",
    },
    {
        "id": "http.input_invalid",
        "when": {"status": [400, 422]},
        "class": "security",
        "category": ["intrusion_detection"],
        "type": ["denied"],
        "outcome": "failure",
        "action": "input_validation_fail",
        "severity": "WARN",
    },
    # --- error ---------------------------------------------------------------------------------
    {
        "id": "http.server_error",
        "when": {"status": {"gte": 500, "lt": 600}},
        "class": "error",
        "category": ["web"],
        "type": ["error"],
        "outcome": "failure",
        "severity": "ERROR",
    },
    # --- performance ---------------------------------------------------------------------------
    {
        "id": "http.slow",
        "description": "request slower than its route threshold (settings.slow_request_ms / slow_routes)",
        "when": {"slow": True},
        "class": "performance",
        "category": ["web"],
        "type": ["info"],
    },
    # --- access --------------------------------------------------------------------------------
    {
        "id": "http.access.ok",
        "when": {"status": {"gte": 100, "lt": 400}},
        "class": "access",
        "category": ["web"],
        "type": ["access"],
        "outcome": "success",
    },
    {
        "id": "http.access.fail",
        "when": {"status": {"gte": 400, "lt": 600}},
        "class": "access",
        "category": ["web"],
        "type": ["access"],
        "outcome": "failure",
    },
]

LOG_RULES: list[dict[str, Any]] = [
    {
        "id": "log.exception",
        "when": {"exception": True},
        "class": "error",
        "type": ["error"],
        "outcome": "failure",
    },
    {
        "id": "log.severity_error",
        "when": {"severity": {"gte": "ERROR"}},
        "class": "error",
    },
    {
        "id": "log.security_logger",
        "description": "django.security.* and similar security loggers",
        "when": {"logger": {"matches": SECURITY_LOGGERS}},
        "class": "security",
        "category": ["intrusion_detection"],
        "type": ["info"],
    },
    {
        "id": "body.login_fail",
        "when": {"body": {"contains": FAILED_LOGIN_PHRASES}},
        "class": "security",
        "category": ["authentication"],
        "type": ["start"],
        "outcome": "failure",
        "action": "authn_login_fail",
        "severity": "WARN",
    },
    {
        "id": "body.login_success",
        "when": {"body": {"contains": LOGIN_SUCCESS_PHRASES}},
        "class": "security",
        "category": ["authentication"],
        "type": ["start"],
        "outcome": "success",
        "action": "authn_login_success",
    },
    {
        "id": "body.access_denied",
        "when": {"body": {"contains": ACCESS_DENIED_PHRASES}},
        "class": "security",
        "category": ["iam"],
        "type": ["info"],
        "outcome": "failure",
        "action": "authz_fail",
        "severity": "WARN",
    },
    {
        "id": "body.rate_limited",
        "when": {"body": {"contains": RATE_LIMIT_PHRASES}},
        "class": "security",
        "category": ["intrusion_detection"],
        "type": ["denied"],
        "outcome": "failure",
        "action": "excess_rate_limit_exceeded",
        "severity": "WARN",
    },
    {
        "id": "body.attack",
        "when": {"body": {"contains": ATTACK_PHRASES}},
        "class": "security",
        "category": ["intrusion_detection"],
        "type": ["denied"],
        "outcome": "failure",
        "severity": "WARN",
    },
    {
        "id": "body.slow",
        "when": {"body": {"contains": SLOW_PHRASES}},
        "class": "performance",
    },
]


def builtin_rules() -> list[dict[str, Any]]:
    """A fresh copy of the built-in rule table."""
    return [dict(r) for r in (*_vocabulary_rules(), *_attack_rules(), *HTTP_RULES, *LOG_RULES)]
