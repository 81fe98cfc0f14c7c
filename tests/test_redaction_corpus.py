"""Redaction measured on a labelled corpus (tests/redaction_corpus.py): recall >= 98 % over >= 150
secrets of >= 40 kinds, and not one of >= 150 harmless look-alikes changed. Every case listed in
issue 13 is also a named test below, plus hypothesis properties on top."""

from __future__ import annotations

import json
import random
import re
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from redaction_corpus import HARMLESS, SECRETS, Case, luhn_complete

from otel_ext.redact import NOT_A_SECRET, RedactionProcessor, Redactor, is_card_number, maybe_secret
from otel_ext.redaction.keys import key_kind
from otel_ext.telemetry import Counters

PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def redactor() -> Redactor:
    return Redactor(counters=Counters("corpus"), hash_key=b"k")


def redact(value: Any) -> Any:
    r = redactor()
    return r.redact_mapping(value) if isinstance(value, dict) else r.redact_value(value)


def leaked(case: Case) -> list[str]:
    out = redact(case.value)
    text = json.dumps(out) if isinstance(out, dict) else str(out)
    return [s for s in case.secrets if s and s in text]


def test_corpus_size_and_variety() -> None:
    assert len(SECRETS) >= 150 and len({c.kind for c in SECRETS}) >= 40
    assert len(HARMLESS) >= 150
    assert all(c.secrets and all(c.secrets) for c in SECRETS)


def test_recall_on_the_corpus_is_at_least_98_percent() -> None:
    misses = [(c.kind, c.context, leaked(c)) for c in SECRETS if leaked(c)]
    recall = 1 - len(misses) / len(SECRETS)
    print(f"\nrecall {recall:.4f} ({len(SECRETS) - len(misses)}/{len(SECRETS)}, "
          f"{len({c.kind for c in SECRETS})} kinds); misses: {misses}")
    assert recall >= 0.98, misses


@pytest.mark.parametrize("value", HARMLESS, ids=[f"harmless{i}" for i in range(len(HARMLESS))])
def test_no_harmless_value_is_changed(value: Any) -> None:
    assert redact(value) == value


def test_false_positive_rate_is_zero() -> None:
    damaged = [v for v in HARMLESS if redact(v) != v]
    print(f"\nfalse positives: {len(damaged)}/{len(HARMLESS)}")
    assert damaged == []


# --- every case of issue 13's "Why", by name -----------------------------------------------------

GCP_KEY_LINE = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (json.dumps({"type": "service_account", "private_key_id": "1a2b",
                     "private_key": f"-----BEGIN PRIVATE KEY-----\n{GCP_KEY_LINE}\n-----END PRIVATE KEY-----\n",
                     "client_email": "svc@p.iam.gserviceaccount.com"}), GCP_KEY_LINE),
        ("redis://:R3disPw0rd@cache:6379", "R3disPw0rd"),
        ("mysql://root:My@S3cretPw77@db:3306/app", "S3cretPw77"),
        ("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=" + "Ab1+" * 22 + "==;EndpointSuffix=x",
         "Ab1+Ab1+Ab1+"),
        (json.dumps({"password": "correct horse battery staple"}), "battery staple"),
        ("DB_PASSWORD=pg-Secret-42", "pg-Secret-42"),
        ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI"),
        ("DD_API_KEY=0123456789abcdef0123456789abcdef", "0123456789abcdef"),
        ("pass=hunter2hunter2", "hunter2hunter2"),
        ("body=user%3Dbob%26password%3Dhunter2hunter2", "hunter2hunter2"),
        ("clientSecret=cs-0123456789abcdef", "cs-0123456789abcdef"),
        ("userPassword: up-0123456789abcdef", "up-0123456789abcdef"),
        ("publishing with npm_abcdefghijklmnopqrstuvwxyz0123456789", "npm_abcdefghijklmnopqrstuvwxyz0123456789"),
        ("twilio SK0123456789abcdef0123456789abcdef", "SK0123456789abcdef0123456789abcdef"),
        ("sendgrid SG.abcdefghijklmnopqrstuv.abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "abcdefghijklmnopqrstuv"),
        ("posting to https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBBBB/cccccccccccccccccccccccc",
         "cccccccccccccccccccccccc"),
        ("stripe webhook whsec_abcdefghijklmnopqrstuvwxyz012345", "whsec_abcdefghijklmnopqrstuvwxyz012345"),
        ("vault hvs.CAESIJlWh0dOz4yK2F7gXWq0eG2mabcdefghijklmno", "hvs.CAESIJlWh0dOz4yK2F7gXWq0eG2m"),
    ],
    ids=["gcp_service_account", "redis_empty_user", "mysql_at_in_password", "azure_account_key", "json_password",
         "env_db_password", "env_aws_secret", "env_dd_api_key", "pass", "urlencoded_password", "camel_client_secret",
         "camel_user_password", "npm", "twilio", "sendgrid",
         "slack_webhook", "stripe_whsec", "vault_hvs"],
)
def test_issue_secret_does_not_survive(text: str, secret: str) -> None:
    out = redactor().redact_text(text)
    assert secret not in out and "[REDACTED:" in out


