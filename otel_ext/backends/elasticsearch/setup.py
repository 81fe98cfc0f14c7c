"""``otel-ext elasticsearch setup``: per event class, an index template that makes
``logs-<class>-*`` (and the otel-mode ``logs-<class>.otel-*``) data streams, and a retention policy
— data stream lifecycle on Elasticsearch, an ISM policy on OpenSearch. Idempotent: re-running
reports ``unchanged``. Writing works without it (Elasticsearch's built-in ``logs-*-*`` template).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from otel_ext.backends.elasticsearch.backend import ElasticsearchBackend

DEFAULT_RETENTION_DAYS = {"security": 365, "error": 90, "access": 30, "performance": 14, "application": 7}
_ECS_COMPONENTS = ["logs@mappings", "logs@settings", "ecs@mappings"]


def parse_retention(text: str | None) -> dict[str, int]:
    retention = dict(DEFAULT_RETENTION_DAYS)
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip().removesuffix("d")
        if not sep or name not in retention or not value.isdigit() or int(value) <= 0:
            raise ValueError(f"--retention: expected class=<days>d for {sorted(retention)}, got {item!r}")
        retention[name] = int(value)
    return retention


class _Http:
    """JSON requests through the backend's own client (same auth, TLS and timeouts)."""

    def __init__(self, backend: ElasticsearchBackend) -> None:
        self.backend = backend
        self.flavour = backend.config.flavour

    def call(self, method: str, path: str, body: Any = None,
             params: Mapping[str, str] | None = None) -> tuple[int, Any]:
        client = self.backend._client
        if self.flavour == "elasticsearch":
            import elasticsearch as es

            headers = {"accept": "application/vnd.elasticsearch+json; compatible-with=8"}
            if body is not None:
                headers["content-type"] = "application/vnd.elasticsearch+json; compatible-with=8"
            try:
                resp = client.perform_request(method, path, body=body, headers=headers, params=params)
                return 200, resp.body
            except es.ApiError as exc:
                return int(exc.meta.status), exc.body
        import opensearchpy as osp

        try:
            return 200, client.transport.perform_request(method, path, body=body, params=params)
        except osp.TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else 500
            return status, exc.info


def _reason(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("reason") or body["error"].get("type"))[:300]
    return json.dumps(body)[:300] if not isinstance(body, str) else body[:300]


def setup(backend: ElasticsearchBackend, retention: Mapping[str, int]) -> tuple[list[str], bool]:
    """Apply templates and retention; returns (report lines, everything applied)."""
    http = _Http(backend)
    lines: list[str] = []
    ok = True
    ism_missing = False
    for event_class, days in retention.items():
        name = f"otel-ext-logs-{event_class}"
        patterns = [f"logs-{event_class}-*", f"logs-{event_class}.otel-*"]
        template: dict[str, Any] = {"index_patterns": patterns, "data_stream": {}, "priority": 250,
                                    "_meta": {"managed_by": "otel-ext", "retention_days": days}}
        if http.flavour == "elasticsearch":
            template["template"] = {"lifecycle": {"data_retention": f"{days}d"}}
            template["composed_of"] = _ECS_COMPONENTS
            template["ignore_missing_component_templates"] = _ECS_COMPONENTS
        status, current = http.call("GET", f"/_index_template/{name}")
        existing = None
        if status == 200 and isinstance(current, dict) and current.get("index_templates"):
            existing = current["index_templates"][0]["index_template"]
        if existing is not None and existing.get("_meta") == template["_meta"] and \
                existing.get("index_patterns") == patterns:
            lines.append(f"index template {name}: unchanged ({', '.join(patterns)})")
        else:
            status, body = http.call("PUT", f"/_index_template/{name}", template)
            if status == 200:
                verb = "updated" if existing is not None else "created"
                lines.append(f"index template {name}: {verb} ({', '.join(patterns)} as data streams)")
            else:
                ok = False
                lines.append(f"index template {name}: FAILED HTTP {status}: {_reason(body)}")
                continue
        if http.flavour == "elasticsearch":
            lines.append(f"retention {event_class}: {days}d (data stream lifecycle in {name})")
            continue
        if ism_missing:
            continue
        policy_id = f"otel-ext-logs-{event_class}"
        policy = {"policy": {
            # compared on re-runs (ISM echoes actions with defaults added, the description verbatim)
            "description": f"otel-ext policy v2: roll over daily, delete {event_class} logs after {days} days",
            "default_state": "hot",
            "states": [
                # a data stream's write index cannot be deleted: roll it over daily (or at 50 GB a
                # shard), then each backing index ages out on its own
                {"name": "hot", "actions": [{"rollover": {"min_index_age": "1d", "min_primary_shard_size": "50gb"}}],
                 "transitions": [{"state_name": "delete", "conditions": {"min_index_age": f"{days}d"}}]},
                {"name": "delete", "actions": [{"delete": {}}], "transitions": []},
            ],
            # ISM matches a backing index by its data stream's name (ManagedIndexCoordinator
            # findIndexLookupName), so the patterns are the data streams', not ".ds-…"
            "ism_template": [{"index_patterns": patterns, "priority": 100}],
        }}
        status, current = http.call("GET", f"/_plugins/_ism/policies/{policy_id}")
        if status in (400, 405) or (status == 404 and "no handler" in _reason(current).lower()):
            ism_missing = True
            ok = False
            lines.append("retention: NOT APPLIED — this OpenSearch has no Index State Management plugin "
                         "(opensearch-index-management); templates were installed")
            continue
        params = None
        if status == 200 and isinstance(current, dict):
            description = current.get("policy", {}).get("description")
            templates = current.get("policy", {}).get("ism_template") or []
            if isinstance(templates, dict):
                templates = [templates]
            current_patterns = [t.get("index_patterns") for t in templates if isinstance(t, dict)]
            if description == policy["policy"]["description"] and current_patterns == [patterns]:
                lines.append(f"retention {event_class}: {days}d unchanged (ISM policy {policy_id})")
                continue
            params = {"if_seq_no": str(current["_seq_no"]), "if_primary_term": str(current["_primary_term"])}
        status, body = http.call("PUT", f"/_plugins/_ism/policies/{policy_id}", policy, params)
        if status == 200:
            lines.append(f"retention {event_class}: {days}d (ISM policy {policy_id})")
        else:
            ok = False
            lines.append(f"retention {event_class}: FAILED HTTP {status}: {_reason(body)}")
    return lines, ok
