"""Overflow eviction knows what the delivery lanes hold: delivered + counted drops = appended, exactly.

A lane records its cursor in the queue file only every so often (``RECORD_EVERY``), keeps a request
in flight while the file fills, and reads without the writer's lock. Eviction used to see only the
file: an entry delivered but not yet recorded, or one a lane had in hand, could be evicted and counted
dropped *and* arrive (CI once saw four such entries). Now:

- entries every lane delivered are freed first, not counted;
- entries a lane has in hand are evicted only when nothing else of a low enough tier is left, and
  then counted dropped only if the lane passes them without delivering them;
- an entry evicted while a lane was reading it is left out of that read.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from durable_helpers import entry
from durable_helpers import entry_seqs as seqs
from faults import TcpProxy
from peers import collect

from otel_ext.export import FailoverLogExporter
from otel_ext.queue.store import Entry, PersistentQueue
from otel_ext.telemetry import Counters

PER = 10  # records per entry
BODY = 1000  # an entry of 10 records is ~10 KB


def put(q: PersistentQueue, k: int, event_class: str = "access") -> None:
    q.append([entry(list(range(k * PER, (k + 1) * PER)), event_class, body_bytes=BODY)])


def drain(q: PersistentQueue, lane: str = "main") -> list[int]:
    got: list[int] = []
    while entries := q.read_after(q.cursor(lane), 10_000, 10**9, lane=lane):
        got += seqs(entries)
        q.mark_delivered(lane, entries[-1].id, entries)
        q.advance(lane, entries[-1].id)
    return got


def queue(tmp_path: Path, name: str, entries: int = 8) -> tuple[PersistentQueue, Counters]:
    """A queue that holds ``entries`` of ours and not one more."""
    counters = Counters(name)
    size = len(entry(list(range(PER)), body_bytes=BODY).payload)
    q = PersistentQueue(tmp_path / "q.db", max_bytes=entries * size + size // 2, counters=counters)
    q.register_lanes(["main"])
    return q, counters


def ids_in(q: PersistentQueue) -> list[int]:
    return [e.id for e in q.read_after(0, 10**6, 10**12)]


def test_entries_delivered_but_not_yet_recorded_are_freed_not_counted(tmp_path: Path) -> None:
    q, counters = queue(tmp_path, "marks-freed")
    for k in range(8):
        put(q, k)
    hand = q.read_after(q.cursor("main"), 10**6, 10**12, lane="main")
    got = seqs(hand)
    q.mark_delivered("main", hand[-1].id, hand)  # delivered; the cursor is not written yet
    for k in range(8, 16):
        put(q, k)  # the queue is full: room comes from what was delivered
    assert counters.get("dropped") == 0, counters.snapshot()
    got += drain(q)
    assert sorted(got) == list(range(16 * PER))
    q.close()


def test_an_entry_in_a_lanes_hands_is_evicted_last(tmp_path: Path) -> None:
    q, counters = queue(tmp_path, "marks-last")
    for k in range(8):
        put(q, k)
    first = ids_in(q)
    hand = q.read_after(q.cursor("main"), 2 * PER, 10**12, lane="main")  # the two oldest, in flight
    assert [e.id for e in hand] == first[:2]
    put(q, 8)  # one must go: the oldest not in hand
    assert ids_in(q) == first[:2] + first[3:] + [first[-1] + 1]
    assert counters.get("dropped") == PER
    got = seqs(hand)
    q.mark_delivered("main", hand[-1].id, hand)
    q.advance("main", hand[-1].id)
    got += drain(q)
    assert len(got) == len(set(got))
    assert len(got) + counters.get("dropped") == 9 * PER
    assert counters.get("dropped") == PER  # nothing counted twice
    q.close()


@pytest.mark.parametrize("outcome", ["delivered", "failed_and_read_again", "never_delivered"])
def test_when_only_entries_in_hand_are_left_a_higher_tier_still_gets_room_and_counts_stay_exact(
        tmp_path: Path, outcome: str) -> None:
    """The tier promise wins over the lane's hand: a security entry evicts an access entry the lane
    is delivering. That entry is counted dropped only if the lane passes it without delivering it."""
    q, counters = queue(tmp_path, f"marks-{outcome}")
    for k in range(8):
        put(q, k)
    hand = q.read_after(q.cursor("main"), 10**6, 10**12, lane="main")  # everything is in flight
    put(q, 8, "security")
    assert (PER * 8) in seqs(q.read_after(0, 10**6, 10**12))  # the security entry is stored
    assert counters.get("dropped") == 0  # not yet: the access entry it evicted may still arrive
    got: list[int] = []
    if outcome == "delivered":
        got += seqs(hand)  # the request in flight succeeded, evicted entry included
        q.mark_delivered("main", hand[-1].id, hand)
        q.advance("main", hand[-1].id)
    elif outcome == "failed_and_read_again":
        again = q.read_after(q.cursor("main"), 10**6, 10**12, lane="main")  # the evicted one is gone
        assert len(again) == len(hand)  # 7 of the old + the security one
        got += seqs(again)
        q.mark_delivered("main", again[-1].id, again)
        q.advance("main", again[-1].id)
    got += drain(q)
    if outcome == "never_delivered":
        q.close()  # the lane stopped holding it: it is lost, and counted now
    assert len(got) == len(set(got))
    assert len(got) + counters.get("dropped") == 9 * PER, (len(got), counters.snapshot())
    assert counters.get("dropped") == (0 if outcome == "delivered" else PER)
    q.close()


def test_an_entry_evicted_while_a_lane_reads_it_is_left_out_of_that_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lane reads on its own connection without the writer's lock: between its snapshot and the
    moment it takes note of what it read, an append evicts the oldest entries (counted dropped).
    Those must not also be handed to the lane."""
    q, counters = queue(tmp_path, "marks-race")
    for k in range(8):
        put(q, k)
    read_once = q._read_once
    raced: list[int] = []

    def read_then_overflow(*args: Any) -> list[Entry]:
        entries = read_once(*args)
        if not raced:
            raced.append(1)
            put(q, 8)  # evicts the oldest entry, which this read just took
            put(q, 9)
        return entries

    monkeypatch.setattr(q, "_read_once", read_then_overflow)
    first = q.read_after(q.cursor("main"), 4 * PER, 10**12, lane="main")
    assert raced
    assert counters.get("dropped") == 2 * PER
    assert len(first) == 2 and min(seqs(first)) == 2 * PER  # the two evicted ones left out
    got = seqs(first)
    q.mark_delivered("main", first[-1].id, first)
    q.advance("main", first[-1].id)
    got += drain(q)
    assert len(got) == len(set(got))
    assert len(got) + counters.get("dropped") == 10 * PER
    q.close()


