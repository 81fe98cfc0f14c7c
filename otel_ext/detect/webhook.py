"""Optional alert notifications: a webhook POST of Slack-compatible JSON (``{"text": ...}``),
from a background thread with a bounded queue, a per-minute rate limit, retries with backoff and
a short timeout. Nothing here can block or fail the logging path; outcomes are counted. The URL
usually embeds a token: it is never logged (only its host is shown)."""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from urllib.parse import urlsplit

import urllib3

from otel_ext.backends.outcome import parse_retry_after
from otel_ext.detect.detectors import Alert
from otel_ext.telemetry import Counters, register_counters

_logger = logging.getLogger(__name__)

WEBHOOK_COUNTERS = register_counters(Counters("alerts"), {"webhook": ("outcome",)})
"""``webhook`` per outcome: sent, failed, rate_limited, queue_full."""


def format_alert(alert: Alert, service: str = "") -> dict[str, str]:
    where = f" ({service})" if service else ""
    return {"text": f"[otel-ext] {alert.severity} {alert.rule_name}{where}: {alert.message} "
                    f"[rule {alert.rule_id}, action {alert.action}]"}


class WebhookSink:
    def __init__(self, url: str, timeout: float = 2.0, max_per_minute: int = 20, retries: int = 3,
                 queue_size: int = 100, counters: Counters = WEBHOOK_COUNTERS, service: str = "") -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("OTEL_EXT_ALERT_WEBHOOK: expected an http(s) URL")
        self._url = url
        self.host = parts.hostname
        self.timeout = timeout
        self.max_per_minute = max_per_minute
        self.retries = retries
        self.counters = counters
        self.service = service
        self._queue: queue.Queue[Alert | None] = queue.Queue(maxsize=queue_size)
        self._http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=timeout, read=timeout))
        self._sent_at: list[float] = []
        self._thread = threading.Thread(target=self._run, name="otel-ext-webhook", daemon=True)
        self._thread.start()

    def submit(self, alert: Alert) -> None:
        """Never blocks: a full queue drops the notification (counted; the alert record still ships)."""
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self.counters.add("webhook", "queue_full")

    def close(self, timeout: float = 2.0) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(timeout)

    def _allowed(self) -> bool:
        now = time.monotonic()
        self._sent_at = [t for t in self._sent_at if now - t < 60]
        if len(self._sent_at) >= self.max_per_minute:
            return False
        self._sent_at.append(now)
        return True

    def _run(self) -> None:
        while True:
            alert = self._queue.get()
            if alert is None:
                return
            if not self._allowed():
                self.counters.add("webhook", "rate_limited")
                continue
            body = json.dumps(format_alert(alert, self.service)).encode()
            delay = 0.5
            for attempt in range(self.retries + 1):
                try:
                    resp = self._http.request("POST", self._url, body=body,
                                              headers={"Content-Type": "application/json"})
                    if 200 <= resp.status < 300:
                        self.counters.add("webhook", "sent")
                        break
                    if resp.status == 429 or resp.status >= 500:
                        delay = min(parse_retry_after(resp.headers.get("Retry-After"), delay) or delay, 10.0)
                    else:
                        self.counters.add("webhook", "failed")
                        _logger.warning("otel-ext: alert webhook at %s answered HTTP %d", self.host, resp.status)
                        break
                except Exception as exc:  # noqa: BLE001 - notifications never affect logging
                    _logger.debug("otel-ext: alert webhook at %s failed: %s", self.host, type(exc).__name__)
                if attempt == self.retries:
                    self.counters.add("webhook", "failed")
                    _logger.warning("otel-ext: alert webhook at %s failed after %d attempts", self.host, attempt + 1)
                    break
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
