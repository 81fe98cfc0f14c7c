"""Elasticsearch / OpenSearch backend: ``elasticsearch+http(s)://host:9200``, ``opensearch+http(s)://…``.

backend.py (bulk delivery), mapping.py (documents, routing), render.py (bulk NDJSON straight from the
OTLP protobuf), setup.py (templates + retention). This module only declares the plug-in; the client
libraries are imported when a backend is built.

Credentials only from the environment: ``OTEL_EXT_ES_API_KEY``, or ``OTEL_EXT_ES_USERNAME`` +
``OTEL_EXT_ES_PASSWORD``; Elastic Cloud: ``OTEL_EXT_ES_CLOUD_ID``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from otel_ext.backends.urls import BackendConfigError, BackendPlugin, BackendURL

if TYPE_CHECKING:
    from otel_ext.backends.elasticsearch.backend import ElasticsearchBackend, ElasticsearchConfig

__all__ = ["PLUGIN", "ElasticsearchBackend", "ElasticsearchConfig", "from_url"]


def from_url(u: BackendURL) -> ElasticsearchBackend:
    from otel_ext.backends.elasticsearch.backend import ElasticsearchBackend, ElasticsearchConfig

    query, parts, source = u.query, u.parts, u.source
    flavour, _, transport = u.scheme.partition("+")
    cloud_id = u.setting("OTEL_EXT_ES_CLOUD_ID")
    if not parts.hostname and not cloud_id:
        raise BackendConfigError(f"{source}: {u.scheme} backend needs host:port (or OTEL_EXT_ES_CLOUD_ID)")
    username, password = u.setting("OTEL_EXT_ES_USERNAME"), u.setting("OTEL_EXT_ES_PASSWORD")
    if username and not password:
        raise BackendConfigError("OTEL_EXT_ES_PASSWORD: missing (OTEL_EXT_ES_USERNAME is set)")
    if cloud_id and not (u.setting("OTEL_EXT_ES_API_KEY") or username):
        raise BackendConfigError("OTEL_EXT_ES_CLOUD_ID is set but no credentials: set OTEL_EXT_ES_API_KEY")
    ca_file = u.readable("ca_file", query.get("ca_file"))
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
            route_by_class=routing == "class", api_key=u.setting("OTEL_EXT_ES_API_KEY"), username=username,
            password=password, cloud_id=cloud_id, ca_file=ca_file, timeout=u.timeout,
            compress=True if compression == "gzip" else False if compression == "none" else None,
            max_docs=int(query.get("max_docs", 2000)), max_bytes=int(query.get("max_bytes", 5 * 1024 * 1024)),
            name=u.name or f"{u.scheme}://{host}:{parts.port or 9200}")
    except ValueError as exc:
        raise BackendConfigError(f"{source}: {u.scheme} backend: {exc}") from None
    if flavour == "opensearch":
        try:
            import opensearchpy  # noqa: F401
        except ImportError:
            raise BackendConfigError(f"{source}: opensearch backends need opensearch-py: "
                                     "pip install 'otel-ext[opensearch]'") from None
    return ElasticsearchBackend(config)


PLUGIN = BackendPlugin(
    "elasticsearch", ("elasticsearch+http", "elasticsearch+https", "opensearch+http", "opensearch+https"),
    frozenset({"mapping", "namespace", "routing", "compression", "ca_file", "max_docs", "max_bytes"}), from_url,
    "bulk API of Elasticsearch 8/9 or OpenSearch 2, per-class data streams")


def __getattr__(name: str) -> Any:  # the backend classes, imported on first use (old import path)
    if name in ("ElasticsearchBackend", "ElasticsearchConfig"):
        from otel_ext.backends.elasticsearch import backend

        return getattr(backend, name)
    raise AttributeError(name)
