"""Background delivery: one :class:`Lane` thread per cursor drains the persistent queue to the
backends its :class:`Policy` chooses; one :class:`Prober` thread probes down backends (without
customer data) and adopts orphaned queue files.

Queued entries are coalesced into one request by concatenating their serialized
``ExportLogsServiceRequest`` bytes (protobuf concatenation merges the repeated ``resource_logs``),
so nothing is decoded or re-encoded on the way out.

A backend that acknowledges asynchronously (``Backend.pipelined``: Kafka) gets a bounded window of
requests in flight (``max_inflight_requests`` / ``max_inflight_bytes``): the lane keeps reading and
submitting while earlier requests wait for their acknowledgements, and moves its cursor over the
contiguous acknowledged prefix only, so an entry still leaves the queue only when every message of
it is acknowledged. When any request of the window fails, the rest of the window is forgotten (what
the broker took of it is sent again: at least once) and that request goes through the synchronous
``send()``, whose outcome (retryable, auth, split, permanent, partial) the lane acts on as always.
The acknowledged prefix of a window is written to the queue file (cursor, then the entries deleted)
every ``RECORD_EVERY`` seconds or ``max_bytes / 8`` of the queue, when the lane goes idle, when a
request fails, and when it stops, not after every acknowledgement: each write takes the queue's
lock, which ``export()`` holds while it appends, so a write per acknowledgement made the two threads
wait for each other. A crash before such a write sends that range again (at least once); the cursor
still never passes an unacknowledged entry.

Disk full is a state, not an error loop: a lane that delivered a request but cannot write its
cursor keeps the delivered range in memory (it never resends it), retries the write with backoff
(checkpointing the WAL to free space) and says so once a minute. Both threads run with OTel
instrumentation suppressed, so nothing they do is captured back into the pipeline.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from otel_ext.backends.base import Ticket
from otel_ext.backends.outcome import Outcome, OutcomeKind
from otel_ext.export.policy import BackendHealth, Policy
from otel_ext.queue.store import Entry, PersistentQueue, QueueError
from otel_ext.selflog import say_every, suppressed
from otel_ext.telemetry import Counters, register_counters

_logger = logging.getLogger(__name__)

RECORD_EVERY = 0.05
"""Seconds between writes of a window's acknowledged prefix (the cursor) to the queue file."""
RECORD_OVERDUE = 0.25
"""Until then a write that would wait for the queue's lock (an append in progress) is put off."""

EXPORT_COUNTERS = register_counters(Counters("exporter"), {
    "delivered": ("backend",), "attempts": ("backend", "outcome"), "failovers": ("transition",),
    "partially_rejected": ("backend",), "export_failed": ("reason",), "unrecorded_retries": ("lane",)})
"""``delivered`` per backend, ``attempts`` per ``backend:outcome``, ``failovers`` per ``from->to``,
``partially_rejected`` per backend, ``export_failed`` per reason, ``unrecorded_retries`` per lane
(cursor writes the queue file refused, e.g. disk full)."""


