"""RedactionProcessor: removes secrets from log records before they leave the process.

Default policy follows the OWASP Logging Cheat Sheet "data to exclude" and, for *what* a secret
looks like, the public catalogues of gitleaks and Yelp's detect-secrets (read as references; the
detectors in :mod:`otel_ext.redaction.detectors` are our own): passwords, access/refresh tokens, API
keys and client secrets, session ids (replaced by a stable keyed hash so sessions can still be
correlated), Authorization/Cookie/Set-Cookie/API-key headers, connection strings and URL userinfo,
payment card numbers (issuer prefix + length + Luhn; strings and integers), JWTs, PEM private keys,
~40 vendor token formats and webhook URLs.

Keys are judged by name (:mod:`otel_ext.redaction.keys`: camelCase, kebab, snake, dotted, env-style
and URL-encoded names alike) wherever they appear: attribute keys, nested mappings, and inside string
bodies that are JSON, ``key=value``, form- or URL-encoded, where the value under a secret key is
replaced in place and the rest of the text is left byte for byte. A one-pass pre-filter rejects
clean strings before the detectors run; repeated strings are redacted once (memo).
"""

from __future__ import annotations

import binascii
import contextlib
import hashlib
import hmac
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_ext._attrs import read_view
from otel_ext._linear import LinearRegex
from otel_ext.redaction.detectors import KEY_GROUP, KIND_BY_GROUP, VALUE_EXTENT, VALUE_GROUP, maybe_secret, select
from otel_ext.redaction.keys import BY_VALUE, CODE_BY_VALUE, key_kind, key_words, normalise_key
from otel_ext.settings import explicit_or_env
from otel_ext.telemetry import Counters, register_counters

_logger = logging.getLogger(__name__)

REDACTION_COUNTERS = register_counters(Counters("redaction"), {"redacted": ("kind",), "failed": ()})
"""``redacted`` per kind (never the value), ``failed`` records."""

__all__ = ["NOT_A_SECRET", "REDACTION_COUNTERS", "RedactionProcessor", "Redactor", "is_card_number", "luhn_ok",
           "maybe_secret", "normalise_key"]

HASH_KEY_ENV = "OTEL_EXT_REDACT_HASH_KEY"
MAX_SCAN_CHARS = 1 << 20
"""Strings longer than this (1 MiB) are scanned up to it and the rest withheld (fail closed, counted)."""

_MEMO_MAX_LEN = 512
_MEMO_MAX_ENTRIES = 16384
_ALREADY = ("[REDACTED", "[HASH:")
_UNSEEN = object()
_CARD_MIN = 10**12  # an int below this in magnitude cannot be a card number (redact_value's test)
# values that say a secret is absent or a feature is on/off (auth=true, token=null), not secrets
NOT_A_SECRET = frozenset({"true", "false", "True", "False", "TRUE", "FALSE", "null", "NULL", "None", "none", "nil",
                          "undefined"})
_CARD_BRANDS = re.compile(r"^(?:4\d{12}(?:\d{3}){0,2}|5[1-5]\d{14}|2(?:2[2-9][1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)"
                          r"\d{12}|3[47]\d{13}|3(?:0[0-5]|[68]\d)\d{11,16}|6(?:011|5\d\d|4[4-9]\d)\d{12,15}|"
                          r"35(?:2[89]|[3-8]\d)\d{12,15})$")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def is_card_number(text: str) -> bool:
    digits = text.replace(" ", "").replace("-", "")
    return 13 <= len(digits) <= 19 and _CARD_BRANDS.match(digits) is not None and luhn_ok(digits)


# IBAN length per country (SWIFT IBAN registry)
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "BY": 28,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19,
    "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}


_PASSPHRASE_WORD = re.compile(r"[a-z]{2,24}")


def _starts_line(text: str, start: int, kind: str, value: str) -> bool:
    """Whether the value of a ``key: value`` pair at ``start`` runs to the end of its line: in a
    multi-line text (a YAML document), only indentation or a list dash before ``start`` on its
    line (looked for 200 chars back); a one-line text that *is* the pair, only when the key names a
    password or secret and the value's first word is a plain word ("password: correct horse
    battery staple", a passphrase), not a token ("password: hunter2x order shipped" keeps its words)."""
    if "\n" not in text:
        return start == 0 and kind in ("password", "secret") and _PASSPHRASE_WORD.fullmatch(value) is not None
    newline = text.rfind("\n", max(0, start - 200), start)
    if newline < 0 and start > 200:
        return False
    return text[newline + 1:start].strip() in ("", "-")


