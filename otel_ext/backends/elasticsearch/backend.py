"""Elasticsearch / OpenSearch backend: bulk ``create`` with ``_id`` = ``log.record.uid`` so a replay
never duplicates (409 on create = already delivered), per-item outcomes, and request-level failures
mapped to the sender's outcome classes so failover works across ES and OTLP.

- ``elasticsearch+http(s)://`` uses the official ``elasticsearch`` client (8.x/9.x);
  ``opensearch+http(s)://`` uses ``opensearch-py``. Both share the mapper and the bulk handling.
- Requests are bounded by documents and bytes; 413 splits the request and retries the halves.
- Items answered 429 or 5xx are retried alone (with backoff, a few times); if they still fail the
  whole entry is retried later (idempotent). Items answered 401/403 (a missing privilege) make the
  entry an auth failure: kept, retried later or elsewhere. Other 4xx items (mapping errors…) go to
  the dead-letter store with the server's reason; the rest of the entry counts as delivered.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from otel_ext.backends.base import Backend
from otel_ext.backends.elasticsearch.mapping import MAPPING_MODES, otlp_payload
from otel_ext.backends.elasticsearch.render import BulkRenderer, RecordRef
from otel_ext.backends.outcome import Outcome, OutcomeKind

_logger = logging.getLogger(__name__)
# REST compatibility with v8: accepted by Elasticsearch 8.x and 9.x servers alike, whichever of the
# official clients (8.x or 9.x, whose own default is compatible-with=<client major>) is installed
_ACCEPT_V8 = "application/vnd.elasticsearch+json; compatible-with=8"
# only what the outcome handling reads: a per-item status (and the error when there is one), not the
# full item echo — parsing a 2,000-item response is a large share of the client's work
_BULK_PARAMS = {"filter_path": "errors,items.*.status,items.*.error"}
_BULK_HEADERS = {"accept": _ACCEPT_V8, "content-type": "application/vnd.elasticsearch+x-ndjson; compatible-with=8"}


@dataclass(frozen=True)
class ElasticsearchConfig:
    url: str  # http(s)://host:port, or "" with cloud_id
    flavour: str = "elasticsearch"  # or "opensearch"
    mapping: str = "ecs"  # or "otel"
    namespace: str = "default"
    route_by_class: bool = True
    api_key: str | None = None
    username: str | None = None
    password: str | None = None
    cloud_id: str | None = None
    ca_file: str | None = None
    verify: bool = True
    timeout: float = 2.0
    compress: bool | None = None  # gzip request bodies; None: the client's default (on for Cloud ID)
    max_docs: int = 2000
    max_bytes: int = 5 * 1024 * 1024
    item_retries: int = 2
    name: str = ""

    def __post_init__(self) -> None:
        if self.mapping not in MAPPING_MODES:
            raise ValueError(f"mapping must be one of {MAPPING_MODES}, got {self.mapping!r}")
        if self.flavour not in ("elasticsearch", "opensearch"):
            raise ValueError(f"flavour must be elasticsearch or opensearch, got {self.flavour!r}")


@dataclass(frozen=True)
class _Response:
    status: int
    body: Any
    retry_after: str | None = None


def _error_reason(error: Any) -> str:
    if isinstance(error, dict):
        reason = f"{error.get('type', 'error')}: {error.get('reason', '')}"
        cause = error.get("caused_by")
        if isinstance(cause, dict):
            reason += f" (caused by {cause.get('type')}: {cause.get('reason')})"
        return reason[:1000]
    return str(error)[:1000]


class ElasticsearchBackend(Backend):
    """Delivers to Elasticsearch (official client) or OpenSearch (opensearch-py) with the bulk API."""

    def __init__(self, config: ElasticsearchConfig) -> None:
        self.config = config
        self.name = config.name or f"{config.flavour}+{config.url or 'cloud'}"
        self._client = self._connect()
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="otel-ext-bulk")
        self._renderer = BulkRenderer(config.mapping, config.namespace, config.route_by_class)
        self.sleep: Callable[[float], None] = time.sleep

    def _connect(self) -> Any:
        c = self.config
        kwargs: dict[str, Any] = {"request_timeout": c.timeout, "max_retries": 0, "retry_on_timeout": False}
        if c.ca_file:
            kwargs["ca_certs"] = c.ca_file
        if not c.verify:
            kwargs["verify_certs"] = False
        if c.compress is not None:
            kwargs["http_compress"] = c.compress
        if c.flavour == "elasticsearch":
            from elasticsearch import Elasticsearch

            if c.api_key:
                kwargs["api_key"] = c.api_key
            elif c.username:
                kwargs["basic_auth"] = (c.username, c.password or "")
            if c.cloud_id:
                return Elasticsearch(cloud_id=c.cloud_id, **kwargs)
            return Elasticsearch(c.url, **kwargs)
        from opensearchpy import OpenSearch

        kwargs["timeout"] = kwargs.pop("request_timeout")
        if c.username:
            kwargs["http_auth"] = (c.username, c.password or "")
        if c.api_key:
            kwargs["headers"] = {"Authorization": f"ApiKey {c.api_key}"}
        return OpenSearch(hosts=[c.url], **kwargs)

    # --- transport ---------------------------------------------------------------------------

    def _bulk(self, body: bytes) -> _Response | Outcome:
        """POST /_bulk; a typed response, or the outcome of a request-level failure."""
        if self.config.flavour == "elasticsearch":
            import elasticsearch as es

            try:
                resp = self._client.perform_request("POST", "/_bulk", body=body, headers=_BULK_HEADERS,
                                                    params=_BULK_PARAMS)
                return _Response(200, resp.body)
            except es.ApiError as exc:
                headers = getattr(exc.meta, "headers", {}) or {}
                return _Response(int(exc.meta.status), exc.body, headers.get("retry-after"))
            except (es.ConnectionError, es.ConnectionTimeout, es.TransportError) as exc:
                return Outcome.retryable(f"{type(exc).__name__}: {exc}"[:500])
            except Exception as exc:  # noqa: BLE001 - e.g. UnsupportedProductError: retry elsewhere
                return Outcome.retryable(f"{type(exc).__name__}: {exc}"[:500])
        import opensearchpy as osp

        try:
            return _Response(200, self._client.bulk(body=body, params=_BULK_PARAMS))
        except osp.ConnectionTimeout as exc:
            return Outcome.retryable(f"ConnectionTimeout: {exc}"[:500])
        except osp.ConnectionError as exc:
            return Outcome.retryable(f"ConnectionError: {exc}"[:500])
        except osp.TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else 503
            return _Response(status, exc.info)
        except Exception as exc:  # noqa: BLE001
            return Outcome.retryable(f"{type(exc).__name__}: {exc}"[:500])

    def probe(self) -> Outcome:
        try:
            # cluster health: no customer data, and core in every distribution (GET / is not)
            if self.config.flavour == "elasticsearch":
                self._client.perform_request("GET", "/_cluster/health", headers={"accept": _ACCEPT_V8})
            else:
                self._client.cluster.health()
            return Outcome.ok()
        except Exception as exc:  # noqa: BLE001
            return Outcome.retryable(f"{type(exc).__name__}"[:200])

    # --- bulk ----------------------------------------------------------------------------------

    def send(self, payload: bytes, records: int) -> Outcome:
        if not payload:
            return self.probe()
        rejected: list[tuple[RecordRef, str]] = []
        # pipeline: map (and serialize) the next chunk while the server works on the current one
        in_flight: Future[Outcome | None] | None = None
        try:
            for chunk in self._chunks(self._renderer.render(payload)):
                if in_flight is not None and (outcome := in_flight.result()) is not None:
                    return outcome
                # the caller's context travels along (our lanes suppress instrumentation, so the
                # client's lines about this request are not captured)
                in_flight = self._sender.submit(contextvars.copy_context().run, self._send_chunk, chunk, rejected)
        except Exception as exc:  # noqa: BLE001 - an undecodable payload is permanent
            if in_flight is not None:
                in_flight.result()
            return Outcome.permanent(f"cannot map OTLP payload: {exc}"[:500])
        if in_flight is not None and (outcome := in_flight.result()) is not None:
            return outcome
        if rejected:
            reasons = sorted({r for _, r in rejected})
            message = f"{len(rejected)} documents rejected: " + "; ".join(reasons[:3])
            return Outcome.partial(len(rejected), message, otlp_payload([m for m, _ in rejected]))
        return Outcome.ok()

    def _chunks(self, items: Iterable[tuple[RecordRef, str]]) -> Iterator[list[tuple[RecordRef, bytes]]]:
        """Bulk-sized chunks, built lazily (mapping happens as the caller iterates)."""
        chunk: list[tuple[RecordRef, bytes]] = []
        size = 0
        for item, text in items:
            lines = text.encode()
            if chunk and (len(chunk) >= self.config.max_docs or size + len(lines) > self.config.max_bytes):
                yield chunk
                chunk, size = [], 0
            chunk.append((item, lines))
            size += len(lines)
        if chunk:
            yield chunk

    def _send_chunk(self, chunk: list[tuple[RecordRef, bytes]],
                    rejected: list[tuple[RecordRef, str]]) -> Outcome | None:
        """None when every document is created, already there, or rejected for good."""
        pending = chunk
        delay = 0.2
        for attempt in range(self.config.item_retries + 1):
            response = self._bulk(b"".join(lines for _, lines in pending))
            if isinstance(response, Outcome):
                return response
            if response.status == 413:
                if len(pending) == 1:
                    rejected.append((pending[0][0], "413 Request Entity Too Large (single document)"))
                    return None
                half = len(pending) // 2
                for part in (pending[:half], pending[half:]):
                    outcome = self._send_chunk(part, rejected)
                    if outcome is not None:
                        return outcome
                return None
            if response.status != 200:
                return self._request_outcome(response)
            retry: list[tuple[RecordRef, bytes]] = []
            throttled = False
            denied: list[str] = []
            refused: list[tuple[RecordRef, str]] = []
            for (item, lines), result in zip(pending, response.body.get("items", []), strict=False):
                op = result.get("create") or result.get("index") or {}
                status = int(op.get("status", 500))
                if status < 300 or status == 409:
                    continue
                if status == 429 or status >= 500:
                    throttled = throttled or status == 429
                    retry.append((item, lines))
                elif status in (401, 403):
                    denied.append(f"{status} {_error_reason(op.get('error'))}")
                else:
                    refused.append((item, f"{status} {_error_reason(op.get('error'))}"))
            if denied:
                # a missing privilege (e.g. on one index) is the operator's to fix, not the data's
                # fault: keep the whole entry (what was created answers 409 on the replay), fail over
                return Outcome.auth(f"{len(denied)} documents denied: {denied[0]}"[:500])
            rejected.extend(refused)
            if not retry:
                return None
            pending = retry
            if attempt < self.config.item_retries:
                self.sleep(delay)
                delay *= 2
        message = f"{len(pending)} documents still refused (429/5xx) after {self.config.item_retries} retries"
        return Outcome.throttled(message, 1.0) if throttled else Outcome.retryable(message)

    @staticmethod
    def _request_outcome(response: _Response) -> Outcome:
        status = response.status
        text = json.dumps(response.body)[:300] if not isinstance(response.body, str) else response.body[:300]
        message = f"HTTP {status}: {text}"
        if status == 429:
            from otel_ext.backends.outcome import parse_retry_after

            return Outcome.throttled(message, parse_retry_after(response.retry_after))
        if status in (401, 403):
            return Outcome.auth(message)
        if status >= 500 or status in (408, 404):
            return Outcome.retryable(message)  # 404: e.g. a proxy path or an index being recreated
        return Outcome(OutcomeKind.PERMANENT, message)

    def close(self) -> None:
        self._sender.shutdown(wait=False)
        with contextlib.suppress(Exception):
            self._client.close()

    def reset_after_fork(self) -> None:
        self._client = self._connect()
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="otel-ext-bulk")
        self._renderer = BulkRenderer(self.config.mapping, self.config.namespace, self.config.route_by_class)

    def describe(self) -> str:
        return self.name
