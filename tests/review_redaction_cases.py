"""Cases of the adversarial redaction review (tests/test_review_redaction_corpus.py).

Secrets come from gitleaks' own rule examples (``tests/data/review/gitleaks_cases.json``, see the
builder beside it), placed in the shapes API logs carry them in: message text, JSON bodies, query
strings, form bodies, header attributes (OTel semconv ``http.request.header.<name>`` string
arrays), exception messages/stack traces, nested dicts and lists, URL-encoded and JSON-escaped
text. Harmless look-alikes are ordinary API log text a user expects byte for byte.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

DATA = Path(__file__).parent / "data" / "review"
GITLEAKS: dict[str, dict[str, Any]] = json.loads((DATA / "gitleaks_cases.json").read_text())

# structural rules: not "a token with a prefix", each handled by its own shapes
STRUCTURAL = frozenset({"curl-auth-header", "curl-auth-user", "private-key", "jwt", "jwt-base64", "generic-api-key",
                        "sidekiq-sensitive-url", "microsoft-teams-webhook", "slack-webhook-url",
                        "gitlab-session-cookie", "kubernetes-secret-yaml"})

# structural rules whose secret is recognisable on its own (a URL, a cookie name); the others
# (curl header values, generic keys, URL userinfo, gitleaks' pseudo-JWT) are judged only in context
SELF_IDENTIFYING = frozenset({"slack-webhook-url", "microsoft-teams-webhook", "gitlab-session-cookie"})

# vendor families for the per-family figures (by rule-id prefix)
FAMILY_PREFIXES: dict[str, tuple[str, ...]] = {
    "cloud": ("aws", "azure", "gcp", "alibaba", "digitalocean", "heroku", "flyio", "scalingo", "yandex",
              "cloudflare", "fastly", "netlify", "openshift", "kubernetes", "hashicorp", "vault", "doppler",
              "infracost", "pulumi", "octopus", "prefect", "defined", "clickhouse", "settlemint", "harness"),
    "vcs_ci": ("github", "gitlab", "bitbucket", "codecov", "droneci", "travisci", "snyk", "sonar", "sourcegraph",
               "artifactory", "jfrog", "npm", "nuget", "pypi", "rubygems", "clojars", "sidekiq", "gitter",
               "linear", "atlassian", "jira", "confluent", "readme", "postman", "rapidapi"),
    "chat_mail": ("slack", "discord", "microsoft-teams", "telegram", "twilio", "sendgrid", "sendbird",
                  "sendinblue", "mailchimp", "mailgun", "messagebird", "mattermost", "intercom", "zendesk",
                  "twitch", "twitter", "linkedin", "facebook", "flickr", "beamer"),
    "payments": ("stripe", "square", "plaid", "flutterwave", "gocardless", "coinbase", "kraken", "kucoin",
                 "bittrex", "finicity", "finnhub", "duffel", "shippo", "easypost", "lob", "etsy", "shopify"),
    "ai": ("openai", "anthropic", "cohere", "huggingface", "perplexity", "privateai"),
    "structural": tuple(STRUCTURAL),
}


def family(rule: str) -> str:
    if rule in STRUCTURAL:
        return "structural"
    for name, prefixes in FAMILY_PREFIXES.items():
        if rule.startswith(prefixes):
            return name
    return "other_saas"


def rule_kind(rule: str) -> str:
    """unique (distinctive prefix: recognisable anywhere), context (random: only under a key),
    identifier (client/app ids: not a secret in a log), structural."""
    if rule in STRUCTURAL:
        return "structural"
    if "-pub" in rule or "public" in rule:
        return "identifier"  # publishable keys are made to be exposed (browser code): not required
    kind = str(GITLEAKS[rule]["kind"])
    return "unique" if kind == "other" else kind


def vendor(rule: str) -> str:
    return rule.split("-")[0]


@dataclass(frozen=True)
class Case:
    id: str
    rule: str
    shape: str
    value: Any  # str body, or a mapping of attributes
    secrets: tuple[str, ...]


def _usable(secret: str) -> bool:
    # capture groups of a few characters (jwt-base64 'bGNHc2lPbn', teams 'h6xk-') are not whole secrets
    return len(secret) >= 12


def shapes_for(rule: str, secret: str, n: int) -> list[Case]:
    """The log shapes one secret is placed in. ``unique`` tokens are expected to be caught in every
    shape (a scanner recognises them anywhere); ``context`` secrets only where a key names them."""
    kind = rule_kind(rule)
    v = vendor(rule)
    V = v.upper().replace(".", "_")
    cases: list[tuple[str, Any]] = []
    # keyed shapes: every kind
    cases += [
        ("env_line", f"loaded settings from environment: {V}_API_KEY={secret} {V}_REGION=eu-west-1"),
        ("json_body", json.dumps({"provider": v, "credentials": {f"{v}_api_key": secret, "region": "eu"}})),
        ("attrs_nested", {"provider.name": v, "provider.config": {"apiKey": secret, "timeout_s": 30}}),
        ("header_attr", {"http.request.method": "POST", "url.path": "/v1/hooks",
                         "http.request.header.x-api-key": [secret]}),
        ("query_attr", {"url.path": "/v1/export", "url.query": urlencode({"api_key": secret, "page": "2"})}),
        ("form_body", urlencode({"grant_type": "client_credentials", "client_id": "svc-billing",
                                 "client_secret": secret})),
        ("json_escaped", json.dumps({"event": "webhook.received",
                                     "payload": json.dumps({"token": secret, "id": 42})})),
        ("yaml_dump", f"config:\n  {v}:\n    token: {secret}\n    retries: 3"),
    ]
    if kind == "unique" or rule in SELF_IDENTIFYING:
        cases += [
            ("prose", f"upstream {v} rejected credential {secret} (retrying in 2s)"),
            ("exception", {"exception.type": "requests.exceptions.HTTPError",
                           "exception.message": f"401 Client Error: Unauthorized for url: "
                                                f"https://api.example.com/v1/items?key={quote(secret)}",
                           "exception.stacktrace": f'Traceback (most recent call last):\n  File "app.py", line 9, '
                                                   f'in call\n    client = Client("{secret}")\nHTTPError: 401'}),
            ("headers_repr", "outgoing request headers: " + repr({"Accept": "application/json",
                                                                    "X-Upstream-Auth": secret})),
            ("list_attr", {"debug.args": ["--verbose", secret, "--region=eu"]}),
            ("neutral_json", json.dumps({"id": 1, "note": f"rotated to {secret} by ops"})),
            ("url_encoded", "GET /v1/proxy?target=" + quote(f"https://api.example.com/?k={secret}", safe="")
             + " HTTP/1.1"),
        ]
    out = []
    for shape, value in cases:
        out.append(Case(f"{rule}/{shape}/{n}", rule, shape, value, (secret,)))
    return out


def gitleaks_cases() -> list[Case]:
    """gitleaks' own tp texts (code/config forms a debug log may dump), then our shapes."""
    cases: list[Case] = []
    for rule, entry in sorted(GITLEAKS.items()):
        kind = rule_kind(rule)
        if kind == "identifier":
            continue
        for i, tp in enumerate(entry["tps"]):
            secrets = tuple(s for s in tp["secrets"] or [] if _usable(s))
            if secrets:
                cases.append(Case(f"{rule}/gitleaks_tp/{i}", rule, "gitleaks_tp", tp["text"], secrets))
        usable = [s for s in entry["secrets"] if _usable(s) and "\n" not in s]
        for n, secret in enumerate(usable[:1]):
            cases += shapes_for(rule, secret, n)
    return cases


