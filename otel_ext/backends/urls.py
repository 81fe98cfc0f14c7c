"""Backend URLs (``OTEL_EXT_BACKENDS``) -> backend objects, through a plug-in registry.

Each backend module declares a :class:`BackendPlugin`: its URL schemes, its own query keys and a
``from_url()`` that builds the backend from a parsed :class:`BackendURL`. Plug-ins are found through
the entry-point group ``otel_ext.backends`` (entry-point name = URL scheme, value = the plug-in
object), the way the OpenTelemetry SDK finds exporters, so a third-party package adds a backend
without touching this code::

    [project.entry-points."otel_ext.backends"]
    mq = "my_package.mq_backend:PLUGIN"

Only the plug-in of the scheme in use is imported. A query key the scheme does not declare is an
error that names the keys it allows (``otlp+grpc://h:4317?mapping=ecs`` is refused).

Credentials never go in URLs (they would end up in process listings and logs): each backend reads
them from its own environment variables (OTLP headers from ``OTEL_EXPORTER_OTLP_LOGS_HEADERS`` /
``OTEL_EXPORTER_OTLP_HEADERS``, Elasticsearch from ``OTEL_EXT_ES_*``, Kafka from ``OTEL_EXT_KAFKA_*``,
S3 from the AWS SDK's chain).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

if TYPE_CHECKING:
    from otel_ext.backends.base import Backend
from otel_ext.settings import env_value, environ

GROUP = "otel_ext.backends"
# keys every scheme accepts: a backend's name in counters/logs, and its per-attempt timeout
COMMON_KEYS = frozenset({"name", "timeout"})
# our own plug-ins, used when the package metadata (entry points) is not installed, e.g. a source tree
_BUILTIN = {
    "otlp+grpc": "otel_ext.backends.otlp_grpc:PLUGIN",
    "otlp+grpcs": "otel_ext.backends.otlp_grpc:PLUGIN",
    "otlp+http": "otel_ext.backends.otlp_http:PLUGIN",
    "otlp+https": "otel_ext.backends.otlp_http:PLUGIN",
    "file": "otel_ext.backends.file:PLUGIN",
    "elasticsearch+http": "otel_ext.backends.elasticsearch:PLUGIN",
    "elasticsearch+https": "otel_ext.backends.elasticsearch:PLUGIN",
    "opensearch+http": "otel_ext.backends.elasticsearch:PLUGIN",
    "opensearch+https": "otel_ext.backends.elasticsearch:PLUGIN",
    "kafka": "otel_ext.backends.kafka:PLUGIN",
    "kafkas": "otel_ext.backends.kafka:PLUGIN",
    "s3": "otel_ext.backends.s3:PLUGIN",
}
_log = logging.getLogger(__name__)


class BackendConfigError(ValueError):
    """A backend URL or its settings are wrong; the message names the variable and the problem."""


@dataclass(frozen=True)
class BackendURL:
    """One parsed backend URL, handed to a plug-in's ``from_url()``."""

    url: str
    scheme: str
    parts: SplitResult
    query: dict[str, str]
    env: Mapping[str, str]
    source: str = "OTEL_EXT_BACKENDS"
    default_timeout: float = 2.0

    def setting(self, name: str) -> Any:
        """The declared variable ``name`` (:mod:`otel_ext.settings`) as this URL's environment has it."""
        return env_value(name, self.env)

    def error(self, problem: str) -> BackendConfigError:
        return BackendConfigError(f"{self.source}: {self.scheme} backend: {problem}")

    @property
    def timeout(self) -> float:
        return _timeout(self.query["timeout"], self.source) if "timeout" in self.query else self.default_timeout

    @property
    def name(self) -> str:
        return self.query.get("name", "")

    def host_port(self, default_port: int | None = None, example: str = "host:port") -> tuple[str, int]:
        """``(host, port)``, IPv6 hosts bracketed; an error naming the expected form otherwise."""
        try:
            port = self.parts.port
        except ValueError:
            port = None
        port = port if port is not None else default_port
        if not self.parts.hostname or port is None:
            raise BackendConfigError(f"{self.source}: {self.url!r} needs host:port (e.g. {self.scheme}://{example})")
        host = self.parts.hostname
        return (f"[{host}]" if ":" in host else host), port

    def integer(self, key: str, default: int, minimum: int = 1) -> int:
        try:
            value = int(self.query.get(key, default))
        except ValueError:
            raise self.error(f"{key} must be an integer, got {self.query[key]!r}") from None
        if value < minimum:
            raise self.error(f"{key} must be at least {minimum}")
        return value

    def readable(self, key: str, path: str | None) -> str | None:
        if path and not os.access(path, os.R_OK):
            raise BackendConfigError(f"{self.source}: {key} {path!r} is not readable")
        return path or None