class Lane(threading.Thread):
    """Delivers every queue entry past its cursor, in order, through its policy."""

    def __init__(
        self,
        name: str,
        queue: PersistentQueue,
        policy: Policy,
        counters: Counters = EXPORT_COUNTERS,
        max_request_records: int = 10_000,
        max_request_bytes: int = 3 * 1024 * 1024,
        max_inflight_requests: int = 8,
        max_inflight_bytes: int = 24 * 1024 * 1024,
    ) -> None:
        super().__init__(name=f"otel-ext-lane-{name}", daemon=True)
        self.lane = name
        self.queue = queue
        self.policy = policy
        self.counters = counters
        self.max_request_records = max_request_records
        self.max_request_bytes = max_request_bytes
        self.max_inflight_requests = max(1, max_inflight_requests)
        self.max_inflight_bytes = max(1, max_inflight_bytes)
        self.wake = threading.Event()
        self.idle = threading.Event()
        self._stop_at: float | None = None
        self._pending: list[Entry] = []
        self._split = 0  # entries still to send one by one after a permanent rejection
        self._resend = False  # _pending is a request that failed in the window: through send() now
        # requests in flight on a pipelined backend: (entries, records, bytes, ticket), oldest first
        self._window: deque[tuple[list[Entry], int, int, Ticket]] = deque()
        self._window_health: BackendHealth | None = None
        self._window_bytes = 0
        self._submitted = 0  # last entry id in the window
        self._last_backend: str | None = None
        self._failed_on: str | None = None  # backend the pending request last failed on
        self._auth_logged: set[str] = set()
        # what was delivered (or dead-lettered) and what the queue file knows of it
        self._delivered: int | None = None
        self._recorded = 0
        self._unrecorded_since = 0.0  # monotonic time of the first acknowledgement not yet recorded
        self._unrecorded_bytes = 0  # payload bytes acknowledged in the window since the last cursor write
        self._owed_dead: list[tuple[Entry, str, str]] = []  # dead letters not yet written
        # ids acknowledged while a dead letter is owed: the queue hears of them once it is written
        self._unmarked: list[int] = []
        self._retry_at = 0.0
        self._backoff = 0.0

    # --- control -------------------------------------------------------------------------------

    def stop(self, drain_seconds: float) -> None:
        self._stop_at = time.monotonic() + max(0.0, drain_seconds)
        self.wake.set()
        self.policy.changed.set()

    def _stopping(self) -> bool:
        return self._stop_at is not None and time.monotonic() >= self._stop_at

    # --- loop ----------------------------------------------------------------------------------

    def run(self) -> None:
        with suppressed():
            self._run()

    def _run(self) -> None:
        while not self._stopping():
            try:
                if not self._step():
                    if self._stop_at is not None and not self.unrecorded:
                        break  # drained
                    self.idle.set()
                    self.wake.wait(min(0.5, max(0.01, self._retry_at - time.monotonic()))
                                   if self.unrecorded else 0.5)
                    self.wake.clear()
            except Exception as exc:  # noqa: BLE001 - the lane must survive anything, data stays queued
                say_every(60.0, f"lane-error:{self.lane}", "otel-ext: delivery lane %s hit an error (%s: %s); "
                          "retrying, the data stays queued", self.lane, type(exc).__name__, exc)
                self._pending = []
                self._forget_window()
                self._resend = False
                time.sleep(0.2)
        with contextlib.suppress(Exception):
            self.settle(force=True)  # what was acknowledged before the stop: recorded if the file lets us
        self.idle.set()

    def delivered_upto(self) -> int:
        """Highest entry id this lane has delivered or dead-lettered (recorded in the file or not)."""
        if self._delivered is None:
            self._delivered = self._recorded = self.queue.cursor(self.lane)
        return self._delivered

    @property
    def unrecorded(self) -> bool:
        """Delivered entries (or dead letters) the queue file does not know about yet."""
        return bool(self._owed_dead) or (self._delivered or 0) > self._recorded

    def settle(self, force: bool = False, wait: bool = True) -> bool:
        """Write what the file does not know yet (dead letters, then the cursor). True if done.

        Failures back off (0.1 s doubling to 5 s); the WAL is checkpointed to free disk space.
        With ``wait=False`` nothing is written (False, no back-off) while an append holds the queue."""
        if not self.unrecorded:
            return True
        now = time.monotonic()
        if not force and now < self._retry_at:
            return False
        if not wait and not self._owed_dead:
            upto = self.delivered_upto()
            try:
                if not self.queue.advance(self.lane, upto, wait=False):
                    return False
            except QueueError as exc:
                return self._unrecordable(exc)
            self._recorded_done(upto)
            return True
        try:
            while self._owed_dead:
                entry, backend, reason = self._owed_dead[0]
                self.queue.dead_letter(entry, backend, reason)
                self._owed_dead.pop(0)
            upto = self.delivered_upto()
            if self._unmarked:  # the dead letters are in the file: what was held back may go now
                self.queue.mark_delivered(self.lane, upto, self._unmarked)
                self._unmarked = []
            self.queue.advance(self.lane, upto)
        except QueueError as exc:
            return self._unrecordable(exc)
        self._recorded_done(upto)
        return True

    def _recorded_done(self, upto: int) -> None:
        self._recorded = upto
        self._unrecorded_bytes = 0
        if self._backoff:
            say_every(0.0, f"recorded:{self.lane}", "otel-ext: lane %s can record its progress again", self.lane,
                      level=logging.INFO)
        self._backoff = 0.0

    def _unrecordable(self, exc: QueueError) -> bool:
        """The cursor write failed: back off, keep the delivered range in memory (never resent)."""
        self._backoff = min(max(self._backoff * 2, 0.1), 5.0)
        self._retry_at = time.monotonic() + self._backoff
        self.queue.checkpoint()
        self.counters.add("unrecorded_retries", self.lane)
        say_every(60.0, f"unrecorded:{self.lane}", "otel-ext: lane %s delivered records up to entry %d but "
                  "cannot record it in the queue file (%s); keeping the range in memory (not resending) "
                  "and retrying", self.lane, self.delivered_upto(), exc)
        return False

    def _settle_due(self) -> None:
        """Record the acknowledged prefix if it is due: a failed write's retry time came, dead letters
        are owed, or ``RECORD_EVERY`` passed / ``max_bytes / 8`` of the queue was acknowledged since the
        last write. Before ``RECORD_OVERDUE`` (and below ``max_bytes / 8``) a write does not wait for an
        append to finish."""
        if not self.unrecorded:
            return
        if self._backoff or self._owed_dead:
            self.settle()
            return
        age = time.monotonic() - self._unrecorded_since
        large = self._unrecorded_bytes >= self.queue.max_bytes // 8
        if age >= RECORD_EVERY or large:
            self.settle(force=True, wait=large or age >= RECORD_OVERDUE)

    def _step(self) -> bool:
        """One request (or one turn of the window). False when there is nothing to send."""
        self._settle_due()
        if self._window:
            self._pump()
            return True
        if not self._pending:
            self._pending = self.queue.read_after(
                self.delivered_upto(), self.max_request_records, self.max_request_bytes, lane=self.lane
            )
            if not self._pending:
                self.settle(force=not self._backoff)  # going idle: everything acknowledged is recorded now
                return False
        self.idle.clear()
        health = self.policy.choose()
        if health is None:
            self.policy.changed.wait(self.policy.next_event_in(time.monotonic()))
            self.policy.changed.clear()
            return True
        if health.backend.pipelined and not self._split and not self._resend:
            self._window_health = health
            self._submitted = self.delivered_upto()
            take, self._pending = self._pending, []
            self._submit(take)
            self._pump()
            return True
        take = self._pending[:1] if self._split else self._pending
        payload = take[0].payload if len(take) == 1 else b"".join(e.payload for e in take)
        records = sum(e.records for e in take)
        outcome = health.backend.send(payload, records)
        self._handle(health, take, records, outcome)
        return True

    # --- the window of a pipelined backend -----------------------------------------------------

    def _submit(self, take: list[Entry]) -> None:
        assert self._window_health is not None
        parts = [e.payload for e in take]  # the request is their concatenation (not copied here)
        records = sum(e.records for e in take)
        size = sum(len(p) for p in parts)
        ticket = self._window_health.backend.submit_parts(parts, records)
        self._window.append((take, records, size, ticket))
        self._window_bytes += size
        self._submitted = take[-1].id

    def _may_fill(self, health: BackendHealth) -> bool:
        """Keep submitting to ``health`` (in priority mode: only while it is still the choice)."""
        if not health.available(time.monotonic()):
            return False
        return self.policy.mode != "priority" or self.policy.choose() is health

    def _fill(self) -> None:
        health = self._window_health
        assert health is not None
        while (len(self._window) < self.max_inflight_requests and self._window_bytes < self.max_inflight_bytes
               and not self._window[-1][3].error and self._may_fill(health)):
            take = self.queue.read_after(self._submitted, self.max_request_records, self.max_request_bytes,
                                         lane=self.lane)
            if not take:
                return
            self._submit(take)

    def _pump(self) -> None:
        """Submit up to the window's bounds, wait a little for reports, act on the settled head."""
        health = self._window_health
        assert health is not None
        self._fill()
        head = self._window[0][3]
        now = time.monotonic()
        if head.state(now) == "pending":
            health.backend.serve(min(0.05, max(0.0, head.deadline - now)))
        acknowledged = False
        while self._window:
            take, records, _size, ticket = self._window[0]
            state = ticket.state(time.monotonic())
            if state == "pending":
                break
            if state == "ok":
                self._window.popleft()
                self._window_bytes -= _size
                if not self._unrecorded_bytes:
                    self._unrecorded_since = time.monotonic()
                self._unrecorded_bytes += _size
                self._handle(health, take, records, Outcome.ok(), settle=False)
                acknowledged = True
                continue
            # this request failed: what followed it goes again (at least once), and this one
            # through send(), whose outcome decides (retry, fail over, split, dead letter)
            say_every(60.0, f"window-failed:{self.lane}", "otel-ext: lane %s: a request in flight to %s failed "
                      "(%s); sending it again and resuming from it", self.lane, health.backend.name, ticket.error,
                      level=logging.INFO)
            self._forget_window()
            self._pending = take
            self._resend = True
            self.settle(force=not self._backoff)  # a failure: what was acknowledged before it, now
            break
        if acknowledged:
            self._settle_due()
        if not self._window:
            self._window_health = None

    def _forget_window(self) -> None:
        self._window.clear()
        self._window_bytes = 0
        self._window_health = None

    def _handle(self, health: BackendHealth, take: list[Entry], records: int, outcome: Outcome,
                settle: bool = True) -> None:
        name = health.backend.name
        self.counters.add("attempts", f"{name}:{outcome.kind.value}")
        if outcome.delivered:
            # a failover: this request failed on another backend first, or (priority) traffic moved
            previous = self._failed_on
            if previous is None and self.policy.mode == "priority":
                previous = self._last_backend
            if previous is not None and previous != name:
                self.counters.add("failovers", f"{previous}->{name}")
                _logger.warning("otel-ext: delivering to %s (was %s)", name, previous)
            self._last_backend = name
            self._failed_on = None
            self.policy.on_success(health)
            self.counters.add("delivered", name, records)
            if outcome.kind is OutcomeKind.PARTIAL:
                self.counters.add("partially_rejected", name, outcome.rejected)
                if outcome.dead_letter is not None:  # keep exactly the rejected records, replayable
                    kept = Entry(0, take[0].created_ns, max(e.tier for e in take), outcome.rejected,
                                 take[0].classes, outcome.dead_letter)
                    self._owed_dead.append((kept, name, outcome.message))
                _logger.warning("otel-ext: %s accepted a request but rejected %d records: %s",
                                name, outcome.rejected, outcome.message)
            self._acknowledge(take, settle)
            return
        if outcome.kind is OutcomeKind.PERMANENT:
            if len(take) > 1:
                self._split = len(take)  # find the bad entries: resend one by one
                return
            self._owed_dead.append((take[0], name, outcome.message))
            _logger.error("otel-ext: %s permanently rejected %d records (kept in the dead-letter store): %s",
                          name, take[0].records, outcome.message)
            self._acknowledge(take)
            return
        self._failed_on = name
        if outcome.kind is OutcomeKind.THROTTLED:
            self.policy.pause(health, outcome.retry_after, outcome.message)
            return
        auth = outcome.kind is OutcomeKind.AUTH
        if auth and name not in self._auth_logged:
            self._auth_logged.add(name)
            _logger.error("otel-ext: %s refused our credentials (%s); data is kept and other backends are used",
                          name, outcome.message)
        elif not auth:
            _logger.warning("otel-ext: %s unavailable (%s); failing over", name, outcome.message)
        self.policy.mark_down(health, outcome.message, auth=auth)

    def _acknowledge(self, take: list[Entry], settle: bool = True) -> None:
        self._delivered = max(self.delivered_upto(), take[-1].id)
        if self._owed_dead or self._unmarked:
            # a dead letter is owed (not in the file yet): the queue must not free what this lane
            # passed (a crash would lose the rejected records); its ids resolve evictions later
            self._unmarked.extend(e.id for e in take)
        else:
            self.queue.mark_delivered(self.lane, self._delivered, take)  # eviction frees it, not a drop
        del self._pending[: len(take)]
        if not self._pending:
            self._resend = False
        if settle:
            self.settle(force=not self._backoff)
        if self._split:
            self._split = max(0, self._split - len(take))

    @property
    def in_flight(self) -> int:
        """Requests submitted to a pipelined backend and not yet settled."""
        return len(self._window)

    @property
    def active_backend(self) -> str | None:
        return self.policy.active()


