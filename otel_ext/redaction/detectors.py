"""Secret detectors for free text: one combined, linear-time pattern and a one-pass pre-filter.

What to catch follows public secret-scanner catalogues (gitleaks' ``config/gitleaks.toml`` and Yelp's
detect-secrets plugins) read as references; the patterns here are our own, written for log lines:

- ``key=value`` / ``key: value`` / JSON ``"key": "value"`` / form and URL-encoded pairs, where the key
  is judged by :mod:`otel_ext.redaction.keys` (quoted values are taken whole, escapes included);
- ``Authorization:``/``Cookie:`` header lines and ``Bearer``/``Basic``/... credentials;
- URL userinfo (DSNs), including empty users and ``@``/``:`` inside the password;
- vendor tokens with a distinctive prefix (cloud, VCS, chat, payments, AI, observability, ...);
- JWTs, PEM private keys (also inside JSON strings with ``\\n`` escapes), payment card numbers
  (issuer prefix + length + Luhn).

Every alternative is written so that the backtracking engine runs in linear time (no nested
quantifiers over overlapping classes); tests feed them adversarial inputs.
"""

from __future__ import annotations

import re
from typing import Any

import re2

from otel_ext.redaction.keys import LAST_TWO, LAST_WORD, STRONG_WORDS

# --- vendor tokens (kind, pattern); the whole token is the secret -----------------------------
# token start: not inside a longer word, but right after a %-escape ("%3D" + token in a URL-encoded URL)
_B = r"(?:(?<=%[0-9A-Fa-f][0-9A-Fa-f])|(?<![A-Za-z0-9_\-]))"
_E = r"(?![A-Za-z0-9_\-])"  # token end
# the rest of the token run after a vendor pattern's fixed part (a longer token, a GitLab routable
# ".xxxxxxxxx" suffix): the whole run goes, so no tail is left glued to the marker
_TAIL = r"(?:[A-Za-z0-9_\-]++|\.(?=[A-Za-z0-9_\-]))*+"