@dataclass(frozen=True)
class BackendPlugin:
    """What a backend module declares to the registry."""

    name: str
    schemes: tuple[str, ...]
    query_keys: frozenset[str]
    from_url: Callable[[BackendURL], Backend]
    description: str = ""


def _registered() -> dict[str, str]:
    """scheme -> "module:attribute" of its plug-in: our built-ins, then installed entry points."""
    table = dict(_BUILTIN)
    try:
        found = list(entry_points(group=GROUP))
    except Exception:  # noqa: BLE001 - broken metadata of some other distribution: keep the built-ins
        found = []
    for ep in found:
        scheme = ep.name.lower()
        if scheme in _BUILTIN and ep.value != _BUILTIN[scheme]:
            _log.warning("otel-ext: entry point %s=%s ignored: scheme %s is built in", ep.name, ep.value, scheme)
            continue
        table[scheme] = ep.value
    return table


def schemes() -> tuple[str, ...]:
    """Every registered URL scheme (without importing any backend)."""
    return tuple(_registered())


def load_plugin(scheme: str, source: str = "OTEL_EXT_BACKENDS") -> BackendPlugin:
    table = _registered()
    target = table.get(scheme)
    if target is None:
        raise BackendConfigError(f"{source}: unsupported backend scheme {scheme!r} (registered: {', '.join(table)})")
    module_name, _, attribute = target.partition(":")
    try:
        import importlib

        module = importlib.import_module(module_name)
        plugin = getattr(module, attribute or "PLUGIN")
    except Exception as exc:  # noqa: BLE001 - a plug-in that cannot load is a configuration error
        raise BackendConfigError(f"{source}: backend plug-in {target} for {scheme}:// cannot be loaded: "
                                 f"{type(exc).__name__}: {exc}") from None
    if not isinstance(plugin, BackendPlugin) or scheme not in plugin.schemes:
        raise BackendConfigError(f"{source}: {target} is not a BackendPlugin declaring the {scheme} scheme")
    return plugin


