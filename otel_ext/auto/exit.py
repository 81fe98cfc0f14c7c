"""Flush on termination. Servers such as uvicorn finish a graceful shutdown by re-raising SIGTERM
with the default action (and gunicorn's uvicorn worker resets SIGTERM to the default first), so
the process dies by the signal: atexit never runs and records still in the SDK's in-memory batch
buffer would be lost.

:func:`install` puts a handler on SIGTERM that flushes the pipeline (bounded) and then terminates
exactly as the default action would. Whenever code later sets SIGTERM back to ``SIG_DFL``, our
handler is installed instead (same termination, flushed first); any other handler an application
installs is left alone. The app's tracer and meter providers are flushed too (they would die the
same way).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

_logger = logging.getLogger(__name__)
_flushers: list[Callable[[], object]] = []
_original_signal = signal.signal
_installed = False


def _global_providers() -> list[Callable[[], object]]:
    """The app's tracer and meter providers die with the same signal: flush them as well."""
    from opentelemetry import metrics, trace

    flushes: list[Callable[[], object]] = []
    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
        flush = getattr(provider, "force_flush", None)
        if callable(flush):
            flushes.append(functools.partial(flush, 5_000))
    return flushes


def _flush_then_die(signum: int, _frame: Any) -> None:
    for flush in [*_flushers, *_global_providers()]:
        try:
            flush()
        except Exception:  # termination must proceed
            _logger.exception("otel-ext: flush on termination failed")
    _original_signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _signal(signalnum: Any, handler: Any) -> Any:
    if signalnum == signal.SIGTERM and handler == signal.SIG_DFL and _flushers:
        handler = _flush_then_die
    previous = _original_signal(signalnum, handler)
    return signal.SIG_DFL if previous is _flush_then_die else previous


def install(flush: Callable[[], object]) -> None:
    """Flush ``flush`` before a default-action SIGTERM ends the process (main thread only)."""
    global _installed
    _flushers.append(flush)
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    _installed = True
    signal.signal = _signal
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        _original_signal(signal.SIGTERM, _flush_then_die)
