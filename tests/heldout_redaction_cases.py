"""Cases of the held-out redaction corpus (tests/test_heldout_redaction_corpus.py).

A second corpus, built after the first review's fixes and from material none of the rules were
written from: fresh random tokens of ~600 secret formats of TruffleHog's detector catalogue
(``tests/data/review/heldout_secrets.json``, see the builder beside it), placed in log shapes the
first corpus did not use (vendor-named keys, keyword prose, Python calls, markdown, GraphQL
variables, JSON escaped twice, ...). Benign look-alikes are generated here from a fixed seed: ids,
digests, trace context, base64 blobs and ordinary API prose a user expects byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

DATA = Path(__file__).parent / "data" / "review"
HELDOUT: dict[str, dict[str, Any]] = json.loads((DATA / "heldout_secrets.json").read_text())


@dataclass(frozen=True)
class Case:
    id: str
    detector: str
    kind: str  # unique | context
    shape: str
    value: Any
    secrets: tuple[str, ...]


def _key_word(keyword: str) -> str:
    return "".join(c for c in keyword.lower() if c.isalnum()) or "vendor"


def shapes_for(detector: str, kind: str, keyword: str, secret: str) -> list[tuple[str, Any]]:
    v = _key_word(keyword)
    V = v.upper()
    shapes: list[tuple[str, Any]] = [
        # keyed shapes: a scanner and a reader both see the name of what the value is
        ("trufflehog_input", f"{keyword} token = '{secret}'"),  # the detector tests' own input shape
        ("env_vendor_key", f"settings loaded: {V}_KEY={secret} {V}_TIMEOUT=30"),
        ("env_vendor_secret", f'export {V}_SECRET="{secret}"'),
        ("json_vendor_object", json.dumps({"integrations": {v: {"key": secret, "enabled": True}}})),
        ("header_vendor_token", {"http.request.method": "POST", f"http.request.header.x-{v}-token": [secret]}),
        ("python_kwargs", f"creating client {v.capitalize()}Client(api_key='{secret}', timeout=30)"),
        ("yaml_vendor", f"{v}:\n  api_key: {secret}\n  region: eu-west-1"),
        ("query_vendor_token", {"url.path": f"/v1/{v}/sync", "url.query": urlencode({f"{v}_token": secret, "page": 2})}),
        ("graphql_input", json.dumps({"query": "mutation Connect($input: ConnectInput!) { connect(input: $input) { id } }",
                                      "variables": {"input": {"provider": v, "credential": secret}}})),
        ("json_escaped_twice", json.dumps({"log": json.dumps({"msg": json.dumps({"apiKey": secret})})})),
        ("form_vendor", urlencode({"provider": v, f"{v}_secret": secret, "save": "1"})),
    ]
    if kind == "unique":
        shapes += [
            # no key at all: only the token's own format tells
            ("prose", f"{v} call failed for {secret}: 401 Unauthorized"),
            ("markdown", f"Set the key to `{secret}` in the dashboard (see *Settings*)."),
            ("neutral_json", json.dumps({"id": 7, "note": f"old value {secret} rotated"})),
            ("exception", {"exception.type": "ValueError", "exception.message": f"invalid credential {secret!r}"}),
            ("list_attr", {"process.command_args": ["deploy", "--verbose", secret]}),
            ("url_encoded", "GET /proxy?u=" + quote(f"https://api.example.com/v1?auth={secret}", safe="") + " HTTP/1.1"),
        ]
    return shapes


def secret_cases() -> list[Case]:
    out = []
    for detector, entry in sorted(HELDOUT.items()):
        secret = entry["secrets"][0]
        for shape, value in shapes_for(detector, entry["kind"], entry["keyword"], secret):
            out.append(Case(f"{detector}/{shape}", detector, entry["kind"], shape, value, (secret,)))
    return out


# --- benign look-alikes: generated, fixed seed ---------------------------------------------------

def _b64(rnd: random.Random, n: int) -> str:
    return base64.b64encode(bytes(rnd.getrandbits(8) for _ in range(n))).decode()


def benign_cases() -> list[tuple[str, Any]]:
    rnd = random.Random(20261127)
    rows: list[tuple[str, Any]] = []
    for i in range(8):
        u = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
        sha1 = hashlib.sha1(str(i).encode()).hexdigest()
        sha256 = hashlib.sha256(str(i).encode()).hexdigest()
        md5 = hashlib.md5(str(i).encode()).hexdigest()
        trace, span = f"{rnd.getrandbits(128):032x}", f"{rnd.getrandbits(64):016x}"
        ulid = "01" + "".join(rnd.choice("0123456789ABCDEFGHJKMNPQRSTVWXYZ") for _ in range(24))
        short = "".join(rnd.choice(string.ascii_letters + string.digits) for _ in range(14))
        rows += [
            (f"uuid_prose/{i}", f"order {u} created for customer {i}"),
            (f"idempotency_key/{i}", {"http.request.header.idempotency-key": [u]}),
            (f"request_id_json/{i}", json.dumps({"request_id": u, "status": "ok", "duration_ms": 12 + i})),
            (f"commit_sha/{i}", f"deployed commit {sha1} to production"),
            (f"git_ref_attr/{i}", {"vcs.ref.head.revision": sha1, "vcs.repository.url.full": "https://github.com/acme/api"}),
            (f"sha256_prose/{i}", f"artifact sha256:{sha256} verified"),
            (f"checksum_kv/{i}", f"upload done checksum={md5} size={1024 * i}"),
            (f"etag_json/{i}", json.dumps({"ETag": f'"{md5}"', "LastModified": "2026-11-26T10:00:00Z"})),
            (f"trace_ids/{i}", f"trace_id={trace} span_id={span} trace_flags=01"),
            (f"traceparent/{i}", {"http.request.header.traceparent": [f"00-{trace}-{span}-01"]}),
            (f"ulid/{i}", f"job {ulid} queued on default"),
            (f"object_id/{i}", f"created invoice in_{short} for cus_{short[::-1]}"),
            (f"base64_image/{i}", json.dumps({"avatar": "data:image/jpeg;base64," + _b64(rnd, 96)})),
            (f"base64_blob_kv/{i}", f"attachment content={_b64(rnd, 60)} filename=report.pdf"),
            (f"cache_key/{i}", f"cache hit key=user:{i}:profile:v2 ttl=300"),
            (f"partition_key/{i}", f"put item partition_key=tenant-{i} sort_key=2026-11-26#{u[:8]}"),
            (f"s3_object_key/{i}", {"aws.s3.key": f"uploads/2026/11/{u}.png", "aws.s3.bucket": "acme-media"}),
            (f"pagination_cursor/{i}", json.dumps({"data": [], "next_cursor": _b64(rnd, 24)})),
        ]
    prose = [
        "Your API key was rotated; the old key stops working in 24 hours.",
        "Token expired, please sign in again (session 42).",
        "password reset email sent to the address on file",
        "Use the `Authorization` header with a bearer token (see the docs).",
        "Secrets are stored in Vault; no secret is logged.",
        "The key must be 32 characters long and contain only hex digits.",
        "invalid api_key format: expected a 40-character string",
        "client_secret missing from request body",
        "token_type=Bearer expires_in=3600 scope=read:orders",
        "rotating signing keys: kid=2026-11 alg=RS256",
        "GET /api/v1/tokens?page=2&per_page=50 200 12ms",
        "POST /api/v1/keys 201 created key id key_42 (label: ci)",
        "public_key=MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE= fingerprint=SHA256:47DEQpj8HBSa",
        "## Setup\n\n1. Create a key in *Settings > API*.\n2. Export it as `ACME_API_KEY`.\n3. Run `acme login`.",
        "def get(self, key: str) -> str | None:  # cache lookup by key",
        "SELECT api_key_id, created_at FROM api_keys WHERE tenant_id = $1",
        "webhook signature verified (scheme v1, tolerance 300s)",
        "retrying request 3/5 after 429 Too Many Requests",
        "user bob updated the password policy: min length 12",
        "feature flag new_checkout=true for 12% of tenants",
    ]
    rows += [(f"prose/{i}", text) for i, text in enumerate(prose)]
    return rows