class Prober(threading.Thread):
    """Probes down backends of every lane and periodically runs ``housekeeping`` (orphan adoption)."""

    def __init__(self, policies: list[Policy], housekeeping: Callable[[], object] | None = None,
                 housekeeping_interval: float = 5.0) -> None:
        super().__init__(name="otel-ext-prober", daemon=True)
        self.policies = policies
        self.housekeeping = housekeeping
        self.housekeeping_interval = housekeeping_interval
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        with suppressed():
            self._run()

    def _run(self) -> None:
        next_housekeeping = time.monotonic() + self.housekeeping_interval
        while not self._halt.wait(0.05):
            now = time.monotonic()
            for policy in self.policies:
                for health in policy.due_probes(now):
                    try:
                        outcome = health.backend.probe()
                    except Exception as exc:  # noqa: BLE001
                        outcome = Outcome.retryable(str(exc))
                    policy.record_probe(health, outcome.delivered, outcome.message)
            if self.housekeeping is not None and now >= next_housekeeping:
                next_housekeeping = now + self.housekeeping_interval
                try:
                    self.housekeeping()
                except Exception as exc:  # noqa: BLE001
                    say_every(60.0, "housekeeping", "otel-ext: queue housekeeping failed: %s: %s",
                              type(exc).__name__, exc)