def test_many_threads_overflowing_a_tiny_queue_account_for_every_record(tmp_path: Path) -> None:
    """Writers of all tiers against a lane that sometimes fails its request and reads again,
    sometimes acknowledges without recording: every record is delivered once or counted once."""
    q, counters = queue(tmp_path, "marks-threads", entries=6)
    written = 300
    errors: list[BaseException] = []

    def writer(start: int) -> None:
        try:
            for k in range(start, written, 3):
                put(q, k, ("access", "error", "security")[k % 3 if k % 7 else 0])
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    writers = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
    for t in writers:
        t.start()
    got: list[int] = []
    delivered = q.cursor("main")
    turn = 0
    while any(t.is_alive() for t in writers):
        turn += 1
        hand = q.read_after(delivered, 3 * PER, 10**12, lane="main")
        if not hand:
            continue
        time.sleep(0.002)  # the request is in flight
        if turn % 5 == 0:
            continue  # it failed: read again from the same place
        got += seqs(hand)
        delivered = hand[-1].id
        q.mark_delivered("main", delivered, hand)
        if turn % 3 == 0:
            q.advance("main", delivered)  # recorded now and then, like a lane
    for t in writers:
        t.join()
    q.advance("main", delivered)
    got += drain(q)
    q.close()
    assert not errors, errors
    assert len(got) == len(set(got)), "a record delivered twice"
    assert counters.get("dropped") > 0, "the queue never overflowed: nothing was exercised"
    assert len(got) + counters.get("dropped") == written * PER, (len(got), counters.snapshot())
    dropped = counters.snapshot()["dropped"]
    assert sum(v for k, v in dropped.items() if k.startswith("security")) <= sum(
        v for k, v in dropped.items() if not k.startswith("security"))