def is_iban(text: str) -> bool:
    """An IBAN by its ISO 13616 check digits (mod 97 of the rearranged number is 1)."""
    compact = text.replace(" ", "")
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit():
        return False  # the country's own length: a random upper-case id passes mod 97 one time in 97
    digits = "".join(str(int(c, 36)) for c in compact[4:] + compact[:4])
    return int(digits) % 97 == 1


def _looks_like_credential(token: str) -> bool:
    """A word after ``Bearer``/``Basic``: a credential has a digit or symbol, or mixed case and length;
    "Basic authentication", "bearer tokens", "Bearer HTTP/1.1" (an empty token_type in an access
    line) and shell references (``$(…)``, ``${…}``) are not."""
    if _HTTP_VERSION.match(token) or token.startswith(_REFERENCES):
        return False
    if any(c.isdigit() or c in "._~+/=-" for c in token):
        return True
    upper = sum(c.isupper() for c in token)
    lower = len(token) - upper
    # random mixed case, not "Authentication": two capitals and two others, or any mix at length >= 10
    return (upper >= 2 and lower >= 2) or (upper >= 2 and lower >= 1 and len(token) >= 10)


_HTTP_VERSION = re.compile(r"HTTP/\d")
_REFERENCES = ("${", "$(", "$ENV{")  # a reference to a secret, not the secret itself


_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")


def _quick_unquote(text: str) -> str:
    """%XX decoded (up to three times) at C speed, for the pre-filter only: quoted-printable decoding
    of the text with ``%`` as its escape character (a literal ``=`` is escaped first)."""
    for _ in range(3):
        if "%" not in text:
            break
        # a "%" before a line break is not a quoted-printable soft break: it stays a "%"
        qp = text.replace("=", "=3D").replace("%", "=").replace("=\n", "=25\n").replace("=\r", "=25\r")
        decoded = binascii.a2b_qp(qp.encode("utf-8", "surrogatepass")).decode("latin-1")
        if decoded == text:
            break
        text = decoded
    return text


def _percent_view(text: str, rounds: int = 3) -> tuple[str, list[int]] | None:
    """``text`` with %XX escapes decoded (up to ``rounds`` times, for double encoding), and for every
    decoded position (plus the end) the position in ``text`` it came from; None without escapes.
    An escape decodes to one character (its byte value): tokens are ASCII, so a multi-byte
    character decodes to harmless non-token characters and the mapping stays one to one."""
    origin: list[int] | None = None
    for _ in range(rounds):
        if _PERCENT.search(text) is None:
            break
        pieces: list[str] = []
        positions: list[int] = []
        last = 0
        for esc in _PERCENT.finditer(text):
            a = esc.start()
            pieces.append(text[last:a])
            positions.extend(range(last, a))
            pieces.append(chr(int(text[a + 1:a + 3], 16)))
            positions.append(a)
            last = esc.end()
        pieces.append(text[last:])
        positions.extend(range(last, len(text) + 1))
        text = "".join(pieces)
        origin = positions if origin is None else [origin[i] for i in positions]
    if origin is None:
        return None
    return text, origin


_QUOTES = (('\\\\\\"', '\\\\\\"'), ('\\"', '\\"'), ('"', '"'), ("'", "'"), ("%22", "%22"), ("`", "`"), ("<", ">"))
_JSON_START = re.compile(r"\{\s*+(?:[\"'}]|$)|\[\s*+(?:[\"'\[{\]]|-?\d|true|false|null|$)")
_FLAT_STRING_ARRAY = re.compile(r'\[\s*+(?=")(?:[^\[\]{}"\\]++|"(?:[^"\\]++|\\.)*+")*+\]')  # ["a", "b"]
_BRACKETED = re.compile(r"[^\s\"'\\&]*+")
_NEEDS_CREDENTIAL = frozenset({"authorization", "cli_flag"})
"""Detectors whose value is judged by its look: a word after a keyword may be prose."""


_KEY_TOKEN = re.compile(r"[A-Za-z0-9_\-.+/=~%:]{12,4096}")
_SEGMENT = r"(?:[A-Za-z]+|[0-9]+|[A-Za-z]{1,2}[0-9]{1,3})"  # a word, a number, a version (v2)
_PURE_SEGMENTS = re.compile(_SEGMENT + r"(?:[_\-.:]" + _SEGMENT + r")+")
_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_FILE_PATH = re.compile(r".*/.*\.[A-Za-z0-9]{2,5}")


