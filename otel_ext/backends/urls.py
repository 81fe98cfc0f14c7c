"""Backend URLs (``OTEL_EXT_BACKENDS``) -> backend objects.

``otlp+grpc://host:4317`` (plaintext), ``otlp+grpcs://host:4317`` (TLS), ``otlp+http://host:4318``
(path defaults to ``/v1/logs``), ``otlp+https://…``, ``file:///dir``; Elasticsearch/OpenSearch URLs
are recognised but arrive with their backend. Query parameters: ``timeout`` (seconds, or ``500ms``),
``compression=gzip``, ``ca_file``, ``cert_file``, ``key_file``, ``name``, ``max_bytes`` (file).

Credentials never go in URLs (they would end up in process listings and logs): headers come from
``OTEL_EXPORTER_OTLP_LOGS_HEADERS`` / ``OTEL_EXPORTER_OTLP_HEADERS``; TLS files and compression
defaults from the other ``OTEL_EXPORTER_OTLP_*`` variables.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from otel_ext.backends.base import Backend
from otel_ext.backends.file import FileBackend, FileConfig
from otel_ext.backends.otlp_grpc import OTLPGrpcBackend, OTLPGrpcConfig
from otel_ext.backends.otlp_http import OTLPHttpBackend, OTLPHttpConfig

SCHEMES = ("otlp+grpc", "otlp+grpcs", "otlp+http", "otlp+https", "file",
           "elasticsearch+http", "elasticsearch+https", "opensearch+http", "opensearch+https")
_QUERY_KEYS = {"timeout", "compression", "ca_file", "cert_file", "key_file", "name", "max_bytes", "max_files", "fsync",
               "mapping", "namespace", "routing", "max_docs"}


class BackendConfigError(ValueError):
    """A backend URL or its settings are wrong; the message names the variable and the problem."""


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


def _env(env: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = env.get(name)
        if value:
            return value
    return None


def backend_from_url(url: str, env: Mapping[str, str] | None = None, source: str = "OTEL_EXT_BACKENDS",
                     default_timeout: float = 2.0) -> Backend:
    env = os.environ if env is None else env
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise BackendConfigError(f"{source}: unsupported backend {url!r} (schemes: {', '.join(SCHEMES)})")
    if parts.username or parts.password:
        raise BackendConfigError(
            f"{source}: credentials in a backend URL are not allowed; use OTEL_EXPORTER_OTLP_HEADERS or the "
            "backend's credential variables"
        )
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = set(query) - _QUERY_KEYS
    if unknown:
        raise BackendConfigError(f"{source}: {scheme} backend: unknown parameter(s) {sorted(unknown)}")
    timeout = _timeout(query["timeout"], source) if "timeout" in query else default_timeout
    name = query.get("name", "")
    if scheme == "file":
        directory = unquote(parts.path) if not parts.netloc else None
        if not directory:
            raise BackendConfigError(f"{source}: file backend needs an absolute path: file:///var/lib/app/logs")
        try:
            max_bytes = int(query.get("max_bytes", 64 * 1024 * 1024))
            max_files = int(query.get("max_files", 0))
        except ValueError:
            raise BackendConfigError(f"{source}: file backend max_bytes/max_files must be integers") from None
        return FileBackend(FileConfig(directory, max_bytes=max_bytes, max_files=max_files,
                                      fsync=query.get("fsync", "") in ("1", "true"), name=name))
    if scheme.startswith(("elasticsearch", "opensearch")):
        return _search_backend(scheme, parts, query, env, source, timeout, name)
    if not parts.hostname or parts.port is None:
        raise BackendConfigError(f"{source}: {url!r} needs host:port (e.g. {scheme}://collector:4317)")
    compression = query.get("compression") or _env(env, "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION",
                                                    "OTEL_EXPORTER_OTLP_COMPRESSION")
    if compression in ("none", ""):
        compression = None
    if compression not in (None, "gzip"):
        raise BackendConfigError(f"{source}: compression must be gzip or none, got {compression!r}")
    headers = parse_headers(_env(env, "OTEL_EXPORTER_OTLP_LOGS_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"))
    ca_file = query.get("ca_file") or _env(env, "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE")
    cert_file = query.get("cert_file") or _env(env, "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE",
                                               "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE")
    key_file = query.get("key_file") or _env(env, "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY")
    for label, path in (("ca_file", ca_file), ("cert_file", cert_file), ("key_file", key_file)):
        if path and not os.access(path, os.R_OK):
            raise BackendConfigError(f"{source}: {label} {path!r} is not readable")
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if scheme in ("otlp+grpc", "otlp+grpcs"):
        return OTLPGrpcBackend(OTLPGrpcConfig(
            endpoint=f"{host}:{parts.port}", insecure=scheme == "otlp+grpc", headers=headers,
            compression=compression, timeout=timeout, ca_file=ca_file, client_cert_file=cert_file,
            client_key_file=key_file, name=name or f"{scheme}://{host}:{parts.port}"))
    http_scheme = "https" if scheme == "otlp+https" else "http"
    path = parts.path if parts.path not in ("", "/") else "/v1/logs"
    return OTLPHttpBackend(OTLPHttpConfig(
        url=f"{http_scheme}://{host}:{parts.port}{path}", headers=headers, compression=compression,
        timeout=timeout, ca_file=ca_file, client_cert_file=cert_file, client_key_file=key_file,
        name=name or f"{scheme}://{host}:{parts.port}{path}"))


def _search_backend(scheme: str, parts: Any, query: dict[str, str], env: Mapping[str, str], source: str,
                    timeout: float, name: str) -> Backend:
    """Elasticsearch / OpenSearch. Credentials only from env: OTEL_EXT_ES_API_KEY, or
    OTEL_EXT_ES_USERNAME + OTEL_EXT_ES_PASSWORD; Elastic Cloud: OTEL_EXT_ES_CLOUD_ID."""
    from otel_ext.backends.elasticsearch import ElasticsearchBackend, ElasticsearchConfig

    flavour, _, transport = scheme.partition("+")
    cloud_id = env.get("OTEL_EXT_ES_CLOUD_ID") or None
    if not parts.hostname and not cloud_id:
        raise BackendConfigError(f"{source}: {scheme} backend needs host:port (or OTEL_EXT_ES_CLOUD_ID)")
    username, password = env.get("OTEL_EXT_ES_USERNAME"), env.get("OTEL_EXT_ES_PASSWORD")
    if username and not password:
        raise BackendConfigError("OTEL_EXT_ES_PASSWORD: missing (OTEL_EXT_ES_USERNAME is set)")
    if cloud_id and not (env.get("OTEL_EXT_ES_API_KEY") or username):
        raise BackendConfigError("OTEL_EXT_ES_CLOUD_ID is set but no credentials: set OTEL_EXT_ES_API_KEY")
    ca_file = query.get("ca_file")
    if ca_file and not os.access(ca_file, os.R_OK):
        raise BackendConfigError(f"{source}: ca_file {ca_file!r} is not readable")
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    url = f"{transport}://{host}:{parts.port or 9200}" if host else ""
    compression = query.get("compression", "")
    if compression not in ("", "none", "gzip"):
        raise BackendConfigError(f"{source}: compression must be gzip or none, got {compression!r}")
    routing = query.get("routing", "class")
    if routing not in ("class", "generic"):
        raise BackendConfigError(f"{source}: routing must be class or generic, got {routing!r}")
    try:
        config = ElasticsearchConfig(
            url=url, flavour=flavour, mapping=query.get("mapping", "ecs"), namespace=query.get("namespace", "default"),
            route_by_class=routing == "class", api_key=env.get("OTEL_EXT_ES_API_KEY") or None, username=username,
            password=password, cloud_id=cloud_id, ca_file=ca_file, timeout=timeout,
            compress=True if compression == "gzip" else False if compression == "none" else None,
            max_docs=int(query.get("max_docs", 2000)), max_bytes=int(query.get("max_bytes", 5 * 1024 * 1024)),
            name=name or f"{scheme}://{host}:{parts.port or 9200}")
    except ValueError as exc:
        raise BackendConfigError(f"{source}: {scheme} backend: {exc}") from None
    if flavour == "opensearch":
        try:
            import opensearchpy  # noqa: F401
        except ImportError:
            raise BackendConfigError(f"{source}: opensearch backends need opensearch-py: "
                                     "pip install 'otel-ext[opensearch]'") from None
    return ElasticsearchBackend(config)
