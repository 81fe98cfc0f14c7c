"""Report numbers from an Elasticsearch / OpenSearch backend with aggregations (no document is
fetched except the detector alerts): three requests — field capabilities, the time range, and one
``size: 0`` search whose aggregations follow the definitions in :mod:`otel_ext.report.model` —
plus the store size per index and the retention otel-ext's templates record.

Works on both mapping modes of the backend (``ecs``: attributes at the top level; ``otel``: under
``attributes.``) and on text fields with a ``.keyword`` sub-field (dynamic mapping).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Protocol

from otel_ext.report.model import (
    ANONYMOUS,
    DEFAULT_CLIENT_ATTRIBUTE,
    PERCENTILES,
    UNMATCHED,
    Alert,
    ReportData,
    RouteStats,
    pick_interval,
)


class JsonCall(Protocol):
    def call(self, method: str, path: str, body: Any = None,
             params: Mapping[str, str] | None = None) -> tuple[int, Any]: ...


class SearchError(RuntimeError):
    """The search backend refused a report query (the message names the request and the reason)."""


_FIELDS = ("http.response.status_code", "http.request.method", "http.route", "http.server.request.duration",
           "event.kind", "event.action", "labels.event_class", "client.address", "rule.id", "labels.alert_key")


class SearchSource:
    """Aggregates a report from indices matching ``index`` (default ``logs-*``)."""

    def __init__(self, http: JsonCall, describe: str, index: str = "logs-*",
                 client_attribute: str = DEFAULT_CLIENT_ATTRIBUTE,
                 retention_days: Mapping[str, int] | None = None) -> None:
        self.http = http
        self.source = describe
        self.index = index
        self.client_attribute = client_attribute
        self.retention_days = dict(retention_days or {})
        self.fields: dict[str, str | None] = {}
        self.prefix = ""

    def _call(self, method: str, path: str, body: Any = None, params: Mapping[str, str] | None = None) -> Any:
        try:
            status, answer = self.http.call(method, path, body, params)
        except Exception as exc:  # noqa: BLE001 - the one boundary where client errors become SearchError
            raise SearchError(f"{method} {path}: {type(exc).__name__}: {str(exc)[:300]}") from None
        if status != 200:
            reason = answer.get("error", answer) if isinstance(answer, dict) else answer
            raise SearchError(f"{method} {path}: HTTP {status}: {str(reason)[:300]}")
        return answer

    def _resolve_fields(self) -> None:
        names = [self.client_attribute, *_FIELDS]
        wanted = [n for name in names for n in (name, f"{name}.keyword", f"attributes.{name}",
                                                   f"attributes.{name}.keyword")]
        caps = self._call("GET", f"/{self.index}/_field_caps", params={"fields": ",".join(wanted),
                                                                        "ignore_unavailable": "true",
                                                                        "allow_no_indices": "true"})
        fields = caps.get("fields", {}) if isinstance(caps, dict) else {}
        self.prefix = "attributes." if any(k.startswith("attributes.") for k in fields) else ""

        def aggregatable(name: str) -> str | None:
            for candidate in (f"{self.prefix}{name}", f"{self.prefix}{name}.keyword"):
                info = fields.get(candidate, {})
                if any(v.get("aggregatable") for v in info.values() if isinstance(v, dict)):
                    return candidate
            return None

        self.fields = {name: aggregatable(name) for name in names}

    def f(self, name: str) -> str:
        """The aggregatable field for ``name`` (a never-matching name when the data has none)."""
        return self.fields.get(name) or f"{self.prefix}{name}"

    def build(self) -> ReportData:
        self._resolve_fields()
        span = self._call("POST", f"/{self.index}/_search", {
            "size": 0, "track_total_hits": True,
            "aggs": {"first": {"min": {"field": "@timestamp"}}, "last": {"max": {"field": "@timestamp"}}}},
            {"ignore_unavailable": "true", "allow_no_indices": "true"})
        aggs = span.get("aggregations", {})
        start = int(aggs.get("first", {}).get("value") or 0)
        end = int(aggs.get("last", {}).get("value") or 0)
        total = span.get("hits", {}).get("total", {})
        records = int(total.get("value", 0) if isinstance(total, dict) else total or 0)
        interval = pick_interval(max((end - start) / 1000.0, 1.0))
        histogram = {"date_histogram": {"field": "@timestamp", "fixed_interval": f"{interval}s", "min_doc_count": 1}}
        alert = {"term": {self.f("event.kind"): "alert"}}
        access = {"bool": {"filter": [{"exists": {"field": self.f("http.response.status_code")}},
                                      {"exists": {"field": self.f("http.request.method")}}],
                           "must_not": [alert]}}
        errors = {"range": {self.f("http.response.status_code"): {"gte": 500}}}
        client_errors = {"range": {self.f("http.response.status_code"): {"gte": 400, "lt": 500}}}
        body = {"size": 0, "aggs": {
            "access": {"filter": access, "aggs": {
                "clients": {"terms": {"field": self.f(self.client_attribute), "size": 10000, "missing": ANONYMOUS},
                            "aggs": {"routes": {"terms": {"field": self.f("http.route"), "size": 1000,
                                                          "missing": UNMATCHED}},
                                     "time": histogram}},
                "routes": {"terms": {"field": self.f("http.route"), "size": 1000, "missing": UNMATCHED}, "aggs": {
                    "errors": {"filter": errors}, "client_errors": {"filter": client_errors},
                    "latency": {"percentiles": {"field": self.f("http.server.request.duration"),
                                                "percents": list(PERCENTILES),
                                                "tdigest": {"compression": 1000}}}}},
                "time": {**histogram, "aggs": {"errors": {"filter": errors}}}}},
            "alerts": {"filter": alert, "aggs": {"hits": {"top_hits": {
                "size": 100, "sort": [{"@timestamp": {"order": "asc"}}],
                "_source": {"includes": ["@timestamp", "rule.*", "labels.*", "message", "body.*", "attributes.*"]}}}}},
            "security": {"filter": {"bool": {"filter": [{"term": {self.f("labels.event_class"): "security"}}],
                                             "must_not": [alert]}}, "aggs": {
                "actions": {"terms": {"field": self.f("event.action"), "size": 200, "missing": "(none)"}},
                "sources": {"terms": {"field": self.f("client.address"), "size": 200, "missing": "(unknown)"}}}},
            "classes": {"terms": {"field": self.f("labels.event_class"), "size": 50}},
        }}
        result = self._call("POST", f"/{self.index}/_search", body,
                            {"ignore_unavailable": "true", "allow_no_indices": "true"}).get("aggregations", {})
        usage: dict[str, dict[str, int]] = {}
        usage_timeline: dict[str, dict[int, int]] = {}
        for c in result["access"]["clients"]["buckets"]:
            client = str(c["key"])
            usage[client] = {str(r["key"]): int(r["doc_count"]) for r in c["routes"]["buckets"]}
            usage_timeline[client] = {int(b["key"]): int(b["doc_count"]) for b in c["time"]["buckets"]}
        routes: dict[str, RouteStats] = {}
        for r in result["access"]["routes"]["buckets"]:
            values = r["latency"].get("values", {})
            latency = {f"p{p:g}": _percentile_value(values, p) for p in PERCENTILES}
            routes[str(r["key"])] = RouteStats(int(r["doc_count"]), int(r["errors"]["doc_count"]),
                                               int(r["client_errors"]["doc_count"]), latency)
        timeline = {int(b["key"]): (int(b["doc_count"]), int(b["errors"]["doc_count"]))
                    for b in result["access"]["time"]["buckets"]}
        alerts = [self._alert(h.get("_source", {})) for h in result["alerts"]["hits"]["hits"]["hits"]]
        notes = []
        for what, agg in (("clients", result["access"]["clients"]), ("routes", result["access"]["routes"])):
            if agg.get("sum_other_doc_count"):
                notes.append(f"{agg['sum_other_doc_count']} calls of further {what} are not shown (terms limit)")
        security = result["security"]
        classes = {str(b["key"]): int(b["doc_count"]) for b in result["classes"]["buckets"]}
        return ReportData(
            source=self.source, client_attribute=self.client_attribute, start_ms=start, end_ms=end,
            interval_s=interval, usage=usage, usage_timeline=usage_timeline, routes=routes, timeline=timeline,
            alerts=alerts,
            security_actions={str(b["key"]): int(b["doc_count"]) for b in security["actions"]["buckets"]},
            security_sources={str(b["key"]): int(b["doc_count"]) for b in security["sources"]["buckets"]},
            classes=classes, class_bytes=self._store_bytes(), bytes_kind="stored bytes (primary shards)",
            retention_days=self._retention(), records=records, notes=notes,
            alerts_total=int(result["alerts"]["doc_count"]))

    def _alert(self, src: dict[str, Any]) -> Alert:
        def pick(name: str) -> Any:
            node: Any = src.get("attributes", src) if self.prefix else src
            if name in node:
                return node[name]
            for part in name.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            return node

        body = src.get("message") or (src.get("body") or {}).get("text") or ""
        stamp = str(src.get("@timestamp", ""))
        return Alert(_epoch_ms(stamp), str(pick("rule.id") or ""), str(pick("labels.alert_key") or ""), str(body)[:300])

    def _store_bytes(self) -> dict[str, int]:
        try:
            rows = self._call("GET", f"/_cat/indices/{self.index}", params={"format": "json", "bytes": "b",
                                                                             "expand_wildcards": "all"})
        except SearchError:
            return {}
        out: dict[str, int] = {}
        for row in rows if isinstance(rows, list) else []:
            m = re.match(r"^(?:\.ds-)?logs-([a-z_]+)[-.]", str(row.get("index", "")))
            if m:
                out[m.group(1)] = out.get(m.group(1), 0) + int(row.get("pri.store.size") or row.get("store.size") or 0)
        return out

    def _retention(self) -> dict[str, int]:
        days = dict(self.retention_days)
        try:
            found = self._call("GET", "/_index_template/otel-ext-logs-*")
        except SearchError:
            return days
        for item in found.get("index_templates", []) if isinstance(found, dict) else []:
            meta = item.get("index_template", {}).get("_meta", {})
            name = str(item.get("name", "")).removeprefix("otel-ext-logs-")
            if isinstance(meta.get("retention_days"), int) and name not in self.retention_days:
                days[name] = meta["retention_days"]
        return days


def _percentile_value(values: Any, p: float) -> float | None:
    found: Any = None
    if isinstance(values, dict):
        found = next((values[k] for k in (f"{p}", f"{p:g}", f"{p:.1f}") if k in values), None)
    elif isinstance(values, list):  # keyed: false
        found = next((item.get("value") for item in values if float(item.get("key", -1)) == p), None)
    try:
        value = float(found) if found is not None else None
    except (TypeError, ValueError):
        return None
    return value if value is not None and math.isfinite(value) else None


def _epoch_ms(stamp: str) -> int:
    import datetime as dt

    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z?$", stamp)
    if not m:
        return 0
    base = dt.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.timezone.utc)
    frac = (m.group(2) or "0")[:3].ljust(3, "0")
    return int(base.timestamp()) * 1000 + int(frac)


def search_source_from_url(url: str, index: str = "logs-*", client_attribute: str = DEFAULT_CLIENT_ATTRIBUTE,
                           retention_days: Mapping[str, int] | None = None) -> SearchSource:
    """A :class:`SearchSource` over a backend URL (``elasticsearch+https://…``, ``opensearch+http://…``),
    with the backend's own client: same credentials (from env), TLS and timeouts."""
    from otel_ext.backends.elasticsearch import ElasticsearchBackend
    from otel_ext.backends.elasticsearch.setup import _Http
    from otel_ext.backends.urls import backend_from_url

    backend = backend_from_url(url, source="--backend", default_timeout=60.0)
    if not isinstance(backend, ElasticsearchBackend):
        raise ValueError("--backend must be an elasticsearch+http(s):// or opensearch+http(s):// URL")
    return SearchSource(_Http(backend), backend.describe(), index, client_attribute, retention_days)