def looks_like_key(value: str, min_len: int = 12, uuid_ok: bool = False) -> bool:
    """A value under a bare ``…_key`` / ``code`` name that is a credential, not an identifier: one
    token of ``min_len``+ token characters, random-looking (letters and digits, 8+ distinct
    characters; or 16+ letters of mixed case), and not a UUID, an object path, a dotted name or an
    identifier made of plain words and numbers (ERR_CONN_REFUSED_0042, tenant-42-order-7,
    user:42:profile). A UUID is a key only under a vendor-named key (``uuid_ok``: ACME_KEY)."""
    if len(value) < min_len or _KEY_TOKEN.fullmatch(value) is None or (_UUID.fullmatch(value) and not uuid_ok) or \
            _FILE_PATH.fullmatch(value) or _PURE_SEGMENTS.fullmatch(value):
        return False
    if len(set(value)) < 8:
        return False
    digits = sum(c.isdigit() for c in value)
    upper = sum(c.isupper() for c in value)
    lower = sum(c.islower() for c in value)
    if digits and upper + lower:
        return "." not in value or digits >= 4  # checkout.button.submit2: a dotted name
    return digits == 0 and len(value) >= 16 and upper >= 3 and lower >= 3


_SEGMENT_SPLIT = re.compile(r"[_\-]+")
_HEX = re.compile(r"[0-9a-f]+|[0-9A-F]+")
_SECRETISH = frozenset({"live", "test", "prod", "sk", "rk", "secret", "key", "api", "token", "tok", "pat", "priv",
                        "private", "auth", "access", "sess", "session", "pw", "pwd", "pass", "apikey", "oauth"})
_NOT_TOKEN_PREFIX = frozenset({"sha1", "sha224", "sha256", "sha384", "sha512", "md5", "sha", "crc32", "req",
                               "request", "trace", "span", "corr", "correlation", "idem", "idempotency", "pk",
                               "pub", "public", "publishable"})  # pk_live_…: made to be public


def looks_like_prefixed_token(token: str) -> bool:
    """``prefix_randomrun`` (``sgp_…``, ``CFPAT-…``, ``flb_live_…``) of a format we have no rule for:
    one segment is a random run of letters and digits — 30+ characters, or 12+ after a segment
    that says secret (live, test, sk, key, token, …); a hex run needs 40+ (request and trace ids
    are 32 hex). Stripe object ids (ch_ + 24), SRI hashes (sha384-…), request ids and names made
    of plain words and numbers stay."""
    if _PURE_SEGMENTS.fullmatch(token):
        return False
    segments = [seg for seg in _SEGMENT_SPLIT.split(token) if seg]
    if len(segments) < 2 or segments[0].lower() in _NOT_TOKEN_PREFIX:
        return False
    secretish = any(seg.lower() in _SECRETISH for seg in segments[:-1])
    run = max(segments[1:], key=len)
    if len(set(run)) < 8 or not any(c.isdigit() for c in run) or not any(c.isalpha() for c in run):
        return False
    if _HEX.fullmatch(run):
        return len(run) >= 40 or (secretish and len(run) >= 16)
    return len(run) >= 30 or (secretish and len(run) >= 12)


def _mixed(text: str) -> bool:
    return any(c.isdigit() for c in text) and any(c.isupper() for c in text) and any(c.islower() for c in text)


def _looks_random(text: str) -> bool:
    return len(text) >= 16 and any(c.isdigit() for c in text) and any(c.isalpha() for c in text)


def _object_text(value: Any) -> str:
    """``str(value)`` as the encoder would write it; ``<unprintable TYPE>`` when ``__str__`` raises."""
    try:
        text = str(value)
        if isinstance(text, str):
            return text
    except Exception:  # noqa: BLE001 - any user __str__ may raise
        pass
    return f"<unprintable {type(value).__name__}>"


