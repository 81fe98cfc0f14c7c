"""FailoverLogExporter: an SDK ``LogRecordExporter`` that makes every batch durable before
``export()`` returns and delivers it in the background to redundant backends.

Guarantees:
- ``export()`` returns SUCCESS once the batch is committed to the on-disk queue, or FAILURE with a
  counted reason (``export_failed``); it never waits on the network and never raises.
- An entry leaves the queue only when a backend acknowledged it (``replicate``: every backend, each
  with its own cursor) or when it was moved to the dead-letter store after a permanent rejection.
- ``shutdown()`` is bounded (``shutdown_timeout``, default 5 s, the final in-flight request
  included); what is not delivered stays on disk and is adopted by the next process that opens the
  same queue directory. The queue file is deleted only when a query inside the deleting transaction
  proves it holds nothing.
- At least once: after a crash, the records of the request that was in flight on each lane (and,
  while the disk is full, of the requests delivered but not yet recorded) may be delivered again.
- Fork-safe: a forked child starts with its own empty queue file and its own threads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

from otel_ext._fork import after_fork_in_child
from otel_ext.backends.base import Backend
from otel_ext.backends.urls import backend_from_url
from otel_ext.export.encoding import encode_batch
from otel_ext.export.policy import POLICIES, Policy
from otel_ext.export.sender import EXPORT_COUNTERS, Lane, Prober
from otel_ext.queue.ownership import ClaimedFile, claim_new, orphans, prepare_dir
from otel_ext.queue.store import QUEUE_COUNTERS, PersistentQueue, QueueError
from otel_ext.selflog import install as install_selflog
from otel_ext.selflog import say_every
from otel_ext.settings import Settings, load_settings
from otel_ext.status import StatusPublisher
from otel_ext.telemetry import Counters, ensure_published, register_gauge

_logger = logging.getLogger(__name__)


_LIVE: weakref.WeakSet[FailoverLogExporter] = weakref.WeakSet()


def _queue_gauges(field: str) -> list[tuple[float, dict[str, str]]]:
    out = []
    for exporter in list(_LIVE):
        stats = exporter.queue.stats()
        value = getattr(stats, field)
        out.append((float(value or 0.0), {"queue": exporter.queue.path.name}))
    return out


def _active_levels() -> list[tuple[float, dict[str, str]]]:
    out = []
    for exporter in list(_LIVE):
        for lane in exporter.lanes:
            up = [h.level for h in lane.policy.health if h.up]
            out.append((float(up[0]) if up else -1.0, {"lane": lane.lane}))
    return out


def live_exporters() -> list[FailoverLogExporter]:
    """FailoverLogExporters of this process that are not shut down (e.g. built by the SDK)."""
    return list(_LIVE)


_RECORD_GRACE_S = 1.0  # force_flush: how long delivered-but-unrecorded ranges may take to reach the file

register_gauge("queue.depth", "{record}", lambda: _queue_gauges("records"))
register_gauge("queue.bytes", "By", lambda: _queue_gauges("bytes"))
register_gauge("queue.oldest_age", "s", lambda: _queue_gauges("oldest_age_s"))
register_gauge("queue.dead_letters", "{record}", lambda: _queue_gauges("dead_letter_records"))
register_gauge("exporter.active_backend_level", "1", _active_levels)


class FailoverLogExporter(LogRecordExporter):
    """Durable, failing-over log exporter (see module docstring for the guarantees).

    Built without arguments it reads ``OTEL_EXT_*`` settings (and ``OTEL_EXT_CONFIG_FILE``); with no
    backend configured it writes OTLP/JSON files under the user's state directory.
    """

    def __init__(
        self,
        backends: Sequence[Backend | str] | None = None,
        policy: str | None = None,
        queue_dir: str | os.PathLike[str] | None = None,
        queue_max_bytes: int | None = None,
        fsync: str | None = None,
        shutdown_timeout: float | None = None,
        timeout: float | None = None,
        queue_insecure_dir: bool | None = None,
        max_request_records: int | None = None,
        max_request_bytes: int | None = None,
        probe_interval: float = 0.25,
        recover_after: int = 2,
        settings: Settings | None = None,
        counters: Counters = EXPORT_COUNTERS,
        queue_counters: Counters = QUEUE_COUNTERS,
    ) -> None:
        if policy is not None and policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        # an explicit argument always wins over the environment (a bad env value for a parameter
        # given here is not even read)
        settings = settings or load_settings(
            failover_policy=policy, queue_dir=None if queue_dir is None else str(queue_dir),
            queue_max_bytes=queue_max_bytes, queue_fsync=fsync, shutdown_timeout=shutdown_timeout,
            timeout=timeout, queue_insecure_dir=queue_insecure_dir, max_request_records=max_request_records,
            max_request_bytes=max_request_bytes)
        self.settings = settings
        self.policy_name = policy or settings.failover_policy
        attempt_timeout = timeout or settings.timeout
        given = list(backends) if backends is not None else list(settings.effective_backends)
        if not given:
            raise ValueError("FailoverLogExporter needs at least one backend")
        self.backends: list[Backend] = [
            b if isinstance(b, Backend) else backend_from_url(b, default_timeout=attempt_timeout) for b in given
        ]
        names = [b.name for b in self.backends]
        if len(set(names)) != len(names):
            raise ValueError(f"backend names must be unique, got {names} (add ?name=... to a URL)")
        insecure = queue_insecure_dir if queue_insecure_dir is not None else settings.queue_insecure_dir
        self.queue_dir = prepare_dir(queue_dir or settings.effective_queue_dir, allow_insecure=insecure)
        self.queue_max_bytes = queue_max_bytes or settings.queue_max_bytes
        self.fsync = fsync or settings.queue_fsync
        self.shutdown_timeout = shutdown_timeout if shutdown_timeout is not None else settings.shutdown_timeout
        # one coalesced request per lane: the at-least-once window of a kill -9
        self.max_request_records = max_request_records or settings.max_request_records
        self.max_request_bytes = max_request_bytes or settings.max_request_bytes
        self.probe_interval = probe_interval
        self.recover_after = recover_after
        self.counters = counters
        self.queue_counters = queue_counters
        install_selflog()
        self._shutdown = False
        self._unwritable = 0
        self._lock = threading.Lock()
        self._start()
        _LIVE.add(self)
        ensure_published()
        after_fork_in_child(self._after_fork_in_child)

    # --- lifecycle -----------------------------------------------------------------------------

    def _start(self) -> None:
        self._pid = os.getpid()
        self._claim: ClaimedFile = claim_new(self.queue_dir)
        self.queue = PersistentQueue(self._claim.db_path, self.queue_max_bytes, self.fsync, self.queue_counters)
        if self.policy_name == "replicate":
            self.lanes = [
                Lane(b.name, self.queue, Policy([b], "priority", self.probe_interval, recover_after=self.recover_after),
                     self.counters, self.max_request_records, self.max_request_bytes)
                for b in self.backends
            ]
        else:
            self.lanes = [
                Lane("main", self.queue,
                     Policy(self.backends, self.policy_name, self.probe_interval, recover_after=self.recover_after),
                     self.counters, self.max_request_records, self.max_request_bytes)
            ]
        self.queue.register_lanes(lane.lane for lane in self.lanes)
        self.adopt_orphans()
        self.prober = Prober([lane.policy for lane in self.lanes], housekeeping=self._housekeeping)
        for lane in self.lanes:
            lane.start()
        self.prober.start()
        # `otel-ext status` shows this process's backends from this file (no record content, no secrets)
        self._status = StatusPublisher(self).start()

    def _after_fork_in_child(self) -> None:
        if self._shutdown:
            return
        self.queue.abandon()
        self._claim.forget()
        self._lock = threading.Lock()
        for backend in self.backends:
            backend.reset_after_fork()
        self._start()

    def _housekeeping(self) -> None:
        self.queue.maintain()
        self.adopt_orphans()

    def adopt_orphans(self) -> int:
        """Move the pending entries of queue files whose owner died into this queue.

        A damaged orphan is quarantined (its readable rows salvaged); one that is a symlink or
        belongs to another user is never touched. Our own queue keeps working whatever happens."""
        adopted = 0

        def refused(path: os.PathLike[str], why: str) -> None:
            say_every(60.0, f"refused:{path}", "otel-ext: not adopting %s: it %s", path, why)

        for orphan in orphans(self.queue_dir, exclude=self._claim.db_path, refused=refused):
            try:
                result = self.queue.adopt(orphan.db_path)
            except Exception as exc:  # noqa: BLE001 - our queue cannot take it now: leave it for later
                say_every(60.0, "adopt-failed", "otel-ext: could not adopt queue file %s yet: %s",
                          orphan.db_path.name, exc)
                orphan.release(remove=False)
                continue
            orphan.release(remove=True)
            adopted += result.records
            if result.already_in is not None:  # its adopter died before removing it
                _logger.warning("otel-ext: removed %s: its records were already adopted into %s",
                                orphan.db_path.name, result.already_in.name)
            elif result.damaged:
                _logger.error("otel-ext: queue file %s was damaged (%s): moved to %s; salvaged %d records "
                              "(%d dead-lettered), %d unreadable entries", orphan.db_path.name, result.damaged,
                              result.quarantined_to, result.records, result.dead_letter_records, result.skipped)
            elif result.records or result.dead_letter_records:
                _logger.warning("otel-ext: adopted %d queued records (%d dead-lettered) from %s",
                                result.records, result.dead_letter_records, orphan.db_path.name)
        if adopted:
            for lane in self.lanes:
                lane.wake.set()
        with contextlib.suppress(Exception):
            self.queue.forget_adopted(p.name for p in self.queue_dir.glob("q-*.db"))
        return adopted

    # --- LogRecordExporter ---------------------------------------------------------------------

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        if not batch:
            return LogRecordExportResult.SUCCESS
        if self._shutdown:
            self.counters.add("export_failed", "shutdown", len(batch))
            return LogRecordExportResult.FAILURE
        try:
            if os.getpid() != self._pid:  # a fork we were not told about
                self._after_fork_in_child()
            entries = encode_batch(batch)
        except Exception:  # never raise into the SDK worker
            self.counters.add("export_failed", "encode", len(batch))
            _logger.exception("otel-ext: could not encode a batch of %d records", len(batch))
            return LogRecordExportResult.FAILURE
        try:
            self.queue.append(entries)
        except QueueError as exc:
            self.counters.add("export_failed", "queue", len(batch))
            classes: dict[str, int] = {}
            for e in entries:
                for name, count in e.classes.items():
                    classes[name] = classes.get(name, 0) + count
            self.queue.count_unwritable(classes)
            self._unwritable += len(batch)
            say_every(60.0, f"cannot-write:{self.queue_dir}", "otel-ext: the queue in %s cannot store records "
                      "(%s): %d dropped so far, counted per class as queue.dropped{reason=cannot_write}",
                      self.queue_dir, exc, self._unwritable)
            return LogRecordExportResult.FAILURE
        for lane in self.lanes:
            lane.wake.set()
        return LogRecordExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Wait until every queued record is delivered (or dead-lettered), up to the timeout.

        "Delivered" is judged against the queue file and the lanes' delivered ranges, never
        against an in-memory total."""
        deadline = time.monotonic() + timeout_millis / 1000
        while True:
            if self._flushed():
                self._await_recorded(min(deadline, time.monotonic() + _RECORD_GRACE_S))
                return True
            if time.monotonic() >= deadline or self._shutdown:
                return False
            for lane in self.lanes:
                lane.wake.set()
            time.sleep(0.01)

    def _await_recorded(self, until: float) -> None:
        """Everything is delivered; give the lanes a moment to record it in the queue file too, so
        the queue's depth (stats, gauges, ``otel-ext queue status``) reads 0 once force_flush returns.
        Bounded: a lane that cannot write its cursor (disk full) keeps its range in memory, and the
        records stay delivered either way."""
        while any(lane.unrecorded for lane in self.lanes) and time.monotonic() < until and not self._shutdown:
            for lane in self.lanes:
                lane.wake.set()
            time.sleep(0.005)

    def _flushed(self) -> bool:
        try:
            last = self.queue.last_id()
        except QueueError:
            return False
        return all(lane.delivered_upto() >= last for lane in self.lanes)

    def shutdown(self, timeout_millis: float | None = None) -> None:
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True
        _LIVE.discard(self)
        self._status.stop()
        budget = self.shutdown_timeout
        if timeout_millis is not None:
            budget = min(budget, max(0.0, timeout_millis / 1000))
        start = time.monotonic()
        # lanes stop starting requests a little before the bound, so the one in flight (bounded by
        # the attempt timeout) can still be acknowledged; a request that outlives the bound is
        # abandoned and stays queued (it may be delivered twice: at least once)
        deadline = start + budget
        self.prober.stop()
        for lane in self.lanes:
            lane.stop(max(0.0, budget - min(0.25, budget / 4)))
        for lane in self.lanes:
            lane.join(max(0.0, deadline - time.monotonic()))
        for lane in self.lanes:
            lane.settle()  # a cursor the full disk refused: one last try
        pending = 0
        with contextlib.suppress(QueueError):
            pending = self.queue.pending()
        removed = self.queue.close(remove_if_empty=True)
        self._claim.release(remove=removed)
        if pending:
            _logger.warning("otel-ext: %d records not yet delivered stay queued in %s", pending, self.queue_dir)
        for backend in self.backends:
            with contextlib.suppress(Exception):
                backend.close()

    # --- introspection -------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        q = self.queue.stats()
        return {
            "policy": self.policy_name,
            "queue": {"path": str(self._claim.db_path), "entries": q.entries, "records": q.records, "bytes": q.bytes,
                      "oldest_age_s": q.oldest_age_s, "dead_letters": q.dead_letters,
                      "dead_letter_records": q.dead_letter_records},
            "lanes": {lane.lane: {"active": lane.active_backend,
                                  "backends": {h.backend.name: {"up": h.up, "level": h.level,
                                                                "last_error": h.last_error}
                                               for h in lane.policy.health}}
                      for lane in self.lanes},
            "counters": self.counters.snapshot(),
            "queue_counters": self.queue_counters.snapshot(),
        }
