"""Usage metrics from access records: who calls which route how often, and how fast.

:class:`UsageMetricsProcessor` is an SDK ``LogRecordProcessor`` that reads the HTTP semconv
attributes of each access record (``http.request.method``, ``http.route``,
``http.response.status_code``, a duration) and records two OpenTelemetry metrics through the
app's ``MeterProvider`` — so they leave through the app's normal OTLP metrics pipeline:

- ``otel_ext.usage.requests`` (counter, ``{request}``)
- ``otel_ext.usage.request.duration`` (histogram, ``s``, the semconv HTTP bucket boundaries)

both with the attributes ``usage.client``, ``http.route``, ``http.request.method`` and
``usage.status_class`` (``2xx`` … ``5xx``).

The client is ``client.address`` by default, or an app-provided tenant / API-key id attribute; any
attribute other than ``client.address`` is never exported raw: its value is replaced by
``sha256:<first 16 hex digits>`` (the collector config ``collector_configs/usage.yaml`` computes the
same with OTTL ``SHA256``). Cardinality is bounded: per window (default 60 s) only the top-N clients
of the previous window (and the first N seen while that set is not full) keep their own value,
every other client is recorded as ``other`` and counted in ``otel_ext.usage.folded``; routes are
capped the same way (``max_routes``), methods outside the HTTP set become ``_OTHER`` (semconv).

Without a ``MeterProvider`` it costs almost nothing: while the API's proxy instruments have no real
instrument behind them (they would drop every measurement) or the provider is a no-op one, a record
is not looked at; counting, top-N windows and the ``otel_ext.usage.*`` counters start with the
first record after a provider is set.

Guarantee: never raises into the caller and never changes the record.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import metrics
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord

from otel_ext._attrs import read_view
from otel_ext._sdk_compat import instrument_is_live
from otel_ext.telemetry import Counters, ensure_published, register_counters

_logger = logging.getLogger(__name__)

REQUESTS = "otel_ext.usage.requests"
DURATION = "otel_ext.usage.request.duration"
CLIENT = "usage.client"
STATUS_CLASS = "usage.status_class"
OTHER = "other"
DEFAULT_CLIENT_ATTRIBUTE = "client.address"
# the semconv advisory boundaries for http.server.request.duration (seconds)
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY"})

USAGE_COUNTERS = register_counters(Counters("usage"), {"recorded": (), "folded": ("dimension",), "failed": ()})
"""``recorded`` access records, ``folded`` records whose client/route became ``other``,
``failed`` records skipped after an error."""


def hash_client(value: str) -> str:
    """The exported form of a tenant / API-key id: never the raw value."""
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:16]


def status_class(code: int) -> str:
    return f"{code // 100}xx" if 100 <= code <= 599 else OTHER


def duration_seconds(attrs: Any) -> float | None:
    """The request duration from the attributes an access record may carry."""
    value = attrs.get("http.server.request.duration")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    value = attrs.get("duration_ms")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) / 1000.0
    value = attrs.get("event.duration")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) / 1e9
    return None


class _TopN:
    """Which values keep their own label: this window's admitted set is the top-N of the previous
    window plus newcomers while it has room. Counts are kept for at most ``4 * n`` values per window
    (beyond that a value is counted only if already tracked), so memory is bounded too."""

    def __init__(self, n: int, window_s: float, clock: Callable[[], float]) -> None:
        self.n = n
        self.window_s = window_s
        self.clock = clock
        self.admitted: set[str] = set()
        self.counts: dict[str, int] = {}
        self.window_end = clock() + window_s

    def label(self, value: str) -> tuple[str, bool]:
        """(label, folded): the value itself, or ``other`` and True."""
        now = self.clock()
        if now >= self.window_end:
            ranked = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))
            self.admitted = {v for v, _ in ranked[: self.n]}
            self.counts = {}
            self.window_end = now + self.window_s
        if value in self.counts:
            self.counts[value] += 1
        elif len(self.counts) < 4 * self.n:
            self.counts[value] = 1
        if value in self.admitted:
            return value, False
        if len(self.admitted) < self.n:
            self.admitted.add(value)
            return value, False
        return OTHER, True


class UsageMetricsProcessor(LogRecordProcessor):
    """Turns access records into usage metrics (counts and duration histograms per client, route,
    method and status class) on the app's ``MeterProvider``; bounded cardinality; never raises."""

    def __init__(
        self,
        meter_provider: metrics.MeterProvider | None = None,
        client_attribute: str = DEFAULT_CLIENT_ATTRIBUTE,
        hash_client_ids: bool | None = None,
        top_n: int = 50,
        max_routes: int = 200,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        counters: Counters = USAGE_COUNTERS,
    ) -> None:
        if top_n <= 0 or max_routes <= 0 or window_s <= 0:
            raise ValueError("top_n, max_routes and window_s must be positive")
        meter = (meter_provider or metrics.get_meter_provider()).get_meter("otel_ext.usage")
        self.requests = meter.create_counter(REQUESTS, unit="{request}",
                                             description="API requests per client, route, method, status class")
        self.duration = meter.create_histogram(DURATION, unit="s", description="API request duration",
                                               explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS))
        self.client_attribute = client_attribute
        self.hash = client_attribute != DEFAULT_CLIENT_ATTRIBUTE if hash_client_ids is None else hash_client_ids
        self.clients = _TopN(top_n, window_s, clock)
        self.routes = _TopN(max_routes, window_s, clock)
        self.counters = counters
        self._hashed: dict[str, str] = {}  # hash cache, cleared when it grows past 4096 ids
        self._lock = threading.Lock()
        self._warned = False
        self._live = False  # True once the instruments can record (a MeterProvider is set)
        ensure_published()

    @property
    def live(self) -> bool:
        """Whether measurements can go anywhere (once True, stays True)."""
        if not self._live:
            self._live = instrument_is_live(self.requests) or instrument_is_live(self.duration)
        return self._live

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        if not self._live:
            if not instrument_is_live(self.requests):  # no MeterProvider yet: the API drops it all
                return
            self._live = True
        try:
            self.record(read_view(log_record.log_record.attributes))
        except Exception:  # never raise into the application thread
            self.counters.add("failed")
            if not self._warned:
                self._warned = True
                _logger.warning("otel-ext: usage metrics skipped a record", exc_info=True)

    def record(self, attrs: Any) -> bool:
        """Record one access record's attributes; False when it is not an access record."""
        code = attrs.get("http.response.status_code")
        method = attrs.get("http.request.method")
        if isinstance(code, str) and code.isdigit():
            code = int(code)
        if not isinstance(code, int) or isinstance(code, bool) or not isinstance(method, str):
            return False
        if attrs.get("event.kind") == "alert":  # a detector's alert about requests is not a request
            return False
        raw_client = attrs.get(self.client_attribute)
        client = str(raw_client) if raw_client not in (None, "") else "unknown"
        if self.hash and client != "unknown":
            hashed = self._hashed.get(client)
            if hashed is None:
                if len(self._hashed) >= 4096:
                    self._hashed.clear()
                hashed = self._hashed[client] = hash_client(client)
            client = hashed
        route = attrs.get("http.route")
        route = route if isinstance(route, str) and route else "unmatched"
        with self._lock:
            client_label, client_folded = self.clients.label(client)
            route_label, route_folded = self.routes.label(route)
        if client_folded:
            self.counters.add("folded", "client")
        if route_folded:
            self.counters.add("folded", "route")
        labels = {
            CLIENT: client_label,
            "http.route": route_label,
            "http.request.method": method if method in METHODS else "_OTHER",
            STATUS_CLASS: status_class(code),
        }
        self.requests.add(1, labels)
        seconds = duration_seconds(attrs)
        if seconds is not None and seconds >= 0:
            self.duration.record(seconds, labels)
        self.counters.add("recorded")
        return True

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
