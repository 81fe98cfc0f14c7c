"""Which key names hold secrets: one normaliser and one table for attribute keys, JSON keys,
``key=value`` / form / URL-encoded pairs and env-style names alike.

A key is normalised (URL-decoded, camelCase and kebab-case split, lower-cased) into words, and the
*last* word or two decide: ``DB_PASSWORD``, ``userPassword``, ``user.password``, ``x-api-key``,
``AWS_SECRET_ACCESS_KEY``, ``password%5Fhash``... are read as ``[db, password]``, ``[user, password]``,
``[x, api, key]``, ``[aws, secret, access, key]``, ``[password, hash]``. A secret word must end the
name, so ``password_policy``, ``token_type``, ``max_tokens``, ``api_key_id`` or ``cache_key`` are not
secrets. Whole-key spellings (``session.id``, ``sessionid``, ``accesstoken``) are matched too.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

_CAMEL_1 = re.compile(r"([A-Z]+)([A-Z][a-z])")
_CAMEL_2 = re.compile(r"([a-z0-9])([A-Z])")
_SPLIT = re.compile(r"[^a-z0-9]+")
_DIGITS = re.compile(r"([a-z])([0-9])")  # password2 -> password 2

# last word -> kind
LAST_WORD: dict[str, str] = {
    **dict.fromkeys(["password", "passwd", "pwd", "pass", "passphrase", "passcode", "pswd", "contrasena", "passwort",
                     "motdepasse"], "password"),
    **dict.fromkeys(["secret", "clientsecret", "secretkey", "privatekey", "credential", "credentials", "creds",
                     "apisecret", "appsecret"], "secret"),
    **dict.fromkeys(["token", "accesstoken", "refreshtoken", "idtoken", "authtoken", "bearertoken", "csrftoken",
                     "xsrftoken", "otp", "totp", "hotp", "jwt", "tokens", "csrf", "xsrf", "csrfmiddlewaretoken",
                     "samlresponse"], "token"),
    **dict.fromkeys(["passwords", "pin", "pincode"], "password"),
    "secrets": "secret",
    **dict.fromkeys(["ssn", "iban"], "pii"),
    **dict.fromkeys(["apikey", "apitoken", "subscriptionkey", "accesskey", "secretaccesskey"], "api_key"),
    **dict.fromkeys(["authorization", "auth"], "authorization"),
    **dict.fromkeys(["cookie", "cookies"], "cookie"),
    **dict.fromkeys(["signature", "sig", "hmac"], "signature"),  # presigned URLs (X-Amz-Signature, SAS sig=)
    **dict.fromkeys(["dsn", "connstr", "connectionstring"], "connection_string"),
    **dict.fromkeys(["cardnumber", "pan", "cvv", "cvc", "cvv2", "ccnumber", "creditcard"], "card"),
    **dict.fromkeys(["sessionid", "jsessionid", "phpsessid", "aspsessionid", "sid", "sessiontoken", "sessionkey",
                     "session"], "session"),
}
# last two words -> kind (checked before the last word)
LAST_TWO: dict[tuple[str, str], str] = {
    **dict.fromkeys([("api", "key"), ("api", "token"), ("access", "key"), ("subscription", "key"),
                     ("app", "key"), ("license", "key"), ("master", "key"), ("account", "key"), ("auth", "key"),
                     ("client", "key"), ("service", "key"), ("db", "key"), ("database", "key"), ("admin", "key"),
                     ("write", "key"), ("ingest", "key"), ("insert", "key"), ("sas", "token"), ("consumer", "key"),
                     ("api", "keys")], "api_key"),
    **dict.fromkeys([("secret", "key"), ("private", "key"), ("signing", "key"), ("encryption", "key"),
                     ("shared", "key"), ("hmac", "key"), ("priv", "key"), ("client", "secret"),
                     ("webhook", "secret"), ("key", "secret"), ("shared", "secret"), ("key", "pass"),
                     ("key", "password")], "secret"),
    **dict.fromkeys([("password", "hash"), ("password", "digest"), ("pass", "hash"), ("pwd", "hash")], "password"),
    **dict.fromkeys([("session", "id"), ("session", "key"), ("session", "token"), ("session", "cookie"),
                     ("connect", "sid"), ("gitlab", "session")], "session"),
    ("session", "secret"): "secret",  # a signing secret is removed, not hashed
    **dict.fromkeys([("card", "number"), ("credit", "card"), ("cc", "number"), ("card", "cvv"), ("card", "cvc"),
                     ("security", "code"), ("card", "pan")], "card"),
    **dict.fromkeys([("connection", "string"), ("database", "url"), ("db", "url"), ("conn", "str"),
                     ("redis", "url"), ("mongo", "uri"), ("mongodb", "uri"), ("amqp", "url"), ("broker", "url")],
                    "connection_string"),
    **dict.fromkeys([("mfa", "code"), ("otp", "code"), ("verification", "code"), ("totp", "code"),
                     ("recovery", "code"), ("code", "verifier"), ("client", "assertion"), ("oauth", "verifier"),
                     ("saml", "response"), ("pin", "code")], "token"),
    **dict.fromkeys([("security", "number"), ("social", "security")], "pii"),
    **dict.fromkeys([("set", "cookie")], "cookie"),
}
# words that make a whole name secret unless it ends in a word *about* the secret:
# password_confirmation, password2, secret_value, my_password_secure are secrets ...
STRONG_WORDS = frozenset({"password", "passwd", "passphrase", "pwd", "pswd", "secret", "passwort", "contrasena",
                          "motdepasse"})
# ... but password_policy, password_changed_at, secret_name, secret_arn are about one
METADATA_WORDS = frozenset({
    "at", "policy", "policies", "length", "len", "changed", "change", "reset", "expiry", "expires", "expired",
    "expiration", "hint", "strength", "min", "max", "count", "type", "name", "names", "id", "ids", "required",
    "enabled", "disabled", "rule", "rules", "format", "history", "age", "updated", "created", "valid", "invalid",
    "status", "state", "version", "versions", "manager", "store", "ref", "path", "file", "arn", "label", "mode",
    "provider", "backend", "rotation", "rotated", "last", "set", "is", "has", "ok", "error", "errors", "field",
    "fields", "prompt", "placeholder", "page", "form", "link", "flow", "strategy", "algorithm", "algo", "scheme",
    "iterations", "rounds", "complexity", "requirements", "score", "entropy", "masked", "redacted", "present",
    "missing", "provided", "exists", "schema", "scope", "scopes", "key", "keys", "list", "kind", "source",
    "location", "region", "namespace", "mount", "engine", "ttl", "lease", "url", "uri", "endpoint", "date", "time",
    "timestamp", "ts", "days", "attempts", "retries", "failures", "failed", "success", "match", "matches",
    "mismatch", "reuse", "sharing", "santa", "stdin",
})

# names that end in a secret word but are not secrets (pagination cursors, metadata about tokens)
NOT_SECRET: frozenset[tuple[str, ...]] = frozenset(
    {("page", "token"), ("next", "page", "token"), ("next", "token"), ("continuation", "token"),
     ("pagination", "token"), ("sync", "token"), ("resume", "token"), ("cancellation", "token"),
     ("pass",), ("session",), ("tokens",),  # bare "tokens": a tokenizer's output or a count; auth.tokens are
     # LLM usage counters and limits: numbers of tokens, not tokens
     *((w, "tokens") for w in ("max", "prompt", "completion", "input", "output", "total", "cached", "reasoning",
                               "num", "new", "remaining", "used", "estimated", "limit", "context", "cache")),
     ("cert", "pin"), ("ssl", "pin"), ("tls", "pin"), ("key", "pin"), ("version", "pin")}
)


# A name that ends in a bare "key" (ACME_KEY, {"acme": {"key": …}}) holds a credential as often as
# an identifier: its value is judged by its look (redact.py: a random-looking token goes, a cache
# key "user:42:profile", a UUID or an object path stays). These first words make it an identifier.
KEY_BY_VALUE = "key"
CODE_BY_VALUE = "code"  # an OAuth authorization code (callback?code=…&state=…), judged the same way
BY_VALUE = frozenset({KEY_BY_VALUE, CODE_BY_VALUE})
NOT_CREDENTIAL_CODE = frozenset({
    "error", "status", "zip", "postal", "post", "country", "currency", "language", "lang", "region", "area", "exit",
    "return", "reason", "response", "result", "http", "source", "qr", "bar", "barcode", "product", "item", "sku",
    "iata", "icao", "airport", "color", "colour", "state", "city", "locale", "dial", "phone", "calling", "tax",
    "vat", "hs", "naics", "sic", "swift", "bic", "bank", "sort", "branch", "routing", "event", "message", "type",
    "category", "class", "unit", "unicode", "char", "key", "short", "fault", "failure", "op", "opcode", "machine",
    "byte", "exception", "code",
})
NOT_CREDENTIAL_KEY = frozenset({
    "cache", "idempotency", "partition", "sort", "primary", "foreign", "routing", "object", "dedup", "dedupe",
    "deduplication", "lookup", "row", "hash", "map", "s3", "bucket", "public", "pub", "index", "shard", "group",
    "message", "event", "request", "job", "task", "queue", "trace", "correlation", "etag", "storage", "blob", "file",
    "sequence", "composite", "unique", "natural", "surrogate", "entity", "host", "ssh", "gpg", "pgp", "translation",
    "i18n", "locale", "cursor", "page", "range", "hotkey", "shortcut", "keyboard", "music", "lock", "memo", "dict",
    "registry", "config", "setting", "settings", "feature", "flag", "metric", "label", "tag", "attribute", "field",
    "column", "table", "property", "name", "item", "record", "document", "doc", "resource", "asset", "upload",
    "media", "image", "cert", "certificate", "fingerprint", "kid", "sharding", "consistency", "distribution",
})


def key_words(key: str) -> tuple[str, ...]:
    """``key`` as lower-case words: URL-decoded, accents folded, camelCase/kebab/snake/dotted split."""
    if "%" in key:
        key = unquote(key)
    if not key.isascii():
        key = unicodedata.normalize("NFKD", key).encode("ascii", "ignore").decode("ascii")
    key = _CAMEL_2.sub(r"\1_\2", _CAMEL_1.sub(r"\1_\2", key))
    return tuple(w for w in _SPLIT.split(_DIGITS.sub(r"\1_\2", key.lower())) if w)


def key_kind(key: str) -> str | None:
    """The kind of secret a value under ``key`` holds, or None."""
    words = key_words(key)
    if not words:
        return None
    if len(words) >= 2:
        tail = words[-3:]
        if tail in NOT_SECRET or words[-2:] in NOT_SECRET:
            return None
        kind = LAST_TWO.get((words[-2], words[-1]))
        if kind is not None:
            return kind
    last = words[-1]
    if len(words) == 1 and words in NOT_SECRET:
        # a bare "pass" is a password (form field), a bare "session" is too ambiguous
        return "password" if last == "pass" else None
    kind = LAST_WORD.get(last)
    if kind == "session" and last == "session":
        return None
    if kind is None and len(words) >= 2:
        kind = LAST_WORD.get(words[-2] + last)  # "access token" spelled apart: "X-Access-Token"
    if kind is None and last not in METADATA_WORDS:
        for word in words[:-1]:
            if word in STRONG_WORDS:
                return LAST_WORD.get(word, "secret")
    if kind is None and last == "key" and (len(words) == 1 or words[-2] not in NOT_CREDENTIAL_KEY):
        return KEY_BY_VALUE
    if kind is None and last == "code" and (len(words) == 1 or words[-2] not in NOT_CREDENTIAL_CODE):
        return CODE_BY_VALUE
    return kind


def normalise_key(key: str) -> str:
    """The words of ``key`` joined by ``_`` (``clientSecret`` -> ``client_secret``)."""
    return "_".join(key_words(key))
