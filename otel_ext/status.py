"""A running exporter's status, published as a small JSON file next to its queue file
(``q-<pid>-<id>.status.json``) so that ``otel-ext status`` can show, for every running process,
its backends, which one is active and their health — without talking to the process.

The file holds no record content and no secrets: backend names (URLs without credentials —
credentials come from env vars or files), levels, up/down, the last error's first 200 characters,
queue depth. It is written atomically (temp file + rename, 0600, in the 0700 queue directory) every
``interval`` seconds by a daemon thread, and removed on shutdown. Readers treat it as untrusted
input: size-capped, must be a regular file owned by the reader's uid, and stale after a few
intervals.

Wiring (exporter side): ``publisher = StatusPublisher(exporter); publisher.start()`` once the
exporter's queue is claimed, ``publisher.stop()`` in ``shutdown()``; after a fork, the child
calls ``start()`` again (threads do not survive fork).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

_logger = logging.getLogger(__name__)
SUFFIX = ".status.json"
MAX_BYTES = 64 * 1024
DEFAULT_INTERVAL_S = 5.0


def status_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.stem + SUFFIX)


def snapshot(stats: dict[str, Any], pid: int | None = None, interval_s: float = DEFAULT_INTERVAL_S) -> dict[str, Any]:
    """The published document, from ``FailoverLogExporter.stats()``."""
    backends = []
    for lane, info in (stats.get("lanes") or {}).items():
        for name, health in (info.get("backends") or {}).items():
            error = health.get("last_error")
            backends.append({"lane": lane, "name": str(name), "level": health.get("level"),
                             "up": bool(health.get("up")), "active": name == info.get("active"),
                             "last_error": None if error is None else str(error)[:200]})
    queue = stats.get("queue") or {}
    return {"pid": os.getpid() if pid is None else pid, "written_at": time.time(), "interval_s": interval_s,
            "policy": stats.get("policy"), "backends": backends,
            "queue": {k: queue.get(k) for k in ("records", "bytes", "oldest_age_s", "dead_letter_records")}}


def write_status(path: Path, document: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(document, out, separators=(",", ":"))
    os.replace(tmp, path)


def read_status(path: Path) -> dict[str, Any] | None:
    """The status document, or None when absent, not ours, oversized or not valid JSON."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_size > MAX_BYTES:
            return None
        data = os.read(fd, MAX_BYTES + 1)
    finally:
        os.close(fd)
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def is_stale(doc: dict[str, Any], now: float | None = None) -> bool:
    written = doc.get("written_at")
    interval = doc.get("interval_s")
    if not isinstance(interval, (int, float)):
        interval = DEFAULT_INTERVAL_S
    if not isinstance(written, (int, float)):
        return True
    return ((time.time() if now is None else now) - written) > 3 * float(interval) + 1.0


class StatusPublisher:
    """Publishes an exporter's status file every ``interval_s`` on a daemon thread; never raises
    into the exporter (a failed write is logged once and retried at the next tick)."""

    def __init__(self, exporter: Any, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self.exporter = exporter
        self.interval_s = interval_s
        self.path = status_path(Path(exporter.queue.path))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = False

    def publish(self) -> None:
        try:
            write_status(self.path, snapshot(self.exporter.stats(), interval_s=self.interval_s))
        except Exception:  # never raise into the exporter
            if not self._warned:
                self._warned = True
                _logger.warning("otel-ext: cannot write the status file %s", self.path, exc_info=True)

    def _run(self) -> None:
        from opentelemetry.instrumentation.utils import suppress_instrumentation

        with suppress_instrumentation():  # our own thread: nothing it logs may feed the pipeline
            while not self._stop.is_set():
                self.publish()
                self._stop.wait(self.interval_s)

    def start(self) -> StatusPublisher:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="otel-ext-status", daemon=True)
        self._thread.start()
        return self

    def stop(self, remove: bool = True) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2.0)
        if remove:
            with contextlib.suppress(OSError):
                self.path.unlink()