@pytest.mark.peers
@pytest.mark.parametrize("request_records", [200, 100_000])
def test_a_slow_receiver_and_a_tiny_queue_delivered_plus_counted_drops_equal_emitted(
        receivers: Any, tmp_path: Path, request_records: int) -> None:
    """End to end, counted at a real receiver behind a slow link: a burst overflows a 256 KiB queue
    while requests are in flight and the lane's cursor is written only now and then. Every record
    arrives once or is counted dropped once, never both. With requests of 100,000 records the lane
    has the whole queue in hand, so room comes from its hands."""
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    rx = receivers("slow")
    proxy = TcpProxy(rx.grpc_port)
    proxy.delay = 0.01
    queue_counters = Counters("marks-e2e-q")
    try:
        exporter = FailoverLogExporter([f"otlp+grpc://127.0.0.1:{proxy.port}?name=slow&timeout=10s"],
                                       queue_dir=tmp_path / "q", queue_max_bytes=256 * 1024,
                                       max_request_records=request_records, counters=Counters("marks-e2e"),
                                       queue_counters=queue_counters)
        provider = LoggerProvider()
        provider.add_log_record_processor(BatchLogRecordProcessor(
            exporter, schedule_delay_millis=10, max_export_batch_size=200, max_queue_size=100_000))
        logger = provider.get_logger("marks")
        emitted = 20_000
        for i in range(emitted):
            logger.emit(body=f"record {i} " + "x" * 200, severity_number=SeverityNumber.INFO,
                        attributes={"seq": i, "labels.event_class": "access"})
        assert provider.force_flush(60_000)
        assert exporter.force_flush(120_000)
        provider.shutdown()
    finally:
        proxy.close()
    dropped = queue_counters.get("dropped")
    assert dropped > 0, "the queue never overflowed: nothing was exercised"
    uids = collect(emitted - dropped, rx)
    assert len(uids) == len(set(uids)), "a record delivered twice"
    assert len(uids) + dropped == emitted, (len(uids), dropped)


def test_an_entry_whose_dead_letter_is_not_written_yet_stays_in_the_file_when_the_queue_overflows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A permanently rejected entry leaves the queue file only once its dead letter is in it: while
    the dead-letter write keeps failing, what the lane acknowledged is not reported as delivered, so
    an overflowing append evicts newer entries instead of freeing it (a crash then re-sends it, never
    loses it). The review found the entry freed before its dead letter existed."""
    from otel_ext.backends.outcome import Outcome
    from otel_ext.export.policy import Policy
    from otel_ext.export.sender import Lane
    from otel_ext.export.testing import MemoryBackend
    from otel_ext.queue.store import QueueError

    q, counters = queue(tmp_path, "marks-dead", entries=6)
    bad = entry(list(range(900, 900 + PER)), body_bytes=BODY)
    q.append([bad])
    put(q, 1)
    put(q, 2)

    class Picky(MemoryBackend):
        def send(self, payload: bytes, records: int) -> Outcome:
            if bad.payload in payload:
                return Outcome.permanent("mapper_parsing_exception")
            return super().send(payload, records)

    refusing = [True]
    write_dead_letter = q.dead_letter

    def refused(*args: Any, **kwargs: Any) -> None:
        if refusing[0]:
            raise QueueError("disk I/O error (the dead-letter write fails for now)")
        write_dead_letter(*args, **kwargs)

    monkeypatch.setattr(q, "dead_letter", refused)
    picky = Picky("picky")
    lane = Lane("main", q, Policy([picky], "priority"), Counters("marks-dead-e"), max_request_records=PER)
    for _ in range(4):
        lane._step()
    assert lane._owed_dead and sorted(int(v) for v in picky.values("seq")) == list(range(PER, 3 * PER))
    for k in range(10, 16):
        put(q, k)  # overflow: three entries must go
    stored = [e.payload for e in q.read_after(0, 10**6, 10**12)]
    assert bad.payload in stored, "the rejected entry left the file before its dead letter was written"
    refusing[0] = False
    assert lane.settle(force=True)
    assert [d.payload for d in q.dead_letters()] == [bad.payload]
    for _ in range(10):
        lane._step()
    lane.settle(force=True)
    delivered = [int(v) for v in picky.values("seq")]
    assert len(delivered) == len(set(delivered))
    assert len(delivered) + counters.get("dropped") + PER == 9 * PER, (len(delivered), counters.snapshot())
    assert q.pending() == 0
    q.close()
