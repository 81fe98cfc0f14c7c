"""A labelled corpus for redaction: realistic secrets of many kinds, each placed in the contexts
logs put them in (free text, JSON bodies, key=value / form / URL-encoded pairs, attributes), and
harmless look-alikes that must come through byte for byte.

Formats follow public references (gitleaks ``config/gitleaks.toml``, Yelp detect-secrets plugins,
vendor documentation); every value is synthetic, generated from a fixed seed.
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

RND = random.Random(20261126)
ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "_-"


def rand(chars: str, n: int) -> str:
    return "".join(RND.choice(chars) for _ in range(n))


def luhn_complete(prefix: str, length: int) -> str:
    body = prefix + "".join(RND.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        digits = body + check
        total = 0
        for i, ch in enumerate(reversed(digits)):
            d = int(ch) * (2 if i % 2 else 1)
            total += d - 9 if d > 9 else d
        if total % 10 == 0:
            return digits
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Case:
    kind: str
    context: str
    value: Any  # a string (body) or a mapping (attributes)
    secrets: tuple[str, ...]  # none of these may survive


# --- vendor tokens: the token itself is the secret, whatever key (if any) it sits under ----------
def vendor_tokens() -> dict[str, list[str]]:
    return {
        "aws_access_key": ["AKIA" + rand(string.ascii_uppercase + "234567", 16),
                           "ASIA" + rand(string.ascii_uppercase + "234567", 16)],
        "github_pat": ["ghp_" + rand(ALNUM, 36), "github_pat_11" + rand(ALNUM, 20) + "_" + rand(ALNUM, 59)],
        "github_app_token": ["ghs_" + rand(ALNUM, 36), "gho_" + rand(ALNUM, 36), "ghu_" + rand(ALNUM, 36)],
        "gitlab_token": ["glpat-" + rand(URLSAFE, 20), "glrt-" + rand(URLSAFE, 20)],
        "slack_bot_token": ["xoxb-" + rand(string.digits, 12) + "-" + rand(string.digits, 13) + "-" + rand(ALNUM, 24)],
        "slack_user_token": ["xoxp-" + "-".join(rand(string.digits, 12) for _ in range(3)) + "-" + rand(HEX, 32)],
        "slack_webhook": ["https://hooks.slack.com/services/T" + rand(string.ascii_uppercase + string.digits, 8)
                          + "/B" + rand(string.ascii_uppercase + string.digits, 10) + "/" + rand(ALNUM, 24)],
        "stripe_secret_key": ["sk_live_" + rand(ALNUM, 24), "rk_live_" + rand(ALNUM, 24), "sk_test_" + rand(ALNUM, 24)],
        "stripe_webhook_secret": ["whsec_" + rand(ALNUM, 32)],
        "google_api_key": ["AIza" + rand(URLSAFE, 35)],
        "google_oauth_token": ["ya29." + rand(URLSAFE, 60), "GOCSPX-" + rand(URLSAFE, 28)],
        "openai_key": ["sk-proj-" + rand(URLSAFE, 48) + "T3BlbkFJ" + rand(URLSAFE, 48)],
        "anthropic_key": ["sk-ant-api03-" + rand(URLSAFE, 93) + "AA"],
        "npm_token": ["npm_" + rand(ALNUM, 36)],
        "pypi_token": ["pypi-AgEIcHlwaS5vcmc" + rand(URLSAFE, 70)],
        "twilio_api_key": ["SK" + rand(HEX, 32)],
        "sendgrid_key": ["SG." + rand(URLSAFE, 22) + "." + rand(URLSAFE, 43)],
        "mailgun_key": ["key-" + rand(HEX, 32)],
        "vault_token": ["hvs." + rand(URLSAFE, 90), "hvb." + rand(URLSAFE, 140)],
        "shopify_token": ["shpat_" + rand(HEX, 32), "shpss_" + rand(HEX, 32)],
        "huggingface_token": ["hf_" + rand(string.ascii_letters, 34)],
        "digitalocean_token": ["dop_v1_" + rand(HEX, 64)],
        "databricks_token": ["dapi" + rand(HEX, 32)],
        "doppler_token": ["dp.pt." + rand(ALNUM, 43)],
        "dynatrace_token": ["dt0c01." + rand(string.ascii_uppercase + string.digits, 24) + "."
                            + rand(string.ascii_uppercase + string.digits, 64)],
        "linear_key": ["lin_api_" + rand(ALNUM, 40)],
        "pulumi_token": ["pul-" + rand(HEX, 40)],
        "postman_key": ["PMAK-" + rand(HEX, 24) + "-" + rand(HEX, 34)],
        "grafana_token": ["glsa_" + rand(ALNUM, 32) + "_" + rand(HEX, 8)],
        "newrelic_key": ["NRAK-" + rand(string.ascii_uppercase + string.digits, 27)],
        "sentry_token": ["sntryu_" + rand(HEX, 64)],
        "rubygems_token": ["rubygems_" + rand(HEX, 48)],
        "age_secret_key": ["AGE-SECRET-KEY-1" + rand("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58)],
        "square_token": ["sq0atp-" + rand(URLSAFE, 22)],
        "telegram_bot_token": [rand(string.digits, 9) + ":AA" + rand(URLSAFE, 33)],
        "azure_ad_client_secret": [rand(ALNUM, 3) + "8Q~" + rand(ALNUM + "_~.-", 34)],
        "jwt": ["eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI" + rand(URLSAFE, 30) + "." + rand(URLSAFE, 43)],
    }


CONTEXTS = {
    "text": lambda t: f"calling upstream with {t} (retry 2)",
    "json": lambda t: json.dumps({"event": "config_loaded", "value": t, "ok": True}),
    "kv": lambda t: f"upstream=billing note={t} attempt=3",
    "attr": lambda t: {"upstream.note": t, "http.route": "/api/orders/{id}"},
}


def pem(kind: str = "RSA PRIVATE KEY") -> tuple[str, str]:
    body = "\n".join(rand(B64, 64) for _ in range(6))
    return f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----\n", body.splitlines()[2]


def secret_cases() -> list[Case]:
    cases: list[Case] = []
    for kind, tokens in vendor_tokens().items():
        for i, token in enumerate(tokens):
            for context, make in CONTEXTS.items():
                if i and context in ("kv", "attr"):
                    continue  # second and third formats: text and JSON only
                cases.append(Case(kind, context, make(token), (token[-16:],)))

    def add(kind: str, context: str, value: Any, *secrets: str) -> None:
        cases.append(Case(kind, context, value, secrets))

    # passwords under every key spelling the issue lists
    for key in ["password", "passwd", "pwd", "pass", "DB_PASSWORD", "userPassword", "user-password", "new_password",
                "MYSQL_ROOT_PASSWORD", "passphrase", "contrasena", "password_confirmation", "password2",
                "passwordConfirm", "my_password_super_secure", "secret_value", "SMTP_PASSWORD_NEW"]:
        pw = rand(ALNUM, 12) + "!"
        add("password_kv", key, f"login attempt {key}={pw} from 10.0.0.7", pw[:-1])
    phrase = "correct horse battery staple"
    add("password_json", "json", json.dumps({"user": "bob", "password": phrase}), "horse", "staple")
    add("password_json", "json_pretty", json.dumps({"auth": {"username": "bob", "Password": phrase}}, indent=2),
        "horse", "staple")
    add("password_json", "json_escaped", json.dumps({"payload": json.dumps({"password": phrase})}), "horse", "staple")
    add("password_form", "form", "username=bob&password=" + quote("p@ss w0rd!") + "&grant_type=password",
        "w0rd")
    add("password_urlencoded", "urlencoded", "body=" + quote("username=bob&password=Hunter2Hunter2", safe=""),
        "Hunter2Hunter2")
    add("password_urlencoded", "encoded_key", "user%5Bpassword%5D=Zq8Rr51Xk&commit=Sign+in", "Zq8Rr51Xk")
    add("password_yaml", "yaml", "database:\n  host: db\n  password: 'S3cr3t-Yaml-Pw'\n", "S3cr3t-Yaml-Pw")
    add("password_parens", "parens", "retrying (password=hunter2hunter2) now", "hunter2hunter2")
    attr_pw = "Pw-" + rand(ALNUM, 10)
    add("password_attr", "attr", {"user.password": attr_pw}, attr_pw)
    # client secrets / tokens / api keys under camelCase, env-style, kebab keys
    for key, kind in [("client_secret", "client_secret"), ("clientSecret", "client_secret"),
                      ("accessToken", "access_token"), ("access_token", "access_token"),
                      ("refresh_token", "refresh_token"), ("idToken", "id_token"), ("privateKey", "private_key_field"),
                      ("AWS_SECRET_ACCESS_KEY", "aws_secret_key"), ("DD_API_KEY", "datadog_api_key"),
                      ("x-api-key", "api_key"), ("apiKey", "api_key"), ("STRIPE_SECRET_KEY", "stripe_env"),
                      ("SENTRY_AUTH_TOKEN", "sentry_env"), ("webhookSecret", "webhook_secret"),
                      ("JWT_SECRET", "jwt_secret"), ("encryption_key", "encryption_key"),
                      ("otp", "otp"), ("mfa_code", "otp"), ("X-Auth-Token", "auth_token")]:
        value = rand(ALNUM, 24)
        add(kind, "env", f"{key}={value}", value)
        add(kind, "json", json.dumps({key: value, "region": "eu-west-1"}), value)
        add(kind, "attr", {key: value}, value)
    # headers and schemes
    token = rand(ALNUM, 32)
    add("authorization_header", "header", f"Authorization: Bearer {token}", token)
    add("authorization_header", "header_json", json.dumps({"headers": {"Authorization": f"Bearer {token}"}}), token)
    basic = "YWxhZGRpbjpvcGVuc2VzYW1l"
    add("basic_auth", "header", f"Proxy-Authorization: Basic {basic}", basic)
    add("bearer_text", "text", f"forwarding bearer {token} to payments", token)
    add("cookie_header", "header", f"Cookie: sessionid={token}; csrftoken={rand(ALNUM, 32)}", token)
    add("set_cookie", "header", f"Set-Cookie: session={token}; Path=/; HttpOnly", token)
    add("cookie_attr", "attr", {"http.request.header.cookie": f"sid={token}"}, token)
    # connection strings / DSNs
    pw = "My@S3cretPw77"
    add("dsn", "mysql_at_in_password", f"connecting to mysql://root:{pw}@db.internal:3306/app", "S3cretPw77")
    add("dsn", "redis_empty_user", "cache at redis://:Rd1sP4ssw0rd@cache.internal:6379/0", "Rd1sP4ssw0rd")
    add("dsn", "postgres", "DATABASE_URL=postgresql://app:Pg-9f8e7d6c@pg:5432/app?sslmode=require", "Pg-9f8e7d6c")
    add("dsn", "amqp_colon_in_password", "amqp://guest:gu:est:99x@mq:5672/", "gu:est:99x")
    add("dsn", "mongodb_srv", "mongodb+srv://svc:Mg0Pass2026@cluster0.abcde.mongodb.net/db", "Mg0Pass2026")
    add("dsn", "json", json.dumps({"dsn": "postgres://u:Pw1-in-json@h/db"}), "Pw1-in-json")
    add("dsn", "token_userinfo", "git clone https://x-access-token:ghs_" + "a" * 36 + "@github.com/o/r.git", "a" * 36)
    sentry_key = rand(HEX, 32)
    add("dsn", "sentry_dsn", f"SENTRY_DSN=https://{sentry_key}@o123.ingest.sentry.io/456", sentry_key)
    add("dsn", "sentry_dsn_text", f"sentry initialised with https://{sentry_key}@o123.ingest.sentry.io/456",
        sentry_key)
    add("conn_string", "ado", "Server=db;Database=app;User Id=sa;Password=Sql!Pw2026;", "Sql!Pw2026")
    account_key = rand(B64, 86) + "=="
    add("azure_storage_key", "conn", f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={account_key};"
        "EndpointSuffix=core.windows.net", account_key[:40])
    sas = quote(rand(B64, 43) + "=", safe="")
    add("azure_sas", "url", f"https://acct.blob.core.windows.net/c/b.txt?sv=2022-11-02&se=2026-12-01&sp=r&sig={sas}",
        sas[:20])
    sig = rand(HEX, 64)
    add("aws_presigned", "url", "GET https://s3.amazonaws.com/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
        f"AKIAEXAMPLE%2F20261126&X-Amz-Signature={sig}", sig)
    # private keys
    for pem_kind in ["RSA PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "PRIVATE KEY"]:
        block, line = pem(pem_kind)
        add("private_key", "text", f"loaded key {block}", line)
        add("private_key", "json_string", json.dumps({"tls": {"key": block}}), line)
    block, line = pem("PRIVATE KEY")
    service_account = {"type": "service_account", "project_id": "shop-prod", "private_key_id": rand(HEX, 40),
                       "private_key": block, "client_email": "svc@shop-prod.iam.gserviceaccount.com"}
    add("gcp_service_account", "json", json.dumps(service_account), line)
    add("gcp_service_account", "json_pretty", json.dumps(service_account, indent=2), line)
    # cards
    for prefix, length in [("4", 16), ("51", 16), ("37", 15), ("6011", 16), ("2221", 16), ("35", 16)]:
        card = luhn_complete(prefix, length)
        add("card", "text", f"charged card {card} for order ORD-7", card)
    card = luhn_complete("4", 16)
    add("card", "spaced", "card " + " ".join(card[i:i + 4] for i in range(0, 16, 4)) + " accepted", card[4:8] + " ")
    cards = [luhn_complete("4", 16), luhn_complete("5", 16), luhn_complete("4", 16)]
    add("card", "int_attribute", {"payment.card": int(cards[0])}, cards[0])
    add("card", "int_attribute_neutral_key", {"payment.ref": int(cards[1])}, cards[1])
    add("card", "json_number", json.dumps({"pan": int(cards[2])}), cards[2])
    # sessions: hashed, not readable
    sid = rand(ALNUM, 26)
    add("session", "attr_semconv", {"session.id": sid}, sid)
    add("session", "attr", {"session_id": sid}, sid)
    add("session", "kv", f"resumed session_id={sid} ok", sid)
    add("session", "jsessionid", f"GET /app;jsessionid={sid} HTTP/1.1", sid)
    return cases


SECRETS: list[Case] = secret_cases()

HARMLESS: list[Any] = [
    # request lines and access logs
    "POST /auth/token HTTP/1.1",
    '10.1.2.3:51234 - "POST /auth/token HTTP/1.1" 200',
    '127.0.0.1 - - [26/Nov/2026:10:00:00 +0000] "GET /api/v1/tokens/42 HTTP/1.1" 404 153',
    "GET /users/password/reset?email=bob%40example.com 302",
    "PUT /api/keys/rotate HTTP/2",
    "DELETE /api/sessions/current HTTP/1.1",
    "GET /oauth/authorize?response_type=code&client_id=shop-web&redirect_uri=https%3A%2F%2Fshop.example%2Fcb",
    "GET /api/items?page=2&page_token=CiAKGjBpNDd2Nmp2Zml2cXRlYjBpOXBpZ3Y HTTP/1.1",
    "GET /api/items?page=3&sort=price&limit=50",
    # phrases around secrets
    "CSRF token missing.",
    "CSRF token missing or incorrect.",
    "Invalid password for user bob.",
    "password reset email sent to bob@example.com",
    "token expired, refreshing",
    "Basic authentication required",
    "Bearer token rejected by upstream",
    "refresh token rotation enabled",
    "api key not provided",
    "secret santa draw completed",
    "session expired after 30 min",
    "passed=128 failed=0 skipped=3",
    "compass heading 270",
    "the monkey ate the key lime pie",
    "keyboard layout: us",
    "password_policy=strict min_length=12",
    "password_changed_at=2026-11-25T10:00:00Z",
    "token_type=Bearer expires_in=3600",
    "max_tokens=256 prompt_tokens=1200 completion_tokens=88",
    "api_key_id=ak_12 rotated",
    "cache_key=orders:v2:tenant-7 hit",
    "idempotency_key=7f3c9e0a-2b1d-4c5e-9f8a-6b7c8d9e0f1a",
    "auth=true mfa=false",
    "auth=none",
    "PWD=/srv/app HOME=/home/app",
    "secret_name=prod/db rotated",
    "password_reset_required=true",
    "secret_arn=arn:aws:secretsmanager:eu-west-1:123456789012:secret:db",
    "password_strength=weak password_expires_in_days=30",
    "signed_in=true",
    "sort_key=created_at partition_key=tenant",
    "public_key=ssh-ed25519",
    "(status=ok)",
    "[user=bob]",
    "{retry=3}",
    "Done (took 12 ms).",
    # identifiers
    "order ORD-2026-000123 shipped",
    "order 4111111111111112 shipped",
    "order_id=4000123412341235 created",
    "invoice INV-99812377 paid",
    "request 123e4567-e89b-12d3-a456-426614174000 done",
    "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7",
    "deployed commit 9fceb02d0ae598e95dc970b74767f19372d61af8",
    "git sha 9fceb02",
    "image ghcr.io/shop/api@sha256:3b5e3c6f0e1f2a7d8c9b0a1e2f3d4c5b6a7e8f9d0c1b2a3e4f5d6c7b8a9e0f1d",
    "etag W/\"5e8f-1a2b3c4d\"",
    "sha256=3b5e3c6f0e1f2a7d8c9b0a1e2f3d4c5b6a7e8f9d0c1b2a3e4f5d6c7b8a9e0f1d",
    "md5 d41d8cd98f00b204e9800998ecf8427e",
    "customer cus_NffrFeUfNV2Hib charged",
    "payment_intent pi_3MtwBwLkdIwHu7ix28a3tqPa succeeded",
    "publishable key pk_live_51HqLyjWDarjtT1zdp7dc",
    "slack channel C0123456789 notified",
    "user U024BE7LH joined",
    "arn:aws:iam::123456789012:role/shop-api",
    "account 123456789012 in eu-west-1",
    "k8s pod shop-api-7d9f8c6b5-x2x7q restarted",
    "node ip-10-0-1-23.eu-west-1.compute.internal ready",
    "AKIAFAKE is not a key",
    "sk-west-1 cluster",
    "task_live_update_123456789",
    "disk_test_results_2026",
    "eyJhbGciOiJIUzI1NiJ9 is a JWT header only",
    "base64 aGVsbG8gd29ybGQ= decoded",
    "version 1.45.2 (build 20261126)",
    "latency_ms=1234567890123",
    "ts=1732615200123456789",
    "phone +1 415 555 0100",
    "amount=1299.00 currency=EUR",
    "ratio 0.4111111111111111 stable",
    "isbn 978-3-16-148410-0",
    "serial 2026-11-26-000001",
    "duration 00:01:23.456",
    "at 2026-11-26T16:42:32.123456Z",
    "ipv6 2001:db8::1 and [2001:db8::2]:443",
    "mac 00:1a:2b:3c:4d:5e",
    # URLs and addresses
    "https://example.com/path?q=1#frag",
    "http://localhost:8080/health",
    "ssh://git@github.com/shop/api.git",
    "git@github.com:shop/api.git",
    "https://bob@example.com/profile",
    "mailto:alice@example.com",
    "contact alice@example.com or bob.smith+shop@example.co.uk",
    "redis://cache.internal:6379/0",
    "postgresql://db.internal:5432/app",
    "amqp://mq:5672/",
    "https://hooks.example.com/services/abc",
    "https://docs.slack.com/services/overview",
    "webhook delivered to https://shop.example/webhooks/stripe",
    "discord community link discord.gg/shop",
    "file:///var/log/app.log",
    "s3://shop-logs/2026/11/26/",
    "data:image/png;base64,iVBORw0KGgo",
    # structured bodies without secrets
    json.dumps({"user": "bob", "action": "login", "outcome": "success"}),
    json.dumps({"order_id": "ORD-7", "items": 3, "total": 129.5, "currency": "EUR"}),
    json.dumps({"token_type": "Bearer", "expires_in": 3600, "scope": "orders:read"}),
    json.dumps({"password_policy": {"min_length": 12, "require_symbol": True}}),
    json.dumps({"auth": {"method": "oauth2", "enabled": True}}),
    json.dumps({"keys": ["a", "b"], "count": 2}),
    json.dumps({"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"}),
    json.dumps({"route": "/api/orders/{id}", "status": 200}),
    json.dumps([{"id": 1}, {"id": 2}]),
    "user=bob&action=login&outcome=success",
    "q=shoes&size=42&color=blue",
    "status: 200\nroute: /api/orders\n",
    "level=info msg=\"request completed\" status=200 duration_ms=12",
    "Error: connection refused (os error 111)",
    "Traceback (most recent call last):\n  File \"app.py\", line 10, in <module>\nKeyError: 'password'",
    "KeyError: 'token'",
    "ValueError: invalid literal for int() with base 10: 'abc'",
    "warning: deprecated field 'secret' ignored",
    "session=None",
    "cookie consent: accepted",
    "signature verification passed",
    "card declined: insufficient funds",
    "card ending 1111 declined",
    "cvv check: pass",
    "pin reset requested",
    "Authorization header missing",
    "authorization failed for role viewer",
    "token bucket refilled: 100",
    "keys rotated: 3",
    "secrets manager reachable",
    "passwordless login link sent",
    "x-request-id: 7f3c9e0a2b1d4c5e",
    "user-agent: Mozilla/5.0 (X11; Linux x86_64)",
    "content-type: application/json; charset=utf-8",
    "host: api.shop.example",
    "accept: */*",
    "The quick brown fox jumps over the lazy dog.",
    "Thank you! Your order has been placed.",
    "Hello, World!",
    "100% done; 0 errors, 2 warnings.",
    "¿Contraseña olvidada? Escríbenos.",
    "密码 已重置",
    "emoji 🎉 order shipped",
    "tab\tseparated\tvalues",
    "a=b;c=d",
    "key: value",
    "Key ID: 8F3A2C1D",
    "token count: 512",
    "password length: 14",
    "secret: rotated",  # a value that is a status word under a secret key is still redacted? no: see below
    # attributes
    {"http.route": "/api/orders/{id}", "http.request.method": "POST", "http.response.status_code": 201},
    {"user.id": "user42", "client.address": "10.0.0.7", "url.path": "/api/login"},
    {"order.id": 4111111111111112, "order.total": 99.5},
    {"token.count": 512, "password.length": 14, "auth.enabled": True},
    {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "git.commit.sha": "9fceb02d0ae598e95dc970b74767f19372d61af8"},
    {"session.duration_ms": 1234, "session.new": False},
    {"cache.key": "orders:v2", "messaging.kafka.message.key": "tenant-7"},
    {"http.request.header.content-type": "application/json", "http.request.header.x-request-id": "abc-123"},
    {"user_agent.original": "curl/8.5.0", "network.peer.address": "10.0.0.7"},
    {"event.action": "authn_password_change", "labels.event_class": "security"},
]
# "secret: rotated" is ambiguous (a status or a leaked word); we redact values under secret keys, so it
# is not a harmless case: drop it from the list rather than pretend.
HARMLESS.remove("secret: rotated")
