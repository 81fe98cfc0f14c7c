"""What a report shows, as plain numbers: :class:`ReportData`, built either by :class:`Aggregator`
from records (file backend, S3 archive) or by the search backend's aggregations
(:mod:`otel_ext.report.search`) — the same definitions on both paths, so both give the same numbers.

Definitions (shared by both paths):
- an *access record* has ``http.response.status_code`` and ``http.request.method`` and is not an
  alert (``event.kind`` != ``alert``); its client is the ``client_attribute`` value (default
  ``tenant.id``), or ``(anonymous)``; its route is ``http.route`` or ``unmatched``;
- an *error* is a status >= 500; latency is ``http.server.request.duration`` (seconds);
- timeline buckets are fixed intervals aligned to the epoch (UTC), as Elasticsearch's
  ``date_histogram`` with ``fixed_interval`` aligns them;
- *projected monthly volume* = calls in the period / period length x 30 days.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from otel_ext.report.records import Record

ANONYMOUS = "(anonymous)"
UNMATCHED = "unmatched"
DEFAULT_CLIENT_ATTRIBUTE = "tenant.id"
INTERVALS_S = (1, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)
MONTH_S = 30 * 86400
PERCENTILES = (50.0, 95.0, 99.0)
CLASSES = ("security", "error", "performance", "access", "application")


def pick_interval(span_s: float, max_buckets: int = 60) -> int:
    """The smallest of the fixed intervals that keeps the timeline within ``max_buckets``."""
    for interval in INTERVALS_S:
        if span_s / interval <= max_buckets:
            return interval
    return INTERVALS_S[-1]


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default; what a t-digest converges to on
    small sets)."""
    if not sorted_values:
        return None
    rank = (len(sorted_values) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


@dataclass
class RouteStats:
    calls: int = 0
    errors: int = 0  # status >= 500
    client_errors: int = 0  # 4xx
    latency: dict[str, float | None] = field(default_factory=dict)  # "p50" -> seconds

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0


@dataclass
class Alert:
    time_ms: int
    rule: str
    key: str
    message: str


@dataclass
class ReportData:
    source: str
    client_attribute: str
    start_ms: int
    end_ms: int
    interval_s: int
    usage: dict[str, dict[str, int]]  # client -> route -> calls
    usage_timeline: dict[str, dict[int, int]]  # client -> bucket start (ms) -> calls
    routes: dict[str, RouteStats]
    timeline: dict[int, tuple[int, int]]  # bucket start (ms) -> (calls, errors)
    alerts: list[Alert]
    security_actions: dict[str, int]
    security_sources: dict[str, int]
    classes: dict[str, int]  # event class -> records
    class_bytes: dict[str, int]  # event class -> bytes (JSON size for records, store size for search)
    bytes_kind: str  # what class_bytes measures
    retention_days: dict[str, int]
    records: int = 0
    notes: list[str] = field(default_factory=list)  # what the report could not show in full
    alerts_total: int = 0  # alerts in the period (``alerts`` may list fewer)

    @property
    def span_s(self) -> float:
        return max((self.end_ms - self.start_ms) / 1000.0, 60.0)

    def client_totals(self, include_anonymous: bool = False) -> dict[str, int]:
        totals = {c: sum(routes.values()) for c, routes in self.usage.items()}
        if not include_anonymous:
            totals.pop(ANONYMOUS, None)
        return dict(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))

    def monthly(self, calls: int) -> float:
        return calls / self.span_s * MONTH_S


@dataclass
class Tier:
    name: str
    low: float  # projected monthly calls, inclusive
    high: float | None  # exclusive; None = no upper bound
    clients: list[str]


def suggest_tiers(monthly: Mapping[str, float]) -> list[Tier]:
    """Clients grouped by projected monthly volume: Starter up to the median, Growth up to the
    90th percentile, Enterprise above it (thresholds are those percentiles of the clients' volumes)."""
    values = sorted(monthly.values())
    if not values:
        return []
    p50 = percentile(values, 50.0) or 0.0
    p90 = percentile(values, 90.0) or 0.0
    tiers = [Tier("Starter", 0.0, p50, []), Tier("Growth", p50, p90, []), Tier("Enterprise", p90, None, [])]
    for client, volume in sorted(monthly.items(), key=lambda kv: (-kv[1], kv[0])):
        if volume <= p50:
            tiers[0].clients.append(client)
        elif volume <= p90:
            tiers[1].clients.append(client)
        else:
            tiers[2].clients.append(client)
    return tiers