VENDOR_TOKENS: list[tuple[str, str]] = [
    ("aws_access_key", r"(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}" + r"(?![A-Za-z0-9])"),
    ("github_token", r"(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})"),
    ("gitlab_token", r"(?:gl(?:pat|dt|ft|rt|soat|ptt|cbt|imt|agent|oas|ffct)-[A-Za-z0-9_\-]{20,300}|GR1348941"
                     r"[A-Za-z0-9_\-]{20})"),
    ("slack_token", r"(?:xox[abposre]-[A-Za-z0-9\-]{10,250}|xapp-\d-[A-Za-z0-9\-]{10,250})"),
    ("stripe_key", r"(?:sk|rk)_(?:live|test|prod)_[A-Za-z0-9]{10,250}"),
    ("stripe_webhook_secret", r"whsec_[A-Za-z0-9+/=]{24,}"),
    ("google_api_key", r"AIza[0-9A-Za-z_\-]{35}"),
    ("google_oauth", r"(?:ya29\.[0-9A-Za-z_\-]{20,}|GOCSPX-[A-Za-z0-9_\-]{28})"),
    ("openai_key", r"sk-(?:(?:proj|svcacct|admin|None)-[A-Za-z0-9_\-]{20,300}|[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20})"),
    ("anthropic_key", r"sk-ant-(?:api|admin|sid)\d\d-[A-Za-z0-9_\-]{20,300}"),
    ("npm_token", r"npm_[A-Za-z0-9]{36}"),
    ("pypi_token", r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,}"),
    ("twilio_key", r"SK[0-9a-fA-F]{32}" + _E),
    ("sendgrid_key", r"SG\.(?:[A-Za-z0-9_\-]{16,32}\.[A-Za-z0-9_\-]{16,64}|[A-Za-z0-9=_\-.]{66})"),
    ("mailgun_key", r"key-[0-9a-f]{32}" + _E),
    ("vault_token", r"(?:hv[sbr]\.[A-Za-z0-9_\-]{20,300}|s\.[A-Za-z0-9]{24}(?![A-Za-z0-9_\-.]))"),
    ("shopify_token", r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"),
    ("huggingface_token", r"(?:hf_|api_org_)[A-Za-z0-9]{30,40}" + _E),
    ("digitalocean_token", r"do[opr]_v1_[a-f0-9]{64}"),
    ("databricks_token", r"dapi[a-f0-9]{32}(?:-\d)?" + _E),
    ("doppler_token", r"dp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,}"),
    ("dynatrace_token", r"dt0c01\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{64}"),
    ("linear_key", r"lin_(?:api|oauth)_[A-Za-z0-9]{40}"),
    ("notion_token", r"ntn_[0-9]{11}[A-Za-z0-9]{35}"),
    ("pulumi_token", r"pul-[a-f0-9]{40}"),
    ("postman_key", r"PMAK-[a-fA-F0-9]{24}-[a-fA-F0-9]{34}"),
    ("grafana_token", r"(?:glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}|glc_[A-Za-z0-9+/]{32,400}={0,2})"),
    ("newrelic_key", r"(?:NRAK-[A-Z0-9]{27}|NRII-[A-Za-z0-9\-]{32}|NRJS-[a-f0-9]{19})"),
    ("sentry_token", r"sntry[su]_[A-Za-z0-9+/=_]{40,}"),
    ("rubygems_token", r"rubygems_[a-f0-9]{48}"),
    ("planetscale_token", r"pscale_(?:tkn|oauth|pw)_[A-Za-z0-9_=.\-]{32,64}"),
    ("age_secret_key", r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}"),
    ("onepassword_token", r"ops_eyJ[A-Za-z0-9+/]{100,}={0,3}"),
    ("square_token", r"(?:sq0(?:atp|csp)-|EAAA)[0-9A-Za-z_\-]{22,60}"),
    ("telegram_bot_token", r"\d{5,16}:A[A-Za-z0-9_\-]{34}" + _E),
    ("azure_client_secret", r"[A-Za-z0-9_~.]{3}\dQ~[A-Za-z0-9_~.\-]{31,34}"),
    ("atlassian_token", r"ATATT3[A-Za-z0-9_\-=]{150,}"),
    ("heroku_key", r"HRKU-AA[0-9a-zA-Z_\-]{58}"),
    ("jwt", r"eyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*"),
    # written from gitleaks' unique-token rules (the data, in our own patterns)
    ("onepassword_secret_key", r"A3-[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})-[A-Z0-9]{5}-[A-Z0-9]{5}"
                               r"-[A-Z0-9]{5}" + _E),
    ("adobe_client_secret", r"p8e-[A-Za-z0-9]{32}"),
    ("airtable_token", r"pat[A-Za-z0-9]{14}\.[a-f0-9]{64}"),
    ("artifactory_token", r"(?:AKCp[A-Za-z0-9]{69}|cmVmd[A-Za-z0-9]{59}" + _E + ")"),
    ("authress_key", r"(?:sc|ext|scauth|authress)_[A-Za-z0-9]{5,30}\.[A-Za-z0-9]{4,6}\.acc[_\-][A-Za-z0-9\-]{10,32}"
                     r"\.[A-Za-z0-9+/_=\-]{30,120}"),
    ("aws_bedrock_key", r"(?:ABSK[A-Za-z0-9+/]{109,269}={0,2}|bedrock-api-key-YmVkcm9jay5hbWF6b25hd3MuY29t"
                        r"[A-Za-z0-9+/=]*+)"),
    ("clickhouse_secret", r"4b1d[A-Za-z0-9]{38}" + _E),
    ("clojars_token", r"(?i:clojars_[a-z0-9]{60})"),
    ("cloudflare_origin_ca_key", r"v1\.0-[a-f0-9]{24}-[a-f0-9]{146}"),
    ("duffel_token", r"duffel_(?:test|live)_[A-Za-z0-9_\-=]{43}"),
    ("easypost_token", r"EZ[AT]K[A-Za-z0-9]{54}"),
    ("facebook_token", r"(?:\d{15,16}(?:\||%7[Cc])[0-9A-Za-z_\-]{27,40}|EAA[MC][A-Za-z0-9]{100,})"),
    ("flutterwave_secret", r"FLWSECK(?:_TEST)?-[A-Za-z0-9]{12,32}(?:-X)?"),
    ("flyio_token", r"(?:fo1_[A-Za-z0-9_\-]{43}|fm1[ar]_[A-Za-z0-9+/]{100,}={0,3}|fm2_[A-Za-z0-9+/]{100,}={0,3})"),
    ("frameio_token", r"fio-u-[A-Za-z0-9_\-=]{64}"),
    ("grafana_api_key", r"eyJrIjoi[A-Za-z0-9]{70,400}={0,3}"),
    ("harness_token", r"(?:pat|sat)\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{20}"),
    ("terraform_token", r"[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_\-=]{60,70}"),
    ("infracost_token", r"ico-[A-Za-z0-9]{32}"),
    ("intra42_secret", r"s-s4t2(?:ud|af)-[A-Fa-f0-9]{64}"),
    ("maxmind_key", r"[A-Za-z0-9]{6}_[A-Za-z0-9]{29}_mmk" + _E),
    ("octopus_key", r"API-[A-Z0-9]{26}" + _E),
    ("openshift_token", r"sha256~[A-Za-z0-9_\-]{43}"),
    ("perplexity_key", r"pplx-[A-Za-z0-9]{48}"),
    ("prefect_token", r"pnu_[A-Za-z0-9]{36}"),
    ("readme_token", r"rdme_[a-z0-9]{70}"),
    ("scalingo_token", r"tk-us-[A-Za-z0-9_\-]{48}"),
    ("sendinblue_key", r"xkeysib-[a-f0-9]{64}-[A-Za-z0-9]{16}"),
    ("settlemint_token", r"sm_(?:aat|pat|sat)_[A-Za-z0-9]{16}"),
    ("shippo_token", r"shippo_(?:live|test)_[a-fA-F0-9]{40}"),
    ("sourcegraph_token", r"sgp_(?:(?:[a-fA-F0-9]{16}|local)_)?[a-fA-F0-9]{40}"),
    ("stripe_client_secret", r"(?:pi|seti|pm|src)_[A-Za-z0-9]{10,40}_secret_[A-Za-z0-9]{10,}"),
    ("cas_ticket", r"(?:ST|PT|PGT|TGT)-\d{1,12}-[A-Za-z0-9]{15,}"),
    ("jwt", r"ZXlK[A-Za-z0-9+/_\-]{40,}={0,2}"),  # a JWT, base64-encoded once more (base64 of "eyJ")
]


# webhook URLs: the host and path stay, the secret path segment goes
WEBHOOKS: list[tuple[str, str]] = [
    ("slack_webhook", r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<v{i}>[A-Za-z0-9+/_\-]{20,})"),
    ("teams_webhook", r"\.webhook\.office\.com/webhookb2/(?P<v{i}>[A-Za-z0-9@/\-]{40,})"),
    ("discord_webhook", r"discord(?:app)?\.com/api/webhooks/(?P<v{i}>\d+/[A-Za-z0-9_\-]{40,})"),
    ("telegram_bot_token", r"/bot(?P<v{i}>\d{5,16}:[A-Za-z0-9_\-]{30,})"),
    # one-time tokens in a path: /reset-password/<token>, /verify-email/<token>, /invite/<token>
    ("path_token", r"(?i:/(?:reset[_\-]?password|password[_\-]?reset|set[_\-]?password|reset|verify(?:[_\-]?email)?"
                   r"|confirm(?:ation)?|activate|activation|invite|invitation|magic[_\-]?link|unsubscribe)/)"
                   r"(?P<v{i}>[A-Za-z0-9_\-]{20,})"),
]

# a key starts after a non-key character (or an encoded separator), not inside "user[password]";
# no key character can start a separator, so the key is taken possessively (no backtracking)
KV_KEY = (r"(?<!REDACTED:)(?:(?<=%26)|(?<=%3[Ff])|(?<=%3[Bb])|(?<=%20)|(?<![A-Za-z0-9_%.\-])(?<![A-Za-z0-9_.\-]\[))"
          r"(?P<kk>[A-Za-z_](?:[A-Za-z0-9_.\-\[\]]++|%(?!3[DdAaFfBb]|2[026])[0-9A-Fa-f]{2}){0,80}+)")
KV_SEP = (r"(?P<ks>(?:\\{0,7}[\"'])?(?:[ \t]+string)?[ \t]*(?:=>|:{1,3}=|[?.]=|\|\|=|!?={1,3}|:(?!//)|%3[Dd]"
          r"|%3[Aa](?!%2[Ff]))[ \t]*)")
# A quoted value is taken whole (escapes included). An unquoted one stops at whitespace, pair
# separators and quotes, a trailing ".)]}>" run is kept as the surrounding punctuation it is (inside
# a token, "a..b" goes on), and inside
# the scan it also stops at "=" / ":" (but for base64 padding): a pair whose key is not secret is
# re-scanned from its value, and "a=a=a=..." must stay linear. Under a secret key the value is then
# extended to its full extent (VALUE_EXTENT: "=" and ":" included), so "password=ab=cd" goes whole.
_TERMINATORS = r"\s&,;\"'`<>)\]}\\"
_UNQUOTED = (r"(?:[^" + _TERMINATORS + r".%=:]++|%(?!26|3[BbDdAa]|22|27|0[AaDd])[0-9A-Fa-f]{2}|%(?![0-9A-Fa-f]{2})"
             r"|[.)\]}>]++(?=[^" + _TERMINATORS + r".%=:])|=+(?=[" + _TERMINATORS + r"]|%26|$))++")
_UNQUOTED_FULL = (r"(?:[^" + _TERMINATORS + r".%]++|%(?!26|3[Bb]|22|27|0[AaDd])[0-9A-Fa-f]{2}|%(?![0-9A-Fa-f]{2})"
                  r"|[.)\]}>]++(?=[^" + _TERMINATORS + r".%]))++")  # possessive: linear, no backtrack stack
_SCHEME_PREFIX = r"(?i:(?:bearer|basic|digest|negotiate|ntlm)[ \t]+)?"
KV_VALUE = (r"(?P<kv>\"(?:[^\"\\\r\n]++|\\.)*+\"|'(?:[^'\\\r\n]++|\\.)*+'|\\\"(?:[^\"\\]++|\\(?!\"))*+\\\"|"
            # JSON escaped twice (a JSON string holding a JSON string holding JSON): \\\"v\\\"
            r"\\\\\\\"(?:[^\"\\]++|\\(?!\\\\\"))*+\\\\\\\"|"
            r"%22(?:[^%]++|%(?!22))*+%22|`(?:[^`\\\r\n]++|\\.)*+`|<[^<>\s]{1,256}+>|"
            + _SCHEME_PREFIX + _UNQUOTED + ")")
VALUE_EXTENT = re.compile(_SCHEME_PREFIX + _UNQUOTED_FULL)

def _ends_in_own_condition(pattern: str) -> bool:
    """A pattern that ends in a look-ahead (an exact-length token such as ``SK`` + 32 hex) keeps it."""
    return pattern.endswith(")") and "(?!" in pattern[-40:]


_DETECTORS: list[tuple[str, str]] = [
    # PEM private keys: to the END line, else to the closing quote / end of the text (fail closed)
    ("private_key", r"-----BEGIN[ A-Z0-9_\-]{0,40}PRIVATE KEY(?: BLOCK)?-----[^\"]*?"
                    r"(?:-----END[ A-Z0-9_\-]{0,40}PRIVATE KEY(?: BLOCK)?-----|(?=\\?\")|$)"),
    # header lines: Authorization keeps "scheme credential" together, a Cookie list runs to the line end
    ("header", r"(?i:(?<![\w\-])(?:proxy-)?authorization[ \t]*:[ \t]*)"
               r"(?P<v{i}>(?:[A-Za-z][A-Za-z0-9_\-]*[ \t]+)?[^\s\"\\,;]+)"),
    ("cookie", r"(?i:(?<![\w\-])(?:set-)?cookie[ \t]*:[ \t]*)(?P<v{i}>[^\r\n\"\\]+)"),
    ("url_userinfo", r"(?i:(?<![A-Za-z0-9+.\-])[a-z][a-z0-9+.\-]{1,30}://)"
                     r"(?P<v{i}>[^\s/?#@\"'<>]{0,512}+(?:@[^\s/?#@\"'<>]{0,512}+){0,8})@(?=[A-Za-z0-9\[])"),
    *WEBHOOKS,
    # a pattern that does not end in its own end condition takes the rest of the token run too
    *((kind, _B + p + ("" if _ends_in_own_condition(p) else _TAIL)) for kind, p in VENDOR_TOKENS),
    ("authorization", r"(?i:(?<![\w\-])(?:bearer|basic|digest|negotiate|ntlm)[ \t]+)"
                      r"(?P<v{i}>[A-Za-z0-9._~+/\-]{8,}=*)(?![A-Za-z0-9._~+/=\-])"),  # RFC 7235 token68
    ("kv", KV_KEY + KV_SEP + KV_VALUE),
    # (after kv: a key name at the same place is a pair first)
    # a token of a format we have no rule for: a short prefix, "_" or "-", a long random run
    # (sgp_…, CFPAT-…, flb_live_…); judged in redact.py (randomness, length, id-like prefixes)
    ("prefixed_token", r"(?<![A-Za-z0-9_\-.+/=%])(?P<v{i}>[A-Za-z][A-Za-z0-9]{1,9}+[_\-][A-Za-z0-9_\-]{15,300}+)"
                       r"(?![A-Za-z0-9_\-+/=.%])"),
    # <password>v</password>, <wsse:Password Type="…">v</wsse:Password>: the element name is the key
    ("xml_element", r"<(?:[A-Za-z_][\w.\-]{0,40}+:)?(?P<xk{i}>[A-Za-z_][\w.\-]{0,80}+)(?:[ \t][^<>]{0,400}+)?>"
                    r"(?P<v{i}>[^<]{1,4096}+)</"),
    # System.setProperty("DB_PASSWORD", "v"), os.Setenv("API_TOKEN", "v"), putenv, setenv
    ("setter", r"(?i:(?:setproperty|setenv|putenv)\([ \t]*)[\"'](?P<xk{i}>[A-Za-z_][\w.\-]{0,80}+)[\"'][ \t]*,[ \t]*"
               r"(?P<v{i}>\"[^\"\r\n]{1,512}+\"|'[^'\r\n]{1,512}+')"),
    # command lines: --password hunter2 (the flag name is the key), mysql -pX, curl -u user:pass, redis AUTH
    ("cli_flag", r"(?<![\w\-])--?(?P<xk{i}>[A-Za-z][A-Za-z0-9_\-]{0,60}+)[ \t]+"
                 r"(?P<v{i}>\"[^\"\r\n]{1,256}+\"|'[^'\r\n]{1,256}+'|[^\s\-\"'][^\s\"']{0,255}+)"),
    ("cli_flag", r"(?<![\w\-])-p(?P<v{i}>[^\s\-\"'=][^\s\"']{2,255}+)"),
    ("cli_user", r"(?<![\w\-])(?:-u|--user)(?:[ \t]+|=)(?P<v{i}>\"[^\"\r\n]{1,200}+\"(?::\"[^\"\r\n]{0,200}+\")?"
                 r"|'[^'\r\n]{1,200}+'|[^\s\"':]{1,200}+:[^\s]{0,200}+)"),
    ("cli_flag", r"(?<![\w\-])AUTH[ \t]+(?:[A-Za-z0-9_\-]{1,64}+[ \t]+)?(?P<v{i}>[^\s\"']{6,256}+)"),
    # prose: "password 'X' is expired", "The API key is X", "using AWS secret X": quoted values that
    # look like credentials, unquoted ones only when long and random-looking
    ("prose_secret", r"(?i:(?<![\w\-])(?:password|passphrase|passwd|secret|api[ _\-]?key|token|access[ _\-]key)"
                     r"(?:[ \t]+(?:is|was|of|=))?[ \t]+)"
                     r"(?P<v{i}>'[^'\s]{4,128}+'|\"[^\"\s]{4,128}+\"|[^\s'\"]{16,256}+)"),
    ("card", r"(?<![0-9A-Za-z\-.,])(?:\d[ \-]?){12,18}\d(?![0-9A-Za-z\-]|[.,]\d)"),
    ("iban", r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}(?![A-Za-z0-9])"),  # judged by check digits
]

KINDS: list[str] = [kind for kind, _ in _DETECTORS]
KIND_BY_GROUP = {f"k{i}": kind for i, kind in enumerate(KINDS)}
VALUE_GROUP = {f"k{i}": f"v{i}" for i, (_, p) in enumerate(_DETECTORS) if "(?P<v{i}>" in p}
KEY_GROUP = {f"k{i}": f"xk{i}" for i, (_, p) in enumerate(_DETECTORS) if "(?P<xk{i}>" in p}
"""Detectors whose match names its key (an XML element, a CLI flag): the key is judged by keys.py."""
_GROUPED = [f"(?P<k{i}>{p.replace('{i}', str(i))})" for i, (_, p) in enumerate(_DETECTORS)]
COMBINED = re.compile("|".join(_GROUPED))
"""Every detector in one alternation (leftmost match wins; at one position, the first listed)."""

# --- selection: one RE2 pass says which detectors can match at all ------------------------------
# Python's engine tries every alternative at every position (lookbehinds defeat its prefix scan);
# an RE2 set of the detectors' patterns *without* their look-around conditions (so a superset of
# what can match) is one automaton pass, and only the detectors it names run. A string it names
# none for is clean: that is the pre-filter.
# every word that can end a secret key name (keys.py), so the pre-filter and the key table agree
_END_WORDS = sorted({*LAST_WORD, *(pair[1] for pair in LAST_TWO if pair[1] != "id")}, key=len, reverse=True)
_KEY_WORDS = "|".join(re.escape(w) for w in _END_WORDS) + r"|sess(?:ion)?[._\-]?id"
# a key=value pair can only hold a secret when its key ends in a secret word (see keys.py)
_STRONG = "|".join(sorted(STRONG_WORDS, key=len, reverse=True))
KV_ANCHOR = (r"(?i:(?:(?:" + _KEY_WORDS + r")|(?:" + _STRONG + r")[A-Za-z0-9_.\-]{1,40})"
             r"(?:%5[Dd]|\]|\\{0,7}[\"'])?(?:[ \t]+string)?[ \t]*(?:[?.|]{0,2}[:=]|%3[Dd]|%3[Aa]))")
_POSSESSIVE = re.compile(r"([*+?}])\+")  # RE2 has no possessive quantifiers (nor needs them)
_LOOKAROUND = re.compile(r"\(\?<?[!=](?:\\.|\[(?:\\.|[^\]])*\]|[^()\\\[])*\)")


_SECRET_NAME = r"(?:" + _KEY_WORDS + r"|(?:" + _STRONG + r")[A-Za-z0-9_.\-]{1,40})"
_ANCHORS = {"kv": KV_ANCHOR, "url_userinfo": r"(?i:[a-z][a-z0-9+.\-]{1,30}://)[^\s/?#\"'<>]*@",
            "xml_element": r"(?i:" + _SECRET_NAME + r")(?:[ \t][^<>]*)?>[^<]+</",
            "setter": r"(?i:(?:setproperty|setenv|putenv)\([ \t]*[\"'][A-Za-z0-9_.\-]*" + _SECRET_NAME + r"[\"'])",
            "cli_flag#0": r"(?i:--?[A-Za-z0-9_\-]{0,40}" + _SECRET_NAME + r")[ \t]+[^\s\-]",
            "cli_flag#1": r"(?i:mysql|mariadb)[^\n]*[ \t]-p[^\s\-\"'=]",
            "prefixed_token": r"[A-Za-z][A-Za-z0-9]{1,9}[_\-][A-Za-z0-9_\-]*[0-9][A-Za-z0-9_\-]*[A-Za-z]"
                              r"[A-Za-z0-9_\-]*[0-9A-Za-z]{4}"}


def _relaxed(kind: str, pattern: str, index: int) -> str:
    nth = sum(1 for k, _ in _DETECTORS[:index] if k == kind)  # several detectors can share a kind
    anchor = _ANCHORS.get(f"{kind}#{nth}", _ANCHORS.get(kind))
    if anchor is not None:
        return anchor
    return _POSSESSIVE.sub(r"\1", _LOOKAROUND.sub("", pattern.replace("{i}", str(index))))


def _build_set() -> Any:
    options = re2.Options()
    options.log_errors = False
    selector = re2.Set.SearchSet(options)
    for i, (kind, pattern) in enumerate(_DETECTORS):
        if selector.Add(_relaxed(kind, pattern, i)) != i:
            raise AssertionError(f"detector {kind} out of order in the RE2 set")
    selector.Compile()
    return selector


_SELECTOR = _build_set()
_BY_SELECTION: dict[tuple[int, ...], re.Pattern[str]] = {}


def select(text: str) -> re.Pattern[str] | None:
    """The alternation of the detectors that can match ``text`` (None: the text is clean)."""
    hits = _SELECTOR.Match(text.encode("utf-8", "surrogatepass"))
    if not hits:
        return None
    key = tuple(sorted(hits))
    pattern = _BY_SELECTION.get(key)
    if pattern is None:
        pattern = re.compile("|".join(_GROUPED[i] for i in key))
        if len(_BY_SELECTION) < 4096:
            _BY_SELECTION[key] = pattern
    return pattern


def maybe_secret(text: str) -> bool:
    """Cheap one-pass pre-check: False means no detector can match ``text``."""
    return bool(_SELECTOR.Match(text.encode("utf-8", "surrogatepass")))
