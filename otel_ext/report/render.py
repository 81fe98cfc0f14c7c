"""One self-contained HTML page from :class:`ReportData`: Plotly charts (plotly.js embedded, so the
file opens offline) and the numbers behind them in plain tables.

Why Plotly: its Python package ships plotly.js itself, so a report needs no network and no extra
converter (Altair / Vega-Lite needs vl-convert or a CDN for its JavaScript); charts are interactive
(hover, zoom) and render as SVG, which a headless browser can check. Cost: ~4.8 MB of JavaScript in
every report.

Every value from the data is escaped: HTML through :func:`html.escape`, chart data as JSON with
``</`` written as ``<\\/`` so a hostile client id or route cannot end the script element, and chart
labels with ``&``, ``<`` and ``>`` as entities, because Plotly renders a subset of HTML in labels
(a route named ``<a href="https://…">Sign in again</a>`` would otherwise be a live link in the
manager's report); Plotly shows the entities as the characters they stand for.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Iterable
from typing import Any

from otel_ext.report.model import ANONYMOUS, CLASSES, ReportData, heavy_endpoints, suggest_tiers

TOP_CLIENTS = 12


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _x(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def _interval(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400} d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _script_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


_LABEL_KEYS = frozenset({"x", "y", "text", "name", "labels", "hovertext"})


def _plotly_text(text: str) -> str:
    """Plotly's labels take pseudo-HTML (``<a href>``, ``<span style>``, ``<b>``…): data goes in as
    entities, which Plotly displays as the characters themselves."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _labels(value: Any) -> Any:
    if isinstance(value, str):
        return _plotly_text(value)
    if isinstance(value, list):
        return [_plotly_text(v) if isinstance(v, str) else v for v in value]
    return value


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value * 1000:.1f}"
    if unit == "%":
        return f"{value * 100:.1f}"
    return f"{value:,.0f}"


class _Page:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.charts: list[tuple[str, list[dict[str, Any]], dict[str, Any]]] = []

    def add(self, text: str) -> None:
        self.parts.append(text)

    def chart(self, chart_id: str, traces: list[dict[str, Any]], layout: dict[str, Any]) -> None:
        traces = [{k: _labels(v) if k in _LABEL_KEYS else v for k, v in trace.items()} for trace in traces]
        self.add(f'<div class="chart" id="{_e(chart_id)}"></div>')
        base = {"margin": {"l": 60, "r": 20, "t": 40, "b": 60}, "height": 380,
                "font": {"family": "system-ui, sans-serif", "size": 12}}
        self.charts.append((chart_id, traces, {**base, **layout}))

    def table(self, headers: Iterable[str], rows: Iterable[Iterable[tuple[Any, str | None]]], table_id: str) -> None:
        """Rows of (text, data-k key or None): keyed cells are what the browser test reads back."""
        out = [f'<table id="{_e(table_id)}"><thead><tr>']
        out += [f"<th>{_e(h)}</th>" for h in headers]
        out.append("</tr></thead><tbody>")
        for row in rows:
            out.append("<tr>")
            for text, key in row:
                attr = f' data-k="{_e(key)}"' if key else ""
                out.append(f"<td{attr}>{_e(text)}</td>")
            out.append("</tr>")
        out.append("</tbody></table>")
        self.add("".join(out))


def render_html(data: ReportData, plotly_js: str | None = None, title: str = "API usage report") -> str:
    if plotly_js is None:
        from plotly.offline import get_plotlyjs

        plotly_js = get_plotlyjs()
    page = _Page()
    _header(page, data, title)
    _usage(page, data)
    _reliability(page, data)
    _security(page, data)
    _volume(page, data)
    charts = "\n".join(
        f"Plotly.newPlot({_script_json(cid)}, {_script_json(traces)}, {_script_json(layout)}, "
        f'{{"displaylogo": false, "responsive": true}});' for cid, traces, layout in page.charts)
    body = "\n".join(page.parts)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }}