def test_issue_camel_case_attribute_keys(make_pipeline: Any) -> None:
    pipe = make_pipeline(RedactionProcessor(redactor=redactor()))
    extra = {"clientSecret": "cs-0123456789abcdef", "accessToken": "at-0123456789abcdef",
             "privateKey": "pk-0123456789abcdef", "userPassword": "up-0123456789abcdef", "DB_PASSWORD": "db-0123456789"}
    pipe.logger("shop.api").info("config", extra=extra)
    attrs = pipe.attrs()
    assert {k: attrs[k] for k in extra} == {"clientSecret": "[REDACTED:secret]", "accessToken": "[REDACTED:token]",
                                             "privateKey": "[REDACTED:secret]", "userPassword": "[REDACTED:password]",
                                             "DB_PASSWORD": "[REDACTED:password]"}


def test_issue_card_number_given_as_int_attribute(make_pipeline: Any) -> None:
    card = int(luhn_complete("4", 16))
    pipe = make_pipeline(RedactionProcessor(redactor=redactor()))
    pipe.logger("shop.api").info("paid", extra={"payment.card": card, "order.id": 4111111111111112})
    attrs = pipe.attrs()
    assert attrs["payment.card"] == "[REDACTED:card]"
    assert attrs["order.id"] == 4111111111111112  # fails Luhn: an order id, kept


def test_issue_semconv_session_id_is_hashed_like_session_id(make_pipeline: Any) -> None:
    pipe = make_pipeline(RedactionProcessor(redactor=redactor()))
    pipe.logger("shop.api").info("hit", extra={"session.id": "S-123456", "session_id": "S-123456"})
    attrs = pipe.attrs()
    assert attrs["session.id"].startswith("[HASH:") and attrs["session.id"] == attrs["session_id"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("POST /auth/token HTTP/1.1", "POST /auth/token HTTP/1.1"),
        ('10.0.0.1:5555 - "POST /auth/token HTTP/1.1" 200', '10.0.0.1:5555 - "POST /auth/token HTTP/1.1" 200'),
        ("CSRF token missing.", "CSRF token missing."),
        ("(password=hunter2)", "(password=[REDACTED:password])"),
        ("[token=abc123def]", "[token=[REDACTED:token]]"),
        ("retry with password=hunter2.", "retry with password=[REDACTED:password]."),
        ('{"password":"p4ss","user":"bob"}', '{"password":"[REDACTED:password]","user":"bob"}'),
    ],
)
def test_issue_precision_and_surrounding_punctuation(text: str, expected: str) -> None:
    assert redactor().redact_text(text) == expected


def test_access_line_still_parses_after_redaction(make_pipeline: Any) -> None:
    from otel_ext.classify import EventClassifierProcessor

    pipe = make_pipeline(RedactionProcessor(redactor=redactor()), EventClassifierProcessor(counters=Counters("c")))
    pipe.logger("uvicorn.access").info('10.0.0.1:5555 - "POST /auth/token HTTP/1.1" 401')
    attrs = pipe.attrs()
    assert pipe.last().log_record.body == '10.0.0.1:5555 - "POST /auth/token HTTP/1.1" 401'
    assert attrs["http.request.method"] == "POST" and attrs["http.response.status_code"] == 401


# --- key normalisation ---------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["password", "Password", "PASSWORD", "user_password", "userPassword", "user-password",
                                 "DB_PASSWORD", "user.password", "user[password]", "user%5Bpassword%5D", "passwd",
                                 "X-DB-Password"])
def test_password_key_spellings(key: str) -> None:
    assert key_kind(key) == "password"


@pytest.mark.parametrize("key", ["password_policy", "password_changed_at", "token_type", "max_tokens", "api_key_id",
                                 "cache_key", "page_token", "next_page_token", "session", "passed", "public_key",
                                 "tokens", "keyboard", "secret_name", "sort_key", "monkey"])
def test_keys_that_only_look_secret(key: str) -> None:
    assert key_kind(key) is None


# --- properties ----------------------------------------------------------------------------------

SECRET_KEYS = st.sampled_from(["password", "clientSecret", "DB_PASSWORD", "access_token", "apiKey", "x-api-key",
                               "AWS_SECRET_ACCESS_KEY", "refreshToken", "private_key", "authToken"])
# (a value that is a literal such as "undefined" or "None" is taken for one: see NOT_A_SECRET)
SECRET_VALUE = st.text(alphabet=string.ascii_letters + string.digits + "!#$*+-_~", min_size=8,
                       max_size=40).filter(lambda v: v not in NOT_A_SECRET)
WORDS = st.lists(st.sampled_from(["order", "shipped", "user", "bob", "GET", "/api/items", "200", "ok", "retry", "in",
                                  "ms", "tenant-7", "eu-west-1", "(done)", "status=ok", "page=2"]), max_size=6)


@PROPS
@given(key=SECRET_KEYS, value=SECRET_VALUE, sep=st.sampled_from(["=", ": ", "=", ":"]), before=WORDS, after=WORDS,
       quote=st.sampled_from(["", '"', "'"]))
