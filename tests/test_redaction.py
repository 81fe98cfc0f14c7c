"""RedactionProcessor: secrets of every covered kind are removed (property-tested), ordinary text
is left byte-for-byte intact, and counts are kept by kind."""

from __future__ import annotations

import base64
import json
import random
import string
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_ext.redact import RedactionProcessor, Redactor, is_card_number, luhn_ok
from otel_ext.telemetry import Counters

ALNUM = string.ascii_letters + string.digits
SAFE_WORDS = ["order", "item", "cart", "shipped", "tenant", "ok", "user", "count", "retry", "page", "cache",
              "warm", "region", "eu-west-1", "GET", "POST", "done", "v2", "status", "latency", "ms", "bob", "alice"]
PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def b64url(n: int, rnd: random.Random) -> str:
    return base64.urlsafe_b64encode(bytes(rnd.getrandbits(8) for _ in range(n))).decode().rstrip("=")


def card_number(rnd: random.Random, prefix: str, length: int) -> str:
    body = prefix + "".join(rnd.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        if luhn_ok(body + check):
            return body + check
    raise AssertionError("unreachable")


# Each generator returns (text containing the secret, the secret itself)
def gen_secret(kind: str, rnd: random.Random) -> tuple[str, str]:
    token = "".join(rnd.choice(ALNUM) for _ in range(rnd.randint(10, 30)))
    if kind == "password_kv":
        return f"password={token}", token
    if kind == "password_json":
        return json.dumps({"user": "bob", "password": token}), token
    if kind == "api_key_kv":
        return f"api_key: {token}", token
    if kind == "refresh_token":
        return f"refresh_token={token}&grant_type=refresh_token", token
    if kind == "client_secret":
        return f"client_secret={token}", token
    if kind == "bearer":
        return f"Authorization: Bearer {token}", token
    if kind == "bearer_text":
        return f"sent bearer {token} upstream", token
    if kind == "cookie_header":
        return f"Cookie: sessionid={token}; theme=dark", token
    if kind == "jwt":
        jwt = "eyJ" + b64url(18, rnd) + ".eyJ" + b64url(30, rnd) + "." + b64url(32, rnd)
        return f"token {jwt}", jwt
    if kind == "aws_key":
        key = "AKIA" + "".join(rnd.choice(string.ascii_uppercase + string.digits) for _ in range(16))
        return f"creds {key} in env", key
    if kind == "github_token":
        key = "ghp_" + "".join(rnd.choice(ALNUM) for _ in range(36))
        return f"push with {key}", key
    if kind == "stripe_key":
        key = "sk_live_" + "".join(rnd.choice(ALNUM) for _ in range(24))
        return f"charge via {key}", key
    if kind == "url_userinfo":
        return f"connect postgres://admin:{token}@db.internal:5432/app", token
    if kind == "conn_string":
        return f"Server=db;Database=app;User Id=sa;Password={token};", token
    if kind == "signed_url":
        return f"GET https://s3.example/b/k?X-Amz-Date=20261125&X-Amz-Signature={token.lower()}", token.lower()
    if kind == "sig_param":
        return f"/download?file=a.pdf&sig={token}", token
    if kind == "session_kv":
        return f"session_id={token}", token
    if kind == "card_visa":
        card = card_number(rnd, "4", 16)
        return f"paid with {card} today", card
    if kind == "card_spaced":
        card = card_number(rnd, "51", 16)
        spaced = " ".join(card[i:i + 4] for i in range(0, 16, 4))
        return f"card {spaced} ok", spaced
    if kind == "card_dashed_amex":
        card = card_number(rnd, "37", 15)
        dashed = f"{card[:4]}-{card[4:10]}-{card[10:]}"
        return f"amex {dashed}", dashed
    if kind == "private_key":
        key = "-----BEGIN RSA PRIVATE KEY-----\nMIIE" + token + "\n-----END RSA PRIVATE KEY-----"
        return f"loaded {key}", "MIIE" + token
    raise AssertionError(kind)


KINDS = ["password_kv", "password_json", "api_key_kv", "refresh_token", "client_secret", "bearer", "bearer_text",
         "cookie_header", "jwt", "aws_key", "github_token", "stripe_key", "url_userinfo", "conn_string", "signed_url",
         "sig_param", "session_kv", "card_visa", "card_spaced", "card_dashed_amex", "private_key"]

harmless_word = st.sampled_from(SAFE_WORDS) | st.from_regex(r"[a-z]{1,12}", fullmatch=True)
harmless_text = st.lists(harmless_word, min_size=0, max_size=8).map(" ".join)


@PROPS
@given(kind=st.sampled_from(KINDS), seed=st.integers(0, 2**32), before=harmless_text, after=harmless_text)
def test_no_secret_of_a_covered_kind_survives(kind: str, seed: int, before: str, after: str) -> None:
    text, secret = gen_secret(kind, random.Random(seed))
    out = Redactor(counters=Counters("t")).redact_text(f"{before} {text} {after}")
    assert secret not in out
    assert "[REDACTED:" in out or "[HASH:" in out


@PROPS
@given(kind=st.sampled_from(KINDS), seed=st.integers(0, 2**32))
def test_secrets_in_nested_attribute_values_are_redacted(kind: str, seed: int) -> None:
    text, secret = gen_secret(kind, random.Random(seed))
    value = {"outer": [{"inner": text}, "plain"], "n": 3}
    out = Redactor(counters=Counters("t")).redact_value(value)
    assert secret not in json.dumps(out)
    assert out["outer"][1] == "plain" and out["n"] == 3


@PROPS
@given(text=harmless_text)
def test_harmless_text_round_trips_unchanged(text: str) -> None:
    assert Redactor(counters=Counters("t")).redact_text(text) == text


@PROPS
@given(
    route=st.lists(st.sampled_from(["api", "orders", "items", "v2", "users"]), min_size=1, max_size=4),
    order_id=st.integers(0, 10**12),
    query=st.dictionaries(st.sampled_from(["page", "sort", "limit", "q", "lang", "expand"]),
                          st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True), max_size=3),
)
def test_routes_order_ids_and_plain_query_strings_stay_intact(route: list[str], order_id: int,
                                                              query: dict[str, str]) -> None:
    url = "/" + "/".join(route) + f"/ORD-{order_id}"
    if query:
        url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    line = f"GET {url} 200 order {order_id} at 2026-11-25T10:00:00Z from 10.0.0.7"
    assert Redactor(counters=Counters("t")).redact_text(line) == line