# --- beyond gitleaks: secret shapes API services log every day ---------------------------------------

def api_cases() -> list[Case]:
    rows: list[tuple[str, str, Any, tuple[str, ...]]] = [
        ("bearer_prose_one_lower", "token", "sent bearer RBCRZVuLLOLE upstream", ("RBCRZVuLLOLE",)),
        ("bearer_prose_hex", "token", "retrying with bearer 9f86d081884c7d659a2feaa0c55ad015", ("9f86d081884c7d659a2feaa0c55ad015",)),
        ("authorization_header_attr", "token", {"http.request.header.authorization": ["Bearer 9f86d081884c7d659a2feaa0"]},
         ("9f86d081884c7d659a2feaa0",)),
        ("authorization_token_scheme", "token", "Authorization: token 0123456789abcdef0123456789abcdef01234567",
         ("0123456789abcdef0123456789abcdef01234567",)),
        ("xml_password", "password", "<user><name>bob</name><password>Tr0ub4dor&amp;3</password></user>", ("Tr0ub4dor",)),
        ("xml_attr_password", "password", '<datasource user="app" password="Pg-Secr3t-99" url="jdbc:pg://db/app"/>',
         ("Pg-Secr3t-99",)),
        ("soap_token", "token", "<wsse:Password Type=\"PasswordText\">S0ap-Passw0rd!</wsse:Password>", ("S0ap-Passw0rd",)),
        ("cli_password_flag", "password", "running: mysqldump --user=root --password hunter2xyz --all-databases",
         ("hunter2xyz",)),
        ("cli_p_flag", "password", "exec: mysql -u root -pS3cretPw77 app", ("S3cretPw77",)),
        ("prose_password_is", "password", "login failed for bob: password 'Winter2026!' is expired", ("Winter2026!",)),
        ("plural_key_attr", "token", {"auth.tokens": ["f3c1e2d4a5b6c7d8e9f0a1b2c3d4e5f6", "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d"]},
         ("f3c1e2d4a5b6c7d8e9f0a1b2c3d4e5f6", "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d")),
        ("plural_key_json", "password", json.dumps({"passwords": ["Hunter2-Pass!", "Second-Pass-9"]}), ("Hunter2-Pass!",)),
        ("openai_legacy_prose", "api_key", "OpenAI call failed with key 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",
         ("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",)),
        ("stripe_client_secret", "token", "confirming payment intent pi_3NkFhZ2eZvKYlo2C1aBcDeFg_secret_Zq8XkLmNoPqRsTuVwXyZ01234",
         ("_secret_Zq8XkLmNoPqRsTuVwXyZ01234",)),
        ("basic_auth_header_value", "token", {"http.request.header.authorization": ["Basic YWRtaW46aHVudGVyMg=="]},
         ("YWRtaW46aHVudGVyMg==",)),
        ("cookie_header_attr", "cookie", {"http.request.header.cookie": ["sessionid=8f14e45fceea167a5a36dedd4bea2543; theme=dark"]},
         ("8f14e45fceea167a5a36dedd4bea2543",)),
        ("set_cookie_attr", "cookie", {"http.response.header.set-cookie": ["remember_token=Rm3mb3r-T0k3n-9f8e7d; HttpOnly"]},
         ("Rm3mb3r-T0k3n-9f8e7d",)),
        ("dsn_in_exception", "password", {"exception.type": "OperationalError",
                                          "exception.message": 'could not connect to "postgresql://app:Pg%40ss-w0rd@db:5432/app"'},
         ("Pg%40ss-w0rd",)),
        ("odbc_conn_string", "password", "connecting with Server=tcp:db.example.net,1433;Database=app;User ID=app;Password=Odbc-S3cret!;Encrypt=True",
         ("Odbc-S3cret!",)),
        ("jdbc_password_param", "password", "jdbc:mysql://db:3306/app?user=app&password=JdbcS3cret42&useSSL=true",
         ("JdbcS3cret42",)),
        ("redis_cli_auth", "password", "redis> AUTH default R3d1s-Auth-Pw", ("R3d1s-Auth-Pw",)),
        ("python_dict_repr_nested", "password", "payload=" + repr({"user": {"name": "bob", "password": "Py-Repr-Pw-1"}}),
         ("Py-Repr-Pw-1",)),
        ("json_escaped_twice", "password", json.dumps({"msg": json.dumps({"body": json.dumps({"password": "Tw1ce-Esc4ped"})})}),
         ("Tw1ce-Esc4ped",)),
        ("urlencoded_json_in_query", "password", "GET /track?data=" + quote(json.dumps({"password": "Qu3ry-Js0n-Pw"}), safe="")
         + " HTTP/1.1", ("Qu3ry-Js0n-Pw",)),
        ("double_urlencoded", "token", "GET /cb?next=" + quote(quote("/x?access_token=D0ubl3-Enc0ded-T0k", safe=""), safe="")
         + " HTTP/1.1", ("D0ubl3-Enc0ded-T0k",)),
        ("graphql_variables", "password", json.dumps({"query": "mutation Login($u: String!, $p: String!) { login(u: $u, p: $p) }",
                                                      "variables": {"u": "bob", "p": "Gr4phQL-Pw!"}}), ("Gr4phQL-Pw!",)),
        ("header_list_in_body", "token", "request headers: [('Host', 'api'), ('Authorization', 'Bearer aB3dE6gH9jK2mN5pQ8sT')]",
         ("aB3dE6gH9jK2mN5pQ8sT",)),
        ("private_key_escaped_newlines", "private_key", "key=-----BEGIN EC PRIVATE KEY-----\\nMHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oJtPq3w\\n-----END EC PRIVATE KEY-----",
         ("MHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oJtPq3w",)),
        ("ssh_private_key_openssh", "private_key", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----",
         ("b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ",)),
        ("bytes_attr_body", "password", {"http.request.body.content": b'{"password": "B1tes-Body-Pw"}'}, ("B1tes-Body-Pw",)),
        ("card_with_spaces_in_prose", "card", "charged card 4111 1111 1111 1111 for order 17", ("4111 1111 1111 1111",)),
        ("card_in_json_number", "card", json.dumps({"order": 17, "card": {"number": 4111111111111111, "exp": "12/29"}}),
         ("4111111111111111",)),
        ("iban_prose", "pii", "refund to IBAN DE89370400440532013000 issued", ("DE89370400440532013000",)),
        ("aws_secret_in_prose", "api_key", "using AWS secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY for s3", ("wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY",)),
        ("gcp_sa_json_attr", "private_key", {"gcp.credentials": {"type": "service_account",
                                             "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"}},
         ("MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",)),
        ("k8s_secret_data", "secret", "applied Secret: {'apiVersion': 'v1', 'kind': 'Secret', 'data': {'DB_PASSWORD': 'cGctU2VjcmV0LTQy'}}",
         ("cGctU2VjcmV0LTQy",)),
        ("sas_token_url", "signature", "uploading to https://acct.blob.core.windows.net/c/f.bin?sv=2022-11-02&sig=AbCdEf1234567890abcdEF%2Bg%3D",
         ("AbCdEf1234567890abcdEF",)),
        ("presigned_s3_url", "signature", "GET https://b.s3.amazonaws.com/k?X-Amz-Signature=0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9",
         ("0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9",)),
        ("oauth_code_in_callback", "token", "GET /oauth/callback?code=4%2F0AfJohXk9Qw8Er7Ty6Ui5Op4&state=af0ifjsldkj HTTP/1.1",
         ("0AfJohXk9Qw8Er7Ty6Ui5Op4",)),
        ("magic_link_token_path", "token", "GET /auth/magic/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJlLXZhbHVl HTTP/1.1",
         ("c2lnbmF0dXJlLXZhbHVl",)),
        ("password_reset_path", "token", "GET /reset-password/3b6f1c2e9a8d4f7b8c1d2e3f4a5b6c7d HTTP/1.1 200",
         ("3b6f1c2e9a8d4f7b8c1d2e3f4a5b6c7d",)),
        ("api_key_in_path", "api_key", "GET /v1/keys/sk_live_51H8xYzAbCdEfGhIjKlMnOpQr/usage HTTP/1.1", ("sk_live_51H8xYzAbCdEfGhIjKlMnOpQr",)),
        ("telegram_bot_url", "token", "POST https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/sendMessage",
         ("AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",)),
        ("x_api_key_header_line", "api_key", "> X-API-Key: 4f8a9c2e1b7d3a6f5e0c9b8a7d6e5f4c", ("4f8a9c2e1b7d3a6f5e0c9b8a7d6e5f4c",)),
        ("secret_under_neutral_key_prose", "api_key", "The API key is 4f8a9c2e1b7d3a6f5e0c9b8a7d6e5f4c", ("4f8a9c2e1b7d3a6f5e0c9b8a7d6e5f4c",)),
        ("saml_response_form", "token", "POST /sso/acs body: SAMLResponse=PHNhbWxwOlJlc3BvbnNlIHhtbG5zOnNhbWxwPSJ1cm46b2FzaXM6"
         "bmFtZXM6dGM6U0FNTDoyLjA6cHJvdG9jb2wi&RelayState=%2Fdashboard",
         ("PHNhbWxwOlJlc3BvbnNlIHhtbG5zOnNhbWxwPSJ1cm46b2FzaXM6",)),
        ("cas_service_ticket", "token", "GET /cas/callback?ticket=ST-1-Zq8XkLmNoPq7rStUvWx-cas01 HTTP/1.1",
         ("Zq8XkLmNoPq7rStUvWx",)),
        ("oauth1_verifier", "token", "GET /oauth/callback?oauth_token=t0k3nAbc&oauth_verifier=V3r1f13rXyZ98 HTTP/1.1",
         ("V3r1f13rXyZ98",)),
        ("oauth1_consumer_key", "api_key", "twitter client: consumer_key=xvz1evFS4wEEPTGEFPHBog consumer_secret=kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
         ("xvz1evFS4wEEPTGEFPHBog",)),
        ("pin_field", "password", json.dumps({"account": "12-345", "pin": "492107"}), ("492107",)),
        ("csrf_field", "token", "POST /settings body: csrf=Zq8XkLmNoPq7rSt&theme=dark", ("Zq8XkLmNoPq7rSt",)),
        ("ssn_field", "pii", json.dumps({"name": "Jane", "ssn": "123-45-6789"}), ("123-45-6789",)),
        ("symbol_rich_password_braces", "password", "login password={{h}o)p${e]nob(ody[finds>-_$#thisone}} ok",
         ("nob(ody[finds",)),  # detect-secrets' keyword-plugin test secret
        ("password_in_braces", "password", "retrying with password={Abc123Def!} for bob", ("Abc123Def!",)),
        ("secret_in_brackets", "secret", "secret=[A1b2C3d4E5f6] loaded", ("A1b2C3d4E5f6",)),
        ("backtick_quoted_password", "password", "set password=`Abc123Def!` for bob", ("Abc123Def!",)),
        ("angle_bracket_password", "password", "password: <hunter2xyz>", ("hunter2xyz",)),
        ("env_export_quoted_spaces", "password", 'export DB_PASSWORD="correct horse battery staple"', ("battery staple",)),
        ("unquoted_password_with_spaces", "password", "password: correct horse battery staple", ("battery staple",)),
    ]
    return [Case(f"api/{name}", name, kind, value, secrets) for name, kind, value, secrets in rows]