def parse_backend_url(url: str, env: Mapping[str, str] | None = None, source: str = "OTEL_EXT_BACKENDS",
                      default_timeout: float = 2.0) -> tuple[BackendPlugin, BackendURL]:
    env = environ() if env is None else env
    try:
        parts = urlsplit(url.strip())
        if "," not in parts.netloc:  # one host (kafka:// lists brokers: its plug-in checks each one)
            parts.port  # noqa: B018 - urlsplit checks ports lazily: a bad one raises here, not in a plug-in
    except ValueError as exc:  # "Invalid IPv6 URL", "Port out of range 0-65535", …
        shown = re.sub(r"//[^/@]*@", "//***@", url.strip())  # never echo credentials, even refused ones
        raise BackendConfigError(f"{source}: {shown!r} is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise BackendConfigError(f"{source}: {url!r} is not a backend URL (scheme://…; schemes: "
                                 f"{', '.join(schemes())})")
    plugin = load_plugin(scheme, source)
    if "@" in parts.netloc:
        raise BackendConfigError(
            f"{source}: credentials in a backend URL are not allowed; use OTEL_EXPORTER_OTLP_HEADERS or the "
            "backend's credential variables"
        )
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    allowed = plugin.query_keys | COMMON_KEYS
    unknown = set(query) - allowed
    if unknown:
        raise BackendConfigError(f"{source}: {scheme} backend: unknown parameter(s) {', '.join(sorted(unknown))} "
                                 f"(allowed: {', '.join(sorted(allowed))})")
    return plugin, BackendURL(url.strip(), scheme, parts, query, env, source, default_timeout)


def backend_from_url(url: str, env: Mapping[str, str] | None = None, source: str = "OTEL_EXT_BACKENDS",
                     default_timeout: float = 2.0, plugins: Iterable[str] | None = None) -> Backend:
    """Build the backend ``url`` names. ``plugins`` restricts which plug-ins (by name) are accepted,
    e.g. ``("elasticsearch",)`` for a command that only makes sense there."""
    plugin, parsed = parse_backend_url(url, env, source, default_timeout)
    if plugins is not None and plugin.name not in set(plugins):
        raise BackendConfigError(f"{source}: {parsed.scheme}:// is a {plugin.name} backend; expected "
                                 f"{' or '.join(plugins)}")
    return plugin.from_url(parsed)


def parse_headers(text: str | None) -> dict[str, str]:
    """``k1=v1,k2=v2`` with URL-encoded values (the OTEL_EXPORTER_OTLP_HEADERS format)."""
    headers: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BackendConfigError("OTEL_EXPORTER_OTLP_HEADERS: expected key=value pairs separated by commas")
        headers[unquote(key.strip())] = unquote(value.strip())
    return headers


def _timeout(value: str, source: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*", value)
    if not match:
        raise BackendConfigError(f"{source}: timeout {value!r} is not a duration (e.g. 2, 1.5s, 500ms)")
    seconds = float(match[1]) / (1000.0 if match[2] == "ms" else 1.0)
    if seconds <= 0:
        raise BackendConfigError(f"{source}: timeout must be positive")
    return seconds


def env_first(env: Mapping[str, str], *names: str) -> str | None:
    """The first of ``names`` (declared in :mod:`otel_ext.settings`) that is set in ``env``."""
    for name in names:
        value: str | None = env_value(name, env)
        if value:
            return value
    return None


@dataclass(frozen=True)
class OTLPOptions:
    """Settings both OTLP transports read from the URL and the ``OTEL_EXPORTER_OTLP_*`` variables."""

    compression: str | None
    headers: dict[str, str]
    ca_file: str | None
    cert_file: str | None
    key_file: str | None


OTLP_QUERY_KEYS = frozenset({"compression", "ca_file", "cert_file", "key_file"})


def otlp_options(u: BackendURL) -> OTLPOptions:
    env, query = u.env, u.query
    compression = query.get("compression") or env_first(env, "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION",
                                                         "OTEL_EXPORTER_OTLP_COMPRESSION")
    if compression in ("none", ""):
        compression = None
    if compression not in (None, "gzip"):
        raise BackendConfigError(f"{u.source}: compression must be gzip or none, got {compression!r}")
    headers = parse_headers(env_first(env, "OTEL_EXPORTER_OTLP_LOGS_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"))
    ca_file = query.get("ca_file") or env_first(env, "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE",
                                                "OTEL_EXPORTER_OTLP_CERTIFICATE")
    cert_file = query.get("cert_file") or env_first(env, "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE",
                                                    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE")
    key_file = query.get("key_file") or env_first(env, "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY",
                                                  "OTEL_EXPORTER_OTLP_CLIENT_KEY")
    return OTLPOptions(compression, headers, u.readable("ca_file", ca_file), u.readable("cert_file", cert_file),
                       u.readable("key_file", key_file))