def test_sixteen_digit_order_id_failing_luhn_is_kept() -> None:
    assert not is_card_number("4111111111111112")
    assert Redactor(counters=Counters("t")).redact_text("order 4111111111111112 shipped") == "order 4111111111111112 shipped"


def test_attribute_keys_are_redacted_by_name_and_sessions_hashed_stably(make_pipeline: Any) -> None:
    counters = Counters("t")
    pipe = make_pipeline(RedactionProcessor(redactor=Redactor(counters=counters, hash_key=b"k")))
    log = pipe.logger("shop.api")
    extra = {
        "http.request.header.authorization": "Bearer abcdefghijkl",
        "http.request.header.cookie": "a=b",
        "http.request.header.x-api-key": "k-123",
        "user.password": "hunter2",
        "session_id": "S-1",
        "http.route": "/api/orders/{id}",
    }
    log.info("first", extra=extra)
    first = pipe.attrs()
    log.info("second", extra=extra)
    second = pipe.attrs()
    assert first["http.request.header.authorization"] == "[REDACTED:authorization]"
    assert first["http.request.header.cookie"] == "[REDACTED:cookie]"
    assert first["http.request.header.x-api-key"] == "[REDACTED:api_key]"
    assert first["user.password"] == "[REDACTED:password]"
    assert first["session_id"].startswith("[HASH:") and first["session_id"] == second["session_id"]
    assert "S-1" not in first["session_id"]
    assert first["http.route"] == "/api/orders/{id}"
    snap = counters.snapshot()["redacted"]
    assert snap == {"authorization": 2, "cookie": 2, "api_key": 2, "password": 2, "session": 2}