def test_any_value_under_a_secret_key_is_removed_in_text(key: str, value: str, sep: str, before: list[str],
                                                          after: list[str], quote: str) -> None:
    # a one-line text that *is* "password: <plain lowercase word> ..." is read as a passphrase and
    # removed to the end of the line (the documented YAML/passphrase rule, tested on its own): the
    # words after it are not expected to survive there
    assume(before or sep.strip() != ":" or quote or re.fullmatch(r"[a-z]{2,24}", value) is None)
    text = " ".join([*before, f"{key}{sep}{quote}{value}{quote}", *after])
    out = redactor().redact_text(text)
    assert value not in out
    assert out.startswith(" ".join(before)) and out.endswith(" ".join(after))  # the rest survives


@PROPS
@given(key=SECRET_KEYS, value=SECRET_VALUE, style=st.sampled_from(["json", "json_indent", "form", "urlencoded"]),
       extra=st.dictionaries(st.sampled_from(["user", "page", "lang", "q"]), st.from_regex(r"[a-z0-9]{1,8}",
                                                                                           fullmatch=True), max_size=3))
def test_any_value_under_a_secret_key_is_removed_in_structured_bodies(key: str, value: str, style: str,
                                                                      extra: dict[str, str]) -> None:
    from urllib.parse import quote, urlencode

    assume(value not in str(extra))  # the harmless neighbours must not contain the secret itself
    pairs = {**extra, key: value}
    if style == "json":
        text = json.dumps(pairs)
    elif style == "json_indent":
        text = json.dumps({"request": pairs}, indent=2)
    elif style == "form":
        text = urlencode(pairs)
    else:
        text = "body=" + quote(urlencode(pairs), safe="")
    out = redactor().redact_text(text)
    assert value not in out and quote(value, safe="") not in out
    if style.startswith("json"):
        json.loads(out)  # still valid JSON
        for k, v in extra.items():
            assert f'"{k}": "{v}"' in out


@PROPS
@given(value=st.sampled_from(HARMLESS[:120]), seed=st.integers(0, 2**32))
def test_harmless_values_survive_in_any_combination(value: Any, seed: int) -> None:
    rnd = random.Random(seed)
    others = [v for v in rnd.sample(HARMLESS[:120], 3) if isinstance(v, str)]
    if isinstance(value, str):
        text = " | ".join([value, *others])
        assert redactor().redact_text(text) == text


@PROPS
@given(digits=st.from_regex(r"[1-9][0-9]{12,18}", fullmatch=True))
def test_card_detection_agrees_with_luhn_and_brand(digits: str) -> None:
    out = redactor().redact_text(f"ref {digits} ok")
    assert (out == "ref [REDACTED:card] ok") == is_card_number(digits)


@PROPS
@given(text=st.text(max_size=200))
def test_prefilter_rejection_means_nothing_to_redact(text: str) -> None:
    if not maybe_secret(text):
        assert redactor().redact_text(text) == text


def test_counts_are_per_kind_and_never_hold_values() -> None:
    counters = Counters("c")
    r = Redactor(counters=counters)
    r.redact_text("password=hunter2hunter2 and ghp_" + "a" * 36)
    r.redact_text("password=hunter2hunter2 and ghp_" + "a" * 36)  # memoised: counted again
    assert counters.snapshot()["redacted"] == {"password": 2, "github_token": 2}
    assert "hunter2" not in repr(counters.snapshot())


def test_every_secret_key_spelling_in_the_table_is_caught_in_text() -> None:
    """The pre-filter and the key table must agree: every table entry, spelled snake, camel, kebab
    and env-style, is redacted inside text (a drifted pre-filter would wave it through)."""
    from otel_ext.redaction.keys import LAST_TWO, LAST_WORD, NOT_SECRET

    names: list[str] = []
    for first, last in LAST_TWO:
        names += [f"{first}_{last}", f"{first}{last.capitalize()}", f"{first}-{last}", f"APP_{first}_{last}".upper()]
    for word in LAST_WORD:
        if (word,) not in NOT_SECRET or word == "pass":
            names += [word, f"user_{word}", f"USER_{word.upper()}"]
    missed = [n for n in names if "s3cr3tV4lue" in redactor().redact_text(f"cfg {n}=s3cr3tV4lue ok")]
    assert missed == []


ANY_CHAR = st.characters(min_codepoint=0, max_codepoint=0x10FFFF)  # lone surrogates included
FRAGMENTS = st.sampled_from(["password", "=", ":", '"', "'", "%3D", "%26", "&", "://", "@", "Bearer ", "eyJ", "-----BEGIN",
                             "PRIVATE KEY-----", "4111", " ", "\\", "[", "]", "{", "}", "ghp_", "session_id", ";"])


@PROPS
@given(parts=st.lists(FRAGMENTS | st.text(alphabet=ANY_CHAR, max_size=8), max_size=30))
def test_redaction_never_raises_and_is_idempotent(parts: list[str]) -> None:
    r = redactor()
    text = "".join(parts)
    once = r.redact_text(text)
    assert isinstance(once, str)
    assert r.redact_text(once) == once  # redacting twice changes nothing more