# --- harmless: ordinary API log text a user expects byte for byte -----------------------------------

HARMLESS: list[tuple[str, Any]] = [
    ("uuid", "order 3f2b8c1e-9d4a-4e6b-8f1a-2c3d4e5f6a7b created"),
    ("request_id_attr", {"http.request.header.x-request-id": ["req_8f14e45fceea167a5a36dedd4bea2543"]}),
    ("trace_ids", "trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7 sampled=1"),
    ("traceparent_header", {"http.request.header.traceparent": ["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]}),
    ("git_sha", "deployed commit 9fceb02d0ae598e95dc970b74767f19372d61af8 to prod"),
    ("git_sha_key", "build_sha=9fceb02d0ae598e95dc970b74767f19372d61af8 version=1.4.2"),
    ("sha256_digest", "image ghcr.io/acme/api@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 pulled"),
    ("etag", {"http.response.header.etag": ['W/"5e15153d-120f"']}),
    ("base64_image", json.dumps({"avatar": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="})),
    ("aws_request_id", "aws request id 7f3c2b9a-1d4e-4c5f-9a8b-0e1f2a3b4c5d x-amz-id-2: vlR7PnpV2Ce81l0PRw6jlUpck7Jo5ZsQjryTjKlc5aLWGVHPZLj5NeC6qMa0emYBDXOo6QBU0Wo="),
    ("arn", "assumed arn:aws:iam::123456789012:role/api-reader"),
    ("stripe_ids", "created customer cus_NffrFeUfNV2Hib and charge ch_3MmlLrLkdIwHu7ix0snN0B15"),
    ("email", "invitation sent to jane.doe@example.com"),
    ("token_type_bearer_access_line", '10.0.0.1 - - [26/Nov/2026:10:00:00 +0000] "GET /cb?state=xyz&token_type=Bearer HTTP/1.1" 200 12 "-" "curl/8.5.0"'),
    ("token_type_bearer_query_attr", {"url.query": "token_type=Bearer&expires_in=3600"}),
    ("oauth_token_response_meta", json.dumps({"token_type": "Bearer", "expires_in": 3600, "scope": "read write"})),
    ("bearer_prose", "missing bearer token in Authorization header"),
    ("bearer_scheme_error", 'WWW-Authenticate: Bearer realm="api", error="invalid_token"'),
    ("basic_prose", "Basic authentication is disabled for this tenant"),
    ("grant_type_password", "grant_type=password&username=bob&scope=openid"),
    ("request_line_auth", '"POST /api/auth/token HTTP/1.1" 200 512'),
    ("request_line_keys", '"GET /api/v1/api-keys?page=2 HTTP/1.1" 200 88'),
    ("password_policy", "password policy: min_length=12 require_digit=true"),
    ("token_count", "used prompt_tokens=812 completion_tokens=96 total_tokens=908"),
    ("max_tokens", json.dumps({"model": "gpt-4o", "max_tokens": 512, "temperature": 0.2})),
    ("pagination", json.dumps({"next_page_token": "CiAKGjBpNDd2Nmp2Zml2cXRwYjBpOXA", "items": []})),
    ("csrf_message", "CSRF token missing or incorrect."),
    ("semver_and_hash", "starting api v2.31.0+build.8f14e45 (go1.22.1)"),
    ("k8s_pod", "pod api-7d9f8c6b5d-x2k9p restarted (OOMKilled)"),
    ("iso_times", "window 2026-11-26T10:00:00.123456Z .. 2026-11-26T10:05:00Z"),
    ("ipv6", "client 2001:db8:85a3::8a2e:370:7334 connected"),
    ("order_number", "order #100045672 shipped"),
    ("phone", "sms to +1-202-555-0143 queued"),
    ("sql_statement", "SELECT id, email FROM users WHERE id = $1 LIMIT 1"),
    ("public_key", "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----"),
    ("certificate", "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUJ5\n-----END CERTIFICATE-----"),
    ("jwks_kid", json.dumps({"kid": "a3f1c2e9b8d74f6a", "alg": "RS256", "use": "sig"})),
    ("md5_of_file", "checksum md5=d41d8cd98f00b204e9800998ecf8427e size=0"),
    ("idempotency_key", {"http.request.header.idempotency-key": ["8e03978e-40d5-43e8-bc93-6894a57f9324"]}),
    ("user_agent", {"user_agent.original": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15"}),
    ("route_with_token_word", {"http.route": "/api/tokens/{token_id}", "url.path": "/api/tokens/tok_42"}),
    ("session_expired_prose", "session expired for user 42, please log in again"),
    ("private_key_prose", "private key rotation scheduled for 2026-12-01"),
    ("ssh_fingerprint", "host key SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8 accepted"),
    ("cache_key", "cache miss key=user:42:profile ttl=300"),
    ("s3_key", "uploaded s3://acme-exports/2026/11/26/report.csv"),
    ("version_hash_query", '"GET /static/app.js?v=3f9a1c0b7e HTTP/1.1" 200 1024'),
    ("content_md5_header", {"http.request.header.content-md5": ["Q2hlY2sgSW50ZWdyaXR5IQ=="]}),
    ("nonce_csp", {"http.response.header.content-security-policy": ["script-src 'nonce-r4nd0mN0nc3' 'strict-dynamic'"]}),
    ("env_var_reference", "DB_PASSWORD=${DB_PASSWORD} resolved from vault"),
]


def gitleaks_fp_cases() -> list[tuple[str, str]]:
    """gitleaks' own false-positive examples (placeholders, unrelated strings)."""
    out = []
    for rule, entry in sorted(GITLEAKS.items()):
        for i, text in enumerate(entry["fps"]):
            out.append((f"{rule}/fp/{i}", text))
    return out

