"""Adversarial review of the queue's overflow accounting (round 7: eviction knows what the lanes hold).

The promise under attack: delivered + counted drops + queued + dead-lettered = appended, exactly, in
every interleaving of appends (any tier), lane reads (a window of requests in flight), deliveries,
failed requests (read again), cursor writes and housekeeping; the tier promise (lowest tier first, a
newcomer never evicts a higher tier, security last) holds; the bookkeeping stays bounded.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from durable_helpers import entry
from durable_helpers import entry_seqs as seqs
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from opentelemetry._logs import SeverityNumber
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from peers import collect, wait_until

from otel_ext.export import FailoverLogExporter
from otel_ext.queue.store import Entry, PersistentQueue
from otel_ext.telemetry import Counters

PER = 2  # records per entry
BODY = 300
CLASSES = ("access", "error", "security")


def one_entry_size() -> int:
    return len(entry(list(range(PER)), body_bytes=BODY).payload)


def queued(q: PersistentQueue) -> list[Entry]:
    return q.read_after(0, 10**9, 10**12)


class _Lane:
    """What a :class:`otel_ext.export.sender.Lane` keeps in memory, driven step by step."""

    def __init__(self, name: str, cursor: int) -> None:
        self.name = name
        self.delivered = cursor
        self.window: list[list[Entry]] = []  # requests in flight, oldest first
        self.got: list[int] = []

    @property
    def submitted(self) -> int:
        return self.window[-1][-1].id if self.window else self.delivered


class QueueMarksMachine(RuleBasedStateMachine):
    """Appends of every tier into a queue of ~6 entries, against 1-2 lanes that read windows of
    requests, deliver them, fail them (read again from what they delivered) and record cursors."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="rev4-sm-"))
        self.counters = Counters("rev4-sm")
        self.q: PersistentQueue | None = None
        self.lanes: list[_Lane] = []
        self.next_seq = 0
        self.tier_of: dict[int, int] = {}
        self.violations: list[str] = []

    @initialize(lanes=st.integers(1, 2), capacity=st.integers(3, 8))
    def start(self, lanes: int, capacity: int) -> None:
        size = one_entry_size()
        self.q = PersistentQueue(self.dir / "q.db", max_bytes=capacity * size + size // 2, counters=self.counters)
        names = [f"lane{i}" for i in range(lanes)]
        self.q.register_lanes(names)
        self.lanes = [_Lane(n, self.q.cursor(n)) for n in names]

    # --- the app ----------------------------------------------------------------------------

    @rule(tier=st.integers(0, 2), count=st.integers(1, 3))
    def append(self, tier: int, count: int) -> None:
        assert self.q is not None
        before = {e.id: e for e in queued(self.q)}
        batch = []
        for _ in range(count):
            s = list(range(self.next_seq, self.next_seq + PER))
            self.next_seq += PER
            for x in s:
                self.tier_of[x] = tier
            batch.append(entry(s, CLASSES[tier], body_bytes=BODY))
        self.q.append(batch)
        after = {e.id: e for e in queued(self.q)}
        everyone = min(lane.delivered for lane in self.lanes)
        evicted = [e for i, e in before.items() if i not in after and i > everyone]
        for e in evicted:
            if e.tier > tier:
                self.violations.append(f"a tier-{tier} newcomer evicted a tier-{e.tier} entry")
            lower = [o for o in after.values() if o.id in before and o.tier < e.tier]
            if lower:
                self.violations.append(f"a tier-{e.tier} entry was evicted while {len(lower)} older entries of "
                                       f"tier {min(o.tier for o in lower)} stayed")

    # --- the lanes ----------------------------------------------------------------------------

    @rule(which=st.integers(0, 1), entries=st.integers(1, 4))
    def read(self, which: int, entries: int) -> None:
        assert self.q is not None
        lane = self.lanes[which % len(self.lanes)]
        if len(lane.window) >= 3:
            return
        take = self.q.read_after(lane.submitted, entries * PER, 10**12, lane=lane.name)
        if take:
            assert take[0].id > lane.submitted
            lane.window.append(take)

    @rule(which=st.integers(0, 1))
    def deliver(self, which: int) -> None:
        assert self.q is not None
        lane = self.lanes[which % len(self.lanes)]
        if not lane.window:
            return
        take = lane.window.pop(0)
        lane.got += seqs(take)
        lane.delivered = max(lane.delivered, take[-1].id)
        self.q.mark_delivered(lane.name, lane.delivered, take)

    @rule(which=st.integers(0, 1))
    def fail(self, which: int) -> None:
        """The head request failed: the window is forgotten, the lane reads again from what it delivered."""
        self.lanes[which % len(self.lanes)].window.clear()

    @rule(which=st.integers(0, 1))
    def record(self, which: int) -> None:
        assert self.q is not None
        lane = self.lanes[which % len(self.lanes)]
        self.q.advance(lane.name, lane.delivered)

    @rule(which=st.integers(0, 1))
    def reject_permanently(self, which: int) -> None:
        """The head request (one entry) was permanently rejected: dead-lettered, then passed."""
        assert self.q is not None
        lane = self.lanes[which % len(self.lanes)]
        if not lane.window or len(lane.window[0]) != 1:
            return
        take = lane.window.pop(0)
        self.q.dead_letter(take[0], lane.name, "rejected")
        lane.got += seqs(take)  # accounted for: kept in the dead-letter store
        lane.delivered = max(lane.delivered, take[-1].id)
        self.q.mark_delivered(lane.name, lane.delivered, take)

    @rule()
    def restart(self) -> None:
        """close() and open again: the lanes forget what they held (what was evicted from their hands
        is counted now); what they delivered but did not record is sent again (at least once)."""
        assert self.q is not None
        self.q.close()
        self.q = PersistentQueue(self.dir / "q.db", max_bytes=self.q.max_bytes, counters=self.counters)
        for lane in self.lanes:
            lane.window.clear()
            recorded = self.q.cursor(lane.name)
            lane.got = [s for s in lane.got if s not in self.unrecorded(lane, recorded)]
            lane.delivered = recorded

    def unrecorded(self, lane: _Lane, recorded: int) -> set[int]:
        """Seqs the lane delivered past its recorded cursor that are still in the file (sent again)."""
        assert self.q is not None
        return {s for e in queued(self.q) if e.id > recorded for s in seqs([e])}

    @rule()
    def housekeeping(self) -> None:
        assert self.q is not None
        self.q.maintain()

    # --- promises -----------------------------------------------------------------------------

    @invariant()
    def nothing_delivered_twice_and_tiers_kept(self) -> None:
        for lane in self.lanes:
            assert len(lane.got) == len(set(lane.got)), f"{lane.name} delivered a record twice"
        assert not self.violations, self.violations

    def teardown(self) -> None:
        """Every lane fails what it has in flight, then delivers everything; then the counts."""
        if self.q is None:
            return
        try:
            for lane in self.lanes:
                lane.window.clear()
                while take := self.q.read_after(lane.delivered, 10**9, 10**12, lane=lane.name):
                    lane.got += seqs(take)
                    lane.delivered = take[-1].id
                    self.q.mark_delivered(lane.name, lane.delivered, take)
                self.q.advance(lane.name, lane.delivered)
            assert self.q.stats().records == 0
        finally:
            self.q.close()
        for lane in self.lanes:
            assert len(lane.got) == len(set(lane.got)), f"{lane.name} delivered a record twice"
        everyone = set.intersection(*(set(lane.got) for lane in self.lanes))
        lost = self.next_seq - len(everyone)
        dropped = self.counters.get("dropped")
        assert dropped == lost, f"counted {dropped} dropped, {lost} records did not reach every lane"


QueueMarksMachine.TestCase.settings = settings(
    max_examples=120, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_queue_marks_state_machine = QueueMarksMachine.TestCase


# --- focused findings ---------------------------------------------------------------------------

BIG = 1000  # body bytes of the focused tests' entries (~10 KB for 10 records)


def put(q: PersistentQueue, k: int, event_class: str = "access", per: int = 10) -> None:
    q.append([entry(list(range(k * per, (k + 1) * per)), event_class, body_bytes=BIG)])


def small_queue(tmp_path: Path, name: str, entries: int = 8) -> tuple[PersistentQueue, Counters]:
    counters = Counters(name)
    size = len(entry(list(range(10)), body_bytes=BIG).payload)
    q = PersistentQueue(tmp_path / "q.db", max_bytes=entries * size + size // 2, counters=counters)
    q.register_lanes(["main"])
    return q, counters


def test_security_is_evicted_last_even_when_a_lane_holds_the_lower_tiers(tmp_path: Path) -> None:
    """Finding: eviction skipped every entry a lane had in hand before it looked at the next tier, so
    a lane holding the oldest access entries (a request in flight, or a backend down: the lane keeps
    its request for good) made newcomers evict error and *security* entries while access entries
    stayed. The lowest tier goes first whatever the lanes hold; in-hand entries are counted when the
    lane passes them undelivered, so the counts stay exact."""
    q, counters = small_queue(tmp_path, "rev4-tier")
    put(q, 0, "access")
    put(q, 1, "access")
    for k in range(2, 8):
        put(q, k, "security")
    hand = q.read_after(q.cursor("main"), 20, 10**12, lane="main")  # the two access entries, in flight
    assert len(hand) == 2
    for k in range(8, 10):
        put(q, k, "security")  # two must go: the two access entries, not the oldest security ones
    dropped = counters.snapshot().get("dropped", {})
    assert not any(key.startswith("security") for key in dropped), dropped
    assert sorted(e.tier for e in queued(q)) == [2] * 8
    # the request failed: the lane reads again and finds the access entries gone (counted now)
    again = q.read_after(q.cursor("main"), 10**6, 10**12, lane="main")
    got = seqs(again)
    q.mark_delivered("main", again[-1].id, again)
    q.advance("main", again[-1].id)
    assert sorted(got) == list(range(20, 100))
    assert counters.snapshot()["dropped"] == {"access:queue_full": 20}
    q.close()


def test_evicted_ids_are_not_kept_while_a_lane_is_stuck(tmp_path: Path) -> None:
    """Finding: the ids of evicted entries were kept until every lane's cursor passed them. With the
    backend down (the lane holds one request and never moves) every eviction added an id for good:
    memory grew without bound and each evicting append re-scanned the whole set (and queried the
    lanes' cursors) once it held 1,024 ids. Only a read in progress needs them."""
    q, counters = small_queue(tmp_path, "rev4-stuck")
    put(q, 0)
    assert q.read_after(0, 10, 10**12, lane="main")  # the lane's request, never delivered
    for k in range(1, 3001):
        put(q, k)
    assert counters.get("dropped") > 2900 * 10
    assert len(q._evicted) <= 16, len(q._evicted)
    q.close()


# --- real lanes, counted at real receivers -------------------------------------------------------


@pytest.mark.peers
def test_replicate_one_backend_down_one_fast_overflowing_a_tiny_queue_counts_exactly(
        receivers: Any, tmp_path: Path) -> None:
    """Replicate mode, backend b down from the start (its lane holds its first request for good),
    backend a fast, a 256 KiB queue overflowing with access and a little security. Then b comes back.
    A record counted dropped is one that did not reach both receivers, and each such record is
    counted once; nothing reaches a receiver twice; no security record is dropped (they fit)."""
    a = receivers("a")
    b = receivers("b", start=False)
    queue_counters = Counters("rev4-replicate-q")
    exporter = FailoverLogExporter([a.grpc_url, b.grpc_url], queue_dir=tmp_path / "q", policy="replicate",
                                   queue_max_bytes=256 * 1024, counters=Counters("rev4-replicate"),
                                   queue_counters=queue_counters)
    provider = LoggerProvider()
    provider.add_log_record_processor(BatchLogRecordProcessor(
        exporter, schedule_delay_millis=10, max_export_batch_size=200, max_queue_size=100_000))
    logger = provider.get_logger("rev4")
    emitted = 0
    for burst in range(6):
        for _ in range(1500):
            cls = "security" if emitted % 50 == 0 else "access"
            logger.emit(body=f"record {emitted} " + "x" * 200, severity_number=SeverityNumber.INFO,
                        attributes={"seq": emitted, "labels.event_class": cls})
            emitted += 1
        assert provider.force_flush(30_000)
        if burst == 3:
            b.start()
    assert provider.force_flush(30_000)
    assert exporter.force_flush(60_000)
    provider.shutdown()
    dropped = queue_counters.snapshot().get("dropped", {})
    assert sum(dropped.values()) > 0, "the queue never overflowed: nothing was exercised"
    assert not any(key.startswith("security") for key in dropped), dropped
    lost = sum(dropped.values())
    at_b = collect(emitted - lost, b)
    at_a = a.uids()
    assert len(at_a) == len(set(at_a)), "a record delivered twice to a"
    assert len(at_b) == len(set(at_b)), "a record delivered twice to b"
    both = set(at_a) & set(at_b)
    assert emitted - len(both) == lost, (len(at_a), len(at_b), len(both), dropped)


@pytest.mark.peers
def test_a_down_backends_lane_holding_access_records_does_not_make_security_records_go_first(
        receivers: Any, tmp_path: Path) -> None:
    """Replicate mode: backend b is down, so its lane keeps its first request (access records) in
    hand for good. Security records then fill the queue past its bound; they fit in it on their own.
    The access records must go first (here: the ones b holds, which it still delivers from memory
    when it comes back), not the security ones."""
    a = receivers("a")
    b = receivers("b", start=False)
    queue_counters = Counters("rev4-tier-e2e-q")
    exporter = FailoverLogExporter([a.grpc_url, b.grpc_url], queue_dir=tmp_path / "q", policy="replicate",
                                   queue_max_bytes=256 * 1024, counters=Counters("rev4-tier-e2e"),
                                   queue_counters=queue_counters)
    provider = LoggerProvider()
    provider.add_log_record_processor(BatchLogRecordProcessor(
        exporter, schedule_delay_millis=10, max_export_batch_size=1000, max_queue_size=100_000))
    logger = provider.get_logger("rev4")
    emitted = 0

    def emit(n: int, cls: str) -> None:
        nonlocal emitted
        for _ in range(n):
            logger.emit(body=f"record {emitted} " + "x" * 200, severity_number=SeverityNumber.INFO,
                        attributes={"seq": emitted, "labels.event_class": cls})
            emitted += 1
        assert provider.force_flush(30_000)

    emit(400, "access")  # one export: one entry, which b's lane reads and keeps while b is down
    assert wait_until(lambda: a.count() >= 400 and any(
        not k.startswith("a") for k in exporter.counters.snapshot().get("attempts", {})), 20)
    for _ in range(5):
        emit(100, "security")  # 500 security records fit in the queue, with the access ones they do not
    b.start()
    assert exporter.force_flush(60_000)
    provider.shutdown()
    dropped = queue_counters.snapshot().get("dropped", {})
    assert not any(key.startswith("security") for key in dropped), dropped
    assert exporter.queue._evictions, "the queue never overflowed: nothing was exercised"
    lost = sum(dropped.values())
    at_b = collect(emitted - lost, b)
    at_a = a.uids()
    assert len(at_a) == len(set(at_a)) == emitted
    assert len(at_b) == len(set(at_b))
    assert emitted - len(set(at_a) & set(at_b)) == lost, (len(at_a), len(at_b), dropped)


def _kafka_request(prefix: str, n: int, body_bytes: int) -> bytes:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    rl = ResourceLogs(resource=Resource(attributes=[KeyValue(key="service.name",
                                                             value=AnyValue(string_value="svc"))]))
    sl = ScopeLogs()
    for i in range(n):
        sl.log_records.append(LogRecord(
            body=AnyValue(string_value=f"{prefix} {i} " + "x" * body_bytes),
            attributes=[KeyValue(key="log.record.uid", value=AnyValue(string_value=f"{prefix}-{i}"))]))
    rl.scope_logs.append(sl)
    return ExportLogsServiceRequest(resource_logs=[rl]).SerializeToString()


@pytest.mark.peers
def test_kafka_broker_killed_with_a_window_in_flight_while_the_queue_overflows_counts_exactly(
        tmp_path: Path) -> None:
    """A lane with a window of requests in flight to Kafka holds the whole (small) queue in hand;
    a writer keeps appending (the queue overflows); the broker is killed -9 with requests in flight,
    restarted, and the lane drains. Every appended record is in the topic (at least once) or counted
    dropped, and none is both."""
    import uuid

    from kafka_server import KafkaBroker, consume, record_uids

    from otel_ext.backends import backend_from_url
    from otel_ext.export.policy import Policy
    from otel_ext.export.sender import Lane, Prober
    from otel_ext.queue.store import NewEntry

    per, body = 100, 1000
    size = len(_kafka_request("e0", per, body))
    broker = KafkaBroker(partitions=3).start()
    writer: threading.Thread | None = None
    stop = threading.Event()
    try:
        topic = f"logs-{uuid.uuid4().hex[:8]}"
        broker.create_topic(topic)
        counters = Counters("rev4-kafka-q")
        queue = PersistentQueue(tmp_path / "q.db", max_bytes=20 * size + size // 2, counters=counters)
        queue.register_lanes(["main"])
        appended = 0

        def write() -> None:
            nonlocal appended
            while not stop.is_set():
                queue.append([NewEntry(0, per, {"access": per}, _kafka_request(f"e{appended}", per, body))])
                appended += 1
                time.sleep(0.004)

        backend = backend_from_url(broker.url(topic, timeout="1s"), env={})
        lane = Lane("main", queue, Policy([backend], "priority"), Counters("rev4-kafka"),
                    max_request_records=3 * per, max_request_bytes=4 * size,
                    max_inflight_requests=8, max_inflight_bytes=64 * size)
        assert backend.probe().delivered
        prober = Prober([lane.policy])  # brings the backend back once the broker is
        writer = threading.Thread(target=write)
        writer.start()
        lane.start()
        prober.start()
        assert wait_until(lambda: lane.in_flight >= 4 and appended > 40, 60, interval=0.0005)
        broker.kill()  # kill -9 with requests in flight, while the writer overflows the queue
        time.sleep(3)
        broker.start()
        time.sleep(3)
        stop.set()
        writer.join()
        drained = wait_until(lambda: queue.stats().entries == 0 and not lane.unrecorded, 90)
        lane.stop(0)
        lane.join(15)
        prober.stop()
        prober.join(5)
        assert drained, (queue.stats(), lane.policy.active(), lane.in_flight)
        backend.close()
        queue.close()
        uids = set(record_uids(consume(broker.bootstrap, topic, expect=1, timeout=30)))
        dropped = counters.get("dropped")
        assert dropped > 0, "the queue never overflowed: nothing was exercised"
        both = sum(1 for k in range(appended) for i in range(per) if f"e{k}-{i}" in uids) + dropped
        print(f"REV4 appended {appended * per}, in the topic {len(uids)}, dropped {dropped}")
        assert len(uids) + dropped == appended * per, (len(uids), dropped, appended * per)
        assert both == appended * per
    finally:
        stop.set()
        if writer is not None:
            writer.join()
        broker.stop()


def test_a_newcomer_that_cannot_fit_evicts_nothing(tmp_path: Path) -> None:
    """Finding (older than round 7): a newcomer too large to fit even with every entry of its tier
    and below gone evicted them all anyway, then was dropped too: records lost for nothing."""
    q, counters = small_queue(tmp_path, "rev4-waste")
    put(q, 0, "access")
    for k in range(1, 7):
        put(q, k, "security")
    q.append([entry(list(range(1000, 1030)), "access", body_bytes=BIG)])  # three entries' worth
    assert counters.snapshot()["dropped"] == {"access:queue_full": 30}  # the newcomer only
    assert sorted(s for s in seqs(queued(q))) == list(range(70))
    put(q, 7, "access")  # still room for one more entry
    assert counters.get("dropped") == 30
    q.close()
