"""Held-out attack labelling corpus: payloads from PayloadsAllTheThings' fuzzing lists and benign
free text (the Requests documentation's paragraphs, plus API bodies with prose, markdown and code),
sources the attack patterns were not written from (tests/data/review/heldout_attacks.json, see the
builder beside it).

Each payload is sent the ways an API receives it: a query parameter (attributes and the gunicorn
access line), a JSON body field and a form body; actuator paths as request paths. Each benign text
as a JSON body, a raw text/markdown body and a form field. Attacks must be labelled
``malicious_*``; benign text must not get a security label.

Cases failing on today's code are in ``tests/data/review/heldout_attack_xfail.json`` (case id ->
root cause), marked ``xfail(strict=True)``. ``test_heldout_attack_figures`` prints the figures.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from review_attack_cases import ANY, BENIGN
from test_review_attack_corpus import DATA, Record, classify, labelled_as

CORPUS: dict[str, Any] = json.loads((DATA / "heldout_attacks.json").read_text())
XFAIL: dict[str, str] = json.loads((DATA / "heldout_attack_xfail.json").read_text())

ROOT_CAUSES = {
    "ldap_injection": "LDAP filter injection is not a family we label (no pattern for `*)(`, `(|(`, objectclass)",
    "not_an_attack_alone": "a list entry that is a fragment or a harmless value on its own (a bare word, a "
                           "well-formed XML document, a plain file name): no label is expected by a WAF either",
    "bare_actuator_path": "a Spring Boot 1.x endpoint at the root (/env, /mappings): also a real route name in "
                          "other apps, so only /actuator/… is a probe",
    "payload_gap": "a payload shape the family patterns do not cover",
    "benign_flagged": "benign text labelled security: shell transcripts (`$ pip install …`), pasted HTML and code "
                      "that is not prose (no four plain words in a row, no inline code after a word)",
    "other": "see the case",
}
_CLIENT = "203.0.113.7"
_TIME = "26/Nov/2026:10:00:00 +0000"
_REQ = BENIGN[0]  # the Record's request is not read by classify()


def _attrs(path: str, query: str = "", body: str = "", status: int = 200, method: str = "GET") -> dict[str, Any]:
    attrs: dict[str, Any] = {"http.request.method": method, "url.path": path, "http.response.status_code": status,
                             "client.address": _CLIENT, "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64)"}
    if query:
        attrs["url.query"] = query
    if body:
        attrs["http.request.body.content"] = body
    return attrs


def attack_records() -> list[Record]:
    out: list[Record] = []
    for family, payloads in CORPUS["attacks"].items():
        for i, payload in enumerate(payloads):
            base = f"{family}/{i}"
            if family == "actuator":
                path = "/" + payload.lstrip("/")
                out.append(Record(f"{base}@path", _REQ, "attrs", "shop.api", f"GET {path} 404", _attrs(path, status=404)))
                continue
            query = "q=" + quote(payload, safe="")
            out.append(Record(f"{base}@query", _REQ, "attrs", "shop.api", "GET /api/search 200",
                              _attrs("/api/search", query=query)))
            line = f'{_CLIENT} - - [{_TIME}] "GET /api/search?{query} HTTP/1.1" 200 512 "-" "Mozilla/5.0"'
            out.append(Record(f"{base}@gunicorn", _REQ, "gunicorn", "gunicorn.access", line, {}))
            out.append(Record(f"{base}@json_body", _REQ, "attrs", "shop.api", "POST /api/comments 201",
                              _attrs("/api/comments", body=json.dumps({"comment": payload}), status=201,
                                     method="POST")))
            out.append(Record(f"{base}@form_body", _REQ, "attrs", "shop.api", "POST /api/comments 201",
                              _attrs("/api/comments", body=urlencode({"comment": payload}), status=201,
                                     method="POST")))
    return out


# API bodies people send every day: support tickets, comments, chat messages, docs edits
API_TEXTS = [
    "Send the file (PDF) or the link, whichever is easier.",
    "It works (mostly) but the export is slow on large accounts.",
    "Please use `npm install` first, then `npm run build`.",
    "Run `pip install -r requirements.txt` and restart the worker (takes ~2 min).",
    "The total is $(price * qty) in the template, is that right?",
    "Hi team, after the update the dashboard shows `undefined` instead of the name. Screenshot attached.",
    "## Steps to reproduce\n1. Open *Settings*\n2. Click **Save**\n3. See error `500` (sometimes 502)",
    "```python\nresp = client.get('/api/orders', params={'page': 2})\nprint(resp.json())\n```",
    "I tried `curl -X POST https://api.example.com/v1/items -d '{\"name\": \"x\"}'` and got 401.",
    "Can you select the plan for me and drop the old one? Thanks!",
    "Meeting moved to 10:30 (room B) - bring the Q3 numbers & the draft.",
    "Order #4521: wrong size (M instead of L); please exchange or refund.",
    "The script `./deploy.sh --env=prod` fails at step 3 (permission denied on /var/www).",
    "Error: Cannot read properties of undefined (reading 'map') at Dashboard.render (app.js:120)",
    "SELECT the rows where status is 'open' and sort them by date, like in the old report.",
    "Use the `$HOME/.config/app` folder or set `APP_CONFIG` (see docs).",
    "echo works, but `ls` shows nothing in the mounted volume (docker 24.0).",
    "Great product!!! 5/5 would recommend :) <3",
    "Question: is 1=1 in your pricing model, i.e. one seat per user?",
    "See [the guide](../guides/setup.md) and the [FAQ](./faq.md#billing) for details.",
    "Use `${VAR}` placeholders in the template, e.g. `Hello ${first_name}`.",
    "if (x > 0) { return x; } else { return -x; }",
    "The regex `^[a-z]+$` rejects names with accents (e.g. José).",
    "Try `git checkout -b fix/login && git push origin fix/login`.",
    "Files: report (final).docx, notes (v2).txt, budget - copy (3).xlsx",
    "We're seeing timeouts when the payload is > 5 MB; can you raise the limit?",
    "Price went from $10 to $12 (20% up) - why? Our contract says otherwise.",
    "Paste the output of `uname -a` and `python --version` please.",
    "The webhook at https://hooks.example.com/in/42 returns 404 since Monday.",
    "user@example.com wrote: > can we get an invoice for March (and April)?",
]


def benign_records() -> list[Record]:
    out: list[Record] = []
    texts = [(f"api_text/{i}", t) for i, t in enumerate(API_TEXTS)] + \
            [(f"requests_docs/{i}", t) for i, t in enumerate(CORPUS["benign_paragraphs"])]
    for tid, text in texts:
        for shape, body in (("json_body", json.dumps({"body": text, "ticket": 42})), ("raw_body", text),
                            ("form_body", urlencode({"comment": text, "notify": "1"}))):
            out.append(Record(f"{tid}@{shape}", _REQ, "attrs", "shop.api", "POST /api/tickets 201",
                              _attrs("/api/tickets", body=body, status=201, method="POST")))
    return out


ATTACKS = attack_records()
BENIGN_RECORDS = benign_records()


def _param(record: Record) -> Any:
    marks = []
    if record.id in XFAIL:
        cause = XFAIL[record.id]
        key = cause.split(" ")[0]
        marks.append(pytest.mark.xfail(strict=True, reason=f"{cause}: {ROOT_CAUSES.get(key, cause)}"))
    return pytest.param(record, id=record.id, marks=marks)


@pytest.mark.parametrize("record", [_param(r) for r in ATTACKS])
def test_heldout_attack_is_labelled(record: Record) -> None:
    attrs = classify(record)
    assert labelled_as(attrs, ANY), {k: v for k, v in attrs.items() if k.startswith(("labels.", "event.", "rule."))}


@pytest.mark.parametrize("record", [_param(r) for r in BENIGN_RECORDS])
def test_heldout_benign_text_is_not_labelled_security(record: Record) -> None:
    attrs = classify(record)
    assert attrs.get("labels.event_class") != "security", (attrs.get("event.action"), attrs.get("rule.id"))


def test_heldout_attack_figures() -> None:
    ok: Counter[tuple[str, str]] = Counter()
    tot: Counter[tuple[str, str]] = Counter()
    for rec in ATTACKS:
        family, transport = rec.id.split("/")[0], rec.id.rsplit("@", 1)[1]
        tot[(family, transport)] += 1
        ok[(family, transport)] += labelled_as(classify(rec), ANY)
    transports = sorted({t for _, t in tot})
    print("\nheld-out attack recall (family x transport):")
    for family in sorted({f for f, _ in tot}):
        cells = [f"{t}={ok[(family, t)]}/{tot[(family, t)]}" for t in transports if tot[(family, t)]]
        print(f"  {family:10s} " + "  ".join(cells))
    caught = sum(ok.values())
    print(f"held-out attacks labelled {caught}/{len(ATTACKS)} = {caught / len(ATTACKS):.1%}")
    flagged: Counter[str] = Counter()
    for rec in BENIGN_RECORDS:
        attrs = classify(rec)
        if attrs.get("labels.event_class") == "security":
            flagged[str(attrs.get("rule.id"))] += 1
    n = sum(flagged.values())
    print(f"held-out benign flagged {n}/{len(BENIGN_RECORDS)} = {n / len(BENIGN_RECORDS):.1%}", dict(flagged))
    assert len(ATTACKS) > 2000 and len(BENIGN_RECORDS) > 1000
    known = {r.id for r in ATTACKS + BENIGN_RECORDS}
    assert set(XFAIL) <= known, sorted(set(XFAIL) - known)[:10]