def test_body_is_redacted_and_counts_never_hold_values(make_pipeline: Any) -> None:
    counters = Counters("t")
    pipe = make_pipeline(RedactionProcessor(redactor=Redactor(counters=counters)))
    pipe.logger("shop.api").warning("login failed password=hunter2 for bob")
    assert pipe.last().log_record.body == "login failed password=[REDACTED:password] for bob"
    assert "hunter2" not in repr(counters.snapshot())


def test_allow_and_deny_lists_and_extra_patterns(make_pipeline: Any) -> None:
    redactor = Redactor(allow_keys=["token"], deny_keys=["tenant.ssn"], extra_patterns={"ssn": r"\b\d{3}-\d{2}-\d{4}\b"},
                        counters=Counters("t"))
    pipe = make_pipeline(RedactionProcessor(redactor=redactor))
    pipe.logger("shop.api").info("ssn 123-45-6789 filed", extra={"token": "public-id", "tenant.ssn": "x"})
    record = pipe.last().log_record
    assert record.body == "ssn [REDACTED:ssn] filed"
    assert record.attributes["token"] == "public-id"  # type: ignore[index]
    assert record.attributes["tenant.ssn"] == "[REDACTED:denied_key]"  # type: ignore[index]


def test_structured_body_is_redacted_recursively(make_pipeline: Any) -> None:
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.sdk._logs._internal import LogRecord

    proc = RedactionProcessor(redactor=Redactor(counters=Counters("t")))
    record = LogRecord(body={"user": "bob", "login": {"password": "p4ss", "note": "api_key=abcdef"}},
                       severity_number=SeverityNumber.INFO)
    proc.redact_record(record)
    assert record.body == {"user": "bob", "login": {"password": "[REDACTED:password]",
                                                    "note": "api_key=[REDACTED:api_key]"}}


def test_percent_encoded_tokens_and_pairs_are_removed_with_their_escapes() -> None:
    r = Redactor(counters=Counters("t"))
    token = "pscale_tkn_9529o8b=fd3typkie-bw3fmy197f9_2p"  # "=" inside: %3D once encoded
    encoded = token.replace("=", "%3D")
    for text in (f"GET /proxy?target=https%3A%2F%2Fapi.example.com%2F%3Fk%3D{encoded.replace('%', '%25')} HTTP/1.1",
                 f"401 for url: https://api.example.com/v1/items?key={encoded}",
                 "q=a%2520password%253Dhunter2%2526b%253D1 ok"):  # double encoding
        out = r.redact_text(text)
        assert "fd3typkie" not in out and "hunter2" not in out, out
        assert "[REDACTED:" in out and "%25" not in out.split("[REDACTED:")[1].split("]")[0]
    assert r.redact_text("q=a%2520password%253Dhunter2%2526b%253D1 ok") == \
        "q=a%2520password%253D[REDACTED:password]%2526b%253D1 ok"  # only the secret's escaped bytes go
    for harmless in ("100%25 done, 50%41 ok %zz %", "GET /search?q=rate%20limit%3D100%26page%3D2 HTTP/1.1",
                     "path=%2Fapi%2Fv1%2Fitems%3Fpage%3D2"):
        assert r.redact_text(harmless) == harmless


def test_vendor_tokens_take_their_whole_run() -> None:
    r = Redactor(counters=Counters("t"))
    routable = "glpat-86dfowhygc5dr3j94y91higoi0l.cf59j7pa8"
    assert r.redact_text(f"push with {routable} failed") == "push with [REDACTED:gitlab_token] failed"
    longer = "AIza" + "B" * 35 + "abcd123"
    assert r.redact_text(f"key {longer}.") == "key [REDACTED:google_api_key]."


