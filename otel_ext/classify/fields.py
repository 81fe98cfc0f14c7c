"""The fields rules read, derived once per record from its attributes, severity, scope and body.

OTel HTTP semconv attributes are read first; classic access-log lines (uvicorn, gunicorn,
werkzeug, Django's dev server, hypercorn, aiohttp) are parsed from the message when a record from
an access logger carries no HTTP attributes.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.util.types import AnyValue

from otel_ext.classify.payload import Hit, PayloadInspector

DEFAULT_ACCESS_LOGGERS: tuple[str, ...] = (
    "uvicorn.access",
    "gunicorn.access",
    "werkzeug",
    "django.server",
    "hypercorn.access",
    "aiohttp.access",
)

# `"GET /path?q HTTP/1.1" 200` as written by every common access logger, found anywhere in the
# message (a formatter may prefix it, e.g. `INFO:uvicorn.access:`). The whole message is read: a
# padded request line is no way around parsing (and payload inspection bounds its own work).
# hypercorn's default `%(r)s` writes the protocol without `HTTP/` and the path without its query
# (`"GET /path 1.1"`), so `HTTP/` is optional; its `%(R)s` atom carries the query string too.
REQUEST_LINE_PATTERN = (
    r'"(?P<method>[A-Z]{3,10}) (?P<path>[^\s?]+)(?:\?(?P<query>\S*))? (?:HTTP/)?[0-9.]+"[ \t]+(?P<status>[0-9]{3})\b'
)
_REQUEST_LINE = re.compile(REQUEST_LINE_PATTERN, re.ASCII)
# The client is the address token before the request line, followed by ` - ` (uvicorn
# `1.2.3.4:5678 - "GET`, gunicorn/werkzeug `10.0.0.9 - - [date] "GET`) or by the `[date]` of
# aiohttp's default `%a %t "%r" %s %b "%{Referer}i" "%{User-Agent}i"`.
CLIENT_PATTERN = (
    r"(?:^|[\s:])(?P<client>(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?::[0-9]+)?|\[[0-9A-Fa-f:.]+\](?::[0-9]+)?|"
    r"[0-9A-Fa-f]*:[0-9A-Fa-f:.]+)[ \t]+(?:-[ \t]|\[)"
)
_CLIENT = re.compile(CLIENT_PATTERN, re.ASCII)
# After `"<request>" <status> <size>` the combined format carries `"<referrer>" "<user agent>"`.
AGENT_PATTERN = r'[ \t]+\S+[ \t]+"(?P<referrer>[^"]*)"[ \t]+"(?P<agent>[^"]*)"'
_AGENT = re.compile(AGENT_PATTERN, re.ASCII)
# `client.address` of a uvicorn line carries `:port`; strip it (IPv4 and bracketed IPv6).
_PORT_SUFFIX = re.compile(r"^(\d+\.\d+\.\d+\.\d+):\d+$|^\[([0-9A-Fa-f:.]+)\]:\d+$")

# The old HTTP semconv names the contrib instrumentations still emit by default
# (OTEL_SEMCONV_STABILITY_OPT_IN unset) -> the stable name they stand for. The stable name wins
# when a record carries both; ``http.target`` is split into ``url.path`` and ``url.query``.
LEGACY_HTTP_NAMES: tuple[tuple[str, str], ...] = (
    ("http.method", "http.request.method"),
    ("http.status_code", "http.response.status_code"),
    ("http.user_agent", "user_agent.original"),
    ("http.client_ip", "client.address"),
    ("http.url", "url.full"),
)
# `http.target` (path?query) and the path and query of `url.full` (scheme://authority/path?query#f)
TARGET_PATTERN = r"^(?P<path>[^?#]*)(?:\?(?P<query>[^#]*))?"
_TARGET = re.compile(TARGET_PATTERN, re.ASCII)
FULL_URL_PATTERN = r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*(?P<path>[^?#]*)(?:\?(?P<query>[^#]*))?"
_FULL_URL = re.compile(FULL_URL_PATTERN, re.ASCII)
_DERIVED_FROM = frozenset({old for old, _ in LEGACY_HTTP_NAMES} | {"http.target", "url.full"})


@dataclass(frozen=True)
class FieldSettings:
    """Knobs of field derivation that rule files may set under ``settings:``."""

    slow_request_ms: float = 1000.0
    slow_routes: Mapping[str, float] = field(default_factory=dict)  # route glob -> threshold ms
    access_loggers: tuple[str, ...] = DEFAULT_ACCESS_LOGGERS

    def slow_threshold_ms(self, route: str | None) -> float:
        if route and self.slow_routes:
            for pattern, threshold in self.slow_routes.items():
                if fnmatch.fnmatchcase(route, pattern):
                    return threshold
        return self.slow_request_ms


def parse_access_line(body: str) -> dict[str, AnyValue] | None:
    """Parse method, path, query, status, client, referrer and user agent from a classic
    access-log line, or None. The whole line is read, however long."""
    match = _REQUEST_LINE.search(body)
    if match is None:
        return None
    parsed: dict[str, AnyValue] = {
        "http.request.method": match["method"],
        "url.path": match["path"],
        "http.response.status_code": int(match["status"]),
    }
    if match["query"]:
        parsed["url.query"] = match["query"]
    found = _CLIENT.search(body, 0, match.start())
    if found is not None:
        client = found["client"]
        port = _PORT_SUFFIX.match(client)
        parsed["client.address"] = (port[1] or port[2]) if port else client.strip("[]")
    agent = _AGENT.match(body, match.end())
    if agent is not None:
        if agent["referrer"] not in ("", "-"):
            parsed["http.request.referrer"] = agent["referrer"]
        if agent["agent"] not in ("", "-"):
            parsed["user_agent.original"] = agent["agent"]
    return parsed


def derive_stable_fields(attrs: Mapping[str, AnyValue]) -> dict[str, AnyValue] | None:
    """Stable HTTP semconv fields a record lacks, derived from the old names it carries and from
    ``url.full`` (split into ``url.path`` and ``url.query`` so each is inspected as what it is,
    and the server's own scheme and host are not), or None when there is nothing to derive."""
    get = attrs.get
    out: dict[str, AnyValue] = {}
    for old, new in LEGACY_HTTP_NAMES:
        if get(new) is None:
            value = get(old)
            if value is not None:
                out[new] = value
    if get("url.path") is None:
        target = get("http.target")
        if isinstance(target, str) and target:
            match = _TARGET.match(target)
        else:
            full = get("url.full")
            if full is None:
                full = out.get("url.full")
            match = _FULL_URL.match(full) if isinstance(full, str) and full else None
        if match is not None:
            if match["path"]:
                out["url.path"] = match["path"]
            if match["query"] and get("url.query") is None:
                out["url.query"] = match["query"]
    return out or None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _float(value: Any) -> float | None:
    """A finite float, or None (NaN, infinities, booleans and non-numbers are not durations)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class RecordFields:
    """One record's fields. The low-cardinality fields are computed up front (they form the
    record's :attr:`signature`); the rest lazily on first ``get(name)``. Absent fields are None."""

    __slots__ = ("_attrs", "_body", "_cache", "_settings", "parsed", "signature")

    def __init__(
        self,
        attrs: Mapping[str, AnyValue],
        body: AnyValue,
        severity: int,
        scope: str,
        settings: FieldSettings,
    ) -> None:
        self._attrs = attrs
        self._body = body
        self._settings = settings
        self.parsed: dict[str, AnyValue] | None = None
        get = attrs.get
        status = get("http.response.status_code")
        cache: dict[str, Any] = {"severity": severity, "logger": scope}
        self._cache = cache
        if status is None and scope in settings.access_loggers:
            body_text = self.get("body")
            if body_text:
                self.parsed = parse_access_line(body_text)
                if self.parsed is not None:
                    status = self.parsed["http.response.status_code"]
        if self.parsed is None and not _DERIVED_FROM.isdisjoint(attrs) and (status is None or get("url.path") is None):
            self.parsed = derive_stable_fields(attrs)
            if status is None and self.parsed is not None:
                status = self.parsed.get("http.response.status_code")
        if status is None:
            status = get("status_code")  # django.request passes extra={"status_code": ...}
        if type(status) is not int:
            status = _int(status)
        route = get("http.route") or self.attr("url.path")
        method = self.attr("http.request.method")
        action = get("event.action")
        if isinstance(action, str):
            action = action.split(":", 1)[0].strip().lower() or None
        else:
            action = None
        cache["status"] = status
        cache["route"] = route if isinstance(route, str) else None
        cache["method"] = method if isinstance(method, str) else None
        cache["exception"] = "exception.type" in attrs or "exception.message" in attrs
        cache["event_action"] = action
        slow = None
        if "http.server.request.duration" in attrs or "duration_ms" in attrs:
            slow = self._slow()
        cache["slow"] = slow
        self.signature = (status, cache["method"], cache["route"], slow, scope, severity, cache["exception"], action)

    def attr(self, key: str) -> Any:
        value = self._attrs.get(key)
        if value is None and self.parsed is not None:
            return self.parsed.get(key)
        return value

    def get(self, name: str) -> Any:
        cache = self._cache
        if name in cache:
            return cache[name]
        value = _EXTRACTORS[name](self) if name in _EXTRACTORS else self.attr(name[11:])
        cache[name] = value
        return value

    # --- lazily derived fields ----------------------------------------------------------------

    def _path(self) -> str | None:
        path = self.attr("url.path")
        return path if isinstance(path, str) else None

    def _duration_ms(self) -> float | None:
        seconds = _float(self.attr("http.server.request.duration"))
        if seconds is not None:
            return seconds * 1000.0
        return _float(self.attr("duration_ms"))

    def _slow(self) -> bool | None:
        duration = self.get("duration_ms")
        if duration is None:
            return None
        return bool(duration >= self._settings.slow_threshold_ms(self._cache.get("route")))

    def _body_text(self) -> str | None:
        body = self._body
        if body is None:
            return None
        if isinstance(body, str):
            return body
        if isinstance(body, bytes):
            return body[:4096].decode("utf-8", "replace")
        return None  # structured bodies are matched through attributes, not as text

    def _attack(self) -> str | None:
        hit = _INSPECTOR.inspect_maps(self._attrs, self.parsed)
        self._cache["attack_hit"] = hit
        return hit.family if hit is not None else None

    @property
    def attack_hit(self) -> Hit | None:
        """What payload inspection found (after the ``attack`` field was read), else None."""
        hit = self._cache.get("attack_hit")
        return hit if isinstance(hit, Hit) else None

    def _str_attr(self, key: str) -> str | None:
        value = self.attr(key)
        return value if isinstance(value, str) else None


_EXTRACTORS: dict[str, Callable[[RecordFields], Any]] = {
    "path": RecordFields._path,
    "client": lambda f: f._str_attr("client.address"),
    "user": lambda f: f._str_attr("user.id") or f._str_attr("enduser.id"),
    "user_agent": lambda f: f._str_attr("user_agent.original"),
    "duration_ms": RecordFields._duration_ms,
    "body": RecordFields._body_text,
    "attack": RecordFields._attack,
}
_INSPECTOR = PayloadInspector()
