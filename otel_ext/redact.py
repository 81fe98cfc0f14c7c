"""RedactionProcessor: removes secrets from log records before they leave the process.

Default policy follows the OWASP Logging Cheat Sheet "data to exclude": passwords, access/refresh
tokens, API keys and client secrets, session ids (replaced by a stable keyed hash so sessions can
still be correlated), Authorization/Cookie/Set-Cookie/API-key headers, connection strings and URL
userinfo, payment card numbers (issuer prefix + length + Luhn), JWTs, cloud/vendor access keys,
private keys and signed query parameters (the parameter name is kept).

Keys are matched by name (the last dotted component, normalised), values and string bodies by
pattern, nested values included. One combined regex scans each string once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.util.types import AnyValue

from otel_ext._attrs import read_view
from otel_ext.telemetry import Counters, register_counters

_logger = logging.getLogger(__name__)

REDACTION_COUNTERS = register_counters(Counters("redaction"), {"redacted": ("kind",), "failed": ()})
"""``redacted`` per kind (never the value), ``failed`` records."""

HASH_KEY_ENV = "OTEL_EXT_REDACT_HASH_KEY"

SECRET_KEYS: dict[str, str] = {
    # normalised key name -> kind
    **dict.fromkeys(
        ["password", "passwd", "pwd", "pass", "passphrase", "new_password", "old_password", "current_password"],
        "password",
    ),
    **dict.fromkeys(
        ["secret", "client_secret", "app_secret", "secret_key", "private_key", "aws_secret_access_key"], "secret"
    ),
    **dict.fromkeys(
        ["token", "access_token", "refresh_token", "id_token", "auth_token", "bearer_token", "csrf_token",
         "csrftoken", "xsrf_token", "x_csrf_token", "x_xsrf_token", "otp", "mfa_code", "totp"],
        "token",
    ),
    **dict.fromkeys(["api_key", "apikey", "x_api_key", "api_token", "x_auth_token", "subscription_key",
                     "ocp_apim_subscription_key"], "api_key"),
    **dict.fromkeys(["authorization", "proxy_authorization", "x_amz_security_token"], "authorization"),
    **dict.fromkeys(["cookie", "set_cookie"], "cookie"),
    **dict.fromkeys(["connection_string", "connstr", "dsn", "database_url"], "connection_string"),
    **dict.fromkeys(["card_number", "cardnumber", "pan", "credit_card", "cc_number", "cvv", "cvc"], "card"),
}
SESSION_KEYS = frozenset({"session", "session_id", "sessionid", "sid", "jsessionid", "phpsessid", "session_token"})

_KV_KEYS = (
    r"password|passwd|pwd|passphrase|secret|client_secret|api[_-]?key|apikey|access[_-]?token|"
    r"refresh[_-]?token|id[_-]?token|auth[_-]?token|token|private[_-]?key"
)
_SESSION_KV_KEYS = r"session[_-]?id|sessionid|jsessionid|phpsessid|sid"
_SIGNED_PARAMS = (
    r"X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|X-Goog-Signature|X-Goog-Credential|sig|signature|"
    r"access_token|api_key|apikey|code_verifier|client_secret|token"
)

# Order matters only for overlapping matches: the first alternative that matches at a position wins.
_PATTERNS: list[tuple[str, str]] = [
    ("private_key", r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"),
    ("jwt", r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
    ("authorization", r"(?i:\b(?:bearer|basic|digest|negotiate|token)\s+)(?P<au>[A-Za-z0-9._~+/=-]{8,})"),
    ("cloud_key", r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[A-Z0-9]{16}\b"),
    ("api_key", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}|glpat-[A-Za-z0-9_-]{20,}|"
                r"xox[baprs]-[A-Za-z0-9-]{10,}|(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}|AIza[0-9A-Za-z_-]{35}|"
                r"sk-[A-Za-z0-9_-]{32,})"),
    ("url_userinfo", r"(?i:\b[a-z][a-z0-9+.-]{1,20}://)(?P<ui>[^\s/@:]+(?::[^\s/@]*)?)@"),
    ("header", r"(?i:\b(?:authorization|proxy-authorization|cookie|set-cookie|x-api-key|api-key|x-auth-token)\s*:\s*)"
               r"(?P<hv>[^\r\n]+)"),
    ("signed_param", r"(?i:[?&;](?:" + _SIGNED_PARAMS + r")=)(?P<sp>[^&#\s\"']+)"),
    ("session", r"(?i:\b(?:" + _SESSION_KV_KEYS + r")\b[\"']?\s*[=:]\s*[\"']?)(?P<sv>[A-Za-z0-9._~+/=-]{6,})"),
    ("kv_secret", r"(?i:\b(?:" + _KV_KEYS + r")\b[\"']?\s*[=:]\s*[\"']?)(?P<kv>[^\s&\"',;}]+)"),
    ("card", r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])"),
]
_COMBINED = re.compile("|".join(f"(?P<k{i}>{p})" for i, (_, p) in enumerate(_PATTERNS)))
_KIND_BY_GROUP = {f"k{i}": kind for i, (kind, _) in enumerate(_PATTERNS)}
_FOUR_DIGITS = re.compile(r"\d{4}")
_VENDOR_HINTS = ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "gh", "glpat-", "xox", "_live_", "_test_", "AIza", "sk-")
_SCHEME_HINTS = ("bearer ", "basic ", "digest ", "negotiate ", "token ")
_MEMO_MAX_LEN = 512
_MEMO_MAX_ENTRIES = 16384


def maybe_secret(text: str) -> bool:
    """Cheap pre-check: False means no built-in pattern can match ``text``."""
    if "=" in text or ":" in text or "@" in text or "eyJ" in text or "-----BEGIN" in text:
        return True
    if _FOUR_DIGITS.search(text) is not None:
        return True
    for hint in _VENDOR_HINTS:
        if hint in text:
            return True
    if " " in text:
        low = text.lower()
        for hint in _SCHEME_HINTS:
            if hint in low:
                return True
    return False


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


def normalise_key(key: str) -> str:
    return key.rsplit(".", 1)[-1].strip().lower().replace("-", "_")


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
        self.extra = [(name, re.compile(p)) for name, p in (extra_patterns or {}).items()]
        env_key = os.environ.get(HASH_KEY_ENV)
        self.hash_key = hash_key if hash_key is not None else (env_key.encode() if env_key else b"otel-ext")
        self.counters = counters
        self.max_depth = max_depth
        # repeated strings and keys (routes, user agents, messages) are redacted once
        self._memo: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._key_kinds: dict[str, str | None] = {}
        self._found: list[str] = []

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
        kind = SECRET_KEYS.get(name)
        if kind is not None:
            return kind
        if name in SESSION_KEYS:
            return "session"
        return None

    def session_hash(self, value: str) -> str:
        digest = hmac.new(self.hash_key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
        return f"[HASH:{digest[:16]}]"

    def _replacement(self, kind: str, value: Any) -> AnyValue:
        self.counters.add("redacted", kind)
        if kind == "session" and isinstance(value, str) and value:
            return self.session_hash(value)
        return f"[REDACTED:{kind}]"

    # --- values ----------------------------------------------------------------------------

    def _sub(self, match: re.Match[str]) -> str:
        replaced = self._replace(match)
        if replaced != match.group(0):
            self._found.append(_KIND_BY_GROUP.get(match.lastgroup or "", "secret"))
        return replaced

    def _replace(self, match: re.Match[str]) -> str:
        group = match.lastgroup or ""
        kind = _KIND_BY_GROUP.get(group, "secret")
        text = match.group(0)
        if kind == "card":
            if not is_card_number(text):
                return text
            return "[REDACTED:card]"
        # keep the key / scheme / parameter name: replace only the named secret sub-group if any
        for sub in ("au", "ui", "hv", "sp", "sv", "kv"):
            start = match.start(sub) if match.re.groupindex.get(sub) else -1
            if start >= 0:
                secret = match.group(sub)
                if secret.startswith(("[REDACTED", "[HASH:")):
                    return text
                offset = start - match.start(0)
                repl = self.session_hash(secret) if kind == "session" else f"[REDACTED:{kind}]"
                return text[:offset] + repl + text[offset + len(secret):]
        return f"[REDACTED:{kind}]"

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
        self._found = found
        out = _COMBINED.sub(self._sub, text) if maybe_secret(text) else text
        for name, rx in self.extra:
            out, n = rx.subn(f"[REDACTED:{name}]", out)
            found.extend([name] * n)
        return out, tuple(found)

    def redact_value(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):
            return self.redact_text(value)
        if depth >= self.max_depth and isinstance(value, (Mapping, list, tuple)):
            self.counters.add("redacted", "too_deep")  # fail closed: never ship what we did not scan
            return "[REDACTED:too_deep]"
        if isinstance(value, Mapping):
            return self.redact_mapping(value, depth + 1)
        if isinstance(value, (list, tuple)):
            items = [self.redact_value(v, depth + 1) for v in value]
            changed = any(a is not b for a, b in zip(items, value, strict=True))
            return (tuple(items) if isinstance(value, tuple) else items) if changed else value
        if isinstance(value, bytes):
            return value  # opaque binary is not scanned
        return value

    def redact_mapping(self, mapping: Mapping[str, Any], depth: int = 0) -> Mapping[str, Any]:
        out: dict[str, Any] | None = None
        for key, value in mapping.items():
            kind = self.key_kind(key) if isinstance(key, str) else None
            if kind is not None and value is not None and value != "":
                new = self._replacement(kind, value if isinstance(value, str) else None)
            else:
                new = self.redact_value(value, depth)
            if new is not value:
                if out is None:
                    out = dict(mapping)
                out[key] = new
        return mapping if out is None else out


class RedactionProcessor(LogRecordProcessor):
    """Redacts secrets in attribute keys/values and bodies in place, before export.

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

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        self.redact_record(log_record.log_record)

    def redact_record(self, record: Any) -> None:
        redactor = self.redactor
        try:
            body = record.body
            if body is not None and not isinstance(body, (int, float, bool, bytes)):
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