class Redactor:
    """The redaction policy, usable on any value; :class:`RedactionProcessor` applies it to records."""

    def __init__(
        self,
        allow_keys: Iterable[str] = (),
        deny_keys: Iterable[str] = (),
        extra_patterns: Mapping[str, str] | None = None,
        hash_key: bytes | None = None,
        counters: Counters = REDACTION_COUNTERS,
        max_depth: int = 16,
    ) -> None:
        self.allow_keys = frozenset(allow_keys)
        self.allow_normalised = frozenset(normalise_key(k) for k in self.allow_keys)
        self.deny_keys = frozenset(normalise_key(k) for k in deny_keys)
        # user patterns run on RE2: linear time whatever the pattern (invalid ones raise PatternError)
        self.extra = [(name, LinearRegex(p)) for name, p in (extra_patterns or {}).items()]
        key = explicit_or_env(hash_key, HASH_KEY_ENV)  # an explicit key wins (the variable is then not read)
        self.hash_key = key.encode() if isinstance(key, str) else (key if key is not None else b"otel-ext")
        self.counters = counters
        self.max_depth = max_depth
        # repeated strings and keys (routes, user agents, messages) are redacted once
        self._memo: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._key_kinds: dict[str, str | None] = {}
        self._clean_tuples: set[tuple[Any, ...]] = set()

    # --- keys ------------------------------------------------------------------------------

    def key_kind(self, key: str) -> str | None:
        try:
            return self._key_kinds[key]
        except KeyError:
            kind = self._key_kind(key)
            if len(self._key_kinds) >= _MEMO_MAX_ENTRIES:
                self._key_kinds.clear()
            self._key_kinds[key] = kind
            return kind

    def _key_kind(self, key: str) -> str | None:
        if key in self.allow_keys:
            return None
        name = normalise_key(key)
        if name in self.allow_normalised:
            return None
        if name in self.deny_keys:
            return "denied_key"
        return key_kind(key)

    def session_hash(self, value: str) -> str:
        digest = hmac.new(self.hash_key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
        return f"[HASH:{digest[:16]}]"

    def _replacement(self, kind: str, value: Any, key: str = "") -> Any:
        """What a value under a secret key becomes (``value`` itself when it cannot be a secret);
        the caller counts."""
        if isinstance(value, bool):
            return value  # a flag is not a secret
        if kind in BY_VALUE:  # ACME_KEY=…, ?code=…: a credential only when the value looks like one
            if isinstance(value, str) and looks_like_key(value, 16 if kind == CODE_BY_VALUE else 12,
                                                         kind != CODE_BY_VALUE and len(key_words(key)) >= 2):
                return f"[REDACTED:{kind}]"
            return value
        if kind == "password" and isinstance(value, str) and value.startswith(("/", "~")) and \
                key_words(key)[-1:] == ("pwd",):
            return value  # PWD=/srv/app: the working directory, not a password
        if isinstance(value, str) and (value.startswith(_ALREADY) or value in NOT_A_SECRET):
            return value
        if isinstance(value, (int, float, str)) and str(value).isdigit() and key_words(key)[-1:] == ("tokens",):
            return value  # tokens=512: a count of (LLM) tokens
        if kind == "session" and isinstance(value, (str, int)) and value != "":
            return self.session_hash(str(value))
        return f"[REDACTED:{kind}]"

    # --- text ------------------------------------------------------------------------------

    def redact_text(self, text: str) -> str:
        if len(text) < 5:
            return text
        memo = self._memo.get(text) if len(text) <= _MEMO_MAX_LEN else None
        if memo is None:
            memo = self._scan(text)
            if len(text) <= _MEMO_MAX_LEN:
                if len(self._memo) >= _MEMO_MAX_ENTRIES:
                    self._memo.clear()
                self._memo[text] = memo
        out, kinds = memo
        for kind in kinds:
            self.counters.add("redacted", kind)
        return text if not kinds else out

    def _scan(self, text: str) -> tuple[str, tuple[str, ...]]:
        found: list[str] = []
        tail = ""
        if len(text) > MAX_SCAN_CHARS:  # fail closed: never ship what we did not scan
            tail = f"[REDACTED:unscanned {len(text) - MAX_SCAN_CHARS} chars]"
            text = text[:MAX_SCAN_CHARS]
            found.append("too_long")
        # one RE2 pass: None for a clean string (the usual case). Text with %-escapes also passes the
        # pre-filter decoded: decoding can hide a hit of the raw text ("u:p%0A@h" -> a line break) as
        # well as reveal one, so both forms are checked
        detectors = select(text)
        out = text if detectors is None else self._detect(text, found, detectors)
        if "%" in out:
            out = self._detect_decoded(out, found)
        for name, rx in self.extra:
            out, n = rx.sub(f"[REDACTED:{name}]", out)
            found.extend([name] * n)
        return out + tail, tuple(found)

    def _detect(self, text: str, found: list[str], detectors: re.Pattern[str]) -> str:
        """One left-to-right pass of the selected detectors; a pair whose key is not secret is
        re-scanned from its value on, so tokens inside ordinary values are still found."""
        pieces: list[str] = []
        last = pos = 0
        search = detectors.search
        while True:
            match = search(text, pos)
            if match is None:
                break
            verdict = self._judge(text, match)
            if isinstance(verdict, int):  # nothing to redact here: go on from there
                pos = max(verdict, match.start() + 1)
                continue
            replacement, kind, end = verdict
            found.append(kind)
            pieces.append(text[last:match.start()])
            pieces.append(replacement)
            last = pos = end
        if not pieces:
            return text
        pieces.append(text[last:])
        return "".join(pieces)

    def _detect_decoded(self, text: str, found: list[str]) -> str:
        """Detectors over the percent-decoded view of a %-rich string (a URL-encoded URL inside a query,
        a token holding ``%2B``/``%3D``, double encoding); what they find is removed from ``text``
        itself: the span of the original, escapes included, that decodes to the secret."""
        if select(_quick_unquote(text)) is None:
            return text
        view = _percent_view(text)
        if view is None:
            return text
        decoded, origin = view
        detectors = select(decoded)
        if detectors is None:
            return text
        spans: list[tuple[int, int, str, str]] = []
        pos = 0
        while True:
            match = detectors.search(decoded, pos)
            if match is None:
                break
            verdict = self._judge(decoded, match)
            if isinstance(verdict, int):
                pos = max(verdict, match.start() + 1)
                continue
            replacement, kind, end = verdict
            start = match.start()
            whole = decoded[start:end]
            head = 0  # the replacement keeps the pair's key / the URL's user: only the middle changed
            limit = min(len(whole), len(replacement))
            while head < limit and whole[head] == replacement[head]:
                head += 1
            tail = 0
            while tail < limit - head and whole[-1 - tail] == replacement[-1 - tail]:
                tail += 1
            a, b = origin[start + head], origin[end - tail]
            if a < b and "%" in text[origin[start]:origin[end]]:  # else judged on the text itself
                spans.append((a, b, replacement[head:len(replacement) - tail], kind))
            pos = end
        if not spans:
            return text
        pieces: list[str] = []
        last = 0
        for a, b, marker, kind in spans:
            found.append(kind)
            pieces.append(text[last:a])
            pieces.append(marker)
            last = b
        pieces.append(text[last:])
        return "".join(pieces)

    def _judge(self, text: str, match: re.Match[str]) -> tuple[str, str, int] | int:
        """(replacement of text[match.start():end], kind, end) for a match, or where to resume."""
        group = match.lastgroup or ""
        kind = KIND_BY_GROUP.get(group, "secret")
        whole = match.group(0)
        start = match.start()
        if kind == "kv":
            return self._judge_pair(text, match)
        if kind == "card":
            return ("[REDACTED:card]", kind, match.end()) if is_card_number(whole) else match.end()
        if kind == "iban":
            return ("[REDACTED:iban]", kind, match.end()) if is_iban(whole) else match.end()
        value_group = VALUE_GROUP.get(group)
        if value_group is None:
            if kind == "vault_token" and whole.startswith("s.") and not _mixed(whole[2:]):
                return match.end()  # s.AcceptanceTimeoutSeconds: a member access, not a legacy Vault token
            return f"[REDACTED:{kind}]", kind, match.end()
        secret = match.group(value_group)
        vstart = match.start(value_group) - start
        if secret.startswith(_ALREADY):
            return match.end()
        key_group = KEY_GROUP.get(group)
        if key_group is not None:  # <password>v</password>, --password v: the name decides
            key = match.group(key_group)
            key_kind = self.key_kind(key)
            if key_kind is None:
                return match.start(value_group)
            inner, quote = secret.strip(), ""
            if len(inner) >= 2 and inner[0] in "\"'" and inner[-1] == inner[0]:
                inner, quote = inner[1:-1], inner[0]
            if not inner or inner.startswith(_REFERENCES) or self._replacement(key_kind, inner, key) is inner:
                return match.end()
            if kind == "cli_flag" and not _looks_like_credential(inner):
                return match.start(value_group)  # "--password option" in prose
            marker = f"{quote}[REDACTED:{key_kind}]{quote}"
            return whole[:vstart] + marker + whole[vstart + len(secret):], key_kind, match.end()
        if kind == "prefixed_token":
            if not looks_like_prefixed_token(secret):
                return match.end()
            return f"[REDACTED:{kind}]", kind, match.end()
        if kind == "path_token" and not _looks_random(secret):
            return match.end()  # /confirm/order_confirmation_page: a page, not a token
        if kind == "cli_user":
            user, _, password = secret.replace('"', "").replace("'", "").partition(":")
            if not _ or not _looks_like_credential(password or user) or \
                    (password or user).startswith(("$", "{{", "<", "[")):
                return match.start(value_group)  # mysql -u root, -u "$USER:$PASS", -u test:test
        if kind == "prose_secret":
            inner = secret[1:-1] if secret[0] in "\"'" else secret
            if not (_looks_like_credential(inner) if secret[0] in "\"'" else _looks_random(inner)):
                return match.start(value_group)
        elif kind in _NEEDS_CREDENTIAL and not _looks_like_credential(secret):
            return match.start(value_group)
        if kind == "header" and (secret.partition(" ")[2] or secret).startswith(_REFERENCES):
            return match.end()  # Authorization: Bearer $(gcloud auth print-access-token)
        rest = whole[vstart + len(secret):]
        if kind == "url_userinfo":
            user, colon, password = secret.partition(":")
            if colon:  # keep the user name, remove the password (may be empty, hold '@' or ':')
                if not password:
                    return match.end()
                return whole[:vstart] + user + ":[REDACTED:password]" + rest, "password", match.end()
            if not _looks_random(secret):
                return match.end()  # ssh://git@host: a user name, not a token
        return whole[:vstart] + f"[REDACTED:{kind}]" + rest, kind, match.end()

    def _judge_pair(self, text: str, match: re.Match[str]) -> tuple[str, str, int] | int:
        key = match.group("kk")
        value = match.group("kv")
        vstart = match.start("kv")
        kind = self.key_kind(key)
        if kind is None:
            return vstart
        start = match.start()
        if start and text[start - 1] == ":" and match.group("ks") == ":":
            return vstart  # one link of a colon chain (arn:aws:secretsmanager:…:secret:db), an identifier
        end = match.end()
        inner, quote, close = value, "", ""
        for q, c in _QUOTES:
            if len(value) >= len(q) + len(c) and value.startswith(q) and value.endswith(c):
                inner, quote, close = value[len(q):-len(c)], q, c
                break
        else:  # unquoted: the scan stopped at "=" / ":"; under a secret key the value goes whole
            extent = VALUE_EXTENT.match(text, vstart)
            if extent is not None and extent.end() > end:
                end = extent.end()
                inner = text[vstart:end]
            if match.group("ks").strip() == ":" and text[vstart:vstart + 1] not in "{[" and \
                    _starts_line(text, start, kind, inner):
                # a YAML line "  password: correct horse battery staple": the value is the rest of the line
                line_end = text.find("\n", end)
                line_end = len(text) if line_end < 0 else line_end
                rest = text[end:line_end].rstrip()
                if rest and not rest.lstrip().startswith("#"):
                    end += len(rest)
                    inner = text[vstart:end]
        if not inner or inner.startswith(_ALREADY) or inner.startswith(_REFERENCES):
            return end  # password=${DB_PASSWORD}: a reference, not the secret
        if inner[0] in "{[":
            if _JSON_START.match(inner):
                array = _FLAT_STRING_ARRAY.match(text, vstart) if inner[0] == "[" else None
                if array is None:  # a nested object: its own keys are judged as the scan goes on
                    return vstart
                new = self._replacement(kind, array.group(), key)  # "passwords": ["a", "b"]
                if new is array.group():
                    return vstart
                return text[start:vstart] + f'["{new}"]', kind, array.end()
            if not quote:  # password={Abc123!} / secret=[A1b2]: the whole bracketed run is the value
                run = _BRACKETED.match(text, vstart)
                if run is not None and run.end() > end:
                    end = run.end()
                    inner = text[vstart:end]
        if close == ">" and not _looks_like_credential(inner):
            return end  # password=<password>, secret: <redacted>: a placeholder
        new = self._replacement(kind, inner, key)
        if new is inner:
            return vstart
        return text[start:vstart] + quote + str(new) + close, kind, end

    # --- values ----------------------------------------------------------------------------

    def redact_value(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if 10**12 <= abs(value) < 10**19 and is_card_number(str(abs(value))):
                self.counters.add("redacted", "card")
                return "[REDACTED:card]"
            return value
        if depth >= self.max_depth and isinstance(value, (Mapping, list, tuple)):
            self.counters.add("redacted", "too_deep")  # fail closed: never ship what we did not scan
            return "[REDACTED:too_deep]"
        if isinstance(value, Mapping):
            return self.redact_mapping(value, depth + 1)
        if isinstance(value, (list, tuple)):
            items = [self.redact_value(v, depth + 1) for v in value]
            changed = any(a is not b for a, b in zip(items, value, strict=True))
            return (tuple(items) if isinstance(value, tuple) else items) if changed else value
        if isinstance(value, bytes) and len(value) >= 5:  # text sent as bytes (a request body) is scanned
            # not UTF-8 (binary framing, latin-1, a truncated body) is scanned too: undecodable bytes
            # ride through as surrogate escapes and come back unchanged; only a secret's text changes
            text = value.decode("utf-8", "surrogateescape")
            new = self.redact_text(text)
            return value if new is text else new.encode("utf-8", "surrogateescape")
        if value is None or isinstance(value, (float, bool, bytes)):
            return value
        # any other object (a body or value handed to the Logs API as is): the encoder would ship its
        # str(); scan that text instead, so what leaves is what was scanned
        return self.redact_text(_object_text(value))

    def redact_mapping(self, mapping: Mapping[str, Any], depth: int = 0) -> Mapping[str, Any]:
        """``mapping`` with every secret redacted (``mapping`` itself when nothing changed).

        Hot path: a value under a non-secret key is skipped in one step when it provably cannot
        change — a string shorter than 5 characters or already known clean (memo), an int that
        cannot be a card number, a tuple of strings already found clean. Everything else goes
        through :meth:`_redact_entry`, the full path (equality property-tested)."""
        out: dict[str, Any] | None = None
        kinds = self._key_kinds
        memo = self._memo
        shallow = depth < self.max_depth  # deeper tuples are "too deep": never skipped
        clean_tuples = self._clean_tuples if shallow else frozenset()
        for key, value in mapping.items():
            kind = kinds.get(key, _UNSEEN)
            if kind is None:
                cls = value.__class__
                if cls is str:
                    if len(value) < 5:
                        continue
                    found = memo.get(value)
                    if found is not None and not found[1]:
                        continue
                elif cls is int:
                    if -_CARD_MIN < value < _CARD_MIN:
                        continue
                elif cls is tuple:
                    try:
                        if value in clean_tuples:
                            continue
                    except TypeError:  # holds something unhashable: never remembered
                        pass
            new = self._redact_entry(key, value, depth)
            if new is not value:
                if out is None:
                    out = dict(mapping)
                out[key] = new
            elif value.__class__ is tuple and shallow and kinds.get(key, _UNSEEN) is None:
                self._remember_clean(value)
        return mapping if out is None else out

    def _remember_clean(self, value: tuple[Any, ...]) -> None:
        """Remember a short tuple of strings that came out unchanged (tags, categories)."""
        if len(value) <= 8 and all(v.__class__ is str and len(v) <= _MEMO_MAX_LEN for v in value):
            if len(self._clean_tuples) >= _MEMO_MAX_ENTRIES:
                self._clean_tuples.clear()
            self._clean_tuples.add(value)

    def _redact_entry(self, key: Any, value: Any, depth: int) -> Any:
        """The full path for one ``key: value`` entry of a mapping."""
        kind = self.key_kind(key) if isinstance(key, str) else None
        if kind is not None and value is not None and value != "":
            new = self._replacement(kind, value, key)
            if new is value:
                return self.redact_value(value, depth)
            self.counters.add("redacted", kind)
            return new
        return self.redact_value(value, depth)

    def redact_mapping_full(self, mapping: Mapping[str, Any], depth: int = 0) -> Mapping[str, Any]:
        """The reference for :meth:`redact_mapping`: every entry through the full path, no skip."""
        out: dict[str, Any] | None = None
        for key, value in mapping.items():
            kind = self.key_kind(key) if isinstance(key, str) else None
            if kind is not None and value is not None and value != "":
                new = self._replacement(kind, value, key)
                if new is value:
                    new = self.redact_value(value, depth)
                else:
                    self.counters.add("redacted", kind)
            else:
                new = self.redact_value(value, depth)
            if new is not value:
                if out is None:
                    out = dict(mapping)
                out[key] = new
        return mapping if out is None else out


class RedactionProcessor(LogRecordProcessor):
    """Redacts secrets in place, before export: the body, attribute keys/values and the event name of
    each record, and the attributes of its resource and instrumentation scope (once per distinct
    resource / scope object: a redacted copy replaces it on the record).

    Guarantee: never raises into the caller; if redaction of a record fails, the record's body and
    string attributes are replaced wholesale (fail closed) and the failure is counted.
    """

    def __init__(
        self,
        allow_keys: Iterable[str] = (),
        deny_keys: Iterable[str] = (),
        extra_patterns: Mapping[str, str] | None = None,
        hash_key: bytes | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.redactor = redactor or Redactor(allow_keys, deny_keys, extra_patterns, hash_key)
        # id(original) -> (original, its redacted copy or itself): the original is kept so the id
        # stays its own; a few distinct resources and scopes per process, bounded anyway
        self._resources: dict[int, tuple[Any, Any]] = {}
        self._scopes: dict[int, tuple[Any, Any]] = {}
        self._last: dict[str, tuple[Any, Any]] = {}  # field -> (the last original, its copy)

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        self.redact_item(log_record)

    def redact_item(self, item: Any) -> None:
        """Redact one SDK record (a ``ReadWriteLogRecord`` or ``ReadableLogRecord``) in place: its
        log record (:meth:`redact_record`), and its resource and scope attributes. Never raises."""
        self.redact_record(item.log_record)
        try:
            self._replace(item, "resource", self._resources, self._clean_resource)
            self._replace(item, "instrumentation_scope", self._scopes, self._clean_scope)
        except Exception:  # noqa: BLE001 - fail closed: withhold what could not be scanned
            self.redactor.counters.add("failed")
            _logger.warning("otel-ext: redaction of a resource or scope failed; their attributes withheld")
            with contextlib.suppress(Exception):
                object.__setattr__(item, "resource", Resource({"otel_ext.redaction": "failed"}))
                object.__setattr__(item, "instrumentation_scope", None)

    def _replace(self, item: Any, field: str, cache: dict[int, tuple[Any, Any]], clean: Any) -> None:
        """Put the redacted copy of ``item``'s ``field`` (a resource or scope) in its place."""
        original = getattr(item, field)
        if original is None:
            return
        last = self._last.get(field)  # the usual case: the same object as the record before
        if last is not None and last[0] is original:
            new = last[1]
        else:
            new = self._cached(cache, original, clean)
            self._last[field] = (original, new)
        if new is not original:
            object.__setattr__(item, field, new)  # also on the SDK's frozen records

    @staticmethod
    def _cached(cache: dict[int, tuple[Any, Any]], original: Any, clean: Any) -> Any:
        hit = cache.get(id(original))
        if hit is not None and hit[0] is original:
            return hit[1]
        if len(cache) >= 1024:
            cache.clear()
        result = clean(original)
        cache[id(original)] = (original, result)
        if result is not original:
            cache[id(result)] = (result, result)  # redacting again changes nothing
        return result

    def _clean_resource(self, resource: Resource) -> Resource:
        attrs = dict(resource.attributes)
        new = self.redactor.redact_mapping(attrs)
        return resource if new is attrs else Resource(dict(new), resource.schema_url)

    def _clean_scope(self, scope: InstrumentationScope) -> InstrumentationScope:
        name = self.redactor.redact_text(scope.name) if scope.name else scope.name
        version = self.redactor.redact_text(scope.version) if scope.version else scope.version
        attrs = dict(scope.attributes or {})
        new = self.redactor.redact_mapping(attrs) if attrs else attrs
        if name is scope.name and version is scope.version and new is attrs:
            return scope
        return InstrumentationScope(name, version, scope.schema_url, dict(new) if new else None)

    def redact_record(self, record: Any) -> None:
        redactor = self.redactor
        name = getattr(record, "event_name", None)
        if name and isinstance(name, str):  # its own step: a body that cannot be scanned keeps its name
            try:
                new_name = redactor.redact_text(name)
            except Exception:  # noqa: BLE001 - fail closed
                redactor.counters.add("failed")
                new_name = "[REDACTED:unprocessable]"
            if new_name is not name:
                record.event_name = new_name
        try:
            body = record.body
            if body is not None and not isinstance(body, (int, float, bool)):
                new_body = redactor.redact_value(body)
                if new_body is not body:
                    record.body = new_body
            attrs = read_view(record.attributes)
            if attrs:
                new_attrs = redactor.redact_mapping(attrs)
                if new_attrs is not attrs:
                    for key, value in new_attrs.items():
                        if value is not attrs.get(key):
                            attrs[key] = value
        except Exception:  # noqa: BLE001 - fail closed, never raise into the app
            redactor.counters.add("failed")
            _logger.warning("otel-ext: redaction failed; record body and attributes withheld")
            record.body = "[REDACTED:unprocessable]"
            try:
                attrs = read_view(record.attributes)
                for key in list(attrs):
                    attrs[key] = "[REDACTED:unprocessable]"
            except Exception:  # noqa: BLE001 - the attributes themselves are broken: drop them all
                record.attributes = {"otel_ext.redaction": "failed"}

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
