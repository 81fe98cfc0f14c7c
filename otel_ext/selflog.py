"""otel-ext's own diagnostics never feed back into the pipeline they describe.

- The ``otel_ext`` logger writes to stderr through :class:`RateLimitedStderrHandler` (one line per
  message template and interval, then a count of what was held back) and does not propagate to
  the root logger, where the app's OTel logging handler would capture it.
- Our threads (delivery lanes, prober, CLI drains) run with OpenTelemetry instrumentation suppressed
  (:func:`suppressed`), so instrumented clients record nothing about our own traffic and logging
  handlers can skip records emitted there.
- :func:`own_record_reason` is the one place that decides which records a capturing handler must
  not ship: the ``otel_ext`` logger tree, records emitted on one of our threads, and records emitted
  while instrumentation is suppressed — e.g. the per-request INFO lines of
  ``elastic_transport``/``urllib3`` when one of our lanes calls a backend. Our logging handler
  (``otel_ext/handler.py``) skips and counts by it; :func:`own_records_filter` is the same decision
  as a ``logging`` filter for any other capturing handler.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from opentelemetry import context
from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from otel_ext._sdk_compat import SUPPRESS_INSTRUMENTATION_KEY

LOGGER_NAME = "otel_ext"
# loggers of the clients our backends drive: their lines about our own requests stay out of capture
TRANSPORT_LOGGERS = ("elastic_transport", "elasticsearch", "urllib3", "grpc", "opensearch", "opensearchpy")

_logger = logging.getLogger(LOGGER_NAME)


class RateLimitedStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to stderr at most ``burst`` lines per message template per ``interval`` seconds; the
    next line of a template after a quiet spell says how many were held back."""

    def __init__(self, interval: float = 60.0, burst: int = 3) -> None:
        super().__init__(sys.stderr)
        self.interval = interval
        self.burst = burst
        self._windows: dict[tuple[str, str], list[float]] = {}  # key -> [window start, sent, held]
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # follow a redirected sys.stderr (tests, daemons)
        key = (record.name, str(record.msg))
        now = time.monotonic()
        with self._guard:
            window = self._windows.get(key)
            if window is None or now - window[0] >= self.interval:
                held = int(window[2]) if window else 0
                self._windows[key] = window = [now, 0.0, 0.0]
                if len(self._windows) > 1000:  # many distinct templates: forget the oldest
                    for old in sorted(self._windows, key=lambda k: self._windows[k][0])[:500]:
                        del self._windows[old]
            else:
                held = 0
            if window[1] >= self.burst:
                window[2] += 1
                return
            window[1] += 1
        if held:
            record = logging.makeLogRecord({**record.__dict__})
            record.msg = f"{record.msg} ({held} similar line(s) held back in the last {self.interval:.0f} s)"
        super().emit(record)


_INSTALLED: RateLimitedStderrHandler | None = None
_INSTALL_LOCK = threading.Lock()


def install() -> RateLimitedStderrHandler:
    """Route the ``otel_ext`` logger to our rate-limited stderr handler (idempotent)."""
    global _INSTALLED
    with _INSTALL_LOCK:
        if _INSTALLED is None:
            _INSTALLED = RateLimitedStderrHandler()
            _INSTALLED.setFormatter(logging.Formatter("%(message)s"))
            _logger.addHandler(_INSTALLED)
            _logger.propagate = False
            if _logger.level == logging.NOTSET:
                _logger.setLevel(logging.INFO)
        return _INSTALLED


_SAY_LAST: dict[str, tuple[float, int]] = {}
_SAY_LOCK = threading.Lock()


def say_every(interval: float, key: str, msg: str, *args: Any, level: int = logging.WARNING) -> None:
    """Log ``msg`` on the ``otel_ext`` logger at most once per ``interval`` seconds per ``key``."""
    now = time.monotonic()
    with _SAY_LOCK:
        last, held = _SAY_LAST.get(key, (-1e18, 0))
        if now - last < interval:
            _SAY_LAST[key] = (last, held + 1)
            return
        _SAY_LAST[key] = (now, 0)
        if len(_SAY_LAST) > 10_000:
            _SAY_LAST.clear()
    if held:
        msg = f"{msg} (said once per {interval:.0f} s; {held} repeat(s) held back)"
    _logger.log(level, msg, *args)


def is_suppressed() -> bool:
    return bool(context.get_value(SUPPRESS_INSTRUMENTATION_KEY))


@contextlib.contextmanager
def suppressed() -> Iterator[None]:
    """Run the block with OpenTelemetry instrumentation suppressed in the current context."""
    token = context.attach(context.set_value(SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        yield
    finally:
        context.detach(token)


THREAD_PREFIX = "otel-ext-"  # every thread we start is named so (lanes, prober, bulk senders)


_OWN_PREFIX = LOGGER_NAME + "."


def own_record_reason(record: logging.LogRecord) -> str | None:
    """Why a capturing handler must not ship ``record``: ``own`` (the ``otel_ext`` logger tree),
    ``own_thread`` (emitted on one of our threads, e.g. a client's line about our request) or
    ``suppressed`` (OTel instrumentation suppressed in this context, either key); None to ship it."""
    name = record.name
    if name == LOGGER_NAME or name.startswith(_OWN_PREFIX):
        return "own"
    if (record.threadName or "").startswith(THREAD_PREFIX):
        return "own_thread"
    if not is_instrumentation_enabled():
        return "suppressed"
    return None


def own_records_filter(record: logging.LogRecord) -> bool:
    """:func:`own_record_reason` as a ``logging`` filter: False for records not to ship."""
    return own_record_reason(record) is None
