"""Fast unit tests of export/policy.py and export/sender.py with the in-package MemoryBackend:
priority, round robin, replicate, hysteresis on recovery, throttling, permanent rejections. No
peers, no network."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from durable_helpers import append_in_progress, entry

from otel_ext.backends.base import Ticket
from otel_ext.backends.outcome import Outcome
from otel_ext.export import FailoverLogExporter
from otel_ext.export.policy import Policy
from otel_ext.export.sender import Lane
from otel_ext.export.testing import MemoryBackend
from otel_ext.queue.store import PersistentQueue
from otel_ext.telemetry import Counters


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_priority_uses_the_first_available_backend() -> None:
    a, b = MemoryBackend("a"), MemoryBackend("b")
    policy = Policy([a, b], "priority")
    assert [policy.choose().backend.name for _ in range(3)] == ["a", "a", "a"]  # type: ignore[union-attr]
    policy.mark_down(policy.health[0], "refused")
    assert policy.choose().backend is b  # type: ignore[union-attr]
    policy.mark_down(policy.health[1], "refused")
    assert policy.choose() is None


def test_round_robin_alternates_over_available_backends() -> None:
    a, b, c = MemoryBackend("a"), MemoryBackend("b"), MemoryBackend("c")
    policy = Policy([a, b, c], "round_robin")
    names = [policy.choose().backend.name for _ in range(6)]  # type: ignore[union-attr]
    assert sorted(names) == ["a", "a", "b", "b", "c", "c"]
    policy.mark_down(policy.health[1], "down")
    assert {policy.choose().backend.name for _ in range(4)} == {"a", "c"}  # type: ignore[union-attr]


def test_recovery_needs_consecutive_good_probes_while_another_backend_is_up() -> None:
    a, b = MemoryBackend("a"), MemoryBackend("b")
    policy = Policy([a, b], "priority", probe_interval=0.01, recover_after=2)
    primary = policy.health[0]
    policy.mark_down(primary, "refused")
    now = time.monotonic() + 1
    assert policy.due_probes(now) == [primary]
    policy.record_probe(primary, True)
    assert not primary.up and policy.choose().backend is b  # type: ignore[union-attr]  # one good probe: not yet
    assert policy.due_probes(now + 1) == [primary]
    policy.record_probe(primary, False, "flap")  # a flap resets the streak
    policy.record_probe(primary, True)
    assert not primary.up
    policy.record_probe(primary, True)
    assert primary.up and policy.choose().backend is a  # type: ignore[union-attr]


def test_one_good_probe_is_enough_when_nothing_else_is_up() -> None:
    a, b = MemoryBackend("a"), MemoryBackend("b")
    policy = Policy([a, b], "priority", recover_after=3)
    for h in policy.health:
        policy.mark_down(h, "down")
    policy.record_probe(policy.health[1], True)
    assert policy.choose().backend is b  # type: ignore[union-attr]


def test_probe_backoff_doubles_up_to_the_cap() -> None:
    policy = Policy([MemoryBackend("a")], "priority", probe_interval=0.1, max_probe_interval=0.5)
    health = policy.health[0]
    policy.mark_down(health, "down")
    delays = []
    for _ in range(5):
        policy.record_probe(health, False, "still down")
        delays.append(round(health.backoff, 3))
    assert delays == [0.2, 0.4, 0.5, 0.5, 0.5]


def test_throttled_backend_is_paused_for_the_server_given_delay() -> None:
    a, b = MemoryBackend("a"), MemoryBackend("b")
    policy = Policy([a, b], "priority")
    policy.pause(policy.health[0], 0.2, "429")
    assert policy.choose().backend is b  # type: ignore[union-attr]
    assert policy.choose(time.monotonic() + 0.3).backend is a  # type: ignore[union-attr]
    policy.pause(policy.health[0], 10_000, "429")  # absurd Retry-After is capped
    assert policy.health[0].paused_until <= time.monotonic() + 300.5


def make_exporter(backends: list[MemoryBackend], tmp_path: Path, policy: str = "priority") -> FailoverLogExporter:
    return FailoverLogExporter(backends, policy=policy, queue_dir=tmp_path / "q", counters=Counters("e"),
                               queue_counters=Counters("q"), probe_interval=0.02)


def test_failover_on_retryable_and_back_after_recovery(tmp_path: Path) -> None:
    a = MemoryBackend("a", script=[Outcome.retryable("connection refused")])
    b = MemoryBackend("b")
    exp = make_exporter([a, b], tmp_path)
    exp.queue.append([entry([1, 2])])
    exp.lanes[0].wake.set()
    assert wait_for(lambda: b.records == 2)
    assert exp.counters.get("failovers", "a->b") == 1
    assert wait_for(lambda: exp.lanes[0].policy.health[0].up)  # probes succeed, a comes back
    exp.queue.append([entry([3])])
    exp.lanes[0].wake.set()
    assert wait_for(lambda: a.records == 1)
    assert b.records == 2
    exp.shutdown()


def test_replicate_delivers_everything_to_every_backend_with_own_cursors(tmp_path: Path) -> None:
    a, b = MemoryBackend("a"), MemoryBackend("b", answer=Outcome.retryable("down"))
    exp = make_exporter([a, b], tmp_path, policy="replicate")
    exp.queue.append([entry([1, 2]), entry([3])])
    for lane in exp.lanes:
        lane.wake.set()
    assert wait_for(lambda: a.records == 3)
    assert exp.queue.pending() == 3  # kept for b
    b.answer = None
    assert wait_for(lambda: b.records == 3)
    assert exp.force_flush(5000) and exp.queue.pending() == 0
    exp.shutdown()


def test_permanent_rejection_isolates_the_bad_entry_into_the_dead_letter_store(tmp_path: Path) -> None:
    bad = entry([666])
    q = PersistentQueue(tmp_path / "q.db")
    q.register_lanes(["main"])
    q.append([entry([1]), bad, entry([2])])

    class Picky(MemoryBackend):
        def send(self, payload: bytes, records: int) -> Outcome:
            if bad.payload in payload:
                return Outcome.permanent("mapper_parsing_exception")
            return super().send(payload, records)

    picky = Picky("picky")
    lane = Lane("main", q, Policy([picky], "priority"), Counters("e"))
    for _ in range(5):
        lane._step()
    assert sorted(int(v) for v in picky.values("seq")) == [1, 2]
    letters = q.dead_letters()
    assert len(letters) == 1 and letters[0].payload == bad.payload and "mapper_parsing" in letters[0].reason
    assert q.pending() == 0
    q.close()


def test_lane_keeps_a_delivered_range_it_cannot_record_and_never_resends_it(tmp_path: Path) -> None:
    """The queue file refuses the cursor write (here: closed under the lane); the lane must not
    re-read and resend what it delivered."""
    q = PersistentQueue(tmp_path / "q.db")
    q.register_lanes(["main"])
    q.append([entry([1]), entry([2])])
    backend = MemoryBackend("a")
    lane = Lane("main", q, Policy([backend], "priority"), Counters("e"))
    lane.max_request_records = 1
    assert lane._step()
    recorded = q.cursor("main")
    with q._lock:  # make the file refuse writes: another connection holds the write lock
        blocker = sqlite3.connect(tmp_path / "q.db", timeout=0.1, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        q._conn.execute("PRAGMA busy_timeout=50")
    assert lane._step()  # delivers entry 2; its cursor write is refused
    assert lane.unrecorded and q.cursor("main") == recorded
    for _ in range(3):
        lane._step()
    assert sorted(int(v) for v in backend.values("seq")) == [1, 2]  # not resent
    blocker.execute("ROLLBACK")
    blocker.close()
    assert lane.settle(force=True) and not lane.unrecorded
    assert q.pending() == 0
    q.close()


def test_the_in_flight_request_is_bounded_by_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The at-least-once window of a kill -9 is one request per lane: never more than
    OTEL_EXT_MAX_REQUEST_RECORDS records (whole entries; one entry alone if larger), and an
    explicit argument beats the variable."""
    sizes: list[int] = []
    backend = MemoryBackend("a", hook=lambda payload, records: sizes.append(records) if records else None)
    monkeypatch.setenv("OTEL_EXT_MAX_REQUEST_RECORDS", "25")
    monkeypatch.setenv("OTEL_EXT_MAX_REQUEST_BYTES", "not a number")  # given below: never read
    exp = FailoverLogExporter([backend], queue_dir=tmp_path / "q", counters=Counters("e"),
                              queue_counters=Counters("q"), probe_interval=0.02, max_request_bytes=1 << 20)
    assert exp.lanes[0].max_request_records == 25 and exp.lanes[0].max_request_bytes == 1 << 20
    backend.delay = 0.05  # let entries pile up behind the first request, so later ones coalesce
    exp.queue.append([entry(list(range(n * 10, n * 10 + 10))) for n in range(20)])
    exp.queue.append([entry(list(range(1000, 1040)))])  # one entry larger than the bound: sent alone
    exp.lanes[0].wake.set()
    assert wait_for(lambda: backend.records == 240)
    assert max(sizes) == 40 and sorted(sizes)[-2] <= 25 and 20 in sizes, sizes  # coalesced, within bound
    exp.shutdown()