def test_bytes_values_are_scanned_as_text_and_stay_bytes() -> None:
    r = Redactor(counters=Counters("t"))
    out = r.redact_mapping({"http.request.body.content": b'{"password": "B1tes-Body-Pw"}', "blob": b"\xff\xfe\x00ab"})
    assert out["http.request.body.content"] == b'{"password": "[REDACTED:password]"}'
    assert out["blob"] == b"\xff\xfe\x00ab"  # not UTF-8 and nothing secret: byte for byte as it was


def test_a_secret_inside_bytes_that_are_not_utf8_is_redacted_and_the_other_bytes_are_kept() -> None:
    r = Redactor(counters=Counters("t"))
    framed = b"\xff\x00\x17password=hunter2-Xy and \xe9t\xe9 token=abcdefgh12345678 \x80"  # binary + latin-1
    out = r.redact_value(framed)
    assert isinstance(out, bytes) and b"hunter2" not in out and b"abcdefgh12345678" not in out
    assert out.startswith(b"\xff\x00\x17password=[REDACTED:password]") and out.endswith(b"\x80")
    assert b" and \xe9t\xe9 token=" in out
    body = r.redact_value(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    assert body == b"\x89PNG\r\n\x1a\n" + bytes(range(256))  # binary without a secret: unchanged


def test_iban_needs_its_check_digits() -> None:
    r = Redactor(counters=Counters("t"))
    assert r.redact_text("refund to IBAN DE89370400440532013000 issued") == "refund to IBAN [REDACTED:iban] issued"
    assert r.redact_text("refund to IBAN DE89 3704 0044 0532 0130 00 issued") == "refund to IBAN [REDACTED:iban] issued"
    assert r.redact_text("part DE88370400440532013000 shipped") == "part DE88370400440532013000 shipped"


def test_yaml_document_values_with_spaces_go_whole_but_one_line_prose_keeps_its_words() -> None:
    r = Redactor(counters=Counters("t"))
    doc = "config:\n  db:\n    password: correct horse battery staple\n    retries: 3"
    assert r.redact_text(doc) == "config:\n  db:\n    password: [REDACTED:password]\n    retries: 3"
    assert r.redact_text("password: hunter2x order shipped") == "password: [REDACTED:password] order shipped"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(["%", "%25", "%3D", "%0A", "%zz", "=", "\n", "\r\n", " ", "password", "=", ":",
                                 "token", "ghp_" + "a1" * 18, "AKIAIOSFODNN7EXAMPLE", "Bearer ", "abcdef123456",
                                 "redis://u:p", "@h", "4111 1111 1111 1111", "%40", "%2B", "x"]), max_size=12))
def test_percent_text_loses_no_redaction_of_its_raw_form(pieces: list[str]) -> None:
    """Text with '%' is also judged decoded; that must never lose what the raw text alone would
    redact (decoding can hide a hit: "redis://u:p%0A@h" decodes to a line break in the userinfo)."""
    from otel_ext.redaction.detectors import select
    text = "".join(pieces)
    detectors = select(text)
    if detectors is None:
        return
    raw = Redactor(counters=Counters("t"))._detect(text, [], detectors)
    if raw != text:
        assert Redactor(counters=Counters("t")).redact_text(text) != text, text


def test_a_hit_hidden_by_decoding_is_still_redacted() -> None:
    out = Redactor(counters=Counters("t")).redact_text("redis://u:p%0A@h")
    assert "p%0A" not in out and "[REDACTED:" in out, out


def test_an_object_handed_to_the_logs_api_is_scanned_as_the_text_that_would_be_shipped() -> None:
    class Request:
        def __str__(self) -> str:
            return "POST /login password=hunter2-XYZ token=ghp_abcdefghijklmnopqrstuvwxyz0123456789"

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    r = Redactor(counters=Counters("t"))
    out = r.redact_value(Request())
    assert out == "POST /login password=[REDACTED:password] token=[REDACTED:github_token]" or (
        isinstance(out, str) and "hunter2" not in out and "ghp_" not in out)
    assert r.redact_mapping({"request": Request()})["request"] == out
    assert r.redact_value(Unprintable()) == "<unprintable Unprintable>"
    assert r.redact_value(1.5) == 1.5 and r.redact_value(None) is None and r.redact_value(True) is True