h1 {{ margin-bottom: 0.2em; }} h2 {{ border-bottom: 2px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }}
table {{ border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }}
th, td {{ border: 1px solid #ddd; padding: 0.3em 0.7em; text-align: left; }}
td[data-k] {{ text-align: right; font-variant-numeric: tabular-nums; }}
th {{ background: #f4f4f4; }} .note {{ color: #666; font-size: 0.9em; }} .chart {{ min-height: 380px; }}
</style>
<script>{plotly_js}</script>
</head><body>
{body}
<script>
{charts}
</script>
</body></html>
"""


def _header(page: _Page, data: ReportData, title: str) -> None:
    page.add(f"<h1>{_e(title)}</h1>")
    page.add(f'<p class="note">Source: {_e(data.source)} &middot; period {_e(_iso(data.start_ms))} to '
             f'{_e(_iso(data.end_ms))} &middot; <span data-k="records">{data.records}</span> records &middot; '
             f"timeline buckets of {_interval(data.interval_s)} &middot; client = <code>{_e(data.client_attribute)}"
             f"</code></p>")
    for note in data.notes:
        page.add(f'<p class="note">Note: {_e(note)}</p>')


def _usage(page: _Page, data: ReportData) -> None:
    page.add("<h2>Usage: calls per client and route</h2>")
    totals = data.client_totals(include_anonymous=True)
    clients = list(totals)[:TOP_CLIENTS]
    routes = sorted({r for c in data.usage.values() for r in c},
                    key=lambda r: -sum(data.usage[c].get(r, 0) for c in data.usage))
    z = [[data.usage.get(c, {}).get(r, 0) for r in routes] for c in clients]
    heatmap = {"type": "heatmap", "x": routes, "y": clients, "z": z, "colorscale": "Blues", "reversescale": True,
               "hovertemplate": "%{y} on %{x}: %{z} calls<extra></extra>"}
    page.chart("chart-usage-heatmap", [heatmap],
               {"title": {"text": "Calls per client x route"}, "height": 120 + 32 * max(len(clients), 3),
                "margin": {"l": 140, "r": 20, "t": 40, "b": 140}})
    buckets = sorted({b for t in data.usage_timeline.values() for b in t})
    traces = [{"type": "bar", "name": c, "x": [_x(b) for b in buckets],
               "y": [data.usage_timeline.get(c, {}).get(b, 0) for b in buckets]} for c in clients]
    page.chart("chart-usage-timeline", traces, {"title": {"text": f"Calls per client over time "
                                                                  f"({_interval(data.interval_s)} buckets)"},
                                                 "barmode": "stack"})
    page.table(["client", "calls", "projected calls / 30 days", "top route"], (
        [(c, None), (n, f"client.calls|{c}"), (_fmt(data.monthly(n)), None),
         (max(data.usage[c].items(), key=lambda kv: (kv[1], kv[0]))[0], None)] for c, n in totals.items()),
        "table-clients")
    monthly = {c: data.monthly(n) for c, n in data.client_totals().items()}
    tiers = suggest_tiers(monthly)
    page.add("<h3>Pricing-tier suggestion</h3>")
    page.add(f'<p class="note">Clients (excluding {_e(ANONYMOUS)}) grouped by projected monthly calls: Starter up '
             "to the median, Growth up to the 90th percentile, Enterprise above.</p>")
    page.table(["tier", "from (calls / 30 days)", "up to", "clients", "who"], (
        [(t.name, None), (_fmt(t.low), f"tier.low|{t.name}"), (_fmt(t.high) if t.high is not None else "-",
                                                              f"tier.high|{t.name}" if t.high is not None else None),
         (len(t.clients), f"tier.clients|{t.name}"), (", ".join(t.clients), None)] for t in tiers), "table-tiers")
    page.add("<h3>Heavy endpoints</h3>")
    page.table(["route", "calls", "share of all calls (%)", "heaviest clients"], (
        [(route, None), (calls, f"heavy.calls|{route}"), (_fmt(share, "%"), None),
         (", ".join(f"{c} ({n})" for c, n in top), None)] for route, calls, share, top in heavy_endpoints(data)),
        "table-heavy")


def _reliability(page: _Page, data: ReportData) -> None:
    page.add("<h2>Errors and latency per route</h2>")
    buckets = list(data.timeline)
    calls = [data.timeline[b][0] for b in buckets]
    rates = [round(100.0 * e / n, 2) if n else 0.0 for n, e in (data.timeline[b] for b in buckets)]
    traces: list[dict[str, Any]] = [
        {"type": "bar", "name": "calls", "x": [_x(b) for b in buckets], "y": calls, "marker": {"color": "#9ecae1"}},
        {"type": "scatter", "mode": "lines+markers", "name": "error rate (%)", "x": [_x(b) for b in buckets],
         "y": rates, "yaxis": "y2", "line": {"color": "#d62728"}}]
    if data.alerts:
        traces.append({"type": "scatter", "mode": "markers", "name": "detector alerts",
                       "x": [_x(a.time_ms) for a in data.alerts], "y": [0] * len(data.alerts), "yaxis": "y2",
                       "marker": {"symbol": "triangle-up", "size": 13, "color": "#ff7f0e"},
                       "text": [f"{a.rule} {a.key}" for a in data.alerts], "hovertemplate": "%{text}<extra></extra>"})
    page.chart("chart-errors-timeline", traces, {
        "title": {"text": "Calls, error rate and detector alerts"},
        "yaxis": {"title": {"text": "calls"}},
        "yaxis2": {"title": {"text": "5xx rate (%)"}, "overlaying": "y", "side": "right", "rangemode": "tozero"}})
    routes = sorted(data.routes.items(), key=lambda kv: (-kv[1].calls, kv[0]))
    page.chart("chart-latency", [
        {"type": "bar", "name": p, "x": [r for r, _ in routes],
         "y": [round((s.latency.get(p) or 0.0) * 1000, 2) for _, s in routes]} for p in ("p50", "p95", "p99")],
        {"title": {"text": "Latency percentiles per route (ms, log scale)"}, "barmode": "group",
         "yaxis": {"type": "log"},
         "margin": {"l": 60, "r": 20, "t": 40, "b": 140}})
    page.table(["route", "calls", "5xx", "5xx rate (%)", "4xx", "p50 (ms)", "p95 (ms)", "p99 (ms)"], (
        [(r, None), (s.calls, f"route.calls|{r}"), (s.errors, f"route.errors|{r}"), (_fmt(s.error_rate, "%"), None),
         (s.client_errors, f"route.4xx|{r}"), (_fmt(s.latency.get("p50"), "ms"), f"route.p50|{r}"),
         (_fmt(s.latency.get("p95"), "ms"), f"route.p95|{r}"), (_fmt(s.latency.get("p99"), "ms"), f"route.p99|{r}")]
        for r, s in routes), "table-routes")
    listed = "" if len(data.alerts) == data.alerts_total else f", the first {len(data.alerts)} listed"
    page.add(f"<h3>Detector alerts (<span data-k=\"alerts\">{data.alerts_total}</span>{_e(listed)})</h3>")
    page.table(["time", "detector", "key", "message"], (
        [(_iso(a.time_ms), None), (a.rule, None), (a.key, None), (a.message, None)] for a in data.alerts[:200]),
        "table-alerts")


def _security(page: _Page, data: ReportData) -> None:
    page.add("<h2>Security events</h2>")
    actions = sorted(data.security_actions.items(), key=lambda kv: (-kv[1], kv[0]))
    sources = sorted(data.security_sources.items(), key=lambda kv: (-kv[1], kv[0]))[:15]
    page.chart("chart-security-actions", [{"type": "bar", "x": [a for a, _ in actions], "y": [n for _, n in actions],
                                           "marker": {"color": "#d62728"}}],
               {"title": {"text": "Security events by action"}, "margin": {"l": 60, "r": 20, "t": 40, "b": 140}})
    page.chart("chart-security-sources", [{"type": "bar", "orientation": "h", "y": [s for s, _ in sources],
                                           "x": [n for _, n in sources], "marker": {"color": "#9467bd"}}],
               {"title": {"text": "Security events by source (top 15)"},
                "margin": {"l": 140, "r": 20, "t": 40, "b": 40}, "yaxis": {"autorange": "reversed"}})
    page.table(["action", "events"], ([(a, None), (n, f"security.action|{a}")] for a, n in actions),
               "table-security-actions")
    page.table(["source", "events"], ([(s, None), (n, f"security.source|{s}")] for s, n in sources),
               "table-security-sources")


def _volume(page: _Page, data: ReportData) -> None:
    page.add("<h2>Volume per class and retention</h2>")
    names = [c for c in CLASSES if c in data.classes] + sorted(set(data.classes) - set(CLASSES))
    page.chart("chart-volume", [{"type": "bar", "x": names, "y": [data.classes[c] for c in names],
                                 "marker": {"color": "#2ca02c"}}], {"title": {"text": "Records per event class"}})
    days = data.span_s / 86400
    rows = []
    for c in names:
        n = data.classes[c]
        keep = data.retention_days.get(c)
        per_day = n / days
        rows.append([(c, None), (n, f"class.records|{c}"), (_fmt(data.class_bytes.get(c, 0)), None),
                     (_fmt(per_day), None), (f"{keep} d" if keep else "-", None),
                     (_fmt(per_day * keep) if keep else "-", None),
                     (_fmt(data.class_bytes.get(c, 0) / days * keep) if keep else "-", None)])
    page.table(["class", "records", data.bytes_kind, "records / day", "retention", "records kept (steady state)",
                "bytes kept (steady state)"], rows, "table-volume")
    page.add('<p class="note">Steady state: at this period\'s daily rate, what the retention setting keeps stored.</p>')