class PipelinedMemory(MemoryBackend):
    """MemoryBackend with a window: submit() takes the request, serve() acknowledges every ticket."""

    pipelined = True

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.tickets: list[Ticket] = []

    def submit(self, payload: bytes, records: int) -> Ticket:
        ticket = Ticket(time.monotonic() + 30)
        ticket.pending, ticket.submitted = 1, True
        self.payloads.append(payload)
        self.tickets.append(ticket)
        return ticket

    def serve(self, timeout: float) -> None:
        while self.tickets:
            self.tickets.pop(0).report(None)


def test_a_window_records_its_acknowledged_prefix_on_its_cadence_without_waiting_and_all_of_it_when_idle(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Acknowledgements are not written one by one: not before the cadence is due, not while an
    append holds the queue (until overdue), and everything as soon as the lane goes idle. What is
    written never passes what was acknowledged."""

    from otel_ext.export import sender

    q = PersistentQueue(tmp_path / "q.db")
    q.register_lanes(["main"])
    for k in range(12):
        q.append([entry([k])])
    last = q.last_id()
    backend = PipelinedMemory("p")
    lane = Lane("main", q, Policy([backend], "priority"), Counters("e"), max_request_records=1,
                max_inflight_requests=2)
    monkeypatch.setattr(sender, "RECORD_EVERY", 3600.0)  # never due by time
    for _ in range(4):
        assert lane._step()
    acknowledged = lane.delivered_upto()
    assert 0 < acknowledged < last and q.cursor("main") == 0 and lane.unrecorded  # acknowledged, not yet written
    # due now, but an append holds the queue: the lane does not wait for it
    monkeypatch.setattr(sender, "RECORD_EVERY", 0.0)
    monkeypatch.setattr(sender, "RECORD_OVERDUE", 3600.0)
    with append_in_progress(q):
        started = time.monotonic()
        assert lane._step()
        assert time.monotonic() - started < 5  # did not wait for the 10 s hold
    assert q.cursor("main") == 0
    assert lane._step()  # the queue is free: written now, up to what was acknowledged and no further
    assert 0 < q.cursor("main") <= lane.delivered_upto()
    monkeypatch.setattr(sender, "RECORD_EVERY", 3600.0)
    while lane._step():
        pass  # ... until idle: then everything acknowledged is written
    assert lane.delivered_upto() == last and q.cursor("main") == last and not lane.unrecorded
    assert q.stats().entries == 0
    assert sorted(int(v) for v in backend.values("seq")) == list(range(12))
    q.close()