def heavy_endpoints(data: ReportData, limit: int = 5) -> list[tuple[str, int, float, list[tuple[str, int]]]]:
    """Routes by share of all client calls: (route, calls, share, top clients with their calls)."""
    per_route: Counter[str] = Counter()
    by_client: dict[str, Counter[str]] = defaultdict(Counter)
    for client, routes in data.usage.items():
        for route, calls in routes.items():
            per_route[route] += calls
            by_client[route][client] += calls
    total = sum(per_route.values()) or 1
    out = []
    for route, calls in sorted(per_route.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]:
        top = sorted(by_client[route].items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        out.append((route, calls, calls / total, top))
    return out


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


class Aggregator:
    """Builds :class:`ReportData` from records in one streaming pass. Memory: counters per client x
    route, per client x time bucket (the buckets coarsen as the span grows: every interval divides
    the next, so re-bucketing is exact and ends on the same epoch-aligned buckets a search backend
    returns), the alerts, and the latency values per route (8 bytes each, for exact percentiles)."""

    def __init__(self, client_attribute: str = DEFAULT_CLIENT_ATTRIBUTE, source: str = "",
                 retention_days: Mapping[str, int] | None = None,
                 progress: Callable[[int], None] | None = None, max_alerts: int = 1000) -> None:
        self.client_attribute = client_attribute
        self.source = source
        self.retention_days = dict(retention_days or {})
        self.progress = progress
        self.max_alerts = max_alerts

    def build(self, records: Iterable[Record]) -> ReportData:
        alerts: list[Alert] = []
        alerts_total = 0
        actions: Counter[str] = Counter()
        sources: Counter[str] = Counter()
        classes: Counter[str] = Counter()
        class_bytes: Counter[str] = Counter()
        usage: dict[str, Counter[str]] = defaultdict(Counter)
        routes: dict[str, RouteStats] = defaultdict(RouteStats)
        latencies: dict[str, array[float]] = defaultdict(lambda: array("d"))
        # (client, bucket start ms) -> calls; bucket start ms -> [calls, errors]; both at ``interval``
        by_client_time: Counter[tuple[str, int]] = Counter()
        timeline: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        interval = INTERVALS_S[0]
        start = end = None
        count = 0
        notes: list[str] = []
        for rec in records:
            count += 1
            if self.progress is not None and count % 1000 == 0:
                self.progress(count)
            t_ms = rec.time_ns // 1_000_000
            start = t_ms if start is None else min(start, t_ms)
            end = t_ms if end is None else max(end, t_ms)
            wanted = pick_interval(max((end - start) / 1000.0, 1.0))
            if wanted != interval:
                interval = wanted
                by_client_time, timeline = _rebucket(by_client_time, timeline, interval * 1000)
            event_class = rec.get("labels.event_class")
            if isinstance(event_class, str):
                classes[event_class] += 1
                class_bytes[event_class] += rec.size
            if rec.get("event.kind") == "alert":
                alerts_total += 1
                if len(alerts) < self.max_alerts:
                    alerts.append(Alert(t_ms, str(rec.get("rule.id", "")), str(rec.get("labels.alert_key", "")),
                                        rec.body[:300]))
                continue
            if event_class == "security":
                actions[str(rec.get("event.action") or "(none)")] += 1
                sources[str(rec.get("client.address") or "(unknown)")] += 1
            status = _num(rec.get("http.response.status_code"))
            if status is None or rec.get("http.request.method") is None:
                continue
            raw_client = rec.get(self.client_attribute)
            raw_route = rec.get("http.route")
            client = str(raw_client) if raw_client not in (None, "") else ANONYMOUS
            route = str(raw_route) if raw_route not in (None, "") else UNMATCHED
            bucket = t_ms // (interval * 1000) * interval * 1000
            usage[client][route] += 1
            by_client_time[client, bucket] += 1
            stats = routes[route]
            stats.calls += 1
            timeline[bucket][0] += 1
            if status >= 500:
                stats.errors += 1
                timeline[bucket][1] += 1
            elif status >= 400:
                stats.client_errors += 1
            seconds = _num(rec.get("http.server.request.duration"))
            if seconds is not None and math.isfinite(seconds):
                latencies[route].append(seconds)
        if self.progress is not None:
            self.progress(count)
        for route, stats in routes.items():
            values = sorted(latencies.get(route, ()))
            stats.latency = {f"p{p:g}": percentile(values, p) for p in PERCENTILES}
        usage_timeline: dict[str, dict[int, int]] = defaultdict(dict)
        for (client, bucket), calls in by_client_time.items():
            usage_timeline[client][bucket] = calls
        alerts.sort(key=lambda a: a.time_ms)
        return ReportData(
            source=self.source, client_attribute=self.client_attribute, start_ms=start or 0, end_ms=end or 0,
            interval_s=interval, usage={c: dict(r) for c, r in usage.items()},
            usage_timeline={c: dict(sorted(t.items())) for c, t in usage_timeline.items()}, routes=dict(routes),
            timeline={b: (v[0], v[1]) for b, v in sorted(timeline.items())}, alerts=alerts,
            security_actions=dict(actions), security_sources=dict(sources), classes=dict(classes),
            class_bytes=dict(class_bytes), bytes_kind="OTLP/JSON bytes", retention_days=self.retention_days,
            records=count, notes=notes, alerts_total=alerts_total)


def _rebucket(by_client_time: Counter[tuple[str, int]], timeline: dict[int, list[int]],
              step: int) -> tuple[Counter[tuple[str, int]], dict[int, list[int]]]:
    """The same counts at a coarser interval (``step`` ms, a multiple of the current one)."""
    coarser: Counter[tuple[str, int]] = Counter()
    for (client, bucket), calls in by_client_time.items():
        coarser[client, bucket // step * step] += calls
    merged: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for bucket, (calls, errors) in timeline.items():
        slot = merged[bucket // step * step]
        slot[0] += calls
        slot[1] += errors
    return coarser, merged
